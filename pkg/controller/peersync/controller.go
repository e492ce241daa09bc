package peersync

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/moduleops/module-controller/pkg/api"
)

const (
	// componentName is the source of the Events the controller records.
	componentName = "peer-replica-sync"
	// ReasonReplicasSynced is the reason of the Event recorded on a
	// Deployment whose replicas were changed.
	ReasonReplicasSynced = "PeerReplicasSynced"
	// lowestDeletionCost is the pod-deletion-cost given to the pods on nodes
	// the template no longer fits, so that a scale-down removes them first.
	lowestDeletionCost = "-2147483648"
)

// Controller keeps peer Deployments at one replica per matching
// virtual node.
type Controller struct {
	cfg      Config
	metrics  *metrics
	recorder record.EventRecorder

	nodeFactory, deploymentFactory informers.SharedInformerFactory
	nodes                          corelisters.NodeLister
	deployments                    appslisters.DeploymentLister
	synced                         []cache.InformerSynced

	queue workqueue.TypedRateLimitingInterface[string]
	ready chan struct{}
}

// New returns a Controller. It validates cfg, fills in defaults and
// registers the informer handlers; nothing is watched before Run.
func New(cfg Config) (*Controller, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("invalid peer replica sync configuration: %w", err)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	c := &Controller{
		cfg:      cfg,
		metrics:  m,
		recorder: cfg.Recorder,
		// Only virtual nodes can count, and only peer Deployments are synced:
		// filter both watches on the server.
		nodeFactory: informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0,
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.LabelSelector = labels.SelectorFromSet(labels.Set{api.LabelComponent: api.ComponentVNode}).String()
			})),
		deploymentFactory: informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0,
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.LabelSelector = labels.SelectorFromSet(labels.Set{api.LabelStrategy: api.StrategyPeer}).String()
			})),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "peersync"}),
		ready: make(chan struct{}),
	}
	nodeInformer := c.nodeFactory.Core().V1().Nodes()
	deploymentInformer := c.deploymentFactory.Apps().V1().Deployments()
	c.nodes = nodeInformer.Lister()
	c.deployments = deploymentInformer.Lister()
	c.synced = []cache.InformerSynced{nodeInformer.Informer().HasSynced, deploymentInformer.Informer().HasSynced}

	if _, err := deploymentInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
		DeleteFunc: c.enqueue,
	}); err != nil {
		return nil, fmt.Errorf("watching deployments: %w", err)
	}
	if _, err := nodeInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { c.enqueueAll() },
		UpdateFunc: func(old, cur any) {
			o, ok1 := old.(*corev1.Node)
			n, ok2 := cur.(*corev1.Node)
			if !ok1 || !ok2 || placementChanged(o, n) {
				c.enqueueAll()
			}
		},
		DeleteFunc: func(any) { c.enqueueAll() },
	}); err != nil {
		return nil, fmt.Errorf("watching nodes: %w", err)
	}
	return c, nil
}

// placementChanged reports whether a node update can change where pods may
// be scheduled. Heartbeat-only status updates are ignored.
func placementChanged(o, n *corev1.Node) bool {
	return o.Spec.Unschedulable != n.Spec.Unschedulable ||
		!equality.Semantic.DeepEqual(o.Labels, n.Labels) ||
		!equality.Semantic.DeepEqual(o.Spec.Taints, n.Spec.Taints)
}

// enqueue adds a Deployment's key to the queue.
func (c *Controller) enqueue(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return
	}
	c.queue.Add(key)
}

// enqueueAll adds every peer Deployment: a node change may change the count
// of any of them.
func (c *Controller) enqueueAll() {
	ds, err := c.deployments.List(labels.Everything())
	if err != nil {
		return
	}
	for _, d := range ds {
		c.enqueue(d)
	}
}

// Ready is closed once the caches are synced and the workers run.
func (c *Controller) Ready() <-chan struct{} { return c.ready }

// Run watches nodes and peer Deployments and syncs them until ctx is done.
// It returns nil on cancellation. Call it once.
func (c *Controller) Run(ctx context.Context) error {
	if c.recorder == nil {
		broadcaster := record.NewBroadcaster(record.WithContext(ctx))
		broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.cfg.Client.CoreV1().Events("")})
		defer broadcaster.Shutdown()
		c.recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: componentName})
	}
	defer c.queue.ShutDown()
	c.nodeFactory.Start(ctx.Done())
	c.deploymentFactory.Start(ctx.Done())
	defer c.nodeFactory.Shutdown()
	defer c.deploymentFactory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("peer replica sync: caches did not sync")
	}

	var wg sync.WaitGroup
	for range c.cfg.Workers {
		wg.Go(func() {
			for c.processNextWorkItem(ctx) {
			}
		})
	}
	close(c.ready)
	log.G(ctx).WithField("workers", c.cfg.Workers).Info("peer replica sync started")
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
	return nil
}

