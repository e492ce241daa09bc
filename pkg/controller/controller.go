package controller

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/moduleops/module-controller/pkg/protocol"
	"github.com/moduleops/module-controller/provider"
	"github.com/moduleops/module-controller/tunnel"
)

// componentName is the source of the Events the controller records.
const componentName = "module-controller"

// readyReadiness is the judgement of a base that shows signs of life.
var readyReadiness = provider.Readiness{Reachable: true, Reason: provider.ReasonBaseReady, Message: "base is publishing heartbeats"}

// Controller keeps one virtual node per live base: it turns tunnel events into
// node state, judges liveness and removes the nodes of bases that are gone.
type Controller struct {
	cfg      Config
	metrics  *metrics
	recorder record.EventRecorder

	// bases is touched only by the Run goroutine.
	bases map[string]*vnode
	// removing holds, per base, a channel closed once its old node is deleted;
	// touched only by the Run goroutine.
	removing map[string]chan struct{}
	// wg tracks the goroutines of every vnode.
	wg sync.WaitGroup
	// ready is closed once existing nodes were adopted and events flow.
	ready chan struct{}
	// unusedInformers hands virtual-kubelet the ConfigMap, Secret and Service
	// informers its pod controller insists on; they are never started, so
	// nothing is watched (see runPods).
	unusedInformers informers.SharedInformerFactory
}

// New returns a Controller. It validates cfg and fills in defaults.
func New(cfg Config) (*Controller, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("invalid controller configuration: %w", err)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Controller{
		cfg:      cfg,
		metrics:  m,
		bases:    map[string]*vnode{},
		removing: map[string]chan struct{}{},

		unusedInformers: informers.NewSharedInformerFactory(cfg.Client, 0),
		ready:           make(chan struct{}),
	}, nil
}

// Ready is closed once the controller adopted the existing virtual nodes and
// is processing base events.
func (c *Controller) Ready() <-chan struct{} { return c.ready }

// Run processes base events until ctx is done, then stops every virtual node
// controller it started. Nodes are left in place on shutdown, so a restarted
// or another replica adopts them without a deletion storm.
func (c *Controller) Run(ctx context.Context) error {
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.cfg.Client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	c.recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: componentName})

	if err := c.adoptNodes(ctx); err != nil {
		return err
	}
	close(c.ready)
	log.G(ctx).WithField("env", c.cfg.Env).WithField("adopted", len(c.bases)).Info("controller started")

	ticker := c.cfg.Clock.NewTicker(c.cfg.CheckInterval)
	defer ticker.Stop()
	defer c.wg.Wait()
	for {
		select {
		case <-ctx.Done():
			for _, v := range c.bases {
				v.stop()
			}
			return nil
		case ev := <-c.cfg.Tunnel.Events():
			c.handle(ctx, ev)
		case <-ticker.C():
			c.checkLiveness(ctx)
		}
	}
}

// adoptNodes starts a virtual node controller for every existing node of this
// env that this replica owns. Each adopted base gets a full heartbeat window
// before it is judged.
func (c *Controller) adoptNodes(ctx context.Context) error {
	selector := labels.SelectorFromSet(labels.Set{
		provider.LabelComponent: provider.ComponentVNode,
		provider.LabelEnv:       c.cfg.Env,
	})
	nodes, err := c.cfg.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
	if err != nil {
		return fmt.Errorf("listing existing virtual nodes: %w", err)
	}
	for i := range nodes.Items {
		n := &nodes.Items[i]
		env, baseID, ok := protocol.BaseIDFromNodeName(n.Name)
		if !ok || env != c.cfg.Env || !c.cfg.Ownership.Owns(baseID) {
			continue
		}
		c.startBase(ctx, baseID, baseInfoFromNode(n), provider.Readiness{
			Reachable: true,
			Reason:    provider.ReasonBaseAdopted,
			Message:   "controller restarted; waiting for the base's next heartbeat",
		})
	}
	return nil
}

