package provider

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/moduleops/module-controller/pkg/api"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// bizURLSchemes are the jar URL schemes a base can open (java.net.URL).
var bizURLSchemes = map[string]bool{"http": true, "https": true, "file": true, "ftp": true, "jar": true}

// bizSpec is one container read as a biz: the model to send, or why the
// container cannot be a biz.
type bizSpec struct {
	container string
	biz       protocol.BizModel
	invalid   string
}

// key is the biz's name:version.
func (s bizSpec) key() string { return s.biz.Key() }

// bizSpecs reads every container of pod as a biz. Containers that cannot be a
// biz carry the reason in invalid and are never sent to a base.
func bizSpecs(pod *corev1.Pod) []bizSpec {
	specs := make([]bizSpec, 0, len(pod.Spec.Containers))
	for _, c := range pod.Spec.Containers {
		s := bizSpec{container: c.Name, biz: protocol.BizModel{BizName: c.Name, BizURL: c.Image}}
		version, err := bizVersion(pod, c)
		switch {
		case err != nil:
			s.invalid = err.Error()
		case version == "":
			s.invalid = fmt.Sprintf("container %q has no %s environment variable; set it to the biz version", c.Name, api.EnvBizVersion)
		case !validBizURL(c.Image):
			s.invalid = fmt.Sprintf("container %q image %q is not a biz jar URL (http, https, file, ftp or jar)", c.Name, c.Image)
		}
		s.biz.BizVersion = version
		specs = append(specs, s)
	}
	return specs
}

// BizModels returns the bizs of a pod's containers that can be bizs.
func BizModels(pod *corev1.Pod) []protocol.BizModel {
	var out []protocol.BizModel
	for _, s := range bizSpecs(pod) {
		if s.invalid == "" {
			out = append(out, s.biz)
		}
	}
	return out
}

// bizVersion returns the container's BIZ_VERSION: a literal value, or a
// field reference to one of the pod's labels or annotations.
func bizVersion(pod *corev1.Pod, c corev1.Container) (string, error) {
	for _, e := range c.Env {
		if e.Name != api.EnvBizVersion {
			continue
		}
		if e.ValueFrom == nil {
			return strings.TrimSpace(e.Value), nil
		}
		if ref := e.ValueFrom.FieldRef; ref != nil {
			if v, ok := podField(pod, ref.FieldPath); ok {
				return v, nil
			}
		}
		return "", fmt.Errorf("container %q takes %s from a source a virtual node cannot read; use a literal value or a pod label/annotation field reference", c.Name, api.EnvBizVersion)
	}
	return "", nil
}

// podField resolves metadata.labels['k'] and metadata.annotations['k'].
func podField(pod *corev1.Pod, path string) (string, bool) {
	for prefix, m := range map[string]map[string]string{"metadata.labels": pod.Labels, "metadata.annotations": pod.Annotations} {
		if rest, ok := strings.CutPrefix(path, prefix+"['"); ok {
			if k, ok := strings.CutSuffix(rest, "']"); ok {
				v, found := m[k]
				return v, found
			}
		}
	}
	return "", false
}

// validBizURL reports whether image is a URL a base can download a jar from.
func validBizURL(image string) bool {
	u, err := url.Parse(image)
	if err != nil || !bizURLSchemes[strings.ToLower(u.Scheme)] {
		return false
	}
	return u.Host != "" || u.Path != "" || u.Opaque != ""
}

// bizRecord is what the base last reported about one name:version.
type bizRecord struct {
	state   protocol.BizState
	changed time.Time // state change time on the base clock
	reason  string
	message string
	seen    time.Time // publish time of the message that reported it
}

// containerView is everything the status of one container depends on.
type containerView struct {
	spec        bizSpec
	record      *bizRecord // nil: the base does not have the biz
	activeOther string     // another version of the name that is ACTIVATED, if any
	ownedBy     string     // another pod that owns this name:version, if any
	installing  bool       // an install was sent and not answered yet
	failure     string     // last install failure reported by the base
	inventory   bool       // the base's biz list is known
	uninstalled time.Time  // when the deleted pod's biz was confirmed gone
	keptFor     string     // deleted pod: the live pod its biz stays on the base for
	uninstall   string     // an uninstall is pending; its failure, if any
}

