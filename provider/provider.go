package provider

import (
	"context"
	"errors"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/clock"

	"github.com/moduleops/module-controller/pkg/protocol"
	"github.com/moduleops/module-controller/tunnel"
)

// EventRecorder records Kubernetes Events. client-go's record.EventRecorder
// satisfies it; the provider never talks to the API server itself.
type EventRecorder interface {
	Event(object runtime.Object, eventtype, reason, message string)
	Eventf(object runtime.Object, eventtype, reason, messageFmt string, args ...any)
}

// Config configures the provider of one base.
type Config struct {
	// Node is the fixed part of the virtual node.
	Node NodeConfig
	// Base is what is known of the base when the provider starts.
	Base BaseInfo
	// Readiness is the initial liveness judgement.
	Readiness Readiness
	// Tunnel carries commands to the base.
	Tunnel tunnel.Tunnel
	// Events records Kubernetes Events on pods and the node.
	Events EventRecorder
	// Clock is the time source; nil means the real clock.
	Clock clock.PassiveClock

	// ReleasePod removes a deleted pod from the API server once the base
	// confirmed its bizs are gone (virtual-kubelet would otherwise wait for
	// the whole termination grace period).
	ReleasePod func(ctx context.Context, pod *corev1.Pod) error
	// InstallTimeout is how long an install or uninstall may go unanswered
	// before the base's biz list is queried and the command retried.
	InstallTimeout time.Duration
	// RetryBase and RetryMax bound the backoff between retries.
	RetryBase, RetryMax time.Duration
	// CommandTimeout bounds one command publish.
	CommandTimeout time.Duration
	// UninstallOrphans uninstalls bizs no pod asks for, but only those this
	// controller installed; bizs baked into the base are never touched.
	UninstallOrphans bool
	// OrphanBizs counts bizs found on the base that no pod asks for.
	OrphanBizs Counter
	// UnsolicitedResults counts install and uninstall results dropped
	// because no such command was outstanding.
	UnsolicitedResults Counter
	// DroppedCommands counts commands dropped because the base's command
	// queue was full; they are retried once they time out.
	DroppedCommands Counter
	// AwaitPodSync holds orphan reports back until PodsSynced is called.
	AwaitPodSync bool
}

// Counter is the part of a Prometheus counter the provider uses.
type Counter interface{ Inc() }

// Defaults of the pod-side settings.
const (
	DefaultInstallTimeout = 30 * time.Second
	DefaultRetryBase      = 2 * time.Second
	DefaultRetryMax       = 5 * time.Minute
	DefaultCommandTimeout = 10 * time.Second
)

// Provider is the virtual-kubelet provider of one base. It implements
// node.PodLifecycleHandler and node.PodNotifier for the base's pods and
// node.NodeProvider for its virtual node; the controller feeds it what the
// base reports and its liveness judgement.
type Provider struct {
	cfg    Config
	clock  clock.PassiveClock
	wakeup chan struct{} // one-slot mailbox: the node changed

	podsChanged chan struct{} // one-slot mailbox: some pod status may have changed
	queued      chan struct{} // one-slot mailbox: queue has commands

	qmu   sync.Mutex
	queue []command // commands for Run to send, at most maxQueuedCommands

	mu        sync.Mutex
	info      BaseInfo
	readiness Readiness
	node      *corev1.Node

	pods         map[string]*podEntry  // by namespace/name
	podSeq       uint64                // arrival counter of pod entries
	bizs         map[string]*bizRecord // what the base runs, by name:version
	inventory    bool                  // bizs holds the base's full list
	installs     map[string]*attempt   // by name:version
	uninstalls   map[string]*attempt   // by name:version
	installedURL map[string]string     // name:version → jar URL this controller installed
	baselineURLs map[string]string     // jar URL → name:version of the last baseline
	orphans      map[string]bool       // name:versions already reported as orphans
	needQuery    bool                  // the next reconcile asks for the biz list
	podsSynced   bool                  // every pod bound to the node was handed over
}

