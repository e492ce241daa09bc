package controller

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	"github.com/virtual-kubelet/virtual-kubelet/node"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/moduleops/module-controller/pkg/api"
	"github.com/moduleops/module-controller/pkg/protocol"
	"github.com/moduleops/module-controller/provider"
	"github.com/moduleops/module-controller/tunnel"
)

// componentName is the source of the Events the controller records.
const componentName = "module-controller"

// readyReadiness is the judgement of a base that shows signs of life.
var readyReadiness = provider.Readiness{Reachable: true, Reason: api.ReasonBaseReady, Message: "base is publishing heartbeats"}

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
	// finished receives the bases of removing whose wait is over.
	finished chan finishedBase
	// crashed receives a base whose goroutines panicked, to tear down.
	crashed chan *vnode
	// newBases rate-limits messages from identities not served yet, which
	// have no limiter of their own: a flood of made-up identities costs one
	// bucket, not one map entry each.
	newBases *rate.Limiter
	// validation checks heartbeats and biz lists before they reach the API
	// server.
	validation provider.Validation
	// disrupted is true while the tunnel is disrupted (see checkDisruption);
	// touched only by the Run goroutine, mirrored in disruptedFlag.
	disrupted     bool
	disruptedFlag atomic.Bool
	// inflight holds the background commands being sent, by base and kind,
	// so a slow or absent broker does not pile them up.
	inflightMu sync.Mutex
	inflight   map[string]struct{}
	// wg tracks the goroutines of every vnode.
	wg sync.WaitGroup
	// ready is closed once existing nodes were adopted and events flow.
	ready chan struct{}
	// pending holds the last heartbeat of each base not owned, so that a
	// base gained before it has a node is served at once rather than at its
	// next heartbeat; touched only by the Run goroutine.
	pending map[string]tunnel.BaseHeartbeat
	// unusedInformers hands virtual-kubelet the ConfigMap, Secret and Service
	// informers its pod controller insists on; they are never started, so
	// nothing is watched (see runPods).
	unusedInformers informers.SharedInformerFactory
	// pods is the one pod informer behind the pod controller.
	pods *podCache
	// router hands the pod controller's pods to their bases' providers.
	router *podRouter
	// podsReady is closed once the pod controller runs: vnodes wait on it
	// before they are served.
	podsReady chan struct{}
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
	if _, all := cfg.Ownership.(AllBases); !all {
		cfg.Tunnel = ownedTunnel{Tunnel: cfg.Tunnel, owns: cfg.Ownership}
	}
	pods, err := newPodCache(cfg.Client, cfg.Env)
	if err != nil {
		return nil, err
	}
	return &Controller{
		pods:       pods,
		router:     newPodRouter(pods),
		podsReady:  make(chan struct{}),
		cfg:        cfg,
		metrics:    m,
		bases:      map[string]*vnode{},
		removing:   map[string]chan struct{}{},
		crashed:    make(chan *vnode, 16),
		finished:   make(chan finishedBase),
		newBases:   rate.NewLimiter(newBaseRate, newBaseBurst),
		inflight:   map[string]struct{}{},
		pending:    map[string]tunnel.BaseHeartbeat{},
		validation: provider.Validation{Env: cfg.Env, AllowLoopbackIP: cfg.AllowLoopbackBaseIP},

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
	podsCtx, stopPods := context.WithCancel(ctx)
	defer stopPods()
	c.wg.Go(func() { c.pods.Run(podsCtx) })
	if err := c.runPodController(podsCtx); err != nil {
		return err
	}

	if err := c.adoptNodes(ctx); err != nil {
		return err
	}
	close(c.ready)
	log.G(ctx).WithField("env", c.cfg.Env).WithField("adopted", len(c.bases)).Info("controller started")

	ticker := c.cfg.Clock.NewTicker(c.cfg.CheckInterval)
	defer ticker.Stop()
	defer c.wg.Wait()
	ownershipChanged := c.ownershipChanges()
	for {
		select {
		case <-ctx.Done():
			for _, v := range c.bases {
				v.stop()
			}
			return nil
		case ev := <-c.cfg.Tunnel.Events():
			c.handleSafely(ctx, ev)
		case f := <-c.finished:
			if c.removing[f.baseID] == f.gone {
				delete(c.removing, f.baseID)
				c.metrics.removing.Set(float64(len(c.removing)))
			}
		case v := <-c.crashed:
			if c.bases[v.baseID] == v {
				c.tearDown(ctx, v, "its goroutines panicked")
			}
		case <-ownershipChanged:
			c.onOwnershipChanged(ctx)
		case <-ticker.C():
			c.checkOwnership(ctx)
			c.checkLiveness(ctx)
		}
	}
}

