package peersync

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
)

// DefaultWorkers is the number of sync workers when Config.Workers is zero.
const DefaultWorkers = 2

// Config configures the Controller.
type Config struct {
	// Client talks to the API server. Required.
	Client kubernetes.Interface
	// Workers is the number of concurrent syncs; zero means DefaultWorkers.
	Workers int
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
