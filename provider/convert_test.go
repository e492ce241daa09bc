package provider

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/moduleops/module-controller/pkg/api"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// t0 is the fake clock's start in every test of the package.
var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// jarURL is the image of a module container: the biz jar's URL.
func jarURL(name, version string) string {
	return "https://repo.example.com/modules/" + name + "-" + version + "-ark-biz.jar"
}

// bizContainer is a module container with a literal BIZ_VERSION.
func bizContainer(name, version string) corev1.Container {
	return corev1.Container{
		Name:  name,
		Image: jarURL(name, version),
		Env:   []corev1.EnvVar{{Name: "JAVA_OPTS", Value: "-Xmx64m"}, {Name: api.EnvBizVersion, Value: version}},
	}
}

// modulePod is a pod the scheduler bound to the test base's node.
func modulePod(name string, created time.Time, containers ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:         "default",
			Name:              name,
			UID:               types.UID("uid-" + name),
			CreationTimestamp: metav1.NewTime(created),
			Labels:            map[string]string{"module-controller.koupleless.io/component": "module"},
		},
		Spec: corev1.PodSpec{NodeName: "vnode.10.244.0.17.default", Containers: containers},
		Status: corev1.PodStatus{
			Phase:      corev1.PodPending,
			Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(created)}},
		},
	}
}

func withEnv(c corev1.Container, env ...corev1.EnvVar) corev1.Container {
	c.Env = env
	return c
}

func TestBizSpecs(t *testing.T) {
	fieldRef := func(path string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}
	}
	tests := []struct {
		name      string
		container corev1.Container
		want      protocol.BizModel // when valid
		invalid   string            // substring of the reason, when invalid
	}{{
		name:      "literal version",
		container: bizContainer("biz1", "0.0.1-SNAPSHOT"),
		want:      protocol.BizModel{BizName: "biz1", BizVersion: "0.0.1-SNAPSHOT", BizURL: jarURL("biz1", "0.0.1-SNAPSHOT")},
	}, {
		name:      "version is trimmed",
		container: withEnv(bizContainer("biz1", "x"), corev1.EnvVar{Name: api.EnvBizVersion, Value: " 1.2.3 "}),
		want:      protocol.BizModel{BizName: "biz1", BizVersion: "1.2.3", BizURL: jarURL("biz1", "x")},
	}, {
		name:      "file URL",
		container: corev1.Container{Name: "biz1", Image: "file:///opt/modules/biz1.jar", Env: []corev1.EnvVar{{Name: api.EnvBizVersion, Value: "1.0.0"}}},
		want:      protocol.BizModel{BizName: "biz1", BizVersion: "1.0.0", BizURL: "file:///opt/modules/biz1.jar"},
	}, {
		name:      "version from a pod label",
		container: withEnv(bizContainer("biz1", "x"), corev1.EnvVar{Name: api.EnvBizVersion, ValueFrom: fieldRef("metadata.labels['app.example.com/version']")}),
		want:      protocol.BizModel{BizName: "biz1", BizVersion: "2.0.0", BizURL: jarURL("biz1", "x")},
	}, {
		name:      "version from a pod annotation",
		container: withEnv(bizContainer("biz1", "x"), corev1.EnvVar{Name: api.EnvBizVersion, ValueFrom: fieldRef("metadata.annotations['biz-version']")}),
		want:      protocol.BizModel{BizName: "biz1", BizVersion: "3.0.0", BizURL: jarURL("biz1", "x")},
	}, {
		name:      "no BIZ_VERSION",
		container: withEnv(bizContainer("biz1", "x"), corev1.EnvVar{Name: "OTHER", Value: "1"}),
		invalid:   `container "biz1" has no BIZ_VERSION`,
	}, {
		name:      "empty BIZ_VERSION",
		container: withEnv(bizContainer("biz1", "x"), corev1.EnvVar{Name: api.EnvBizVersion, Value: "  "}),
		invalid:   `container "biz1" has no BIZ_VERSION`,
	}, {
		name:      "docker image",
		container: corev1.Container{Name: "web", Image: "nginx:latest", Env: []corev1.EnvVar{{Name: api.EnvBizVersion, Value: "1.0.0"}}},
		invalid:   `image "nginx:latest" is not a biz jar URL`,
	}, {
		name:      "registry image with a port",
		container: corev1.Container{Name: "web", Image: "registry.example.com:5000/team/web:1.0", Env: []corev1.EnvVar{{Name: api.EnvBizVersion, Value: "1.0.0"}}},
		invalid:   "is not a biz jar URL",
	}, {
		name:      "image without a scheme",
		container: corev1.Container{Name: "web", Image: "repo.example.com/web.jar", Env: []corev1.EnvVar{{Name: api.EnvBizVersion, Value: "1.0.0"}}},
		invalid:   "is not a biz jar URL",
	}, {
		name:      "version from a config map",
		container: withEnv(bizContainer("biz1", "x"), corev1.EnvVar{Name: api.EnvBizVersion, ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "versions"}, Key: "biz1"}}}),
		invalid:   `container "biz1" takes BIZ_VERSION from a source a virtual node cannot read`,
	}, {
		name:      "version from a secret",
		container: withEnv(bizContainer("biz1", "x"), corev1.EnvVar{Name: api.EnvBizVersion, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "versions"}, Key: "biz1"}}}),
		invalid:   "cannot read",
	}, {
		name:      "version from a field other than labels and annotations",
		container: withEnv(bizContainer("biz1", "x"), corev1.EnvVar{Name: api.EnvBizVersion, ValueFrom: fieldRef("metadata.name")}),
		invalid:   "cannot read",
	}, {
		name:      "version from a label the pod does not have",
		container: withEnv(bizContainer("biz1", "x"), corev1.EnvVar{Name: api.EnvBizVersion, ValueFrom: fieldRef("metadata.labels['missing']")}),
		invalid:   "cannot read",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := modulePod("p", t0, tt.container)
			pod.Labels = map[string]string{"app.example.com/version": "2.0.0"}
			pod.Annotations = map[string]string{"biz-version": "3.0.0"}

			specs := bizSpecs(pod)

			require.Len(t, specs, 1)
			s := specs[0]
			require.Equal(t, tt.container.Name, s.container)
			if tt.invalid != "" {
				require.Contains(t, s.invalid, tt.invalid)
				require.Empty(t, BizModels(pod), "an invalid container is never sent")
				return
			}
			require.Empty(t, s.invalid)
			require.Equal(t, tt.want, s.biz)
			require.Equal(t, tt.want.BizName+":"+tt.want.BizVersion, s.key())
			require.Equal(t, []protocol.BizModel{tt.want}, BizModels(pod))
		})
	}
}

