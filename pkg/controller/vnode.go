package controller

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	"github.com/virtual-kubelet/virtual-kubelet/node"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/moduleops/module-controller/pkg/api"
	"github.com/moduleops/module-controller/pkg/protocol"
	"github.com/moduleops/module-controller/provider"
)

// removalTimeout bounds the API calls that delete a gone base's node and lease.
const removalTimeout = 30 * time.Second

// vnode is one served base: its provider and the goroutines that keep its
// virtual node. The liveness fields (from limiter on) are touched only by the
// Controller's Run goroutine. The others are set once by startBase and shared
// with the base's goroutines: they call cancel on a panic and close
// registered, done and removed.
type vnode struct {
	baseID   string
	nodeName string
	provider *provider.Provider
	cancel   context.CancelFunc
	done     chan struct{} // closed when the base's goroutines ended
	removed  chan struct{} // closed when its node and lease are deleted

	registerOnce sync.Once
	registered   chan struct{} // closed once its node was first registered

	limiter             *rate.Limiter // bounds the messages accepted from the base
	lastSeen            time.Time
	lastHealthQuery     time.Time
	lastQuery           time.Time
	reachable           bool
	adopted             bool   // waiting for a first sign of life (after a restart or a tunnel disruption)
	instance            string // address/host of the process behind the identity
	lastDuplicateReport time.Time
}

// nodeRef is the object Events about the base are recorded on.
func (v *vnode) nodeRef() *corev1.ObjectReference {
	return &corev1.ObjectReference{Kind: "Node", Name: v.nodeName, UID: "", APIVersion: "v1"}
}

// stop cancels the base's goroutines without waiting for them.
func (v *vnode) stop() { v.cancel() }

// markRegistered records that the node exists; it reports whether this is
// the first time.
func (v *vnode) markRegistered() bool {
	first := false
	v.registerOnce.Do(func() {
		first = true
		close(v.registered)
	})
	return first
}

// isRegistered reports whether the node was registered once.
func (v *vnode) isRegistered() bool {
	select {
	case <-v.registered:
		return true
	default:
		return false
	}
}

// startBase starts serving a base: its provider, node controller and lease.
func (c *Controller) startBase(ctx context.Context, baseID string, info provider.BaseInfo, r provider.Readiness) {
	p, err := provider.New(provider.Config{
		Node: provider.NodeConfig{
			Env:               c.cfg.Env,
			BaseID:            baseID,
			ControllerVersion: c.cfg.Version,
			MaxPods:           c.cfg.MaxPods,
			Arch:              c.cfg.Arch,
			EnvTaint:          c.cfg.EnvTaint,
			KubeletAddress:    c.cfg.KubeletAddress,
			KubeletPort:       c.cfg.KubeletPort,
		},
		Base:               info,
		Readiness:          r,
		Tunnel:             c.cfg.Tunnel,
		Events:             c.recorder,
		Clock:              c.cfg.Clock,
		ReleasePod:         c.releasePod,
		InstallTimeout:     c.cfg.InstallTimeout,
		CommandTimeout:     c.cfg.CommandTimeout,
		UninstallOrphans:   c.cfg.UninstallOrphans,
		OrphanBizs:         c.metrics.orphans,
		UnsolicitedResults: c.metrics.unsolicited,
		DroppedCommands:    c.metrics.droppedCommands,
		AwaitPodSync:       true,
	})
	if err != nil {
		log.G(ctx).WithField("base", baseID).WithError(err).Warn("cannot serve base")
		return
	}
	vctx, cancel := context.WithCancel(ctx)
	v := &vnode{
		baseID:     baseID,
		nodeName:   p.NodeName(),
		provider:   p,
		cancel:     cancel,
		done:       make(chan struct{}),
		removed:    make(chan struct{}),
		registered: make(chan struct{}),
		limiter:    rate.NewLimiter(rate.Limit(c.cfg.BaseMessageRate), c.cfg.BaseMessageBurst),
		lastSeen:   c.cfg.Clock.Now(),
		lastQuery:  c.cfg.Clock.Now(),
		reachable:  r.Reachable,
		adopted:    r.Waiting,
		instance:   info.Status.LocalIP + "/" + info.Status.LocalHostName,
	}
	previous := c.removing[baseID]
	delete(c.removing, baseID)
	c.metrics.removing.Set(float64(len(c.removing)))
	c.bases[baseID] = v
	c.metrics.bases.Set(float64(len(c.bases)))
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(v.done)
		if previous != nil {
			// The base came back while its old node was being deleted.
			select {
			case <-previous:
			case <-vctx.Done():
				return
			}
		}
		c.runBase(log.WithLogger(vctx, log.G(vctx).WithField("base", baseID).WithField("node", v.nodeName)), v)
	}()
	// Learn what the base runs before installing anything.
	c.send(ctx, baseID, "queryAllBiz", func(ctx context.Context) error { return c.cfg.Tunnel.QueryAllBiz(ctx, baseID) })
	log.G(ctx).WithField("base", baseID).WithField("node", v.nodeName).WithField("reason", r.Reason).Info("serving base")
}

