package provider

import (
	"context"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// nodeStatus plays the node.NodeProvider role of a Provider: it owns what is
// known of the base (BaseInfo), the controller's liveness judgement
// (Readiness) and the virtual node built from both.
//
// Contract: Node returns the node as last built; every change that alters it
// in more than heartbeat times wakes the one NotifyNodeStatus goroutine,
// which hands the callback the latest node (changes in between coalesce).
// Ping always succeeds: liveness is the controller's judgement, shown by the
// Ready condition. Its mutex is a leaf: it is taken after Provider.mu, and
// nothing is called while holding it.
type nodeStatus struct {
	cfg    NodeConfig
	clock  clock.PassiveClock
	wakeup chan struct{} // one-slot mailbox: the node changed

	mu        sync.Mutex
	info      BaseInfo
	readiness Readiness
	node      *corev1.Node
}

func newNodeStatus(cfg NodeConfig, info BaseInfo, r Readiness, clk clock.PassiveClock) *nodeStatus {
	return &nodeStatus{
		cfg:       cfg,
		clock:     clk,
		wakeup:    make(chan struct{}, 1),
		info:      info,
		readiness: r,
		node:      buildNode(cfg, info, r, nil, clk.Now()),
	}
}

// Node returns the desired virtual node.
func (n *nodeStatus) Node() *corev1.Node {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.node.DeepCopy()
}

// Info returns what is known of the base.
func (n *nodeStatus) Info() BaseInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.info
}

// Ping implements node.NodeProvider. Liveness is judged by the controller
// from heartbeats and reported through the Ready condition, so the ping of
// the node controller always succeeds.
func (n *nodeStatus) Ping(context.Context) error { return nil }

// NotifyNodeStatus implements node.NodeProvider: cb receives the node each
// time it changes, latest state first, from one goroutine that ends with ctx.
func (n *nodeStatus) NotifyNodeStatus(ctx context.Context, cb func(*corev1.Node)) {
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-n.wakeup:
				cb(n.Node())
			}
		}
	}()
}

// PushNodeStatus asks for the current node to be written even if nothing
// changed, e.g. right after the node controller started.
func (n *nodeStatus) PushNodeStatus() {
	select {
	case n.wakeup <- struct{}{}:
	default:
	}
}

// PushNodeStatusSince asks for the current node to be written if it changed
// since prev, a node Node returned: the one a node controller registered,
// say, which a change made before that controller listened did not reach.
func (n *nodeStatus) PushNodeStatusSince(prev *corev1.Node) {
	n.mu.Lock()
	changed := nodeChanged(prev, n.node)
	n.mu.Unlock()
	if changed {
		n.PushNodeStatus()
	}
}

// current returns the liveness judgement.
func (n *nodeStatus) current() Readiness {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.readiness
}

// online reports whether the base is known to listen for commands.
func (n *nodeStatus) online() bool { return n.current().listening() }

// listening reports whether a base so judged listens for commands.
func (r Readiness) listening() bool { return r.Reachable && !r.Waiting }

// podBase returns what pod statuses take from the base.
func (n *nodeStatus) podBase() podBase {
	n.mu.Lock()
	defer n.mu.Unlock()
	return podBase{ip: n.info.Status.LocalIP, reachable: n.readiness.Reachable}
}

// update applies change, rebuilds the node and wakes the notifier if the node
// changed.
func (n *nodeStatus) update(change func(*BaseInfo, *Readiness)) bool {
	n.mu.Lock()
	before := inputsOf(n.info, n.readiness)
	change(&n.info, &n.readiness)
	if inputsOf(n.info, n.readiness) == before {
		// Most heartbeats and health replies repeat what the node shows:
		// the same inputs build the same node, but for heartbeat times.
		n.mu.Unlock()
		return false
	}
	next := buildNode(n.cfg, n.info, n.readiness, n.node, n.clock.Now())
	changed := nodeChanged(n.node, next)
	if changed {
		n.node = next
	}
	n.mu.Unlock()
	if changed {
		n.PushNodeStatus()
	}
	return changed
}

// nodeInputs is what buildNode reads of the base and the judgement; equal
// inputs build nodes that differ only in condition heartbeat times, which
// nodeChanged ignores.
type nodeInputs struct {
	status                protocol.BaseStatus
	cpuCount              int
	zone, region          string
	capacity, allocatable int64
	capacityOK, allocOK   bool
	pressure              bool
	readiness             Readiness
}

func inputsOf(info BaseInfo, r Readiness) nodeInputs {
	in := nodeInputs{status: info.Status, cpuCount: info.CPUCount, zone: info.Zone, region: info.Region, readiness: r}
	if jvm := info.JVM; jvm != nil {
		in.capacity, in.capacityOK = jvm.MetaspaceCapacity()
		in.allocatable, in.allocOK = jvm.MetaspaceAllocatable()
		in.pressure = metaspacePressure(jvm)
	}
	return in
}
