package controller

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	corev1informers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// Indexes of the shared pod cache.
const (
	nodeNameIndex = "spec.nodeName"
	podIPIndex    = "status.podIP"
)

// podCache is the one pod informer of the process: a single LIST+WATCH of
// the bound pods, indexed by node name, that feeds every virtual node's
// PodController through a nodePods view. One event handler on the informer
// hands each event to the view of the pod's node, so the cost of an event
// does not grow with the number of bases, and a base that goes away takes
// its view (and virtual-kubelet's handler behind it) out of the dispatch.
//
// Field selectors cannot select "the virtual nodes of this env", so the watch
// takes every bound pod; a pod on any other node is reduced to the fields
// the indexes and lookupTopology read before it is stored, so foreign pods
// cost little memory.
type podCache struct {
	informer     cache.SharedIndexInformer
	registration cache.ResourceEventHandlerRegistration

	mu    sync.RWMutex
	views map[string]*nodePods // by node name
}

// newPodCache returns the shared pod cache of the virtual nodes of env; it
// watches nothing until Run.
func newPodCache(client kubernetes.Interface, env string) (*podCache, error) {
	informer := corev1informers.NewFilteredPodInformer(client, metav1.NamespaceAll, 0, cache.Indexers{
		cache.NamespaceIndex: cache.MetaNamespaceIndexFunc,
		nodeNameIndex:        podNodeName,
		podIPIndex:           podIP,
	}, func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermNotEqualSelector("spec.nodeName", "").String()
	})
	if err := informer.SetTransform(trimForeignPod(protocol.NormalizeEnv(env))); err != nil {
		return nil, fmt.Errorf("setting the pod transform: %w", err)
	}
	pc := &podCache{informer: informer, views: map[string]*nodePods{}}
	reg, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    pc.onAdd,
		UpdateFunc: pc.onUpdate,
		DeleteFunc: pc.onDelete,
	})
	if err != nil {
		return nil, fmt.Errorf("adding the pod dispatcher: %w", err)
	}
	pc.registration = reg
	return pc, nil
}

// Run watches pods until ctx is done.
func (pc *podCache) Run(ctx context.Context) { pc.informer.RunWithContext(ctx) }

// synced reports whether the cache holds the first full list and the
// dispatcher has seen all of it.
func (pc *podCache) synced() bool {
	return pc.informer.HasSynced() && pc.registration.HasSynced()
}

// waitForSync blocks until the cache synced; false if ctx ended first.
func (pc *podCache) waitForSync(ctx context.Context) bool {
	return cache.WaitForCacheSync(ctx.Done(), pc.synced)
}

// forNode returns a new view of the pods bound to nodeName, which receives
// the node's events from now on. Close it when the node's PodController is
// done. One view per node at a time: a newer one replaces an older one.
func (pc *podCache) forNode(nodeName string) *nodePods {
	v := &nodePods{cache: pc, nodeName: nodeName, known: map[string]struct{}{}}
	pc.mu.Lock()
	pc.views[nodeName] = v
	pc.mu.Unlock()
	return v
}

// remove takes v out of the dispatch unless a newer view replaced it.
func (pc *podCache) remove(v *nodePods) {
	pc.mu.Lock()
	if pc.views[v.nodeName] == v {
		delete(pc.views, v.nodeName)
	}
	pc.mu.Unlock()
}

func (pc *podCache) view(nodeName string) *nodePods {
	if nodeName == "" {
		return nil
	}
	pc.mu.RLock()
	defer pc.mu.RUnlock()
	return pc.views[nodeName]
}

func (pc *podCache) onAdd(obj any) {
	if pod, ok := obj.(*corev1.Pod); ok {
		if v := pc.view(pod.Spec.NodeName); v != nil {
			v.deliverAddOrUpdate(nil, pod)
		}
	}
}

func (pc *podCache) onUpdate(oldObj, newObj any) {
	oldPod, ok1 := oldObj.(*corev1.Pod)
	newPod, ok2 := newObj.(*corev1.Pod)
	if !ok1 || !ok2 {
		return
	}
	if oldPod.Spec.NodeName != newPod.Spec.NodeName {
		// spec.nodeName is immutable once set; this is a delete and a
		// re-create under the same name seen as one update.
		if v := pc.view(oldPod.Spec.NodeName); v != nil {
			v.deliverDelete(oldPod)
		}
		if v := pc.view(newPod.Spec.NodeName); v != nil {
			v.deliverAddOrUpdate(nil, newPod)
		}
		return
	}
	if v := pc.view(newPod.Spec.NodeName); v != nil {
		v.deliverAddOrUpdate(oldPod, newPod)
	}
}

