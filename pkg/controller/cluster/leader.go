package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/virtual-kubelet/virtual-kubelet/log"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// ErrLeadershipLost is returned by Leader.Run when this replica stopped
// leading while its context was not done: the loops it ran are stopped and
// cannot be restarted in this process (the convention of
// kube-controller-manager: exit, and let the restarted process stand again).
var ErrLeadershipLost = errors.New("lost the leader election lease")

// LeaderConfig configures a Leader.
type LeaderConfig struct {
	// Client writes the Lease. Required.
	Client kubernetes.Interface
	// Namespace and Name locate the Lease. Required.
	Namespace, Name string
	// Identity is this replica's identity. Required.
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod are client-go leader
	// election's; zero means this package's defaults.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Registerer receives the sync_leader gauge; nil registers nothing.
	Registerer prometheus.Registerer
}

// Leader runs the cluster-wide loops (peer replica sync) on one replica
// only, elected with client-go leader election on one Lease.
type Leader struct {
	cfg    LeaderConfig
	gauge  prometheus.Gauge
	leader chan struct{}
}

// NewLeader returns a Leader; nothing is written before Run.
func NewLeader(cfg LeaderConfig) (*Leader, error) {
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	if cfg.RenewDeadline == 0 {
		cfg.RenewDeadline = DefaultRenewDeadline
	}
	if cfg.RetryPeriod == 0 {
		cfg.RetryPeriod = DefaultRetryPeriod
	}
	var errs []error
	if cfg.Client == nil || cfg.Namespace == "" || cfg.Name == "" || cfg.Identity == "" {
		errs = append(errs, errors.New("leader election needs a client, a namespace, a Lease name and an identity"))
	}
	if cfg.RenewDeadline >= cfg.LeaseDuration || cfg.RetryPeriod >= cfg.RenewDeadline {
		errs = append(errs, fmt.Errorf("leader election needs retry period %s < renew deadline %s < lease duration %s", cfg.RetryPeriod, cfg.RenewDeadline, cfg.LeaseDuration))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	l := &Leader{
		cfg: cfg,
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "module_controller", Name: "sync_leader",
			Help: "1 while this replica is the leader that runs peer replica sync and the other cluster-wide loops.",
		}),
		leader: make(chan struct{}),
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(l.gauge); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Leading is closed once this replica leads.
func (l *Leader) Leading() <-chan struct{} { return l.leader }

// Run stands for election until ctx is done; while leading it runs run with
// a context cancelled when leadership ends. The Lease is released when ctx
// is done. It returns run's error, ErrLeadershipLost if leadership ended
// before ctx did, or nil.
func (l *Leader) Run(ctx context.Context, run func(context.Context) error) error {
	done := make(chan error, 1) // run's result, once it was started
	lost := false
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: l.cfg.Namespace, Name: l.cfg.Name},
			Client:     l.cfg.Client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: l.cfg.Identity},
		},
		LeaseDuration:   l.cfg.LeaseDuration,
		RenewDeadline:   l.cfg.RenewDeadline,
		RetryPeriod:     l.cfg.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            l.cfg.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				l.gauge.Set(1)
				close(l.leader)
				log.G(ctx).WithField("lease", l.cfg.Name).Info("leading: running the cluster-wide loops")
				done <- run(ctx)
			},
			OnStoppedLeading: func() {
				l.gauge.Set(0)
				lost = ctx.Err() == nil
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	// Run returns when ctx is done or leadership is lost; it cancels the
	// context of run, which it started in a goroutine of its own.
	le.Run(ctx)
	select {
	case <-l.leader:
		if err := <-done; err != nil {
			return err
		}
	default:
	}
	if lost {
		return ErrLeadershipLost
	}
	return nil
}