func TestBizSpecsMultiContainer(t *testing.T) {
	pod := modulePod("p", t0,
		bizContainer("biz1", "0.0.1"),
		corev1.Container{Name: "sidecar", Image: "busybox:1.36"},
		bizContainer("biz2", "0.0.2"),
	)

	specs := bizSpecs(pod)

	require.Len(t, specs, 3, "one spec per container, valid or not")
	require.Equal(t, []string{"biz1", "sidecar", "biz2"}, []string{specs[0].container, specs[1].container, specs[2].container})
	require.Empty(t, specs[0].invalid)
	require.Contains(t, specs[1].invalid, "BIZ_VERSION")
	require.Empty(t, specs[2].invalid)
	require.Equal(t, []protocol.BizModel{
		{BizName: "biz1", BizVersion: "0.0.1", BizURL: jarURL("biz1", "0.0.1")},
		{BizName: "biz2", BizVersion: "0.0.2", BizURL: jarURL("biz2", "0.0.2")},
	}, BizModels(pod), "the valid containers, in container order")
}

// view returns the containerView of biz1:0.0.1 for the given record.
func view(rec *bizRecord) containerView {
	return containerView{spec: bizSpecs(modulePod("p", t0, bizContainer("biz1", "0.0.1")))[0], record: rec, inventory: true}
}

func record(state protocol.BizState, changed time.Time, message string) *bizRecord {
	return &bizRecord{state: state, changed: changed, seen: changed, message: message}
}

