package provider

import (
	"context"
	"errors"
	"sync"

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
}

// Provider is the virtual-kubelet provider of one base. It implements
// node.NodeProvider for the virtual node; the controller feeds it what the
// base reports and its liveness judgement.
type Provider struct {
	cfg    Config
	clock  clock.PassiveClock
	wakeup chan struct{} // one-slot mailbox: the node changed

	mu        sync.Mutex
	info      BaseInfo
	readiness Readiness
	node      *corev1.Node
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
	p := &Provider{
		cfg:       cfg,
		clock:     cfg.Clock,
		wakeup:    make(chan struct{}, 1),
		info:      cfg.Base,
		readiness: cfg.Readiness,
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

// UpdateBase records a heartbeat's content. It reports whether the node
// changed (labels or addresses).
func (p *Provider) UpdateBase(status protocol.BaseStatus) bool {
	return p.update(func(info *BaseInfo, _ *Readiness) { info.Status = status })
}

// UpdateJVM records the JVM figures of a health reply.
func (p *Provider) UpdateJVM(jvm protocol.JVMInfo) bool {
	return p.update(func(info *BaseInfo, _ *Readiness) { info.JVM = &jvm })
}

// UpdateTopology records the zone and region of the real node hosting the base.
func (p *Provider) UpdateTopology(zone, region string) bool {
	return p.update(func(info *BaseInfo, _ *Readiness) { info.Zone, info.Region = zone, region })
}

// SetReadiness records the controller's liveness judgement.
func (p *Provider) SetReadiness(r Readiness) bool {
	return p.update(func(_ *BaseInfo, cur *Readiness) { *cur = r })
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

// validLabelValue reports whether v can be a Kubernetes label value.
func validLabelValue(v string) bool {
	return len(validation.IsValidLabelValue(v)) == 0
}
