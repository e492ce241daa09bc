package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/moduleops/module-controller/pkg/fieldcheck"
)

// Defaults of Config. A replica's member Lease is written once per
// RenewInterval (6 writes a minute by default), base Leases only on
// handover; a crashed replica's bases are served again about LeaseDuration plus one
// RetryPeriod after its last renewal.
const (
	DefaultLeaseDuration = 20 * time.Second
	DefaultRenewDeadline = 15 * time.Second
	DefaultRenewInterval = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
	// DefaultForgetAfter is how long a base unheard of stays assigned.
	DefaultForgetAfter = 10 * time.Minute
	// DefaultNamespace is the namespace of the shipped manifests, which
	// holds the Leases.
	DefaultNamespace = "module-controller"
	// DefaultReleaseTimeout bounds the release of every Lease on shutdown.
	DefaultReleaseTimeout = 5 * time.Second
)

// Label and annotation keys of the Leases.
const (
	// LabelLease tells a replica's member Lease (LeaseReplica) from a base's
	// ownership Lease (LeaseBase).
	LabelLease = "module-controller.koupleless.io/lease"
	// LabelEnv is the env the Lease belongs to: replicas of different envs
	// do not share bases.
	LabelEnv = "module-controller.koupleless.io/env"
	// AnnotationBase is the base ID of a base Lease.
	AnnotationBase = "module-controller.koupleless.io/base"
	// AnnotationConnected is "false" on the member Lease of a replica cut
	// off from the broker.
	AnnotationConnected = "module-controller.koupleless.io/connected"
	// LeaseReplica and LeaseBase are the values of LabelLease.
	LeaseReplica = "replica"
	LeaseBase    = "base"
)

// Config configures an Ownership.
type Config struct {
	// Client writes the Leases. Required.
	Client kubernetes.Interface
	// Namespace holds the Leases (the controller's namespace). Required.
	Namespace string
	// Identity is this replica's unique name (its pod name), the holder of
	// its Leases. Required.
	Identity string
	// Env is the tunnel env served; only replicas of the same env share bases.
	Env string
	// LeaseDuration is how long a Lease not renewed keeps others away.
	LeaseDuration time.Duration
	// RenewDeadline is how long after the start of its last successful
	// renewal of its member Lease a replica still acts on its bases;
	// shorter than LeaseDuration.
	RenewDeadline time.Duration
	// RenewInterval is how often the member Lease is renewed; shorter than
	// RenewDeadline, so a failed renewal is retried before the deadline.
	RenewInterval time.Duration
	// RetryPeriod is how often the Leases are listed and acted on.
	RetryPeriod time.Duration
	// ForgetAfter drops a base not reported (Owns) for this long; its Lease,
	// if held, is released. Longer than the controller's remove-after, so
	// that the owner of a silent base removes its node first.
	ForgetAfter time.Duration
	// Connected reports whether this replica reaches the broker (the
	// tunnel's Connected); nil means always. A replica cut off for longer
	// than LeaseDuration while another is not hands its bases over.
	Connected func() bool
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Clock is the time source; nil means the real clock.
	Clock clock.WithTicker
}

// withDefaults returns c with every zero setting replaced by its default.
func (c Config) withDefaults() Config {
	fieldcheck.FillZero(&c, DefaultConfig())
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if c.Connected == nil {
		c.Connected = func() bool { return true }
	}
	return c
}

// DefaultConfig returns the defaults of the settings of Config; the command
// line's flags default to them.
func DefaultConfig() Config {
	return Config{
		Namespace:     DefaultNamespace,
		LeaseDuration: DefaultLeaseDuration,
		RenewDeadline: DefaultRenewDeadline,
		RenewInterval: DefaultRenewInterval,
		RetryPeriod:   DefaultRetryPeriod,
		ForgetAfter:   DefaultForgetAfter,
	}
}

// Validate reports every problem of the settings in c, each a
// fieldcheck.Error naming its field.
func (c Config) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fieldcheck.Errorf(field, format, args...))
	}
	if c.Namespace == "" {
		add("Namespace", "is needed: it holds the Leases")
	}
	if c.Identity == "" {
		add("Identity", "is needed: a unique name per replica, the holder of its Leases")
	}
	if c.Env == "" {
		add("Env", "is needed")
	}
	if c.LeaseDuration%time.Second != 0 || c.LeaseDuration < time.Second {
		add("LeaseDuration", "%s must be whole seconds", c.LeaseDuration)
	}
	if c.RenewDeadline >= c.LeaseDuration {
		add("RenewDeadline", "%s must be shorter than {LeaseDuration} %s", c.RenewDeadline, c.LeaseDuration)
	}
	if c.RenewInterval >= c.RenewDeadline {
		add("RenewInterval", "%s must be shorter than {RenewDeadline} %s", c.RenewInterval, c.RenewDeadline)
	}
	if c.RetryPeriod <= 0 || c.RetryPeriod > c.RenewInterval {
		add("RetryPeriod", "%s must be positive and at most {RenewInterval} %s", c.RetryPeriod, c.RenewInterval)
	}
	if c.ForgetAfter <= c.LeaseDuration {
		add("ForgetAfter", "%s must be longer than {LeaseDuration} %s", c.ForgetAfter, c.LeaseDuration)
	}
	return errors.Join(errs...)
}

// validate lists every problem of a defaulted configuration.
func (c Config) validate() error {
	var errs []error
	if c.Client == nil {
		errs = append(errs, errors.New("cluster ownership needs a Kubernetes client"))
	}
	return errors.Join(append(errs, c.Validate())...)
}

// LeaseName returns prefix+s if that is a valid object name, else prefix
// and a hash of s, so any identity, env or base ID maps to one Lease name.
func LeaseName(prefix, s string) string {
	if name := prefix + s; len(validation.IsDNS1123Subdomain(name)) == 0 {
		return name
	}
	sum := sha256.Sum256([]byte(s))
	return prefix + hex.EncodeToString(sum[:10])
}

// labelValue returns s if it is a valid label value, else a hash of it.
func labelValue(s string) string {
	if len(validation.IsValidLabelValue(s)) == 0 {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "h-" + hex.EncodeToString(sum[:10])
}