const stackTrace = "java.lang.IllegalStateException: biz1 failed to start\n\tat com.example.Biz1Application.main(Biz1Application.java:12)\n\tat com.alipay.sofa.ark.container.model.BizModel.start(BizModel.java:370)"

func TestContainerStatus(t *testing.T) {
	tA := t0.Add(-time.Hour)
	waiting := func(reason, message string) corev1.ContainerState {
		return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}}
	}
	terminated := func(reason, message string, code int32, started, finished time.Time) corev1.ContainerState {
		return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			Reason: reason, Message: message, ExitCode: code, StartedAt: metav1.NewTime(started), FinishedAt: metav1.NewTime(finished),
		}}
	}
	tests := []struct {
		name  string
		view  func(v containerView) containerView
		prev  *corev1.ContainerStatus
		want  corev1.ContainerState
		ready bool
	}{{
		name: "RESOLVED",
		view: func(v containerView) containerView { v.record = record(protocol.BizResolved, tA, ""); return v },
		want: waiting(api.ReasonBizInstalling, "the base is starting the biz"),
	}, {
		name: "UNRESOLVED",
		view: func(v containerView) containerView { v.record = record(protocol.BizUnresolved, tA, ""); return v },
		want: waiting(api.ReasonBizInstalling, "the base is starting the biz"),
	}, {
		name:  "ACTIVATED starts at the state change time",
		view:  func(v containerView) containerView { v.record = record(protocol.BizActivated, tA, ""); return v },
		want:  corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(tA)}},
		ready: true,
	}, {
		name: "DEACTIVATED alone",
		view: func(v containerView) containerView {
			v.record = record(protocol.BizDeactivated, tA, "start but is deactivated")
			return v
		},
		want: waiting(api.ReasonBizInactive, "start but is deactivated"),
	}, {
		name: "DEACTIVATED while another version is ACTIVATED",
		view: func(v containerView) containerView {
			v.record = record(protocol.BizDeactivated, tA, "switch to new biz biz1:0.0.2")
			v.activeOther = "biz1:0.0.2"
			return v
		},
		want: terminated(api.ReasonBizSuperseded, "biz1:0.0.1 was deactivated: biz1:0.0.2 is the active version on this base", 1, tA, tA),
	}, {
		name: "DEACTIVATED after running keeps the start time",
		view: func(v containerView) containerView {
			v.record = record(protocol.BizDeactivated, tA, "")
			v.activeOther = "biz1:0.0.2"
			return v
		},
		prev: &corev1.ContainerStatus{Name: "biz1", RestartCount: 2, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(t0.Add(-2 * time.Hour))}}},
		want: terminated(api.ReasonBizSuperseded, "biz1:0.0.1 was deactivated: biz1:0.0.2 is the active version on this base", 1, t0.Add(-2*time.Hour), tA),
	}, {
		name: "BROKEN shows the first line of the message",
		view: func(v containerView) containerView {
			v.record = record(protocol.BizBroken, tA, "\n"+stackTrace)
			return v
		},
		want: waiting(api.ReasonBizBroken, "java.lang.IllegalStateException: biz1 failed to start"),
	}, {
		name: "BROKEN without a message",
		view: func(v containerView) containerView { v.record = record(protocol.BizBroken, tA, ""); return v },
		want: waiting(api.ReasonBizBroken, "the base reports the biz broken"),
	}, {
		name: "STOPPED",
		view: func(v containerView) containerView { v.record = record(protocol.BizStopped, tA, ""); return v },
		want: terminated(api.ReasonBizStopped, "the base stopped the biz", 0, tA, tA),
	}, {
		name: "unknown state",
		view: func(v containerView) containerView { v.record = record("SLEEPING", tA, ""); return v },
		want: waiting(api.ReasonBizInstalling, `the base reports state "SLEEPING"`),
	}, {
		name: "absent while the install is pending",
		view: func(v containerView) containerView { v.installing = true; return v },
		want: waiting(api.ReasonBizInstalling, "installBiz sent; waiting for the base"),
	}, {
		name: "absent before the base's biz list is known",
		view: func(v containerView) containerView { v.inventory = false; return v },
		want: waiting(api.ReasonWaitingForBase, "waiting for the base's biz list"),
	}, {
		name: "install failure shows the first line",
		view: func(v containerView) containerView { v.failure = stackTrace; return v },
		want: waiting(api.ReasonBizInstallFailed, "java.lang.IllegalStateException: biz1 failed to start"),
	}, {
		name: "install failure before the biz list is known",
		view: func(v containerView) containerView {
			v.failure = "cannot reach the base: timeout"
			v.inventory = false
			return v
		},
		want: waiting(api.ReasonBizInstallFailed, "cannot reach the base: timeout"),
	}, {
		name: "invalid container",
		view: func(v containerView) containerView {
			v.spec.invalid = "container \"biz1\" has no BIZ_VERSION environment variable"
			v.record = record(protocol.BizActivated, tA, "")
			return v
		},
		want: waiting(api.ReasonInvalidBiz, "container \"biz1\" has no BIZ_VERSION environment variable"),
	}, {
		name: "name:version owned by another pod",
		view: func(v containerView) containerView {
			v.ownedBy = "default/first"
			v.record = record(protocol.BizActivated, tA, "")
			return v
		},
		want: waiting(api.ReasonBizOwnedElsewhere, "biz1:0.0.1 is already installed for pod default/first on this base"),
	}, {
		name: "uninstall pending",
		view: func(v containerView) containerView {
			v.record = record(protocol.BizActivated, tA, "")
			v.uninstall = "uninstallBiz sent; waiting for the base"
			return v
		},
		want: waiting(api.ReasonBizUninstalling, "uninstallBiz sent; waiting for the base"),
	}, {
		name: "uninstalled",
		view: func(v containerView) containerView { v.uninstalled = t0; return v },
		prev: &corev1.ContainerStatus{Name: "biz1", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(tA)}}},
		want: terminated(api.ReasonBizUninstalled, "biz1:0.0.1 is no longer on the base", 0, tA, t0),
	}, {
		name: "kept for another pod",
		view: func(v containerView) containerView { v.uninstalled = t0; v.keptFor = "default/second"; return v },
		want: terminated(api.ReasonBizOwnedElsewhere, "biz1:0.0.1 stays on the base for pod default/second", 0, t0, t0),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := containerStatus(tt.view(view(nil)), tt.prev)

			require.Equal(t, "biz1", cs.Name)
			require.Equal(t, jarURL("biz1", "0.0.1"), cs.Image)
			require.Equal(t, tt.want, cs.State)
			require.Equal(t, tt.ready, cs.Ready)
			require.Equal(t, tt.ready, cs.Started != nil && *cs.Started)
			if tt.prev != nil {
				require.Equal(t, tt.prev.RestartCount, cs.RestartCount)
			}
		})
	}
}