func (pc *podCache) onDelete(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if pod, ok := obj.(*corev1.Pod); ok {
		if v := pc.view(pod.Spec.NodeName); v != nil {
			v.deliverDelete(pod)
		}
	}
}

// withPodIP returns the bound pods that show ip, by namespace and name.
func (pc *podCache) withPodIP(ip string) ([]*corev1.Pod, error) {
	objs, err := pc.informer.GetIndexer().ByIndex(podIPIndex, ip)
	if err != nil {
		return nil, err
	}
	pods := make([]*corev1.Pod, 0, len(objs))
	for _, obj := range objs {
		if pod, ok := obj.(*corev1.Pod); ok {
			pods = append(pods, pod)
		}
	}
	slices.SortFunc(pods, func(a, b *corev1.Pod) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return pods, nil
}

// podIP is the podIPIndex function.
func podIP(obj any) ([]string, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Status.PodIP == "" {
		return nil, nil
	}
	return []string{pod.Status.PodIP}, nil
}

// podNodeName is the nodeNameIndex function.
func podNodeName(obj any) ([]string, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName == "" {
		return nil, nil
	}
	return []string{pod.Spec.NodeName}, nil
}

// trimForeignPod returns the cache transform: a pod bound to a node that is
// not a virtual node of env keeps only its identity, node name, phase and
// pod IP, which is all the indexes, the dispatcher and lookupTopology read
// of it. Every pod loses its managed
// fields, which nothing here reads. (Status updates sent from a trimmed copy
// leave the server's managed fields as they are: an absent list means keep.)
func trimForeignPod(env string) cache.TransformFunc {
	return func(obj any) (any, error) {
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return obj, nil
		}
		if nodeEnv, _, virtual := protocol.BaseIDFromNodeName(pod.Spec.NodeName); virtual && nodeEnv == env {
			pod.ManagedFields = nil
			return pod, nil
		}
		return &corev1.Pod{
			TypeMeta: pod.TypeMeta,
			ObjectMeta: metav1.ObjectMeta{
				Name:            pod.Name,
				Namespace:       pod.Namespace,
				UID:             pod.UID,
				ResourceVersion: pod.ResourceVersion,
			},
			Spec:   corev1.PodSpec{NodeName: pod.Spec.NodeName},
			Status: corev1.PodStatus{Phase: pod.Status.Phase, PodIP: pod.Status.PodIP},
		}, nil
	}
}

// nodePods is one node's view of the shared pod cache, shaped as the
// corev1informers.PodInformer a virtual-kubelet PodController takes: its
// informer delivers, and its lister lists and gets, only the pods bound to
// the node. It keeps the guarantees of an informer of its own: the handler
// added after sync first receives an add for every pod of the node, an
// update or delete of a pod always follows its add, and events reach it one
// at a time.
//
// Of the SharedIndexInformer, virtual-kubelet v1.14.1 calls AddEventHandler
// and HasSynced; the others that read the store or change the informer act
// on the shared cache (GetStore, GetIndexer: every pod) or do nothing (Run).
type nodePods struct {
	cache    *podCache
	nodeName string

	// mu serialises deliveries: the dispatcher's and the replay of
	// AddEventHandler.
	mu       sync.Mutex
	handlers []cache.ResourceEventHandler
	known    map[string]struct{} // keys of the pods the handlers were given
	closed   bool
}

var _ corev1informers.PodInformer = (*nodePods)(nil)

// Informer returns the node's event source.
func (v *nodePods) Informer() cache.SharedIndexInformer {
	return nodeInformer{SharedIndexInformer: v.cache.informer, v: v}
}

// Lister returns the node's pods.
func (v *nodePods) Lister() corev1listers.PodLister { return nodeLister{v: v} }

// Close stops deliveries to the node's handlers.
func (v *nodePods) Close() {
	v.cache.remove(v)
	v.mu.Lock()
	v.closed = true
	v.handlers = nil
	v.mu.Unlock()
}

// list returns the node's pods in the cache that match selector and, unless
// empty, namespace. The pods belong to the cache: do not modify them.
func (v *nodePods) list(namespace string, selector labels.Selector) ([]*corev1.Pod, error) {
	objs, err := v.cache.informer.GetIndexer().ByIndex(nodeNameIndex, v.nodeName)
	if err != nil {
		return nil, err
	}
	pods := make([]*corev1.Pod, 0, len(objs))
	for _, obj := range objs {
		pod, ok := obj.(*corev1.Pod)
		if !ok || (namespace != "" && pod.Namespace != namespace) || !selector.Matches(labels.Set(pod.Labels)) {
			continue
		}
		pods = append(pods, pod)
	}
	return pods, nil
}

