package controller

import (
	"errors"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/moduleops/module-controller/pkg/fieldcheck"
	"github.com/moduleops/module-controller/pkg/protocol"
	"github.com/moduleops/module-controller/provider"
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
	DefaultCommandTimeout     = provider.DefaultCommandTimeout
	DefaultPodWorkers         = 16
	DefaultQueryInterval      = 15 * time.Second
	DefaultInstallTimeout     = provider.DefaultInstallTimeout
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

// DefaultConfig returns the defaults of every setting of Config; the
// command line's flags default to them.
func DefaultConfig() Config {
	return Config{
		Env:                protocol.DefaultEnv,
		MaxPods:            DefaultMaxPods,
		Arch:               DefaultArch,
		UnreachableAfter:   DefaultUnreachableAfter,
		RemoveAfter:        DefaultRemoveAfter,
		HealthInterval:     DefaultHealthInterval,
		CheckInterval:      DefaultCheckInterval,
		NodeLeaseDuration:  DefaultNodeLeaseDuration,
		LeaseRenewInterval: DefaultLeaseRenewInterval,
		NodeStatusInterval: DefaultNodeStatusInterval,
		CommandTimeout:     DefaultCommandTimeout,
		QueryInterval:      DefaultQueryInterval,
		InstallTimeout:     DefaultInstallTimeout,
		PodWorkers:         DefaultPodWorkers,
		MaxBases:           DefaultMaxBases,
		MaxClockSkew:       DefaultMaxClockSkew,
		BaseMessageRate:    DefaultBaseMessageRate,
		BaseMessageBurst:   DefaultBaseMessageBurst,
	}
}

// withDefaults returns c with every zero setting replaced by its default.
func (c Config) withDefaults() Config {
	fieldcheck.FillZero(&c, DefaultConfig())
	if c.Ownership == nil {
		c.Ownership = AllBases{}
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	return c
}

// Validate reports every problem of the settings in c, each a
// fieldcheck.Error naming its field. New checks the defaulted Config, and
// also that Client and Tunnel are set.
func (c Config) Validate() error {
	errs := fieldcheck.Positive(
		fieldcheck.Duration{Field: "UnreachableAfter", Value: c.UnreachableAfter},
		fieldcheck.Duration{Field: "RemoveAfter", Value: c.RemoveAfter},
		fieldcheck.Duration{Field: "HealthInterval", Value: c.HealthInterval},
		fieldcheck.Duration{Field: "CheckInterval", Value: c.CheckInterval},
		fieldcheck.Duration{Field: "NodeLeaseDuration", Value: c.NodeLeaseDuration},
		fieldcheck.Duration{Field: "LeaseRenewInterval", Value: c.LeaseRenewInterval},
		fieldcheck.Duration{Field: "NodeStatusInterval", Value: c.NodeStatusInterval},
		fieldcheck.Duration{Field: "CommandTimeout", Value: c.CommandTimeout},
		fieldcheck.Duration{Field: "QueryInterval", Value: c.QueryInterval},
		fieldcheck.Duration{Field: "InstallTimeout", Value: c.InstallTimeout},
	)
	add := func(field, format string, args ...any) {
		errs = append(errs, fieldcheck.Errorf(field, format, args...))
	}
	if err := protocol.ValidateEnv(c.Env); err != nil {
		add("Env", "%v", err)
	}
	if c.UnreachableAfter >= c.RemoveAfter {
		add("UnreachableAfter", "%s must be shorter than {RemoveAfter} %s", c.UnreachableAfter, c.RemoveAfter)
	}
	if c.LeaseRenewInterval >= c.NodeLeaseDuration {
		add("LeaseRenewInterval", "%s must be shorter than {NodeLeaseDuration} %s", c.LeaseRenewInterval, c.NodeLeaseDuration)
	}
	if c.NodeLeaseDuration%time.Second != 0 {
		add("NodeLeaseDuration", "%s must be whole seconds", c.NodeLeaseDuration)
	}
	if c.MaxPods < 1 {
		add("MaxPods", "%d must be positive", c.MaxPods)
	}
	if c.PodWorkers < 1 {
		add("PodWorkers", "%d must be positive", c.PodWorkers)
	}
	if c.MaxBases < 1 {
		add("MaxBases", "%d must be positive", c.MaxBases)
	}
	if c.BaseMessageRate <= 0 {
		add("BaseMessageRate", "%g must be positive", c.BaseMessageRate)
	}
	if c.BaseMessageBurst < 1 {
		add("BaseMessageBurst", "%d must be positive", c.BaseMessageBurst)
	}
	if c.MaxClockSkew < 0 {
		add("MaxClockSkew", "%s must not be negative", c.MaxClockSkew)
	}
	// An IP or a DNS name: the API server dials it with the kubelet port.
	if a := c.KubeletAddress; a != "" && net.ParseIP(a) == nil && strings.ContainsAny(a, ":/ ") {
		add("KubeletAddress", "%q must be an IP or a DNS name, without port or scheme", a)
	}
	return errors.Join(errs...)
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
	return errors.Join(append(errs, c.Validate())...)
}