// Backoff of a virtual node controller that failed to register the node.
const (
	registerBackoffMin = time.Second
	registerBackoffMax = 30 * time.Second
)

// runBase keeps a base's virtual node until ctx is done. A node controller
// that fails (the API server refused or did not answer the registration) is
// replaced by a fresh one after a backoff: virtual-kubelet's NodeController
// runs once only.
func (c *Controller) runBase(ctx context.Context, v *vnode) {
	go c.lookupTopology(ctx, v)
	// On shutdown wait for the provider and the pod workers, so that the
	// commands they are sending go out before the process closes the tunnel.
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		defer c.recoverBase(ctx, v)
		v.provider.Run(ctx)
	})
	wg.Go(func() {
		defer c.recoverBase(ctx, v)
		c.runPods(ctx, v)
	})
	backoff := registerBackoffMin
	for ctx.Err() == nil {
		err := c.runNodeController(ctx, v)
		if ctx.Err() != nil {
			return
		}
		c.metrics.registrations.Inc()
		if v.isRegistered() {
			backoff = registerBackoffMin
		}
		log.G(ctx).WithError(err).WithField("retryIn", backoff).Warn("virtual node controller stopped; starting a new one")
		c.recorder.Event(v.nodeRef(), corev1.EventTypeWarning, api.ReasonNodeRegistrationFailed,
			fmt.Sprintf("cannot register the virtual node (retrying in %s): %v", backoff, err))
		select {
		case <-ctx.Done():
		case <-c.cfg.Clock.After(backoff):
		}
		backoff = min(2*backoff, registerBackoffMax)
	}
}

// runNodeController registers the base's node and keeps its status and lease
// with a new virtual-kubelet NodeController until ctx is done or it fails.
// Its goroutines end with it, so a replacement does not compete with them.
func (c *Controller) runNodeController(ctx context.Context, v *vnode) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			c.metrics.panics.Inc()
			err = fmt.Errorf("node controller panicked: %v", r)
		}
	}()
	client := c.cfg.Client
	nodes := client.CoreV1().Nodes()
	registered := v.provider.Node()
	nc, err := node.NewNodeController(v.provider, registered.DeepCopy(), nodes,
		node.WithNodeEnableLeaseV1WithRenewInterval(
			client.CoordinationV1().Leases(corev1.NamespaceNodeLease),
			int32(c.cfg.NodeLeaseDuration/time.Second), c.cfg.LeaseRenewInterval),
		node.WithNodeStatusUpdateInterval(c.cfg.NodeStatusInterval),
		node.WithNodeStatusUpdateErrorHandler(func(ctx context.Context, err error) error {
			if !apierrors.IsNotFound(err) {
				return err
			}
			log.G(ctx).Warn("virtual node was deleted by someone else; registering it again")
			_, err = nodes.Create(ctx, v.provider.Node(), metav1.CreateOptions{})
			return err
		}),
	)
	if err != nil {
		return fmt.Errorf("creating node controller: %w", err)
	}
	go func() {
		select {
		case <-nc.Ready():
			// The node was created (its status with it) or updated from
			// registered: write it again only if it changed meanwhile.
			v.provider.PushNodeStatusSince(registered)
			if v.markRegistered() {
				c.recorder.Event(v.nodeRef(), corev1.EventTypeNormal, api.ReasonBaseRegistered, "virtual node serves the base")
			}
		case <-ctx.Done():
		}
	}()
	return nc.Run(ctx)
}