// TestPodStatusPhase maps every biz state of the first container, alone and
// next to a second container whose biz is ACTIVATED, to the pod phase and
// conditions.
func TestPodStatusPhase(t *testing.T) {
	tA := t0.Add(-time.Hour)
	now := t0
	tests := []struct {
		name        string
		view        func(v containerView) containerView
		single      corev1.PodPhase
		singleWhy   string // status.reason of the single-container pod
		withRunning corev1.PodPhase
		ready       bool
	}{
		{name: "RESOLVED", view: withRecord(protocol.BizResolved, ""), single: corev1.PodPending, withRunning: corev1.PodRunning},
		{name: "ACTIVATED", view: withRecord(protocol.BizActivated, ""), single: corev1.PodRunning, withRunning: corev1.PodRunning, ready: true},
		{name: "DEACTIVATED alone", view: withRecord(protocol.BizDeactivated, "start but is deactivated"), single: corev1.PodPending, withRunning: corev1.PodRunning},
		{
			name: "DEACTIVATED while another version is ACTIVATED",
			view: func(v containerView) containerView {
				v = withRecord(protocol.BizDeactivated, "")(v)
				v.activeOther = "biz1:0.0.2"
				return v
			},
			single: corev1.PodFailed, singleWhy: api.ReasonBizSuperseded, withRunning: corev1.PodFailed,
		},
		{name: "BROKEN", view: withRecord(protocol.BizBroken, stackTrace), single: corev1.PodPending, withRunning: corev1.PodRunning},
		{name: "STOPPED", view: withRecord(protocol.BizStopped, ""), single: corev1.PodSucceeded, withRunning: corev1.PodRunning},
		{name: "install pending", view: func(v containerView) containerView { v.record, v.installing = nil, true; return v }, single: corev1.PodPending, withRunning: corev1.PodRunning},
		{name: "waiting for the base", view: func(v containerView) containerView { v.record, v.inventory = nil, false; return v }, single: corev1.PodPending, withRunning: corev1.PodRunning},
		{name: "install failed", view: func(v containerView) containerView { v.record, v.failure = nil, "boom"; return v }, single: corev1.PodPending, withRunning: corev1.PodRunning},
		{name: "invalid", view: func(v containerView) containerView { v.spec.invalid = "bad"; return v }, single: corev1.PodPending, withRunning: corev1.PodRunning},
		{name: "uninstalled", view: func(v containerView) containerView { v.uninstalled = now; return v }, single: corev1.PodSucceeded, singleWhy: api.ReasonBizUninstalled, withRunning: corev1.PodRunning},
	}
	second := containerView{
		spec:      bizSpecs(modulePod("p", t0, bizContainer("biz2", "0.0.1")))[0],
		record:    record(protocol.BizActivated, tA, ""),
		inventory: true,
	}
	for _, tt := range tests {
		for _, multi := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/containers=%d", tt.name, map[bool]int{false: 1, true: 2}[multi]), func(t *testing.T) {
				containers := []corev1.Container{bizContainer("biz1", "0.0.1")}
				views := []containerView{tt.view(view(record(protocol.BizActivated, tA, "")))}
				want, ready := tt.single, tt.ready
				if multi {
					containers = append(containers, bizContainer("biz2", "0.0.1"))
					views = append(views, second)
					want = tt.withRunning
				}
				pod := modulePod("p", t0, containers...)

				st := podStatus(pod, views, podBase{ip: "10.244.0.17", reachable: true}, t0.Add(-time.Minute), now)

				require.Equal(t, want, st.Phase)
				require.Len(t, st.ContainerStatuses, len(views))
				if !multi {
					require.Equal(t, tt.singleWhy, st.Reason)
				}
				if want == corev1.PodFailed {
					require.Equal(t, api.ReasonBizSuperseded, st.Reason)
					require.Equal(t, "biz biz1:0.0.1 was deactivated on this base: biz1:0.0.2 is active", st.Message)
				}
				require.Equal(t, boolCondition(ready), podCondition(t, st, corev1.PodReady).Status)
				require.Equal(t, boolCondition(ready), podCondition(t, st, corev1.ContainersReady).Status)
				if !ready {
					require.Equal(t, "containers with unready status: [biz1]", podCondition(t, st, corev1.ContainersReady).Message)
				}
				require.Equal(t, corev1.ConditionTrue, podCondition(t, st, corev1.PodInitialized).Status)
				require.Equal(t, corev1.ConditionTrue, podCondition(t, st, corev1.PodScheduled).Status, "the scheduler's condition is kept")
			})
		}
	}
}