// runPodController starts the process's one virtual-kubelet PodController,
// on the served pods of the shared cache, with the router as its provider;
// it runs until ctx is done. podsReady is closed once it runs.
func (c *Controller) runPodController(ctx context.Context) error {
	pc, err := node.NewPodController(node.PodControllerConfig{
		PodClient:         c.cfg.Client.CoreV1(),
		PodInformer:       c.pods.served,
		EventRecorder:     c.recorder,
		Provider:          c.router,
		ConfigMapInformer: c.unusedInformers.Core().V1().ConfigMaps(),
		SecretInformer:    c.unusedInformers.Core().V1().Secrets(),
		ServiceInformer:   c.unusedInformers.Core().V1().Services(),
		// A biz takes only BIZ_VERSION from its container's environment, and
		// the provider resolves it; resolving the rest would need a
		// cluster-wide watch of Secrets and ConfigMaps.
		SkipDownwardAPIResolution: true,
		// Per-item backoff only. virtual-kubelet's default adds a 10 per
		// second bucket per queue, made for one node: shared by every base
		// it would cap the whole fleet at 10 pod syncs and 10 status writes
		// a second. The API client's QPS is the process-wide bound.
		SyncPodsFromKubernetesRateLimiter:    podRetryLimiter(),
		DeletePodsFromKubernetesRateLimiter:  podRetryLimiter(),
		SyncPodStatusFromProviderRateLimiter: podRetryLimiter(),
	})
	if err != nil {
		return fmt.Errorf("creating the pod controller: %w", err)
	}
	c.wg.Go(func() {
		if err := pc.Run(ctx, c.cfg.PodWorkers); err != nil && ctx.Err() == nil {
			log.G(ctx).WithError(err).Error("pod controller stopped")
		}
	})
	c.wg.Go(func() {
		select {
		case <-pc.Ready():
			close(c.podsReady)
		case <-pc.Done():
		case <-ctx.Done():
		}
	})
	return nil
}

// podRetryLimiter is the rate limiter of each pod controller queue: the
// per-item exponential backoff of client-go's default controller limiter,
// without its overall bucket.
func podRetryLimiter() workqueue.TypedRateLimiter[any] {
	return workqueue.NewTypedItemExponentialFailureRateLimiter[any](5*time.Millisecond, 1000*time.Second)
}

// adoptNodes starts a virtual node controller for every existing node of this
// env that this replica owns. Each adopted base gets a full heartbeat window
// before it is judged.
func (c *Controller) adoptNodes(ctx context.Context) error {
	selector := labels.SelectorFromSet(labels.Set{
		api.LabelComponent: api.ComponentVNode,
		api.LabelEnv:       c.cfg.Env,
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
			Waiting:   true,
			Reason:    api.ReasonBaseAdopted,
			Message:   "controller restarted; waiting for the base's next heartbeat",
		})
	}
	return nil
}

// Rate of messages accepted from identities not served yet (new bases'
// first heartbeats and baseline queries), all together.
const (
	newBaseRate  = 500
	newBaseBurst = 2000
)

