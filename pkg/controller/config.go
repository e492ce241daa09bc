package controller

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/moduleops/module-controller/tunnel"
)

// Defaults of Config, matching the timings of the Koupleless reference
// controller where one exists.
const (
	DefaultUnreachableAfter   = 25 * time.Second
	DefaultRemoveAfter        = 60 * time.Second
	DefaultHealthInterval     = 10 * time.Second
	DefaultCheckInterval      = 3 * time.Second
	DefaultNodeLeaseDuration  = 40 * time.Second
	DefaultLeaseRenewInterval = 20 * time.Second
	DefaultNodeStatusInterval = 5 * time.Minute
	DefaultMaxPods            = 110
	DefaultArch               = "amd64"
	DefaultCommandTimeout     = 10 * time.Second
	DefaultPodWorkers         = 16
	DefaultQueryInterval      = 15 * time.Second
	DefaultInstallTimeout     = 30 * time.Second
	DefaultMaxBases           = 10000
	DefaultMaxClockSkew       = 10 * time.Second
	DefaultBaseMessageRate    = 20
	DefaultBaseMessageBurst   = 200
)

// Ownership decides which bases this replica serves. The controller asks it
// before adopting a base, so lease-based sharing among replicas plugs in here.
type Ownership interface {
	// Owns reports whether this replica serves the base.
	Owns(baseID string) bool
}

// AllBases serves every base: the ownership of a single replica.
type AllBases struct{}

// Owns implements Ownership.
func (AllBases) Owns(string) bool { return true }

// Config configures the Controller.
type Config struct {
	// Client talks to the API server.
	Client kubernetes.Interface
	// Tunnel is the transport to the bases.
	Tunnel tunnel.Tunnel
	// Env is the tunnel environment served (normalized by the caller).
	Env string
	// Version is the controller's version, shown as each node's kubelet version.
	Version string
	// MaxPods is each virtual node's pod capacity.
	MaxPods int
	// Arch is each virtual node's kubernetes.io/arch label.
	Arch string
	// EnvTaint adds the schedule.koupleless.io/node-env taint to nodes.
	EnvTaint bool
	// KubeletAddress and KubeletPort advertise this replica's kubelet API
	// (pkg/controller/kubeletapi) on the nodes it writes; empty or 0
	// advertises none.
	KubeletAddress string
	KubeletPort    int32

	// UnreachableAfter marks a silent base NotReady.
	UnreachableAfter time.Duration
	// RemoveAfter deletes a silent base's node and lease.
	RemoveAfter time.Duration
	// HealthInterval is how often each base is asked for its health.
	HealthInterval time.Duration
	// CheckInterval is how often liveness is judged.
	CheckInterval time.Duration
	// NodeLeaseDuration is the duration of each node's Lease.
	NodeLeaseDuration time.Duration
	// LeaseRenewInterval is how often each node's Lease is renewed.
	LeaseRenewInterval time.Duration
	// NodeStatusInterval is how often an unchanged node status is rewritten.
	NodeStatusInterval time.Duration
	// CommandTimeout bounds one command publish.
	CommandTimeout time.Duration
	// QueryInterval is how often each base is asked for its biz list.
	QueryInterval time.Duration
	// InstallTimeout is how long an install may go unanswered before the
	// base's biz list is queried and the install retried.
	InstallTimeout time.Duration
	// UninstallOrphans uninstalls bizs no pod asks for, if this controller
	// installed them.
	UninstallOrphans bool
	// PodWorkers is the number of workers of each queue of the pod
	// controller, which all virtual nodes share.
	PodWorkers int
	// MaxBases caps the bases served; heartbeats of further new bases are
	// rejected and counted.
	MaxBases int
	// MaxClockSkew is how far ahead of this clock a base's timestamp may be;
	// later messages are dropped and counted.
	MaxClockSkew time.Duration
	// AllowLoopbackBaseIP accepts a loopback localIP in heartbeats
	// (development); otherwise such a heartbeat is rejected.
	AllowLoopbackBaseIP bool
	// BaseMessageRate and BaseMessageBurst bound the messages accepted from
	// one base per second (a token bucket); the excess is dropped and counted.
	BaseMessageRate  float64
	BaseMessageBurst int

	// Ownership decides which bases this replica serves; nil serves all.
	Ownership Ownership
	// Registerer receives the controller's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Clock is the time source; nil means the real clock.
	Clock clock.WithTicker
}

// withDefaults returns c with every zero setting replaced by its default.
func (c Config) withDefaults() Config {
	setDuration := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	setDuration(&c.UnreachableAfter, DefaultUnreachableAfter)
	setDuration(&c.RemoveAfter, DefaultRemoveAfter)
	setDuration(&c.HealthInterval, DefaultHealthInterval)
	setDuration(&c.CheckInterval, DefaultCheckInterval)
	setDuration(&c.NodeLeaseDuration, DefaultNodeLeaseDuration)
	setDuration(&c.LeaseRenewInterval, DefaultLeaseRenewInterval)
	setDuration(&c.NodeStatusInterval, DefaultNodeStatusInterval)
	setDuration(&c.CommandTimeout, DefaultCommandTimeout)
	setDuration(&c.QueryInterval, DefaultQueryInterval)
	setDuration(&c.InstallTimeout, DefaultInstallTimeout)
	if c.MaxPods == 0 {
		c.MaxPods = DefaultMaxPods
	}
	if c.Arch == "" {
		c.Arch = DefaultArch
	}
	setDuration(&c.MaxClockSkew, DefaultMaxClockSkew)
	if c.MaxBases == 0 {
		c.MaxBases = DefaultMaxBases
	}
	if c.BaseMessageRate == 0 {
		c.BaseMessageRate = DefaultBaseMessageRate
	}
	if c.BaseMessageBurst == 0 {
		c.BaseMessageBurst = DefaultBaseMessageBurst
	}
	if c.PodWorkers == 0 {
		c.PodWorkers = DefaultPodWorkers
	}
	if c.Ownership == nil {
		c.Ownership = AllBases{}
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	return c
}

// validate lists every problem of a defaulted configuration.
func (c Config) validate() error {
	var errs []error
	if c.Client == nil {
		errs = append(errs, errors.New("controller needs a Kubernetes client"))
	}
	if c.Tunnel == nil {
		errs = append(errs, errors.New("controller needs a tunnel"))
	}
	if c.Env == "" {
		errs = append(errs, errors.New("controller needs an env"))
	}
	if c.UnreachableAfter >= c.RemoveAfter {
		errs = append(errs, fmt.Errorf("unreachable-after %s must be shorter than remove-after %s", c.UnreachableAfter, c.RemoveAfter))
	}
	if c.LeaseRenewInterval >= c.NodeLeaseDuration {
		errs = append(errs, fmt.Errorf("lease renew interval %s must be shorter than the lease duration %s", c.LeaseRenewInterval, c.NodeLeaseDuration))
	}
	if c.MaxBases < 1 {
		errs = append(errs, fmt.Errorf("max bases %d must be positive", c.MaxBases))
	}
	if c.BaseMessageRate < 0 || c.BaseMessageBurst < 1 {
		errs = append(errs, fmt.Errorf("base message rate %g must not be negative and burst %d must be positive", c.BaseMessageRate, c.BaseMessageBurst))
	}
	if c.MaxPods < 1 {
		errs = append(errs, fmt.Errorf("max pods %d must be positive", c.MaxPods))
	}
	return errors.Join(errs...)
}
