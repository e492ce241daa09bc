package controller

import (
	"context"
	"fmt"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/moduleops/module-controller/pkg/api"
	"github.com/moduleops/module-controller/pkg/protocol"
	"github.com/moduleops/module-controller/provider"
	"github.com/moduleops/module-controller/tunnel"
)

// OwnershipChanges is an Ownership whose answers change over time, as
// replicas come and go (pkg/controller/cluster). The controller adopts a
// base it gains from its existing node and stops serving a base it loses,
// leaving the node to the new owner.
type OwnershipChanges interface {
	Ownership
	// Changes is signalled whenever Owns changed for some base; several
	// changes may share one signal.
	Changes() <-chan struct{}
	// TakeChanged returns the bases whose Owns changed since the last call.
	TakeChanged() []string
}

// ErrNotOwner is returned for a command to a base this replica does not own
// (any more): another replica serves it.
var ErrNotOwner = fmt.Errorf("this replica does not own the base")

// ownershipChanges returns the channel signalling ownership changes, nil
// (never ready) when ownership is fixed.
func (c *Controller) ownershipChanges() <-chan struct{} {
	if oc, ok := c.cfg.Ownership.(OwnershipChanges); ok {
		return oc.Changes()
	}
	return nil
}

// onOwnershipChanged serves the bases this replica gained and stops serving
// the ones it lost.
func (c *Controller) onOwnershipChanged(ctx context.Context) {
	oc, ok := c.cfg.Ownership.(OwnershipChanges)
	if !ok {
		return
	}
	for _, baseID := range oc.TakeChanged() {
		v, served := c.bases[baseID]
		owns := c.cfg.Ownership.Owns(baseID)
		switch {
		case served && !owns:
			c.handOver(ctx, v)
		case !served && owns:
			c.adoptBase(ctx, baseID)
		}
	}
}

// checkOwnership stops serving every base this replica no longer owns; run
// before any judgement, it also catches a Lease that lapsed while this
// process was stopped.
func (c *Controller) checkOwnership(ctx context.Context) {
	for _, v := range c.bases {
		if !c.cfg.Ownership.Owns(v.baseID) {
			c.handOver(ctx, v)
		}
	}
	for id, hb := range c.pending {
		if c.cfg.Clock.Since(hb.PublishedAt) >= c.cfg.UnreachableAfter {
			delete(c.pending, id)
		}
	}
}

// notePending keeps the last valid heartbeat of a base this replica does not
// own, for adoptBase. At most MaxBases are kept, and checkOwnership drops
// the stale ones, so made-up identities cost bounded memory.
func (c *Controller) notePending(ev tunnel.Event) {
	if _, ok := c.cfg.Ownership.(OwnershipChanges); !ok {
		return
	}
	hb, ok := ev.(tunnel.BaseHeartbeat)
	if !ok {
		return
	}
	if _, known := c.pending[hb.BaseID]; !known && len(c.pending) >= c.cfg.MaxBases {
		return
	}
	if !hb.Status.Activated() || c.validation.Heartbeat(hb.Status) != nil {
		delete(c.pending, hb.BaseID)
		return
	}
	c.pending[hb.BaseID] = hb
}

// adoptBase serves a base this replica just gained from its existing node,
// as after a restart: its pods are adopted and its biz list queried before
// anything is installed. A base without a node yet is served from its last
// heartbeat if that is recent, else on its next one.
func (c *Controller) adoptBase(ctx context.Context, baseID string) {
	hb, heard := c.pending[baseID]
	delete(c.pending, baseID)
	name := protocol.NodeName(c.cfg.Env, baseID)
	n, err := c.cfg.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && heard && c.cfg.Clock.Since(hb.PublishedAt) < c.cfg.UnreachableAfter {
		if len(c.bases) < c.cfg.MaxBases {
			c.startBase(ctx, baseID, provider.BaseInfo{Status: hb.Status}, readyReadiness)
		}
		return
	}
	if err != nil {
		if !apierrors.IsNotFound(err) {
			log.G(ctx).WithField("base", baseID).WithError(err).Warn("cannot read the node of a base taken over; serving it on its next heartbeat")
		}
		return
	}
	c.startBase(ctx, baseID, baseInfoFromNode(n), provider.Readiness{
		Reachable: true,
		Waiting:   true,
		Reason:    api.ReasonBaseAdopted,
		Message:   "base taken over from another replica; waiting for its next heartbeat",
	})
}

// handOver stops serving a base another replica owns now, leaving its node,
// Lease and pods to it.
func (c *Controller) handOver(ctx context.Context, v *vnode) {
	delete(c.bases, v.baseID)
	c.removing[v.baseID] = v.done
	c.wg.Go(func() { c.forgetWhenDone(ctx, v.baseID, v.done) })
	c.metrics.removing.Set(float64(len(c.removing)))
	c.metrics.bases.Set(float64(len(c.bases)))
	log.G(ctx).WithField("base", v.baseID).WithField("node", v.nodeName).Info("base owned by another replica now: stopped serving it")
	v.stop()
}

// ownedTunnel refuses every command to a base this replica does not own at
// the moment of sending, whichever goroutine sends it: a replica that lost a
// base (or was stopped past its renew deadline) sends it nothing.
type ownedTunnel struct {
	tunnel.Tunnel
	owns Ownership
}

func (t ownedTunnel) check(baseID string) error {
	if !t.owns.Owns(baseID) {
		return fmt.Errorf("command to base %s: %w", baseID, ErrNotOwner)
	}
	return nil
}

func (t ownedTunnel) InstallBiz(ctx context.Context, baseID string, biz protocol.BizModel) error {
	if err := t.check(baseID); err != nil {
		return err
	}
	return t.Tunnel.InstallBiz(ctx, baseID, biz)
}

func (t ownedTunnel) UninstallBiz(ctx context.Context, baseID string, biz protocol.BizModel) error {
	if err := t.check(baseID); err != nil {
		return err
	}
	return t.Tunnel.UninstallBiz(ctx, baseID, biz)
}

func (t ownedTunnel) QueryAllBiz(ctx context.Context, baseID string) error {
	if err := t.check(baseID); err != nil {
		return err
	}
	return t.Tunnel.QueryAllBiz(ctx, baseID)
}

func (t ownedTunnel) QueryHealth(ctx context.Context, baseID string) error {
	if err := t.check(baseID); err != nil {
		return err
	}
	return t.Tunnel.QueryHealth(ctx, baseID)
}

func (t ownedTunnel) SendBaseline(ctx context.Context, baseID string, bizs []protocol.BizModel) error {
	if err := t.check(baseID); err != nil {
		return err
	}
	return t.Tunnel.SendBaseline(ctx, baseID, bizs)
}