// handleSafely applies one tunnel event; a panic tears down only the base
// the event came from.
func (c *Controller) handleSafely(ctx context.Context, ev tunnel.Event) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		c.metrics.panics.Inc()
		log.G(ctx).WithField("base", ev.Base()).WithField("event", fmt.Sprintf("%T", ev)).
			WithField("panic", fmt.Sprint(r)).WithField("stack", string(debug.Stack())).Error("handling a base event panicked")
		if v, ok := c.bases[ev.Base()]; ok {
			c.tearDown(ctx, v, "handling its event panicked")
		}
	}()
	c.handle(ctx, ev)
}

// handle applies one tunnel event.
func (c *Controller) handle(ctx context.Context, ev tunnel.Event) {
	baseID := ev.Base()
	if !c.cfg.Ownership.Owns(baseID) {
		if v, served := c.bases[baseID]; served {
			c.handOver(ctx, v) // another replica serves it now
		}
		c.notePending(ev)
		return
	}
	delete(c.pending, baseID)
	now := c.cfg.Clock.Now()
	v, served := c.bases[baseID]
	limiter := c.newBases
	if served {
		limiter = v.limiter
	} else {
		switch ev.(type) {
		case tunnel.BaseHeartbeat, tunnel.BaselineQuery:
		default:
			return // nothing to apply it to
		}
	}
	if !limiter.AllowN(now, 1) {
		c.metrics.dropped.WithLabelValues("rate_limited").Inc()
		log.G(ctx).WithField("base", baseID).WithField("event", fmt.Sprintf("%T", ev)).Debug("dropped a base message: rate limit")
		return
	}
	// A message stamped further ahead of this clock than the allowed skew is
	// not from a base with a sane clock (the tunnel drops those as far
	// behind as stale): a replayed or forged message, or a clock to fix.
	// Whatever it says, it changes nothing.
	if at := ev.Published(); at.After(now.Add(c.cfg.MaxClockSkew)) {
		c.metrics.dropped.WithLabelValues("future").Inc()
		log.G(ctx).WithField("base", baseID).WithField("event", fmt.Sprintf("%T", ev)).WithField("publishedAt", at).
			Warn("dropped a base message stamped in the future; check the base's clock")
		return
	}
	switch e := ev.(type) {
	case tunnel.BaseHeartbeat:
		c.metrics.heartbeats.Inc()
		c.onHeartbeat(ctx, e)
	case tunnel.BaseHealth:
		c.onHealth(ctx, e)
	case tunnel.BizStatus:
		v.provider.OnBizStatus(c.validBizs(ctx, baseID, e.Bizs), e.PublishedAt)
	case tunnel.BizOperationResult:
		v.provider.OnBizOperation(e.Operation, e.PublishedAt)
	case tunnel.BatchInstallResult:
		v.provider.OnBatchInstall(e.Result, e.PublishedAt)
	case tunnel.BaselineQuery:
		c.onBaselineQuery(ctx, e)
	}
}

// validBizs drops the entries of a biz list that Events and pod status
// cannot show; no pod can name such a biz, so none is judged by it.
func (c *Controller) validBizs(ctx context.Context, baseID string, bizs []protocol.SimpleBizInfo) []protocol.SimpleBizInfo {
	valid := bizs[:0:0]
	for _, b := range bizs {
		if err := c.validation.Biz(b); err != nil {
			c.metrics.dropped.WithLabelValues("invalid_biz").Inc()
			log.G(ctx).WithField("base", baseID).WithError(err).Warn("dropped an entry of a biz list")
			continue
		}
		valid = append(valid, b)
	}
	return valid
}

// onBaselineQuery answers a base that just started with the bizs of the pods
// bound to its node, which it installs as one batch. A base not served has
// no node, so no pods: its baseline is empty. (An identity whose old node is
// still being removed has its pods deleted with it.)
func (c *Controller) onBaselineQuery(ctx context.Context, e tunnel.BaselineQuery) {
	c.metrics.baselines.Inc()
	bizs := []protocol.BizModel{}
	if v, ok := c.bases[e.BaseID]; ok {
		bizs = v.provider.Baseline()
	}
	log.G(ctx).WithField("base", e.BaseID).WithField("bizs", len(bizs)).Info("base started; sending its baseline")
	c.send(ctx, e.BaseID, "baseline", func(ctx context.Context) error {
		return c.cfg.Tunnel.SendBaseline(ctx, e.BaseID, bizs)
	})
}

