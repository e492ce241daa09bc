package controller

import (
	"context"
	"sync"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/log"
	"github.com/virtual-kubelet/virtual-kubelet/node"
	corev1 "k8s.io/api/core/v1"

	"github.com/moduleops/module-controller/provider"
)

// podRouter is the provider of the process's one virtual-kubelet
// PodController: it hands each pod to the provider of the base whose node the
// pod is bound to. One PodController with one small worker pool then serves
// every base, instead of a controller, its queues and workers per base.
//
// A pod whose node is not served (its base went away, another replica owns
// it, or its node is not registered yet) is not handed to anyone: creates
// and updates of it succeed doing nothing, and the node's pods are handed
// over again once it is served (servedPods.serve). Reporting an error would
// make virtual-kubelet write the pod as failed, for a loss of contact that
// is ours.
type podRouter struct {
	cache *podCache

	mu     sync.RWMutex
	byNode map[string]*provider.Provider
	notify func(*corev1.Pod) // the PodController's status callback, once it runs
}

var (
	_ node.PodLifecycleHandler = (*podRouter)(nil)
	_ node.PodNotifier         = (*podRouter)(nil)
)

func newPodRouter(cache *podCache) *podRouter {
	return &podRouter{cache: cache, byNode: map[string]*provider.Provider{}}
}

// add routes the pods of nodeName to p, whose status changes reach the
// PodController until ctx ends. The PodController must be running (its
// NotifyPods called).
func (r *podRouter) add(ctx context.Context, nodeName string, p *provider.Provider) {
	r.mu.Lock()
	r.byNode[nodeName] = p
	notify := r.notify
	r.mu.Unlock()
	if notify != nil {
		p.NotifyPods(ctx, notify)
	}
}

// remove stops routing the pods of nodeName to p; a newer provider of the
// node stays.
func (r *podRouter) remove(nodeName string, p *provider.Provider) {
	r.mu.Lock()
	if r.byNode[nodeName] == p {
		delete(r.byNode, nodeName)
	}
	r.mu.Unlock()
}

func (r *podRouter) forNode(nodeName string) *provider.Provider {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byNode[nodeName]
}

// forKey finds the provider of pod namespace/name: by the node of the cached
// pod, or, once the pod is gone from the cache (virtual-kubelet asks after a
// deletion), by asking every provider.
func (r *podRouter) forKey(ctx context.Context, namespace, name string) *provider.Provider {
	if pod, ok := r.cache.get(namespace, name); ok {
		return r.forNode(pod.Spec.NodeName)
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, p := range r.byNode {
		if pod, _ := p.GetPod(ctx, namespace, name); pod != nil {
			return p
		}
	}
	return nil
}

// CreatePod hands the pod to its base's provider.
func (r *podRouter) CreatePod(ctx context.Context, pod *corev1.Pod) error {
	p := r.forNode(pod.Spec.NodeName)
	if p == nil {
		log.G(ctx).WithField("pod", pod.Namespace+"/"+pod.Name).WithField("node", pod.Spec.NodeName).Debug("pod's node not served; handed over when it is")
		return nil
	}
	return p.CreatePod(ctx, pod)
}

// UpdatePod hands the changed pod to its base's provider.
func (r *podRouter) UpdatePod(ctx context.Context, pod *corev1.Pod) error {
	p := r.forNode(pod.Spec.NodeName)
	if p == nil {
		return nil
	}
	return p.UpdatePod(ctx, pod)
}

// DeletePod hands the deleted pod to its base's provider.
func (r *podRouter) DeletePod(ctx context.Context, pod *corev1.Pod) error {
	p := r.forNode(pod.Spec.NodeName)
	if p == nil {
		return errdefs.NotFoundf("pod %s/%s: node %s is not served", pod.Namespace, pod.Name, pod.Spec.NodeName)
	}
	return p.DeletePod(ctx, pod)
}

// GetPod returns the pod as its base's provider knows it.
func (r *podRouter) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	p := r.forKey(ctx, namespace, name)
	if p == nil {
		return nil, errdefs.NotFoundf("pod %s/%s is on no served node", namespace, name)
	}
	return p.GetPod(ctx, namespace, name)
}

// GetPodStatus returns the pod's status as its base's provider knows it.
func (r *podRouter) GetPodStatus(ctx context.Context, namespace, name string) (*corev1.PodStatus, error) {
	p := r.forKey(ctx, namespace, name)
	if p == nil {
		return nil, errdefs.NotFoundf("pod %s/%s is on no served node", namespace, name)
	}
	return p.GetPodStatus(ctx, namespace, name)
}

// GetPods returns the pods of every served base.
func (r *podRouter) GetPods(ctx context.Context) ([]*corev1.Pod, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var all []*corev1.Pod
	for _, p := range r.byNode {
		pods, err := p.GetPods(ctx)
		if err != nil {
			return nil, err
		}
		all = append(all, pods...)
	}
	return all, nil
}

// NotifyPods takes the PodController's status callback; providers added from
// now on report to it. virtual-kubelet calls it once, when the PodController
// starts, before any base is served.
func (r *podRouter) NotifyPods(_ context.Context, cb func(*corev1.Pod)) {
	r.mu.Lock()
	r.notify = cb
	r.mu.Unlock()
}
