package provider

import (
	"context"
	"reflect"
	"sort"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/log"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/moduleops/module-controller/pkg/api"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// podEntry is one module pod bound to the base.
type podEntry struct {
	key      string // namespace/name
	pod      *corev1.Pod
	specs    []bizSpec
	start    time.Time
	seq      uint64 // arrival order on this provider, to order pods created in the same second
	deleting bool
	gone     map[string]time.Time // deleting pod: name:version confirmed gone, and when
	released bool

	notified *corev1.PodStatus // last status handed to virtual-kubelet
	reasons  map[string]string // container → state reason last recorded as an Event
	uid      types.UID
}

// podKey returns namespace/name, the key virtual-kubelet uses.
func podKey(namespace, name string) string { return namespace + "/" + name }

// live reports whether the pod still wants its bizs on the base.
func (e *podEntry) live() bool { return !e.deleting }

// CreatePod implements node.PodLifecycleHandler: the pod's bizs are installed
// by the next reconcile, which runs at once.
func (p *Provider) CreatePod(ctx context.Context, pod *corev1.Pod) error {
	p.mu.Lock()
	key := podKey(pod.Namespace, pod.Name)
	e, ok := p.pods[key]
	if !ok || e.uid != pod.UID {
		p.podSeq++
		e = &podEntry{key: key, start: p.clock.Now(), seq: p.podSeq, reasons: map[string]string{}, uid: pod.UID}
		p.pods[key] = e
	}
	e.pod = pod.DeepCopy()
	e.specs = bizSpecs(pod)
	p.mu.Unlock()
	log.G(ctx).WithField("pod", key).Debug("module pod accepted")
	p.sync()
	return nil
}

// UpdatePod implements node.PodLifecycleHandler. A changed image replaces the
// biz: the old one is uninstalled, then the new one installed.
func (p *Provider) UpdatePod(ctx context.Context, pod *corev1.Pod) error {
	return p.CreatePod(ctx, pod)
}

// DeletePod implements node.PodLifecycleHandler: the pod's bizs are
// uninstalled (exactly its name:versions, and only those no other live pod
// claims), and the pod is released once the base confirms. Repeated calls send
// nothing new.
func (p *Provider) DeletePod(ctx context.Context, pod *corev1.Pod) error {
	p.mu.Lock()
	e, ok := p.pods[podKey(pod.Namespace, pod.Name)]
	if !ok {
		p.mu.Unlock()
		return errdefs.NotFoundf("pod %s/%s is not on this base", pod.Namespace, pod.Name)
	}
	if !e.deleting {
		e.deleting = true
		e.gone = map[string]time.Time{}
		e.pod = pod.DeepCopy()
		log.G(ctx).WithField("pod", e.key).Debug("module pod deleted; uninstalling its bizs")
	}
	p.mu.Unlock()
	p.sync()
	return nil
}

// GetPod implements node.PodLifecycleHandler.
func (p *Provider) GetPod(_ context.Context, namespace, name string) (*corev1.Pod, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.pods[podKey(namespace, name)]
	if !ok {
		return nil, errdefs.NotFoundf("pod %s/%s is not on this base", namespace, name)
	}
	return p.podWithStatus(e), nil
}

// GetPodStatus implements node.PodLifecycleHandler.
func (p *Provider) GetPodStatus(ctx context.Context, namespace, name string) (*corev1.PodStatus, error) {
	pod, err := p.GetPod(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return &pod.Status, nil
}

// GetPods implements node.PodLifecycleHandler.
func (p *Provider) GetPods(context.Context) ([]*corev1.Pod, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pods := make([]*corev1.Pod, 0, len(p.pods))
	for _, e := range p.pods {
		pods = append(pods, p.podWithStatus(e))
	}
	return pods, nil
}

// NotifyPods implements node.PodNotifier: cb receives each pod whose status
// changed, latest state first, from one goroutine that ends with ctx.
func (p *Provider) NotifyPods(ctx context.Context, cb func(*corev1.Pod)) {
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-p.podsChanged:
				for _, pod := range p.changedPods() {
					cb(pod)
				}
			}
		}
	}()
}