// recoverBase turns a panic in one of a base's goroutines into a tear-down of
// that base alone: the Run goroutine stops serving it, and its next sign of
// life serves it again from scratch. Its node stays.
func (c *Controller) recoverBase(ctx context.Context, v *vnode) {
	r := recover()
	if r == nil {
		return
	}
	c.metrics.panics.Inc()
	log.G(ctx).WithField("panic", fmt.Sprint(r)).WithField("stack", string(debug.Stack())).Error("base goroutine panicked; tearing the base down")
	v.stop()
	select {
	case c.crashed <- v:
	default:
		// Run is gone or flooded with crashes: v is stopped either way,
		// and Run finds it stopped at its next event.
	}
}

// runPods serves the base's pods once its node is registered: the pod
// controller hands them to its provider until ctx is done.
func (c *Controller) runPods(ctx context.Context, v *vnode) {
	select {
	case <-v.registered:
	case <-ctx.Done():
		return
	}
	select {
	case <-c.podsReady:
	case <-ctx.Done():
		return
	}
	c.router.add(ctx, v.nodeName, v.provider)
	defer c.router.remove(v.nodeName, v.provider)
	defer c.pods.served.unserve(v.nodeName)
	if err := c.pods.served.serve(v.nodeName); err != nil {
		log.G(ctx).WithError(err).Error("cannot hand the node's pods to its provider")
	}
	c.adoptPods(ctx, v)
	<-ctx.Done()
}

// adoptPods hands the provider every pod bound to the node. virtual-kubelet
// never hands over pods in a terminal phase, yet a Failed (superseded) pod
// still owns its biz on the base, which its deletion must uninstall; and
// until every pod is known, a biz cannot be called an orphan.
func (c *Controller) adoptPods(ctx context.Context, v *vnode) {
	list, err := c.pods.onNode(v.nodeName, "", labels.Everything())
	if err != nil {
		log.G(ctx).WithError(err).Warn("cannot list the node's pods")
		return
	}
	for _, pod := range list {
		if err := v.provider.CreatePod(ctx, pod); err != nil {
			log.G(ctx).WithField("pod", pod.Namespace+"/"+pod.Name).WithError(err).Warn("cannot adopt pod")
		}
	}
	v.provider.PodsSynced()
}

// releasePod removes a pod whose bizs the base confirmed gone. The UID
// precondition keeps a recreated pod of the same name safe.
func (c *Controller) releasePod(ctx context.Context, pod *corev1.Pod) error {
	err := c.cfg.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr(int64(0)),
		Preconditions:      metav1.NewUIDPreconditions(string(pod.UID)),
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

func ptr[T any](v T) *T { return &v }

// tearDown stops serving a base without touching its node: its next sign of
// life serves it again from scratch, once its goroutines ended.
func (c *Controller) tearDown(ctx context.Context, v *vnode, why string) {
	delete(c.bases, v.baseID)
	c.removing[v.baseID] = v.done
	c.wg.Go(func() { c.forgetWhenDone(ctx, v.baseID, v.done) })
	c.metrics.removing.Set(float64(len(c.removing)))
	c.metrics.bases.Set(float64(len(c.bases)))
	log.G(ctx).WithField("base", v.baseID).WithField("node", v.nodeName).WithField("why", why).Error("stopped serving the base; its next heartbeat serves it again")
	v.stop()
}

// Backoff of a removal whose API calls failed.
const (
	removalBackoffMin = time.Second
	removalBackoffMax = 30 * time.Second
)

// removeBase stops serving a base and deletes its node, lease and pods,
// retrying until that succeeds or the controller stops (a restarted one
// adopts the node and judges the base again).
func (c *Controller) removeBase(ctx context.Context, v *vnode, reason, message string) {
	delete(c.bases, v.baseID)
	c.removing[v.baseID] = v.removed
	c.wg.Go(func() { c.forgetWhenDone(ctx, v.baseID, v.removed) })
	c.metrics.removing.Set(float64(len(c.removing)))
	c.metrics.bases.Set(float64(len(c.bases)))
	c.metrics.transitions.WithLabelValues("removed").Inc()
	c.recorder.Event(v.nodeRef(), corev1.EventTypeNormal, reason, message+"; removing the virtual node")
	log.G(ctx).WithField("base", v.baseID).WithField("node", v.nodeName).WithField("reason", reason).Info(message)
	v.stop()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(v.removed)
		<-v.done
		backoff := removalBackoffMin
		for {
			if !c.cfg.Ownership.Owns(v.baseID) {
				return // another replica owns the base now, and judges it
			}
			err := c.deleteBase(ctx, v.nodeName, reason, message)
			if err == nil {
				return
			}
			log.G(ctx).WithField("node", v.nodeName).WithField("retryIn", backoff).WithError(err).Warn("cannot remove the virtual node; retrying")
			select {
			case <-ctx.Done():
				return
			case <-c.cfg.Clock.After(backoff):
			}
			backoff = min(2*backoff, removalBackoffMax)
		}
	}()
}

