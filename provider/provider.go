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

// Provider is the virtual-kubelet provider of one base. It plays four roles,
// each with its own contract:
//
//   - node.PodLifecycleHandler (CreatePod, UpdatePod, DeletePod, GetPod,
//     GetPodStatus, GetPods): virtual-kubelet's pod controller hands it the
//     pods bound to the base's node. The calls return at once and never fail
//     for a base that is offline; what they call for is decided by the next
//     reconcile, which they run. DeletePod returns NotFound for a pod the
//     provider does not have; the pod is released (deleted from the API
//     server through Config.ReleasePod) once the base confirmed its bizs gone.
//   - node.PodNotifier (NotifyPods): the callback receives every pod whose
//     status changed since it was last handed out, from one goroutine, with
//     the latest status; unchanged statuses are never handed out twice.
//   - node.NodeProvider (Ping, NotifyNodeStatus), played by the embedded
//     nodeStatus: the node is rebuilt from what the controller reports
//     (UpdateBase, UpdateHealth, UpdateTopology, SetReadiness) and handed
//     out only when it changed in more than heartbeat times.
//   - the biz reconciler (OnBizStatus, OnBizOperation, OnBatchInstall,
//     Baseline, Resync, PodsSynced): the controller hands it what the base
//     reports; each call updates the per-biz state and runs reconcile
//     (reconcile.go), whose commands go to the dispatcher that Run drains.
//
// The pod handler and the reconciler share one mutex, mu: a reconcile reads
// the pods and the bizs together and must see them consistent. The node's
// state has its own (nodeStatus.mu, always taken after mu, never before),
// and so has the command queue (dispatcher.mu), so that neither a node write
// nor a full queue ever waits on a reconcile.
type Provider struct {
	*nodeStatus
	cfg   Config
	clock clock.PassiveClock
	cmds  *dispatcher

	podsChanged chan struct{} // one-slot mailbox: some pod status may have changed

	mu           sync.Mutex
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
		nodeStatus:   newNodeStatus(cfg.Node, cfg.Base, cfg.Readiness, cfg.Clock),
		cfg:          cfg,
		clock:        cfg.Clock,
		cmds:         newDispatcher(cfg.Node.BaseID, cfg.DroppedCommands),
		podsChanged:  make(chan struct{}, 1),
		pods:         map[string]*podEntry{},
		bizs:         map[string]*bizRecord{},
		installs:     map[string]*attempt{},
		uninstalls:   map[string]*attempt{},
		installedURL: map[string]string{},
		baselineURLs: map[string]string{},
		orphans:      map[string]bool{},
	}
	return p, nil
}

// NodeName is the name of this base's virtual node.
func (p *Provider) NodeName() string { return p.cfg.Node.NodeName() }

// BaseID is the identity of this provider's base.
func (p *Provider) BaseID() string { return p.cfg.Node.BaseID }

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
	was := p.current()
	wasOnline, wasReachable := was.listening(), was.Reachable
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