// handle applies one tunnel event.
func (c *Controller) handle(ctx context.Context, ev tunnel.Event) {
	baseID := ev.Base()
	if !c.cfg.Ownership.Owns(baseID) {
		return
	}
	switch e := ev.(type) {
	case tunnel.BaseHeartbeat:
		c.metrics.heartbeats.Inc()
		c.onHeartbeat(ctx, e)
	case tunnel.BaseHealth:
		c.onHealth(ctx, e)
	case tunnel.BizStatus:
		if v, ok := c.bases[baseID]; ok {
			v.provider.OnBizStatus(e.Bizs, e.PublishedAt)
		}
	case tunnel.BizOperationResult:
		if v, ok := c.bases[baseID]; ok {
			v.provider.OnBizOperation(e.Operation, e.PublishedAt)
		}
	case tunnel.BatchInstallResult:
		if v, ok := c.bases[baseID]; ok {
			v.provider.OnBatchInstall(e.Result, e.PublishedAt)
		}
	case tunnel.BaselineQuery:
		c.onBaselineQuery(ctx, e)
	}
}

// onBaselineQuery answers a base that just started with the bizs of the pods
// bound to its node, which it installs as one batch.
func (c *Controller) onBaselineQuery(ctx context.Context, e tunnel.BaselineQuery) {
	c.metrics.baselines.Inc()
	if v, ok := c.bases[e.BaseID]; ok {
		bizs := v.provider.Baseline()
		log.G(ctx).WithField("base", e.BaseID).WithField("bizs", len(bizs)).Info("base started; sending its baseline")
		c.send(ctx, e.BaseID, "baseline", func(ctx context.Context) error {
			return c.cfg.Tunnel.SendBaseline(ctx, e.BaseID, bizs)
		})
		return
	}
	// A base not served yet: its node may still have pods bound from before.
	c.send(ctx, e.BaseID, "baseline", func(ctx context.Context) error {
		bizs, err := c.boundBizs(ctx, protocol.NodeName(c.cfg.Env, e.BaseID))
		if err != nil {
			return err
		}
		log.G(ctx).WithField("base", e.BaseID).WithField("bizs", len(bizs)).Info("new base; sending its baseline")
		return c.cfg.Tunnel.SendBaseline(ctx, e.BaseID, bizs)
	})
}

// onHeartbeat creates or refreshes the base's node, or removes it when the
// base says it is no longer active.
func (c *Controller) onHeartbeat(ctx context.Context, e tunnel.BaseHeartbeat) {
	v, known := c.bases[e.BaseID]
	if !e.Status.Activated() {
		if known {
			c.removeBase(ctx, v, "BaseDeactivated", fmt.Sprintf("base reported state %q", e.Status.State))
		}
		return
	}
	if !known {
		c.startBase(ctx, e.BaseID, provider.BaseInfo{Status: e.Status}, readyReadiness)
		return
	}
	c.checkDuplicate(ctx, v, e.Status)
	v.provider.UpdateBase(e.Status)
	c.markAlive(ctx, v)
}

// onHealth records a health reply. A successful reply from an active base
// counts as a sign of life: a real base's heartbeat task can die for good
// while it still answers health queries.
func (c *Controller) onHealth(ctx context.Context, e tunnel.BaseHealth) {
	v, known := c.bases[e.BaseID]
	if !known || e.Health.Code != protocol.CodeSuccess {
		return
	}
	data := e.Health.Data.HealthData
	state := protocol.ParseBizState(data.MasterBizInfo.BizState)
	if state != protocol.BizActivated {
		c.removeBase(ctx, v, "BaseDeactivated", fmt.Sprintf("base master biz is %s", state))
		return
	}
	v.provider.UpdateHealth(data.JVM, data.CPU)
	c.markAlive(ctx, v)
}

// markAlive refreshes a base's liveness and makes its node Ready, recording
// an Event when it had been unreachable.
func (c *Controller) markAlive(ctx context.Context, v *vnode) {
	v.lastSeen = c.cfg.Clock.Now()
	v.provider.SetReadiness(readyReadiness)
	if v.adopted {
		// The first sign of life since this controller started: what the
		// base runs may have changed meanwhile, and an earlier query may
		// have been lost while the base reconnected.
		v.adopted = false
		c.send(ctx, v.baseID, "queryAllBiz", func(ctx context.Context) error { return c.cfg.Tunnel.QueryAllBiz(ctx, v.baseID) })
	}
	if v.reachable {
		return
	}
	v.reachable = true
	c.metrics.transitions.WithLabelValues("ready").Inc()
	c.recorder.Event(v.nodeRef(), corev1.EventTypeNormal, "BaseReachable", "base is reachable again")
	log.G(ctx).WithField("base", v.baseID).WithField("node", v.nodeName).Info("base reachable again")
}

