package peersync

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
)

// Defaults of Config.
const (
	// DefaultWorkers is the number of concurrent syncs.
	DefaultWorkers = 2
	// DefaultMarkDelay is the wait between marking pods to go first and the
	// scale-down, for the ReplicaSet controller to see the marks.
	DefaultMarkDelay = time.Second
)

// Config configures the Controller.
type Config struct {
	// Client talks to the API server. Required.
	Client kubernetes.Interface
	// Workers is the number of concurrent syncs; zero means DefaultWorkers.
	Workers int
	// MarkDelay is the wait between giving the pods on nodes that no longer
	// count the lowest pod-deletion-cost and scaling down; zero means
	// DefaultMarkDelay.
	MarkDelay time.Duration
	// Recorder records the Events on Deployments; nil records them through
	// an event broadcaster started by Run.
	Recorder record.EventRecorder
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// withDefaults returns c with every zero setting replaced by its default.
func (c Config) withDefaults() Config {
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.MarkDelay == 0 {
		c.MarkDelay = DefaultMarkDelay
	}
	return c
}

// validate lists every problem of a defaulted configuration.
func (c Config) validate() error {
	var errs []error
	if c.Client == nil {
		errs = append(errs, errors.New("peer replica sync needs a Kubernetes client"))
	}
	if c.Workers < 1 {
		errs = append(errs, errors.New("peer replica sync needs at least one worker"))
	}
	return errors.Join(errs...)
}