// deleteBase deletes a removed base's node, its lease and its pods; each
// step is idempotent, so a failed removal is simply run again.
func (c *Controller) deleteBase(ctx context.Context, nodeName, reason, message string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removalTimeout)
	defer cancel()
	err := c.cfg.Client.CoreV1().Nodes().Delete(ctx, nodeName, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting node: %w", err)
	}
	err = c.cfg.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Delete(ctx, nodeName, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting node lease: %w", err)
	}
	return c.deleteNodePods(ctx, nodeName, reason, message)
}

// deleteNodePods deletes the pods bound to a removed base's node. The base is
// gone and its modules with it; Kubernetes' pod garbage collector would
// delete these pods only after its 40 s quarantine for pods of deleted nodes,
// keeping a Deployment from replacing them until then. No kubelet is left to
// finish a graceful deletion, so they go at once; the UID precondition spares
// a pod recreated under the same name meanwhile.
func (c *Controller) deleteNodePods(ctx context.Context, nodeName, reason, message string) error {
	pods, err := c.cfg.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", nodeName).String(),
	})
	if err != nil {
		return fmt.Errorf("listing the node's pods: %w", err)
	}
	var errs []error
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Spec.NodeName != nodeName {
			continue
		}
		if err := c.releasePod(ctx, p); err != nil {
			errs = append(errs, fmt.Errorf("deleting pod %s/%s: %w", p.Namespace, p.Name, err))
			continue
		}
		c.recorder.Event(p, corev1.EventTypeWarning, reason, message+"; the module pod is deleted with its virtual node "+nodeName)
		log.G(ctx).WithField("node", nodeName).WithField("pod", p.Namespace+"/"+p.Name).Info("deleted pod of a removed node")
	}
	return errors.Join(errs...)
}

// lookupTopology copies zone and region from the real node hosting the base,
// when the base runs as a Pod in this cluster (its heartbeat IP is a Pod IP).
func (c *Controller) lookupTopology(ctx context.Context, v *vnode) {
	ip := v.provider.Info().Status.LocalIP
	if ip == "" {
		return
	}
	// From the shared pod cache: a LIST by status.podIP per new base would
	// make the API server scan every pod of the cluster each time.
	if !c.pods.waitForSync(ctx) {
		return
	}
	pods, err := c.pods.withPodIP(ip)
	if err != nil {
		log.G(ctx).WithError(err).Debug("cannot look up the base's pod")
		return
	}
	var n *corev1.Node
	for _, p := range pods {
		// Module pods carry their base's IP too. Those on this base's node
		// or on another virtual node (a former node of a base with this IP,
		// another env's) are not the base's own Pod.
		if _, _, virtual := protocol.BaseIDFromNodeName(p.Spec.NodeName); virtual {
			continue
		}
		if p.Spec.NodeName == "" || p.Status.Phase != corev1.PodRunning {
			continue
		}
		// A pod left on a deleted node (until the pod garbage collector
		// removes it) may still show the IP: try the next one.
		host, err := c.cfg.Client.CoreV1().Nodes().Get(ctx, p.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			log.G(ctx).WithError(err).WithField("host", p.Spec.NodeName).Debug("cannot read the base's host node")
			continue
		}
		n = host
		break
	}
	if n == nil {
		return
	}
	zone, region := n.Labels[corev1.LabelTopologyZone], n.Labels[corev1.LabelTopologyRegion]
	if v.provider.UpdateTopology(zone, region) {
		log.G(ctx).WithField("zone", zone).WithField("region", region).WithField("host", n.Name).Info("base topology from its host node")
	}
}