// changedPods returns the pods whose status differs from what was last
// handed out, and records the Events their containers' transitions call for.
func (p *Provider) changedPods() []*corev1.Pod {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*corev1.Pod
	for _, e := range p.pods {
		if e.released || p.keepsReportedStatus(e) {
			continue
		}
		// Most wake-ups change nothing (a biz list that says what the last
		// one said): compare the status before copying the pod.
		st := p.statusOf(e)
		if e.notified != nil && reflect.DeepEqual(*e.notified, st) { // both built here: no semantic equality needed
			continue
		}
		pod := e.pod.DeepCopy()
		pod.Status = st
		e.notified = st.DeepCopy()
		p.recordTransitions(e, pod)
		out = append(out, pod)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// keepsReportedStatus reports whether the pod keeps the status the API
// server has: a pod whose containers were already reported on (by this
// process before a restart, or by another replica) while the base's biz list
// is not known yet. Absence of data is not a change of state; the list, asked
// for as soon as the base is served, is the source of truth.
func (p *Provider) keepsReportedStatus(e *podEntry) bool {
	return !p.inventory && e.notified == nil && len(e.pod.Status.ContainerStatuses) > 0
}

// podWithStatus returns a copy of the pod with its current status.
func (p *Provider) podWithStatus(e *podEntry) *corev1.Pod {
	pod := e.pod.DeepCopy()
	if p.keepsReportedStatus(e) {
		return pod
	}
	pod.Status = p.statusOf(e)
	return pod
}

// statusOf returns the pod's current status. podStatus only reads the pod it
// is given, so a shallow copy of the pod carries the previous status.
func (p *Provider) statusOf(e *podEntry) corev1.PodStatus {
	shallow := *e.pod
	if e.notified != nil {
		prev := e.notified.DeepCopy()
		// Keep the scheduler's condition from the API server's copy.
		if sched := findCondition(e.pod.Status.Conditions, corev1.PodScheduled); sched != nil && findCondition(prev.Conditions, corev1.PodScheduled) == nil {
			prev.Conditions = append(prev.Conditions, *sched)
		}
		shallow.Status = *prev
	}
	return podStatus(&shallow, p.views(e), p.podBase(), e.start, p.clock.Now())
}

// views returns what each container's status depends on.
func (p *Provider) views(e *podEntry) []containerView {
	owners := p.owners()
	views := make([]containerView, 0, len(e.specs))
	for _, s := range e.specs {
		v := containerView{spec: s, inventory: p.inventory}
		if s.invalid != "" {
			views = append(views, v)
			continue
		}
		key := s.key()
		if owner := owners[key]; owner != "" && owner != e.key && e.live() {
			v.ownedBy = owner
			views = append(views, v)
			continue
		}
		v.record = p.bizs[key]
		v.activeOther = p.activeVersion(s.biz.BizName, s.biz.BizVersion)
		if a := p.installs[key]; a != nil {
			v.installing = a.retryAt.IsZero()
			v.failure = a.failure
		}
		if e.deleting {
			if at, ok := e.gone[key]; ok {
				v.uninstalled = at
				if owner := owners[key]; owner != "" && owner != e.key {
					v.keptFor = owner
				}
			} else if a := p.uninstalls[key]; a != nil {
				v.uninstall = orDefault(a.failure, "uninstallBiz sent; waiting for the base")
			} else if p.installs[key] != nil {
				v.uninstall = "waiting for the base to answer installBiz before uninstalling"
			}
		}
		views = append(views, v)
	}
	return views
}

// activeVersion returns name:version of another ACTIVATED version of name:
// the most recently activated one, so that the pod status names the same
// version each time it is computed even when several are active.
func (p *Provider) activeVersion(name, version string) string {
	active := ""
	var at time.Time
	for key, r := range p.bizs {
		n, v := splitKey(key)
		if n != name || v == version || r.state != protocol.BizActivated {
			continue
		}
		if active == "" || r.changed.After(at) || (r.changed.Equal(at) && key < active) {
			active, at = key, r.changed
		}
	}
	return active
}

// owners maps each name:version to the live pod that owns it on this base:
// the oldest live pod whose valid container asks for it. Creation timestamps
// have a resolution of one second; within one second the pod this provider
// saw first is the older, so that a pod created right after the owner never
// takes its biz over.
func (p *Provider) owners() map[string]string {
	owners := map[string]string{}
	first := map[string]*podEntry{}
	for _, e := range p.pods {
		if !e.live() {
			continue
		}
		for _, s := range e.specs {
			if s.invalid != "" {
				continue
			}
			k := s.key()
			if cur, ok := first[k]; !ok || e.olderThan(cur) {
				owners[k], first[k] = e.key, e
			}
		}
	}
	return owners
}

// olderThan orders pods by creation time, then by arrival on this provider.
func (e *podEntry) olderThan(o *podEntry) bool {
	t, u := e.pod.CreationTimestamp.Time, o.pod.CreationTimestamp.Time
	if !t.Equal(u) {
		return t.Before(u)
	}
	return e.seq < o.seq
}

// recordTransitions records an Event for each container whose state reason
// changed in a way a user wants to see.
func (p *Provider) recordTransitions(e *podEntry, pod *corev1.Pod) {
	for _, cs := range pod.Status.ContainerStatuses {
		reason, message, warn := "", "", false
		switch {
		case cs.State.Running != nil:
			reason, message = api.ReasonBizInstalled, "biz "+cs.Name+" is active on the base"
		case cs.State.Terminated != nil:
			reason, message = cs.State.Terminated.Reason, cs.State.Terminated.Message
			warn = reason == api.ReasonBizSuperseded
		case cs.State.Waiting != nil:
			reason, message = cs.State.Waiting.Reason, cs.State.Waiting.Message
			switch reason {
			case api.ReasonBizInstallFailed, api.ReasonBizBroken:
				warn = true
				message = p.fullMessage(e, cs.Name, message)
			case api.ReasonInvalidBiz, api.ReasonBizOwnedElsewhere:
				warn = true
			case api.ReasonBizInstalling:
			default:
				reason = ""
			}
		}
		if reason == "" || e.reasons[cs.Name] == reason {
			continue
		}
		e.reasons[cs.Name] = reason
		kind := corev1.EventTypeNormal
		if warn {
			kind = corev1.EventTypeWarning
		}
		p.cfg.Events.Event(pod, kind, reason, message)
	}
}

// fullMessage returns the whole text the base sent about a container's biz
// (an install failure, or the message of its BROKEN state, usually a Java
// stack trace), which the Event carries while the container status shows
// its first line.
func (p *Provider) fullMessage(e *podEntry, container, fallback string) string {
	for _, s := range e.specs {
		if s.container != container || s.invalid != "" {
			continue
		}
		if a := p.installs[s.key()]; a != nil && a.failure != "" {
			return a.failure
		}
		if r := p.bizs[s.key()]; r != nil && r.state == protocol.BizBroken && r.message != "" {
			return r.message
		}
	}
	return fallback
}
