package controller

import (
	"cmp"
	"context"
	"errors"
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
// the bound pods, indexed by node name. Its served view is the pod informer
// of the process's one virtual-kubelet PodController: it delivers, and lists,
// only the pods of the nodes this process serves right now, so the cost of an
// event does not grow with the number of bases.
//
// Field selectors cannot select "the virtual nodes of this env", so the watch
// takes every bound pod; a pod on any other node is reduced to the fields
// the indexes and lookupTopology read before it is stored, so foreign pods
// cost little memory.
type podCache struct {
	informer     cache.SharedIndexInformer
	registration cache.ResourceEventHandlerRegistration
	served       *servedPods
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
	pc := &podCache{informer: informer}
	pc.served = &servedPods{cache: pc, nodes: map[string]struct{}{}, known: map[string]struct{}{}}
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

func (pc *podCache) onAdd(obj any) {
	if pod, ok := obj.(*corev1.Pod); ok {
		pc.served.deliverAddOrUpdate(nil, pod)
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
		pc.served.deliverDelete(oldPod)
		pc.served.deliverAddOrUpdate(nil, newPod)
		return
	}
	pc.served.deliverAddOrUpdate(oldPod, newPod)
}

func (pc *podCache) onDelete(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if pod, ok := obj.(*corev1.Pod); ok {
		pc.served.deliverDelete(pod)
	}
}

// get returns namespace/name from the cache, whichever node it is on; the
// pod belongs to the cache: do not modify it.
func (pc *podCache) get(namespace, name string) (*corev1.Pod, bool) {
	obj, exists, err := pc.informer.GetIndexer().GetByKey(namespace + "/" + name)
	if err != nil || !exists {
		return nil, false
	}
	pod, ok := obj.(*corev1.Pod)
	return pod, ok
}

// onNode returns the cached pods bound to nodeName that match selector and,
// unless empty, namespace. The pods belong to the cache: do not modify them.
func (pc *podCache) onNode(nodeName, namespace string, selector labels.Selector) ([]*corev1.Pod, error) {
	objs, err := pc.informer.GetIndexer().ByIndex(nodeNameIndex, nodeName)
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

// servedPods is the served nodes' view of the shared pod cache, shaped as the
// corev1informers.PodInformer a virtual-kubelet PodController takes: its
// informer delivers, and its lister lists and gets, only the pods bound to a
// node this process serves. It keeps the guarantees of an informer of its
// own: a handler first receives an add for every pod it is given, an update
// or delete of a pod always follows its add, and events reach it one at a
// time.
//
// serve adds a node: its pods reach the handlers as adds, the replay a new
// per-node informer would make. unserve takes it out: no more adds or updates
// of its pods, but the delete of a pod the handlers were given still reaches
// them, so that virtual-kubelet forgets it (it then finds no provider for it,
// and does nothing).
//
// Of the SharedIndexInformer, virtual-kubelet v1.14.1 calls AddEventHandler
// and HasSynced; the others that read the store or change the informer act
// on the shared cache (GetStore, GetIndexer: every pod) or do nothing (Run).
type servedPods struct {
	cache *podCache

	// mu serialises deliveries: the dispatcher's, and the replays of serve
	// and AddEventHandler.
	mu       sync.Mutex
	nodes    map[string]struct{} // served node names
	handlers []cache.ResourceEventHandler
	known    map[string]struct{} // keys of the pods the handlers were given
}

var _ corev1informers.PodInformer = (*servedPods)(nil)

// Informer returns the served pods' event source.
func (s *servedPods) Informer() cache.SharedIndexInformer {
	return servedInformer{SharedIndexInformer: s.cache.informer, s: s}
}

// Lister returns the served pods.
func (s *servedPods) Lister() corev1listers.PodLister { return servedLister{s: s} }

// serve adds nodeName to the served nodes and hands the handlers an add for
// each of its pods, also for those they were given while it was served
// before: the base's new provider must be handed every pod.
func (s *servedPods) serve(nodeName string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodes[nodeName] = struct{}{}
	if len(s.handlers) == 0 {
		return nil // AddEventHandler replays what the cache holds by then
	}
	pods, err := s.cache.onNode(nodeName, "", labels.Everything())
	if err != nil {
		return err
	}
	for _, pod := range pods {
		s.known[pod.Namespace+"/"+pod.Name] = struct{}{}
		for _, h := range s.handlers {
			h.OnAdd(pod, false)
		}
	}
	return nil
}

// unserve takes nodeName out of the served nodes.
func (s *servedPods) unserve(nodeName string) {
	s.mu.Lock()
	delete(s.nodes, nodeName)
	s.mu.Unlock()
}

// isServed reports whether nodeName is served; mu must be held.
func (s *servedPods) isServed(nodeName string) bool {
	_, ok := s.nodes[nodeName]
	return nodeName != "" && ok
}

// list returns the served pods that match selector and, unless empty,
// namespace. The pods belong to the cache: do not modify them.
func (s *servedPods) list(namespace string, selector labels.Selector) ([]*corev1.Pod, error) {
	s.mu.Lock()
	nodes := make([]string, 0, len(s.nodes))
	for n := range s.nodes {
		nodes = append(nodes, n)
	}
	s.mu.Unlock()
	var all []*corev1.Pod
	for _, n := range nodes {
		pods, err := s.cache.onNode(n, namespace, selector)
		if err != nil {
			return nil, err
		}
		all = append(all, pods...)
	}
	return all, nil
}

// get returns the served pod namespace/name from the cache.
func (s *servedPods) get(namespace, name string) (*corev1.Pod, error) {
	pod, ok := s.cache.get(namespace, name)
	if ok {
		s.mu.Lock()
		ok = s.isServed(pod.Spec.NodeName)
		s.mu.Unlock()
	}
	if !ok {
		return nil, apierrors.NewNotFound(corev1.Resource("pod"), name)
	}
	return pod, nil
}

func (s *servedPods) addHandler(h cache.ResourceEventHandler) (cache.ResourceEventHandlerRegistration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Replay the served pods to the new handler, as an informer does. The
	// dispatcher waits on mu meanwhile; the events it then brings for a pod
	// replayed here follow this add (see deliverAddOrUpdate).
	synced := s.cache.synced()
	for n := range s.nodes {
		pods, err := s.cache.onNode(n, "", labels.Everything())
		if err != nil {
			return nil, err
		}
		for _, pod := range pods {
			s.known[pod.Namespace+"/"+pod.Name] = struct{}{}
			h.OnAdd(pod, !synced)
		}
	}
	s.handlers = append(s.handlers, h)
	return servedRegistration{c: s.cache}, nil
}

// deliverAddOrUpdate hands the handlers a pod added to (oldPod nil) or
// changed on a served node. A pod they were not given yet arrives as an add;
// the add of a pod they were given already (replayed from the cache, which
// is ahead of the events) is dropped.
func (s *servedPods) deliverAddOrUpdate(oldPod, newPod *corev1.Pod) {
	key := newPod.Namespace + "/" + newPod.Name
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.handlers) == 0 || !s.isServed(newPod.Spec.NodeName) {
		return
	}
	_, seen := s.known[key]
	switch {
	case !seen:
		s.known[key] = struct{}{}
		for _, h := range s.handlers {
			h.OnAdd(newPod, false)
		}
	case oldPod != nil:
		for _, h := range s.handlers {
			h.OnUpdate(oldPod, newPod)
		}
	}
}

// deliverDelete hands the handlers a pod gone, if they were given it.
func (s *servedPods) deliverDelete(pod *corev1.Pod) {
	key := pod.Namespace + "/" + pod.Name
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, seen := s.known[key]; !seen {
		return
	}
	delete(s.known, key)
	for _, h := range s.handlers {
		h.OnDelete(pod)
	}
}

// servedInformer is the SharedIndexInformer face of servedPods.
type servedInformer struct {
	cache.SharedIndexInformer // the shared informer: see servedPods
	s                         *servedPods
}

func (i servedInformer) AddEventHandler(h cache.ResourceEventHandler) (cache.ResourceEventHandlerRegistration, error) {
	return i.s.addHandler(h)
}

func (i servedInformer) AddEventHandlerWithResyncPeriod(h cache.ResourceEventHandler, _ time.Duration) (cache.ResourceEventHandlerRegistration, error) {
	return i.s.addHandler(h)
}

func (i servedInformer) AddEventHandlerWithOptions(h cache.ResourceEventHandler, _ cache.HandlerOptions) (cache.ResourceEventHandlerRegistration, error) {
	return i.s.addHandler(h)
}

// RemoveEventHandler is not supported: the handlers live as long as the
// process.
func (i servedInformer) RemoveEventHandler(cache.ResourceEventHandlerRegistration) error {
	return errors.New("the served pods' handlers cannot be removed")
}

func (i servedInformer) HasSynced() bool { return i.s.cache.synced() }

// Run and RunWithContext do nothing: the controller runs the shared informer.
func (i servedInformer) Run(<-chan struct{}) {}

func (i servedInformer) RunWithContext(context.Context) {}

// servedRegistration reports a handler synced once the shared cache is:
// addHandler delivers the rest synchronously.
type servedRegistration struct{ c *podCache }

func (r servedRegistration) HasSynced() bool { return r.c.synced() }

func (r servedRegistration) HasSyncedChecker() cache.DoneChecker {
	return r.c.informer.HasSyncedChecker()
}

// servedLister is the PodLister face of servedPods.
type servedLister struct{ s *servedPods }

func (l servedLister) List(selector labels.Selector) ([]*corev1.Pod, error) {
	return l.s.list("", selector)
}

func (l servedLister) Pods(namespace string) corev1listers.PodNamespaceLister {
	return servedNamespaceLister{s: l.s, namespace: namespace}
}

type servedNamespaceLister struct {
	s         *servedPods
	namespace string
}

func (l servedNamespaceLister) List(selector labels.Selector) ([]*corev1.Pod, error) {
	return l.s.list(l.namespace, selector)
}

func (l servedNamespaceLister) Get(name string) (*corev1.Pod, error) {
	return l.s.get(l.namespace, name)
}