// superseded reports whether the biz was deactivated by another version.
func (v containerView) superseded() bool {
	return v.record != nil && v.record.state == protocol.BizDeactivated && v.activeOther != ""
}

// containerStatus maps a containerView to a Kubernetes container status.
func containerStatus(v containerView, prev *corev1.ContainerStatus) corev1.ContainerStatus {
	cs := corev1.ContainerStatus{
		Name:    v.spec.container,
		Image:   v.spec.biz.BizURL,
		ImageID: v.spec.biz.BizURL,
	}
	if prev != nil {
		cs.RestartCount = prev.RestartCount
	}
	waiting := func(reason, msg string) corev1.ContainerStatus {
		cs.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}
		return cs
	}
	terminated := func(reason, msg string, code int32, at time.Time) corev1.ContainerStatus {
		cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: code, Reason: reason, Message: msg,
			StartedAt: startedAt(prev, at), FinishedAt: metav1.NewTime(at),
		}}
		return cs
	}
	switch {
	case v.spec.invalid != "":
		return waiting(api.ReasonInvalidBiz, v.spec.invalid)
	case v.ownedBy != "":
		return waiting(api.ReasonBizOwnedElsewhere, fmt.Sprintf("%s is already installed for pod %s on this base", v.spec.key(), v.ownedBy))
	case !v.uninstalled.IsZero() && v.keptFor != "":
		return terminated(api.ReasonBizOwnedElsewhere, fmt.Sprintf("%s stays on the base for pod %s", v.spec.key(), v.keptFor), 0, v.uninstalled)
	case !v.uninstalled.IsZero():
		// Uninstalled, or found absent: either way it is off the base.
		return terminated(api.ReasonBizUninstalled, v.spec.key()+" is no longer on the base", 0, v.uninstalled)
	case v.superseded():
		return terminated(api.ReasonBizSuperseded, fmt.Sprintf("%s was deactivated: %s is the active version on this base", v.spec.key(), v.activeOther), 1, v.record.changed)
	case v.uninstall != "":
		return waiting(api.ReasonBizUninstalling, v.uninstall)
	case v.record == nil && v.failure != "":
		return waiting(api.ReasonBizInstallFailed, firstLine(v.failure))
	case v.record == nil && !v.inventory:
		return waiting(api.ReasonWaitingForBase, "waiting for the base's biz list")
	case v.record == nil:
		return waiting(api.ReasonBizInstalling, "installBiz sent; waiting for the base")
	}
	r := v.record
	switch r.state {
	case protocol.BizActivated:
		cs.Ready, cs.Started = true, ptr(true)
		cs.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(r.changed)}}
		return cs
	case protocol.BizResolved, protocol.BizUnresolved:
		return waiting(api.ReasonBizInstalling, "the base is starting the biz")
	case protocol.BizBroken:
		return waiting(api.ReasonBizBroken, firstLine(orDefault(r.message, "the base reports the biz broken")))
	case protocol.BizStopped:
		return terminated(api.ReasonBizStopped, orDefault(r.message, "the base stopped the biz"), 0, r.changed)
	case protocol.BizDeactivated:
		return waiting(api.ReasonBizInactive, orDefault(r.message, "the biz is installed but not active"))
	default:
		return waiting(api.ReasonBizInstalling, fmt.Sprintf("the base reports state %q", r.state))
	}
}

// podBase is what a pod's status takes from its base.
type podBase struct {
	// ip is the base's address, the pod's IP.
	ip string
	// reachable is false while the base misses its heartbeat window.
	reachable bool
}