// onHeartbeat creates or refreshes the base's node, or removes it when the
// base says it is no longer active.
func (c *Controller) onHeartbeat(ctx context.Context, e tunnel.BaseHeartbeat) {
	v, known := c.bases[e.BaseID]
	if err := c.validation.Heartbeat(e.Status); err != nil {
		// A field the API server would refuse (or a pod status could not
		// hold): the heartbeat changes nothing, for a new base and a known one.
		reason := provider.FieldReasonText
		var fe *provider.FieldError
		if errors.As(err, &fe) {
			reason = fe.Reason
		}
		c.metrics.rejected.WithLabelValues(reason).Inc()
		log.G(ctx).WithField("base", e.BaseID).WithField("known", known).WithError(err).Warn("rejected a heartbeat: a field cannot become part of a node")
		return
	}
	if !e.Status.Activated() {
		if known {
			c.removeBase(ctx, v, "BaseDeactivated", fmt.Sprintf("base reported state %q", e.Status.State))
		}
		return
	}
	if !known {
		if len(c.bases) >= c.cfg.MaxBases {
			c.metrics.rejected.WithLabelValues("max_bases").Inc()
			log.G(ctx).WithField("base", e.BaseID).WithField("maxBases", c.cfg.MaxBases).Warn("rejected a new base: this replica serves the maximum number of bases")
			return
		}
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
	c.recorder.Event(v.nodeRef(), corev1.EventTypeNormal, api.ReasonBaseReachable, "base is reachable again")
	log.G(ctx).WithField("base", v.baseID).WithField("node", v.nodeName).Info("base reachable again")
}

// checkLiveness marks silent bases unreachable, removes the ones silent for
// too long and asks the others for their health. While the tunnel is
// disrupted nobody is judged.
func (c *Controller) checkLiveness(ctx context.Context) {
	now := c.cfg.Clock.Now()
	c.checkDisruption(ctx, now)
	for _, v := range c.bases {
		silent := now.Sub(v.lastSeen)
		switch {
		case c.disrupted:
			// Silence says nothing about a base now.
		case silent >= c.cfg.RemoveAfter:
			c.removeBase(ctx, v, "BaseGone", fmt.Sprintf("no heartbeat or health reply for %s", silent.Round(time.Second)))
			continue
		case silent > c.cfg.UnreachableAfter && v.reachable:
			v.reachable = false
			msg := fmt.Sprintf("no heartbeat or health reply for %s", silent.Round(time.Second))
			v.provider.SetReadiness(provider.Readiness{Reachable: false, Reason: api.ReasonBaseUnreachable, Message: msg})
			c.metrics.transitions.WithLabelValues("unreachable").Inc()
			c.recorder.Event(v.nodeRef(), corev1.EventTypeWarning, api.ReasonBaseUnreachable, msg)
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

// forgetWhenDone hands gone to Run once it is closed, so that the base's
// entry in removing does not outlive the identity.
func (c *Controller) forgetWhenDone(ctx context.Context, baseID string, gone chan struct{}) {
	select {
	case <-gone:
	case <-ctx.Done():
		return
	}
	select {
	case c.finished <- finishedBase{baseID, gone}:
	case <-ctx.Done():
	}
}

// finishedBase is a base whose old node or goroutines are gone.
type finishedBase struct {
	baseID string
	gone   chan struct{}
}

// Disruption thresholds: with at least disruptionMinBases served, more than
// disruptionSilentShare of them silent past the unreachable window at once
// means the path to them broke, not the bases. (The node lifecycle
// controller's full-disruption mode reasons the same way about kubelets.)
const (
	disruptionMinBases    = 3
	disruptionSilentShare = 0.55
)

// Disrupted reports whether the tunnel is disrupted right now: while it is,
// no base is marked unreachable or removed and no command is sent to a base
// that has not been heard from since.
func (c *Controller) Disrupted() bool { return c.disruptedFlag.Load() }

// disruption returns why the tunnel is disrupted, or "" if it is not.
func (c *Controller) disruption(now time.Time) string {
	if !c.cfg.Tunnel.Connected() {
		return "the controller's tunnel is not connected (MQTT broker or HTTP listener)"
	}
	if len(c.bases) < disruptionMinBases {
		return ""
	}
	silent := 0
	for _, v := range c.bases {
		if now.Sub(v.lastSeen) > c.cfg.UnreachableAfter {
			silent++
		}
	}
	if float64(silent) > disruptionSilentShare*float64(len(c.bases)) {
		return fmt.Sprintf("%d of %d bases went silent at once", silent, len(c.bases))
	}
	return ""
}

// checkDisruption enters or leaves tunnel disruption mode. Entering holds
// every reachable base's node Ready (its last known state) with commands
// waiting; leaving gives every base a fresh heartbeat window and holds its
// commands until its first sign of life, which also asks for its biz list.
func (c *Controller) checkDisruption(ctx context.Context, now time.Time) {
	why := c.disruption(now)
	switch {
	case why != "" && !c.disrupted:
		c.disrupted = true
		c.disruptedFlag.Store(true)
		c.metrics.disrupted.Set(1)
		c.metrics.disruptions.Inc()
		log.G(ctx).WithField("reason", why).WithField("bases", len(c.bases)).
			Warn("tunnel disrupted: holding every node as it is; nothing is marked unreachable or removed until it returns")
		msg := "tunnel disrupted (" + why + "); showing the base's last known state"
		for _, v := range c.bases {
			v.adopted = true
			if v.reachable {
				v.provider.SetReadiness(provider.Readiness{Reachable: true, Waiting: true, Reason: api.ReasonTunnelDisrupted, Message: msg})
			}
		}
	case why == "" && c.disrupted:
		c.disrupted = false
		c.disruptedFlag.Store(false)
		c.metrics.disrupted.Set(0)
		log.G(ctx).WithField("bases", len(c.bases)).Info("tunnel restored: every base gets a full heartbeat window")
		msg := "tunnel restored; waiting for the base's next heartbeat"
		for _, v := range c.bases {
			if now.Sub(v.lastSeen) <= c.cfg.UnreachableAfter {
				continue // heard from meanwhile: already judged live
			}
			v.lastSeen = now
			v.lastHealthQuery = time.Time{}
			if v.reachable {
				v.provider.SetReadiness(provider.Readiness{Reachable: true, Waiting: true, Reason: api.ReasonTunnelRestored, Message: msg})
			}
		}
	}
}

// send runs one tunnel command in the background, bounded by the command
// timeout, and logs a failure. A command of the same kind still being sent
// to the base makes this one redundant: it is skipped.
func (c *Controller) send(ctx context.Context, baseID, what string, cmd func(context.Context) error) {
	key := baseID + "/" + what
	c.inflightMu.Lock()
	_, busy := c.inflight[key]
	if !busy {
		c.inflight[key] = struct{}{}
	}
	c.inflightMu.Unlock()
	if busy {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() {
			c.inflightMu.Lock()
			delete(c.inflight, key)
			c.inflightMu.Unlock()
			if r := recover(); r != nil {
				c.metrics.panics.Inc()
				log.G(ctx).WithField("base", baseID).WithField("command", what).WithField("panic", fmt.Sprint(r)).Error("sending a command panicked")
			}
		}()
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
		c.recorder.Event(v.nodeRef(), corev1.EventTypeWarning, api.ReasonDuplicateBaseIdentity, msg)
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
				Name:        n.Labels[api.LabelBaseName],
				Version:     n.Labels[api.LabelBaseVersion],
				ClusterName: n.Labels[api.LabelBaseClusterName],
			},
			LocalHostName: n.Labels[api.LabelBaseHostName],
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