// get returns the node's pod namespace/name from the cache.
func (v *nodePods) get(namespace, name string) (*corev1.Pod, error) {
	obj, exists, err := v.cache.informer.GetIndexer().GetByKey(namespace + "/" + name)
	if err != nil {
		return nil, err
	}
	if pod, ok := obj.(*corev1.Pod); exists && ok && pod.Spec.NodeName == v.nodeName {
		return pod, nil
	}
	return nil, apierrors.NewNotFound(corev1.Resource("pod"), name)
}

func (v *nodePods) addHandler(h cache.ResourceEventHandler) (cache.ResourceEventHandlerRegistration, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil, fmt.Errorf("pod view of node %s is closed", v.nodeName)
	}
	// Replay the node's pods to the new handler, as an informer does. The
	// dispatcher waits on mu meanwhile; the events it then brings for a pod
	// replayed here follow this add (see deliverAddOrUpdate).
	pods, err := v.list("", labels.Everything())
	if err != nil {
		return nil, err
	}
	synced := v.cache.synced()
	for _, pod := range pods {
		v.known[pod.Namespace+"/"+pod.Name] = struct{}{}
		h.OnAdd(pod, !synced)
	}
	v.handlers = append(v.handlers, h)
	return viewRegistration{c: v.cache}, nil
}

// deliverAddOrUpdate hands the handlers a pod added to (oldPod nil) or
// changed on the node. A pod they were not given yet arrives as an add; the
// add of a pod they were given already (replayed by addHandler from the
// cache, which is ahead of the events) is dropped.
func (v *nodePods) deliverAddOrUpdate(oldPod, newPod *corev1.Pod) {
	key := newPod.Namespace + "/" + newPod.Name
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.handlers) == 0 {
		return // addHandler replays what the cache holds by then
	}
	_, seen := v.known[key]
	switch {
	case !seen:
		v.known[key] = struct{}{}
		for _, h := range v.handlers {
			h.OnAdd(newPod, false)
		}
	case oldPod != nil:
		for _, h := range v.handlers {
			h.OnUpdate(oldPod, newPod)
		}
	}
}

// deliverDelete hands the handlers a pod gone from the node, if they were
// given it.
func (v *nodePods) deliverDelete(pod *corev1.Pod) {
	key := pod.Namespace + "/" + pod.Name
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, seen := v.known[key]; !seen {
		return
	}
	delete(v.known, key)
	for _, h := range v.handlers {
		h.OnDelete(pod)
	}
}

// nodeInformer is the SharedIndexInformer face of a nodePods.
type nodeInformer struct {
	cache.SharedIndexInformer // the shared informer: see nodePods
	v                         *nodePods
}

func (i nodeInformer) AddEventHandler(h cache.ResourceEventHandler) (cache.ResourceEventHandlerRegistration, error) {
	return i.v.addHandler(h)
}

func (i nodeInformer) AddEventHandlerWithResyncPeriod(h cache.ResourceEventHandler, _ time.Duration) (cache.ResourceEventHandlerRegistration, error) {
	return i.v.addHandler(h)
}

func (i nodeInformer) AddEventHandlerWithOptions(h cache.ResourceEventHandler, _ cache.HandlerOptions) (cache.ResourceEventHandlerRegistration, error) {
	return i.v.addHandler(h)
}

// RemoveEventHandler is not supported: Close the view instead.
func (i nodeInformer) RemoveEventHandler(cache.ResourceEventHandlerRegistration) error {
	return fmt.Errorf("pod view of node %s: remove a handler by closing the view", i.v.nodeName)
}

func (i nodeInformer) HasSynced() bool { return i.v.cache.synced() }

// Run and RunWithContext do nothing: the controller runs the shared informer.
func (i nodeInformer) Run(<-chan struct{}) {}

func (i nodeInformer) RunWithContext(context.Context) {}

// viewRegistration reports a view's handler synced once the shared cache
// is: addHandler delivers the rest synchronously.
type viewRegistration struct{ c *podCache }

func (r viewRegistration) HasSynced() bool { return r.c.synced() }

func (r viewRegistration) HasSyncedChecker() cache.DoneChecker {
	return r.c.informer.HasSyncedChecker()
}

// nodeLister is the PodLister face of a nodePods.
type nodeLister struct{ v *nodePods }

func (l nodeLister) List(selector labels.Selector) ([]*corev1.Pod, error) {
	return l.v.list("", selector)
}

func (l nodeLister) Pods(namespace string) corev1listers.PodNamespaceLister {
	return nodeNamespaceLister{v: l.v, namespace: namespace}
}

type nodeNamespaceLister struct {
	v         *nodePods
	namespace string
}

func (l nodeNamespaceLister) List(selector labels.Selector) ([]*corev1.Pod, error) {
	return l.v.list(l.namespace, selector)
}

func (l nodeNamespaceLister) Get(name string) (*corev1.Pod, error) {
	return l.v.get(l.namespace, name)
}