// checkLiveness marks silent bases unreachable, removes the ones silent for
// too long and asks the others for their health.
func (c *Controller) checkLiveness(ctx context.Context) {
	now := c.cfg.Clock.Now()
	for _, v := range c.bases {
		silent := now.Sub(v.lastSeen)
		switch {
		case silent >= c.cfg.RemoveAfter:
			c.removeBase(ctx, v, "BaseGone", fmt.Sprintf("no heartbeat or health reply for %s", silent.Round(time.Second)))
			continue
		case silent > c.cfg.UnreachableAfter && v.reachable:
			v.reachable = false
			msg := fmt.Sprintf("no heartbeat or health reply for %s", silent.Round(time.Second))
			v.provider.SetReadiness(provider.Readiness{Reachable: false, Reason: provider.ReasonBaseUnreachable, Message: msg})
			c.metrics.transitions.WithLabelValues("unreachable").Inc()
			c.recorder.Event(v.nodeRef(), corev1.EventTypeWarning, provider.ReasonBaseUnreachable, msg)
			log.G(ctx).WithField("base", v.baseID).WithField("node", v.nodeName).WithField("silent", silent).Warn("base unreachable")
		}
		v.provider.Resync()
		if now.Sub(v.lastQuery) >= c.cfg.QueryInterval {
			v.lastQuery = now
			c.send(ctx, v.baseID, "queryAllBiz", func(ctx context.Context) error {
				return c.cfg.Tunnel.QueryAllBiz(ctx, v.baseID)
			})
		}
		if now.Sub(v.lastHealthQuery) >= c.cfg.HealthInterval {
			v.lastHealthQuery = now
			c.send(ctx, v.baseID, "health", func(ctx context.Context) error {
				return c.cfg.Tunnel.QueryHealth(ctx, v.baseID)
			})
		}
	}
}

// send runs one tunnel command in the background, bounded by the command
// timeout, and logs a failure.
func (c *Controller) send(ctx context.Context, baseID, what string, cmd func(context.Context) error) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithTimeout(ctx, c.cfg.CommandTimeout)
		defer cancel()
		if err := cmd(ctx); err != nil && ctx.Err() == nil {
			log.G(ctx).WithField("base", baseID).WithField("command", what).WithError(err).Debug("command not sent")
		}
	}()
}

// checkDuplicate reports two live processes publishing under one identity:
// the heartbeat comes from another address or host than the last one while
// the last one is still fresh.
func (c *Controller) checkDuplicate(ctx context.Context, v *vnode, status protocol.BaseStatus) {
	instance := status.LocalIP + "/" + status.LocalHostName
	now := c.cfg.Clock.Now()
	if v.instance != "" && v.instance != instance && now.Sub(v.lastSeen) < c.cfg.UnreachableAfter &&
		now.Sub(v.lastDuplicateReport) > c.cfg.RemoveAfter {
		v.lastDuplicateReport = now
		c.metrics.duplicates.Inc()
		msg := fmt.Sprintf("two bases publish as %q: %s and %s; give each base a unique identity",
			v.baseID, strings.TrimSuffix(v.instance, "/"), strings.TrimSuffix(instance, "/"))
		c.recorder.Event(v.nodeRef(), corev1.EventTypeWarning, "DuplicateBaseIdentity", msg)
		log.G(ctx).WithField("base", v.baseID).WithField("node", v.nodeName).
			WithField("previous", v.instance).WithField("current", instance).Warn("duplicate base identity")
	}
	v.instance = instance
}

// baseInfoFromNode rebuilds what is known of a base from its existing node, so
// an adopted node keeps its labels until the next heartbeat.
func baseInfoFromNode(n *corev1.Node) provider.BaseInfo {
	_, baseID, _ := protocol.BaseIDFromNodeName(n.Name)
	info := provider.BaseInfo{
		Status: protocol.BaseStatus{
			BaseMetadata: protocol.BaseMetadata{
				Identity:    baseID,
				Name:        n.Labels[provider.LabelBaseName],
				Version:     n.Labels[provider.LabelBaseVersion],
				ClusterName: n.Labels[provider.LabelBaseClusterName],
			},
			LocalHostName: n.Labels[provider.LabelBaseHostName],
			State:         "activated",
		},
		Zone:   n.Labels[corev1.LabelTopologyZone],
		Region: n.Labels[corev1.LabelTopologyRegion],
	}
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			info.Status.LocalIP = a.Address
		}
	}
	return info
}