// processNextWorkItem syncs one Deployment. It returns false once the queue
// is shut down.
func (c *Controller) processNextWorkItem(ctx context.Context) bool {
	key, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(key)
	result, err := c.sync(ctx, key)
	c.metrics.syncs.WithLabelValues(result).Inc()
	if err == nil {
		// Forget the failure history, so the next problem starts from the
		// shortest backoff.
		c.queue.Forget(key)
		return true
	}
	entry := log.G(ctx).WithField("deployment", key).WithError(err)
	if apierrors.IsConflict(err) {
		// Another replica (or the Deployment controller) wrote first: the
		// next sync reads the new state.
		entry.Debug("deployment changed while scaling; retrying")
	} else {
		entry.Warn("cannot sync peer deployment; retrying")
	}
	c.queue.AddRateLimited(key)
	return true
}

// sync sets one Deployment's replicas to the number of virtual nodes its
// template fits. It is level-triggered: it reads the current state and
// writes only when the replicas differ.
func (c *Controller) sync(ctx context.Context, key string) (string, error) {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return resultSkipped, nil // not a key this controller made; never retried
	}
	d, err := c.deployments.Deployments(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return resultSkipped, nil
	}
	if err != nil {
		return resultError, fmt.Errorf("reading deployment %s from the cache: %w", key, err)
	}
	if !managed(d) {
		return resultSkipped, nil
	}
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return resultError, fmt.Errorf("listing virtual nodes from the cache: %w", err)
	}
	fitting := newMatcher(&d.Spec.Template).fitting(nodes)
	want := int32(len(fitting))
	if replicas(d) == want {
		return resultUnchanged, nil
	}

	// The cache may lag: read the scale for its resourceVersion, so a write
	// based on stale state fails with a conflict instead of undoing a newer one.
	scales := c.cfg.Client.AppsV1().Deployments(namespace)
	scale, err := scales.GetScale(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return resultSkipped, nil
	}
	if err != nil {
		return resultError, fmt.Errorf("reading the scale of deployment %s: %w", key, err)
	}
	from := scale.Spec.Replicas
	if from == want {
		return resultUnchanged, nil
	}
	if want < from {
		// The ReplicaSet chooses which pods go. Point it at the pods on nodes
		// that no longer count, first, and scale once that is visible.
		marked, err := c.markUnfitPods(ctx, d, fitting)
		if err != nil {
			// Best effort: without it the ReplicaSet's own ranking decides.
			log.G(ctx).WithField("deployment", key).WithError(err).Warn("cannot mark the pods on nodes that no longer match; scaling down anyway")
		} else if marked > 0 {
			c.queue.AddAfter(key, c.cfg.MarkDelay)
			return resultMarked, nil
		}
	}
	scale.Spec.Replicas = want
	if _, err := scales.UpdateScale(ctx, name, scale, metav1.UpdateOptions{}); err != nil {
		return resultError, fmt.Errorf("scaling deployment %s to %d: %w", key, want, err)
	}
	c.recorder.Eventf(d, corev1.EventTypeNormal, ReasonReplicasSynced,
		"Scaled replicas from %d to %d: %d virtual nodes match the pod template", from, want, want)
	log.G(ctx).WithField("deployment", key).WithField("from", from).WithField("to", want).Info("peer deployment scaled")
	return resultScaled, nil
}

// markUnfitPods gives the lowest pod-deletion-cost to the Deployment's live
// pods bound to nodes outside fitting (nodes that left, turned NotReady or no
// longer match the template), takes that mark off pods on nodes that count
// again, and returns how many pods it changed. Pods already right are not
// counted, so a sync after the marks scales down.
func (c *Controller) markUnfitPods(ctx context.Context, d *appsv1.Deployment, fitting map[string]bool) (int, error) {
	selector, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return 0, fmt.Errorf("parsing the selector of deployment %s/%s: %w", d.Namespace, d.Name, err)
	}
	pods, err := c.cfg.Client.CoreV1().Pods(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
	if err != nil {
		return 0, fmt.Errorf("listing the pods of deployment %s/%s: %w", d.Namespace, d.Name, err)
	}
	mark := []byte(`{"metadata":{"annotations":{"` + corev1.PodDeletionCost + `":"` + lowestDeletionCost + `"}}}`)
	unmark := []byte(`{"metadata":{"annotations":{"` + corev1.PodDeletionCost + `":null}}}`)
	changed := 0
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Spec.NodeName == "" || p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		marked := p.Annotations[corev1.PodDeletionCost] == lowestDeletionCost
		var patch []byte
		switch counts := fitting[p.Spec.NodeName]; {
		case !counts && !marked:
			patch = mark
		case counts && marked:
			// Its node counts again (a base back from a short absence).
			patch = unmark
		default:
			continue
		}
		if _, err := c.cfg.Client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return changed, fmt.Errorf("setting the deletion cost of pod %s/%s: %w", p.Namespace, p.Name, err)
		}
		log.G(ctx).WithField("pod", p.Namespace+"/"+p.Name).WithField("node", p.Spec.NodeName).WithField("first", !marked).
			Info("deletion cost of a peer pod set for the scale-down")
		changed++
	}
	return changed, nil
}

// managed reports whether the Deployment asks for, and has not opted out of,
// the peer replica sync.
func managed(d *appsv1.Deployment) bool {
	return d.Labels[api.LabelStrategy] == api.StrategyPeer &&
		d.Labels[api.LabelReplicasControl] != api.ReplicasControlDisabled &&
		d.DeletionTimestamp == nil
}

// replicas returns the Deployment's desired replicas; unset means 1, the
// API server's default.
func replicas(d *appsv1.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}