// podStatus maps container views to a pod status. prev is the status last
// written, whose condition transition times and start time are kept.
func podStatus(pod *corev1.Pod, views []containerView, base podBase, start, now time.Time) corev1.PodStatus {
	baseIP := base.ip
	prev := &pod.Status
	st := corev1.PodStatus{
		HostIP:    baseIP,
		PodIP:     baseIP,
		StartTime: ptr(metav1.NewTime(start)),
	}
	if baseIP != "" {
		st.HostIPs = []corev1.HostIP{{IP: baseIP}}
		st.PodIPs = []corev1.PodIP{{IP: baseIP}}
	}
	if prev.StartTime != nil {
		st.StartTime = prev.StartTime.DeepCopy()
	}
	var running, ready, terminated, uninstalled, uninstalling int
	var deactivated *containerView
	for i := range views {
		v := &views[i]
		cs := containerStatus(*v, findContainerStatus(prev.ContainerStatuses, v.spec.container))
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			terminated++
		}
		if cs.Ready {
			ready++
		}
		if !v.uninstalled.IsZero() {
			uninstalled++
		}
		if v.uninstall != "" {
			uninstalling++
		}
		if v.superseded() && deactivated == nil {
			deactivated = v
		}
	}
	n := len(views)
	allReady := n > 0 && ready == n
	switch {
	case deactivated != nil:
		st.Phase = corev1.PodFailed
		st.Reason = api.ReasonBizSuperseded
		st.Message = fmt.Sprintf("biz %s was deactivated on this base: %s is active", deactivated.spec.key(), deactivated.activeOther)
	case n > 0 && terminated == n && uninstalled == n:
		st.Phase = corev1.PodSucceeded
		st.Reason = api.ReasonBizUninstalled
		st.Message = "the pod's bizs are off the base or kept for other pods"
	case n > 0 && terminated == n:
		st.Phase = corev1.PodSucceeded
	case running > 0 || (terminated > 0 && terminated < n):
		st.Phase = corev1.PodRunning
	case uninstalling > 0 && prev.Phase == corev1.PodRunning:
		// A pod does not go back to Pending: while its bizs are being
		// uninstalled it stays Running (not Ready), as a pod whose kubelet is
		// stopping its containers does.
		st.Phase = corev1.PodRunning
	default:
		st.Phase = corev1.PodPending
	}
	notReady := notReadyMessage(st.ContainerStatuses)
	st.Conditions = []corev1.PodCondition{
		condition(corev1.PodReadyToStartContainers, true, "", ""),
		condition(corev1.PodInitialized, true, "", ""),
		condition(corev1.ContainersReady, allReady, "ContainersNotReady", notReady),
		condition(corev1.PodReady, allReady && st.Phase == corev1.PodRunning, "ContainersNotReady", notReady),
	}
	if !base.reachable && st.Phase == corev1.PodRunning {
		// As the node lifecycle controller does for a silent kubelet: the
		// modules' state is unknown, so the pod stops counting as available
		// (Services, Deployments, PodDisruptionBudgets) until the base is back.
		st.Conditions[3] = condition(corev1.PodReady, false, api.ReasonBaseUnreachable, "the base stopped reporting; its modules' state is unknown")
	}
	if sched := findCondition(prev.Conditions, corev1.PodScheduled); sched != nil {
		st.Conditions = append(st.Conditions, *sched)
	}
	for i := range st.Conditions {
		c := &st.Conditions[i]
		c.LastTransitionTime = metav1.NewTime(now)
		if p := findCondition(prev.Conditions, c.Type); p != nil && p.Status == c.Status {
			c.LastTransitionTime = p.LastTransitionTime
		}
	}
	return st
}

// condition builds a pod condition; reason and message apply when false.
func condition(t corev1.PodConditionType, ok bool, reason, message string) corev1.PodCondition {
	if ok {
		return corev1.PodCondition{Type: t, Status: corev1.ConditionTrue}
	}
	return corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: reason, Message: message}
}

// notReadyMessage lists the containers that are not ready, as kubelet does.
func notReadyMessage(statuses []corev1.ContainerStatus) string {
	var names []string
	for _, cs := range statuses {
		if !cs.Ready {
			names = append(names, cs.Name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return "containers with unready status: [" + strings.Join(names, " ") + "]"
}

func findContainerStatus(statuses []corev1.ContainerStatus, name string) *corev1.ContainerStatus {
	for i := range statuses {
		if statuses[i].Name == name {
			return &statuses[i]
		}
	}
	return nil
}

func findCondition(conds []corev1.PodCondition, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

// startedAt keeps the running start time of a container that terminates.
func startedAt(prev *corev1.ContainerStatus, fallback time.Time) metav1.Time {
	if prev != nil && prev.State.Running != nil {
		return prev.State.Running.StartedAt
	}
	return metav1.NewTime(fallback)
}

// firstLine returns the first non-empty line of s: the summary of a Java
// stack trace.
func firstLine(s string) string {
	for line := range strings.SplitSeq(s, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			return line
		}
	}
	return ""
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func ptr[T any](v T) *T { return &v }