func withRecord(state protocol.BizState, message string) func(containerView) containerView {
	return func(v containerView) containerView {
		v.record = record(state, t0.Add(-time.Hour), message)
		return v
	}
}

func TestPodStatusReadyNeedsRunningPhase(t *testing.T) {
	// Every container ready is not enough when the pod failed.
	active := view(record(protocol.BizActivated, t0, ""))
	superseded := containerView{
		spec:        bizSpecs(modulePod("p", t0, bizContainer("biz2", "0.0.1")))[0],
		record:      record(protocol.BizDeactivated, t0, ""),
		activeOther: "biz2:0.0.2",
		inventory:   true,
	}
	st := podStatus(modulePod("p", t0), []containerView{active, superseded}, podBase{ip: "10.244.0.17", reachable: true}, t0, t0)
	require.Equal(t, corev1.PodFailed, st.Phase)
	require.Equal(t, corev1.ConditionFalse, podCondition(t, st, corev1.PodReady).Status)
	require.Equal(t, "biz biz2:0.0.1 was deactivated on this base: biz2:0.0.2 is active", st.Message)
}

func TestPodStatusAddressesStartTimeAndConditionTimes(t *testing.T) {
	scheduled := t0.Add(-10 * time.Minute)
	start := t0.Add(-5 * time.Minute)
	pod := modulePod("p", scheduled, bizContainer("biz1", "0.0.1"))
	running := []containerView{view(record(protocol.BizActivated, t0.Add(-time.Minute), ""))}

	first := podStatus(pod, running, podBase{ip: "10.244.0.17", reachable: true}, start, t0)

	require.Equal(t, "10.244.0.17", first.HostIP)
	require.Equal(t, "10.244.0.17", first.PodIP)
	require.Equal(t, []corev1.HostIP{{IP: "10.244.0.17"}}, first.HostIPs)
	require.Equal(t, []corev1.PodIP{{IP: "10.244.0.17"}}, first.PodIPs)
	require.NotNil(t, first.StartTime)
	require.Equal(t, start, first.StartTime.Time)
	require.Equal(t, scheduled, podCondition(t, first, corev1.PodScheduled).LastTransitionTime.Time)
	require.Equal(t, t0, podCondition(t, first, corev1.PodReady).LastTransitionTime.Time)

	// Recomputed later from the status last written: nothing moves.
	pod.Status = *first.DeepCopy()
	again := podStatus(pod, running, podBase{ip: "10.244.0.17", reachable: true}, t0.Add(time.Hour), t0.Add(time.Minute))
	require.True(t, equality.Semantic.DeepEqual(first, again), "recomputing an unchanged status changes nothing:\n%v\n%v", first, again)

	// A real change moves only the conditions that changed.
	pod.Status = *again.DeepCopy()
	installing := []containerView{view(record(protocol.BizResolved, t0, ""))}
	changed := podStatus(pod, installing, podBase{ip: "10.244.0.17", reachable: true}, t0.Add(time.Hour), t0.Add(2*time.Minute))
	require.Equal(t, corev1.PodPending, changed.Phase)
	require.Equal(t, start, changed.StartTime.Time, "the start time is kept")
	require.Equal(t, t0.Add(2*time.Minute), podCondition(t, changed, corev1.PodReady).LastTransitionTime.Time)
	require.Equal(t, t0.Add(2*time.Minute), podCondition(t, changed, corev1.ContainersReady).LastTransitionTime.Time)
	require.Equal(t, t0, podCondition(t, changed, corev1.PodInitialized).LastTransitionTime.Time)
	require.Equal(t, scheduled, podCondition(t, changed, corev1.PodScheduled).LastTransitionTime.Time)
}

func TestPodStatusWithoutBaseIP(t *testing.T) {
	st := podStatus(modulePod("p", t0, bizContainer("biz1", "0.0.1")), []containerView{view(nil)}, podBase{reachable: true}, t0, t0)
	require.Empty(t, st.PodIP)
	require.Nil(t, st.PodIPs)
	require.Nil(t, st.HostIPs)
}

func TestFirstLine(t *testing.T) {
	for in, want := range map[string]string{
		"":                     "",
		"one line":             "one line",
		"\n\n  first \nsecond": "first",
		stackTrace:             "java.lang.IllegalStateException: biz1 failed to start",
	} {
		require.Equal(t, want, firstLine(in), "%q", in)
	}
}

func boolCondition(ok bool) corev1.ConditionStatus {
	if ok {
		return corev1.ConditionTrue
	}
	return corev1.ConditionFalse
}

func podCondition(t *testing.T, st corev1.PodStatus, typ corev1.PodConditionType) corev1.PodCondition {
	t.Helper()
	c := findCondition(st.Conditions, typ)
	require.NotNil(t, c, "pod has no %s condition", typ)
	return *c
}