// New returns the provider of one base.
func New(cfg Config) (*Provider, error) {
	if err := protocol.ValidateBaseID(cfg.Node.BaseID); err != nil {
		return nil, err
	}
	if cfg.Tunnel == nil {
		return nil, errors.New("provider needs a tunnel")
	}
	if cfg.Events == nil {
		return nil, errors.New("provider needs an event recorder")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	setDefault(&cfg.InstallTimeout, DefaultInstallTimeout)
	setDefault(&cfg.RetryBase, DefaultRetryBase)
	setDefault(&cfg.RetryMax, DefaultRetryMax)
	setDefault(&cfg.CommandTimeout, DefaultCommandTimeout)
	p := &Provider{
		cfg:          cfg,
		clock:        cfg.Clock,
		wakeup:       make(chan struct{}, 1),
		podsChanged:  make(chan struct{}, 1),
		queued:       make(chan struct{}, 1),
		info:         cfg.Base,
		readiness:    cfg.Readiness,
		pods:         map[string]*podEntry{},
		bizs:         map[string]*bizRecord{},
		installs:     map[string]*attempt{},
		uninstalls:   map[string]*attempt{},
		installedURL: map[string]string{},
		baselineURLs: map[string]string{},
		orphans:      map[string]bool{},
	}
	p.node = buildNode(cfg.Node, p.info, p.readiness, nil, p.clock.Now())
	return p, nil
}

// NodeName is the name of this base's virtual node.
func (p *Provider) NodeName() string { return p.cfg.Node.NodeName() }

// BaseID is the identity of this provider's base.
func (p *Provider) BaseID() string { return p.cfg.Node.BaseID }

// Node returns the desired virtual node.
func (p *Provider) Node() *corev1.Node {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.node.DeepCopy()
}

// Info returns what is known of the base.
func (p *Provider) Info() BaseInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.info
}

// Ping implements node.NodeProvider. Liveness is judged by the controller
// from heartbeats and reported through the Ready condition, so the ping of
// the node controller always succeeds.
func (p *Provider) Ping(context.Context) error { return nil }

// NotifyNodeStatus implements node.NodeProvider: cb receives the node each
// time it changes, latest state first, from one goroutine that ends with ctx.
func (p *Provider) NotifyNodeStatus(ctx context.Context, cb func(*corev1.Node)) {
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-p.wakeup:
				cb(p.Node())
			}
		}
	}()
}

// PushNodeStatus asks for the current node to be written even if nothing
// changed, e.g. right after the node controller started.
func (p *Provider) PushNodeStatus() {
	select {
	case p.wakeup <- struct{}{}:
	default:
	}
}

// PushNodeStatusSince asks for the current node to be written if it changed
// since n, a node Node returned: the one a node controller registered, say,
// which a change made before that controller listened did not reach.
func (p *Provider) PushNodeStatusSince(n *corev1.Node) {
	p.mu.Lock()
	changed := nodeChanged(n, p.node)
	p.mu.Unlock()
	if changed {
		p.PushNodeStatus()
	}
}

// UpdateBase records a heartbeat's content. It reports whether the node
// changed (labels or addresses).
func (p *Provider) UpdateBase(status protocol.BaseStatus) bool {
	return p.update(func(info *BaseInfo, _ *Readiness) { info.Status = status })
}

// UpdateHealth records the JVM and processor figures of a health reply.
func (p *Provider) UpdateHealth(jvm protocol.JVMInfo, cpu protocol.CPUInfo) bool {
	return p.update(func(info *BaseInfo, _ *Readiness) { info.JVM, info.CPUCount = &jvm, cpu.Count })
}

// UpdateTopology records the zone and region of the real node hosting the base.
func (p *Provider) UpdateTopology(zone, region string) bool {
	return p.update(func(info *BaseInfo, _ *Readiness) { info.Zone, info.Region = zone, region })
}

// SetReadiness records the controller's liveness judgement.
// Commands wait while the base is not known to listen: while it is
// unreachable, and after a controller restart until its first sign of life
// (a restarted embedded broker drops commands for bases not reconnected yet).
func (p *Provider) SetReadiness(r Readiness) bool {
	p.mu.Lock()
	wasOnline, wasReachable := p.online(), p.readiness.Reachable
	p.mu.Unlock()
	changed := p.update(func(_ *BaseInfo, cur *Readiness) { *cur = r })
	switch {
	case !wasOnline && r.Reachable && !r.Waiting:
		p.sync()
	case wasReachable != r.Reachable:
		// Pods are not Ready while their base is unreachable.
		p.markPodsChanged()
	}
	return changed
}

// online reports whether the base is known to listen for commands.
func (p *Provider) online() bool {
	return p.readiness.Reachable && !p.readiness.Waiting
}

// update applies change, rebuilds the node and wakes the notifier if the node
// changed.
func (p *Provider) update(change func(*BaseInfo, *Readiness)) bool {
	p.mu.Lock()
	change(&p.info, &p.readiness)
	next := buildNode(p.cfg.Node, p.info, p.readiness, p.node, p.clock.Now())
	changed := nodeChanged(p.node, next)
	if changed {
		p.node = next
	}
	p.mu.Unlock()
	if changed {
		p.PushNodeStatus()
	}
	return changed
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// PodsSynced tells the provider it has been handed every pod bound to its
// node, so bizs no pod asks for are really orphans.
func (p *Provider) PodsSynced() {
	p.mu.Lock()
	p.podsSynced = true
	p.mu.Unlock()
	p.sync()
}

// validLabelValue reports whether v can be a Kubernetes label value.
func validLabelValue(v string) bool {
	return len(validation.IsValidLabelValue(v)) == 0
}
