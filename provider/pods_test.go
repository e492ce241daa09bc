package provider

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/moduleops/module-controller/pkg/api"
	"github.com/moduleops/module-controller/pkg/protocol"
	"github.com/moduleops/module-controller/tunnel/tunneltest"
)

const (
	testBase     = "10.244.0.17"
	testNodeName = "vnode.10.244.0.17.default"
	retryBase    = 2 * time.Second
	installWait  = 30 * time.Second
)

// recordedEvent is one Event, with its object as "pod/<ns>/<name>" or
// "node/<name>".
type recordedEvent struct {
	Object, Type, Reason, Message string
}

// eventRecorder records Events for the test to inspect.
type eventRecorder struct {
	mu     sync.Mutex
	events []recordedEvent
}

func (r *eventRecorder) Event(obj runtime.Object, eventtype, reason, message string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, recordedEvent{Object: objectName(obj), Type: eventtype, Reason: reason, Message: message})
}

func (r *eventRecorder) Eventf(obj runtime.Object, eventtype, reason, messageFmt string, args ...any) {
	r.Event(obj, eventtype, reason, fmt.Sprintf(messageFmt, args...))
}

// about returns the Events recorded on object with reason.
func (r *eventRecorder) about(object, reason string) []recordedEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []recordedEvent
	for _, e := range r.events {
		if e.Object == object && e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

func objectName(obj runtime.Object) string {
	switch o := obj.(type) {
	case *corev1.Pod:
		return "pod/" + o.Namespace + "/" + o.Name
	case *corev1.ObjectReference:
		return strings.ToLower(o.Kind) + "/" + o.Name
	default:
		return fmt.Sprintf("%T", obj)
	}
}

type counter struct{ n atomic.Int64 }

func (c *counter) Inc() { c.n.Add(1) }

// harness is a provider of one base wired to the fake tunnel, a fake clock
// and recording fakes. Most tests drive the command dispatcher themselves
// (flush) so that "nothing was sent" is a deterministic assertion: every
// command a reconcile decided has been handed to the tunnel when flush
// returns. TestRunAndNotifyPods runs the real Run and NotifyPods goroutines.
type harness struct {
	t       *testing.T
	p       *Provider
	tun     *tunneltest.Tunnel
	clk     *clocktesting.FakeClock
	events  *eventRecorder
	orphans *counter
	sent    int // tunnel commands already returned by flush

	mu         sync.Mutex
	released   []string
	releaseErr error
	releases   chan string // each released pod's name, for tests that wait for one
}

func newHarness(t *testing.T, opts ...func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, tun: tunneltest.New(), clk: clocktesting.NewFakeClock(t0), events: &eventRecorder{}, orphans: &counter{}, releases: make(chan string, 64)}
	cfg := Config{
		Node:           testNodeConfig(testBase),
		Base:           BaseInfo{Status: heartbeat(testBase)},
		Readiness:      Readiness{Reachable: true},
		Tunnel:         h.tun,
		Events:         h.events,
		Clock:          h.clk,
		ReleasePod:     h.release,
		InstallTimeout: installWait,
		RetryBase:      retryBase,
		RetryMax:       time.Minute,
		CommandTimeout: time.Second,
		OrphanBizs:     h.orphans,
	}
	for _, o := range opts {
		o(&cfg)
	}
	p, err := New(cfg)
	require.NoError(t, err)
	h.p = p
	return h
}

func (h *harness) release(_ context.Context, pod *corev1.Pod) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.releaseErr; err != nil {
		h.releaseErr = nil
		return err
	}
	h.released = append(h.released, pod.Name)
	select {
	case h.releases <- pod.Name:
	default:
	}
	return nil
}

func (h *harness) releasedPods() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.released...)
}

// flush sends every command decided so far, as Run would, and returns the
// ones the tunnel received since the last flush, summarised.
func (h *harness) flush() []string {
	h.t.Helper()
	for cmds := h.p.cmds.take(); len(cmds) > 0; cmds = h.p.cmds.take() {
		for _, c := range cmds {
			h.p.execute(h.t.Context(), c)
		}
	}
	all := h.tun.Commands()
	var out []string
	for _, c := range all[h.sent:] {
		require.Equal(h.t, testBase, c.BaseID)
		out = append(out, summary(c))
	}
	h.sent = len(all)
	return out
}

// requireSent flushes and requires exactly these commands, in any order.
func (h *harness) requireSent(want ...string) {
	h.t.Helper()
	got := h.flush()
	if len(want) == 0 {
		require.Empty(h.t, got, "no command expected")
		return
	}
	require.ElementsMatch(h.t, want, got)
}

func summary(c tunneltest.Command) string {
	switch c.Name {
	case protocol.CommandInstallBiz:
		s := "installBiz " + c.Biz.Key() + " " + c.Biz.BizURL
		if c.Biz.InstallStrategy != "" {
			s += " strategy=" + c.Biz.InstallStrategy
		}
		return s
	case protocol.CommandUninstallBiz:
		return "uninstallBiz " + c.Biz.Key()
	default:
		return c.Name
	}
}

func installCmd(name, version string) string {
	return "installBiz " + protocol.BizKey(name, version) + " " + jarURL(name, version)
}

func uninstallCmd(name, version string) string {
	return "uninstallBiz " + protocol.BizKey(name, version)
}

// at moves the clock a little and returns the publish time of a message the
// base sends now, so that messages are strictly ordered.
func (h *harness) at() time.Time {
	h.clk.Step(10 * time.Millisecond)
	return h.clk.Now()
}

func (h *harness) list(bizs ...protocol.SimpleBizInfo) { h.p.OnBizStatus(bizs, h.at()) }

func (h *harness) reply(op protocol.BizOperation) { h.p.OnBizOperation(op, h.at()) }

func (h *harness) create(pods ...*corev1.Pod) {
	h.t.Helper()
	for _, pod := range pods {
		require.NoError(h.t, h.p.CreatePod(h.t.Context(), pod))
	}
}

func (h *harness) update(pod *corev1.Pod) {
	h.t.Helper()
	require.NoError(h.t, h.p.UpdatePod(h.t.Context(), pod))
}

func (h *harness) delete(pod *corev1.Pod) {
	h.t.Helper()
	require.NoError(h.t, h.p.DeletePod(h.t.Context(), pod))
}

// resyncAt sets the clock and runs the periodic reconcile.
func (h *harness) resyncAt(at time.Time) {
	h.clk.SetTime(at)
	h.p.Resync()
}

// notify hands out the changed pod statuses, as the NotifyPods goroutine does.
func (h *harness) notify() []*corev1.Pod { return h.p.changedPods() }

func (h *harness) status(name string) corev1.PodStatus {
	h.t.Helper()
	pod, err := h.p.GetPod(h.t.Context(), "default", name)
	require.NoError(h.t, err)
	return pod.Status
}

// container returns the status of one container of a pod.
func (h *harness) container(pod, name string) corev1.ContainerStatus {
	h.t.Helper()
	cs := findContainerStatus(h.status(pod).ContainerStatuses, name)
	require.NotNil(h.t, cs, "pod %s has no status for container %s", pod, name)
	return *cs
}

// reason is "Running", or the waiting or terminated reason of a container.
func (h *harness) reason(pod, container string) string {
	h.t.Helper()
	return stateReason(h.container(pod, container))
}

func stateReason(cs corev1.ContainerStatus) string {
	switch {
	case cs.State.Running != nil:
		return "Running"
	case cs.State.Waiting != nil:
		return cs.State.Waiting.Reason
	case cs.State.Terminated != nil:
		return cs.State.Terminated.Reason
	}
	return ""
}

func (h *harness) requireGone(name string) {
	h.t.Helper()
	_, err := h.p.GetPod(h.t.Context(), "default", name)
	require.True(h.t, errdefs.IsNotFound(err), "pod %s should be gone, got %v", name, err)
}

// requireRunning requires the pod Running and Ready.
func (h *harness) requireRunning(name string) {
	h.t.Helper()
	st := h.status(name)
	require.Equal(h.t, corev1.PodRunning, st.Phase, "pod %s: %+v", name, st.ContainerStatuses)
	require.Equal(h.t, corev1.ConditionTrue, podCondition(h.t, st, corev1.PodReady).Status)
}

// listed is one entry of the base's biz list.
func listed(name, version string, state protocol.BizState, changed time.Time) protocol.SimpleBizInfo {
	return listedWith(name, version, state, changed, "STARTED", "")
}

func listedWith(name, version string, state protocol.BizState, changed time.Time, reason, message string) protocol.SimpleBizInfo {
	return protocol.SimpleBizInfo{
		Name: name, Version: version, State: strings.ToLower(string(state)),
		LatestStateRecord: &protocol.StateRecord{ChangeTime: changed.UnixMilli(), State: string(state), Reason: reason, Message: message},
	}
}

func bizInfo(name, version string, state protocol.BizState, changed time.Time, message string) protocol.BizInfo {
	return protocol.BizInfo{
		BizName: name, BizVersion: version, BizState: string(state), Identity: protocol.BizKey(name, version),
		BizStateRecords: []protocol.StateRecord{
			{ChangeTime: changed.Add(-2 * time.Second).UnixMilli(), State: string(protocol.BizResolved), Reason: "CREATED"},
			{ChangeTime: changed.UnixMilli(), State: string(state), Reason: "STARTED", Message: message},
		},
	}
}

// installOK is a successful install reply whose biz ended in state.
func installOK(name, version string, state protocol.BizState, changed time.Time, message string) protocol.BizOperation {
	return protocol.BizOperation{
		Command: protocol.CommandInstallBiz, BizName: name, BizVersion: version,
		Response: protocol.Output[protocol.ClientResponse]{Code: protocol.CodeSuccess, Data: protocol.ClientResponse{
			Code:     protocol.CodeSuccess,
			Message:  "Install Biz: " + protocol.BizKey(name, version) + " success, cost: 2847 ms, started at: 10:10:04,495",
			BizInfos: []protocol.BizInfo{bizInfo(name, version, state, changed, message)},
		}},
	}
}

func installRepeat(name, version string) protocol.BizOperation {
	return protocol.BizOperation{
		Command: protocol.CommandInstallBiz, BizName: name, BizVersion: version,
		Response: protocol.Output[protocol.ClientResponse]{Code: protocol.CodeFailed, Message: "install biz not success!", Data: protocol.ClientResponse{
			Code: protocol.CodeRepeatBiz, Message: "Biz: " + protocol.BizKey(name, version) + " has been installed or registered.",
		}},
	}
}

func conflict(command, name, version string) protocol.BizOperation {
	return protocol.BizOperation{
		Command: command, BizName: name, BizVersion: version,
		Response: protocol.Output[protocol.ClientResponse]{
			Code:    protocol.CodeFailed,
			Message: "FAILED:" + protocol.BizKey(name, version) + " " + command + " conflict, exist unfinished command(installBiz) for this biz",
		},
	}
}

const downloadTrace = "com.alipay.sofa.koupleless.arklet.core.common.exception.ArkletRuntimeException: java.io.FileNotFoundException: https://repo.example.com/modules/biz1-0.0.1-ark-biz.jar\n" +
	"\tat com.alipay.sofa.koupleless.arklet.core.command.builtin.handler.InstallBizHandler.handle(InstallBizHandler.java:77)\n" +
	"Caused by: java.io.FileNotFoundException: https://repo.example.com/modules/biz1-0.0.1-ark-biz.jar\n" +
	"\tat com.alipay.sofa.ark.api.ArkClient.doInstallOperation(ArkClient.java:384)\n"

func installFailed(name, version string) protocol.BizOperation {
	return protocol.BizOperation{
		Command: protocol.CommandInstallBiz, BizName: name, BizVersion: version,
		Response: protocol.Output[protocol.ClientResponse]{
			Code:    protocol.CodeFailed,
			Message: "java.io.FileNotFoundException: https://repo.example.com/modules/biz1-0.0.1-ark-biz.jar",
			Data:    protocol.ClientResponse{Code: protocol.CodeFailed, Message: downloadTrace},
		},
	}
}

func uninstallReply(name, version, code string) protocol.BizOperation {
	op := protocol.BizOperation{Command: protocol.CommandUninstallBiz, BizName: name, BizVersion: version}
	switch code {
	case protocol.CodeSuccess:
		op.Response = protocol.Output[protocol.ClientResponse]{Code: protocol.CodeSuccess, Data: protocol.ClientResponse{
			Code: protocol.CodeSuccess, Message: "Uninstall biz: " + op.Key() + " success.",
		}}
	case protocol.CodeNotFoundBiz:
		op.Response = protocol.Output[protocol.ClientResponse]{Code: protocol.CodeFailed, Message: "uninstall biz not success!", Data: protocol.ClientResponse{
			Code: protocol.CodeNotFoundBiz, Message: "Uninstall biz: " + op.Key() + " not found.",
		}}
	default:
		op.Response = protocol.Output[protocol.ClientResponse]{Code: protocol.CodeFailed, Message: "stop failed", Data: protocol.ClientResponse{
			Code: protocol.CodeFailed, Message: "java.lang.IllegalStateException: stop failed\n\tat com.example.Stop(Stop.java:1)",
		}}
	}
	return op
}

// installed creates a pod and makes its bizs ACTIVATED through the install
// flow, with the base's biz list known (empty) first.
func (h *harness) installed(pod *corev1.Pod) {
	h.t.Helper()
	var want []string
	for _, c := range pod.Spec.Containers {
		want = append(want, "installBiz "+c.Name+":"+bizVersionOf(c)+" "+c.Image)
	}
	h.create(pod)
	h.requireSent(want...)
	for _, c := range pod.Spec.Containers {
		h.reply(installOK(c.Name, bizVersionOf(c), protocol.BizActivated, h.clk.Now(), ""))
	}
	h.requireSent()
	h.requireRunning(pod.Name)
}

func bizVersionOf(c corev1.Container) string {
	for _, e := range c.Env {
		if e.Name == api.EnvBizVersion {
			return e.Value
		}
	}
	return ""
}

func TestCreatePodInstallsOnceTheBizListIsKnown(t *testing.T) {
	h := newHarness(t)
	pod := modulePod("two", t0, bizContainer("biz1", "0.0.1"), bizContainer("biz2", "0.0.2"))

	h.create(pod)

	h.requireSent() // the base may already run them: wait for its list
	require.Equal(t, api.ReasonWaitingForBase, h.reason("two", "biz1"))
	require.Equal(t, api.ReasonWaitingForBase, h.reason("two", "biz2"))
	require.Equal(t, corev1.PodPending, h.status("two").Phase)
	h.notify()

	h.list()

	h.requireSent(installCmd("biz1", "0.0.1"), installCmd("biz2", "0.0.2"))
	require.ElementsMatch(t, []protocol.BizModel{
		{BizName: "biz1", BizVersion: "0.0.1", BizURL: jarURL("biz1", "0.0.1")},
		{BizName: "biz2", BizVersion: "0.0.2", BizURL: jarURL("biz2", "0.0.2")},
	}, []protocol.BizModel{h.tun.Commands()[0].Biz, h.tun.Commands()[1].Biz}, "the body is exactly bizName, bizVersion, bizUrl")
	require.Equal(t, api.ReasonBizInstalling, h.reason("two", "biz1"))
	require.Equal(t, api.ReasonBizInstalling, h.reason("two", "biz2"))
	h.notify()
	ev := h.events.about("pod/default/two", api.ReasonBizInstalling)
	require.Len(t, ev, 2, "one BizInstalling Event per container")
	require.Equal(t, corev1.EventTypeNormal, ev[0].Type)

	// Nothing is sent twice while the installs are pending.
	h.p.Resync()
	h.list()
	h.requireSent()
}

func TestCreatePodAdoptsRunningBizs(t *testing.T) {
	// A restarted controller finds its pods and the base's bizs again, in
	// either order; nothing is re-installed.
	activated := t0.Add(-time.Hour)
	for _, podFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("podFirst=%v", podFirst), func(t *testing.T) {
			h := newHarness(t)
			pod := modulePod("p", t0.Add(-2*time.Hour), bizContainer("biz1", "0.0.1"))
			list := []protocol.SimpleBizInfo{listed("biz1", "0.0.1", protocol.BizActivated, activated)}
			if podFirst {
				h.create(pod)
				h.list(list...)
			} else {
				h.list(list...)
				h.create(pod)
			}

			h.requireSent()
			h.requireRunning("p")
			cs := h.container("p", "biz1")
			require.True(t, cs.Ready)
			require.Equal(t, activated, cs.State.Running.StartedAt.UTC())
		})
	}
}

func TestInstallActivated(t *testing.T) {
	h := newHarness(t)
	h.list()
	h.create(modulePod("p", t0, bizContainer("biz1", "0.0.1")))
	h.requireSent(installCmd("biz1", "0.0.1"))
	h.notify()

	started := t0.Add(3 * time.Second)
	h.reply(installOK("biz1", "0.0.1", protocol.BizActivated, started, ""))

	h.requireSent()
	h.requireRunning("p")
	cs := h.container("p", "biz1")
	require.True(t, cs.Ready)
	require.Equal(t, started, cs.State.Running.StartedAt.UTC(), "startedAt is the activation time the base recorded")
	h.notify()
	ev := h.events.about("pod/default/p", api.ReasonBizInstalled)
	require.Len(t, ev, 1)
	require.Equal(t, corev1.EventTypeNormal, ev[0].Type)

	// The next biz list confirms it: nothing changes, nothing is handed out.
	h.list(listed("biz1", "0.0.1", protocol.BizActivated, started))
	require.Empty(t, h.notify())
	h.requireSent()
}

func TestInstallRepeatQueriesTheBase(t *testing.T) {
	h := newHarness(t)
	h.list()
	h.create(modulePod("p", t0, bizContainer("biz1", "0.0.1")))
	h.requireSent(installCmd("biz1", "0.0.1"))

	h.reply(installRepeat("biz1", "0.0.1"))

	h.requireSent(protocol.CommandQueryAllBiz)
	require.Equal(t, api.ReasonBizInstalling, h.reason("p", "biz1"), "REPEAT_BIZ is not a failure")
	h.notify()
	require.Empty(t, h.events.about("pod/default/p", api.ReasonBizInstallFailed))

	activated := t0.Add(-time.Minute)
	h.list(listed("biz1", "0.0.1", protocol.BizActivated, activated))
	h.requireSent()
	h.requireRunning("p")
	h.resyncAt(h.clk.Now().Add(2 * installWait))
	h.requireSent()
}

func TestInstallConflictIsRetriedLater(t *testing.T) {
	h := newHarness(t)
	h.list()
	h.create(modulePod("p", t0, bizContainer("biz1", "0.0.1")))
	h.requireSent(installCmd("biz1", "0.0.1"))

	h.reply(conflict(protocol.CommandInstallBiz, "biz1", "0.0.1"))
	retryAt := h.clk.Now().Add(retryBase)

	h.requireSent()
	require.Equal(t, api.ReasonBizInstalling, h.reason("p", "biz1"), "a lock conflict is not a failure")
	h.resyncAt(retryAt.Add(-time.Millisecond))
	h.requireSent()
	h.resyncAt(retryAt)
	h.requireSent(installCmd("biz1", "0.0.1"))
	h.notify()
	require.Empty(t, h.events.about("pod/default/p", api.ReasonBizInstallFailed))
}

func TestInstallFailureIsShownAndRetriedWithBackoff(t *testing.T) {
	h := newHarness(t)
	h.list()
	h.create(modulePod("p", t0, bizContainer("biz1", "0.0.1")))
	h.requireSent(installCmd("biz1", "0.0.1"))
	h.notify()

	failed := installFailed("biz1", "0.0.1")
	h.reply(failed)
	firstRetry := h.clk.Now().Add(retryBase)

	h.requireSent()
	cs := h.container("p", "biz1")
	require.Equal(t, api.ReasonBizInstallFailed, stateReason(cs))
	require.Equal(t, failed.ErrorMessage(), cs.State.Waiting.Message, "the status shows the first line")
	require.NotContains(t, cs.State.Waiting.Message, "\n")
	require.Equal(t, corev1.PodPending, h.status("p").Phase)
	h.notify()
	ev := h.events.about("pod/default/p", api.ReasonBizInstallFailed)
	require.Len(t, ev, 1)
	require.Equal(t, corev1.EventTypeWarning, ev[0].Type)
	require.True(t, strings.HasPrefix(ev[0].Message, cs.State.Waiting.Message), "Event %q", ev[0].Message)
	require.Contains(t, ev[0].Message, "\tat com.alipay.sofa.ark.api.ArkClient.doInstallOperation(ArkClient.java:384)", "the Event carries the full text")

	h.resyncAt(firstRetry.Add(-time.Millisecond))
	h.requireSent()
	h.resyncAt(firstRetry)
	h.requireSent(installCmd("biz1", "0.0.1"))

	// A second failure doubles the wait.
	h.reply(failed)
	secondRetry := h.clk.Now().Add(2 * retryBase)
	h.resyncAt(secondRetry.Add(-time.Millisecond))
	h.requireSent()
	h.resyncAt(secondRetry)
	h.requireSent(installCmd("biz1", "0.0.1"))
}

func TestInstallTimeoutQueriesTheBaseAndRetries(t *testing.T) {
	h := newHarness(t)
	h.list()
	h.create(modulePod("p", t0, bizContainer("biz1", "0.0.1")))
	sentAt := h.clk.Now()
	h.requireSent(installCmd("biz1", "0.0.1"))

	h.resyncAt(sentAt.Add(installWait - time.Millisecond))
	h.requireSent()

	h.resyncAt(sentAt.Add(installWait))
	retryAt := h.clk.Now().Add(retryBase)
	h.requireSent(protocol.CommandQueryAllBiz)
	require.Contains(t, h.container("p", "biz1").State.Waiting.Message, "no answer from the base", "the pod shows why it waits")

	h.list() // still not there
	h.requireSent()
	h.resyncAt(retryAt.Add(-time.Millisecond))
	h.requireSent()
	h.resyncAt(retryAt)
	h.requireSent(installCmd("biz1", "0.0.1"))
}

func TestSupersededModule(t *testing.T) {
	tests := []struct {
		name string
		// reply is the install reply for biz1:0.0.2, list the biz list after it.
		reply    protocol.BizOperation
		list     []protocol.SimpleBizInfo
		failed   string // the pod that ends Failed
		running  string // the pod that ends Running
		activeIs string // the version the Failed pod's message names
	}{{
		name:  "SOFAArk default: the new version starts deactivated",
		reply: installOK("biz1", "0.0.2", protocol.BizDeactivated, t0.Add(time.Minute), "start but is deactivated"),
		list: []protocol.SimpleBizInfo{
			listed("biz1", "0.0.1", protocol.BizActivated, t0),
			listedWith("biz1", "0.0.2", protocol.BizDeactivated, t0.Add(time.Minute), "STARTED", "start but is deactivated"),
		},
		failed: "v2", running: "v1", activeIs: "biz1:0.0.1",
	}, {
		name:  "activate.new.module: the old version is switched off",
		reply: installOK("biz1", "0.0.2", protocol.BizActivated, t0.Add(time.Minute), "switch from old biz: biz1:0.0.1"),
		list: []protocol.SimpleBizInfo{
			listedWith("biz1", "0.0.1", protocol.BizDeactivated, t0.Add(time.Minute), "SWITCHED", "switch to new biz biz1:0.0.2"),
			listedWith("biz1", "0.0.2", protocol.BizActivated, t0.Add(time.Minute), "STARTED", "switch from old biz: biz1:0.0.1"),
		},
		failed: "v1", running: "v2", activeIs: "biz1:0.0.2",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.create(modulePod("v1", t0.Add(-time.Hour), bizContainer("biz1", "0.0.1")))
			h.list(listed("biz1", "0.0.1", protocol.BizActivated, t0))
			h.requireRunning("v1")
			h.create(modulePod("v2", t0, bizContainer("biz1", "0.0.2")))
			h.requireSent(installCmd("biz1", "0.0.2"))
			h.notify()

			h.reply(tt.reply)
			// The other version's fate is only in the biz list: ask at once.
			h.requireSent(protocol.CommandQueryAllBiz)
			if tt.failed == "v1" {
				// Until the base's list says so, both versions are active.
				h.requireRunning("v1")
				h.requireRunning("v2")
			} else {
				// The reply alone says the new version is deactivated.
				require.Equal(t, corev1.PodFailed, h.status("v2").Phase)
				h.requireRunning("v1")
			}
			h.list(tt.list...)

			h.requireSent() // never an uninstall: the state decides, not the controller
			h.requireRunning(tt.running)
			st := h.status(tt.failed)
			require.Equal(t, corev1.PodFailed, st.Phase)
			require.Equal(t, api.ReasonBizSuperseded, st.Reason)
			require.Contains(t, st.Message, tt.activeIs)
			require.Equal(t, corev1.ConditionFalse, podCondition(t, st, corev1.PodReady).Status)
			cs := h.container(tt.failed, "biz1")
			require.NotNil(t, cs.State.Terminated)
			require.Equal(t, api.ReasonBizSuperseded, cs.State.Terminated.Reason)
			require.Contains(t, cs.State.Terminated.Message, tt.activeIs)
			h.notify()
			ev := h.events.about("pod/default/"+tt.failed, api.ReasonBizSuperseded)
			require.Len(t, ev, 1)
			require.Equal(t, corev1.EventTypeWarning, ev[0].Type)
		})
	}
}

func TestSupersededMessageIsStable(t *testing.T) {
	// With several other versions active (multi-version mode) the Failed
	// pod's message must not flap between them.
	h := newHarness(t)
	h.create(modulePod("v1", t0, bizContainer("biz1", "0.0.1")))
	h.list(
		listed("biz1", "0.0.1", protocol.BizDeactivated, t0),
		listed("biz1", "0.0.2", protocol.BizActivated, t0.Add(time.Minute)),
		listed("biz1", "0.0.3", protocol.BizActivated, t0.Add(2*time.Minute)),
		listed("biz1", "0.0.4", protocol.BizActivated, t0.Add(time.Minute)),
	)
	require.Len(t, h.notify(), 1)
	msg := h.status("v1").Message
	require.Contains(t, msg, "biz1:0.0.3", "the most recently activated version is named")
	for range 50 {
		require.Equal(t, msg, h.status("v1").Message)
		require.Empty(t, h.notify())
	}
}

func TestDeletePod(t *testing.T) {
	for _, code := range []string{protocol.CodeSuccess, protocol.CodeNotFoundBiz} {
		t.Run(code, func(t *testing.T) {
			h := newHarness(t)
			p := modulePod("p", t0, bizContainer("biz1", "0.0.1"))
			q := modulePod("q", t0, bizContainer("biz2", "0.0.1"))
			h.create(p, q)
			h.list(listed("biz1", "0.0.1", protocol.BizActivated, t0), listed("biz2", "0.0.1", protocol.BizActivated, t0))
			h.notify()

			h.delete(p)

			h.requireSent(uninstallCmd("biz1", "0.0.1"))
			require.Equal(t, api.ReasonBizUninstalling, h.reason("p", "biz1"))
			require.Empty(t, h.releasedPods(), "not released before the base confirms")
			h.notify()
			st := h.status("p")
			require.Equal(t, corev1.PodRunning, st.Phase, "a Running pod does not fall back to Pending while it is uninstalled")
			require.Equal(t, corev1.ConditionFalse, podCondition(t, st, corev1.PodReady).Status)

			h.delete(p) // virtual-kubelet may call again
			h.resyncAt(h.clk.Now().Add(time.Second))
			h.requireSent()

			h.reply(uninstallReply("biz1", "0.0.1", code))

			h.requireSent()
			require.Equal(t, []string{"p"}, h.releasedPods())
			h.requireGone("p")
			err := h.p.DeletePod(t.Context(), p)
			require.True(t, errdefs.IsNotFound(err), "a released pod is unknown: %v", err)
			pods, err := h.p.GetPods(t.Context())
			require.NoError(t, err)
			require.Len(t, pods, 1)
			require.Equal(t, "q", pods[0].Name)
			h.requireRunning("q")
			ev := h.events.about("pod/default/p", api.ReasonBizUninstalled)
			require.Len(t, ev, 1, "the uninstall is recorded on the pod")
			require.Equal(t, corev1.EventTypeNormal, ev[0].Type)

			// Nothing more happens for it, ever.
			h.list(listed("biz2", "0.0.1", protocol.BizActivated, t0))
			h.resyncAt(h.clk.Now().Add(10 * installWait))
			h.requireSent()
			require.Equal(t, []string{"p"}, h.releasedPods())
			require.Empty(t, h.events.about("node/"+testNodeName, api.ReasonOrphanBiz))
		})
	}
}

func TestDeletePodUninstallRetries(t *testing.T) {
	tests := []struct {
		name   string
		answer *protocol.BizOperation // nil: no answer
		// retry is when the uninstall is sent again, from the answer (or
		// the send).
		retry time.Duration
		also  []string // sent with the retry
	}{
		{name: "lock conflict", answer: ptr(conflict(protocol.CommandUninstallBiz, "biz1", "0.0.1")), retry: retryBase},
		{name: "failure", answer: ptr(uninstallReply("biz1", "0.0.1", protocol.CodeFailed)), retry: retryBase},
		{name: "no answer", retry: installWait, also: []string{protocol.CommandQueryAllBiz}},
	}
	for _, tt := range tests {
		for _, trigger := range []string{"delete", "image update"} {
			t.Run(tt.name+"/"+trigger, func(t *testing.T) {
				h := newHarness(t)
				h.list()
				pod := modulePod("p", t0, bizContainer("biz1", "0.0.1"))
				h.installed(pod)
				if trigger == "delete" {
					h.delete(pod)
				} else {
					updated := pod.DeepCopy()
					updated.Spec.Containers[0].Image = "https://repo.example.com/modules/biz1-0.0.1-hotfix.jar"
					h.update(updated)
				}
				h.requireSent(uninstallCmd("biz1", "0.0.1"))

				from := h.clk.Now()
				if tt.answer != nil {
					h.reply(*tt.answer)
					from = h.clk.Now()
				}
				h.resyncAt(from.Add(tt.retry - time.Millisecond))
				h.requireSent()
				h.resyncAt(from.Add(tt.retry))
				h.requireSent(append([]string{uninstallCmd("biz1", "0.0.1")}, tt.also...)...)
				require.Empty(t, h.releasedPods())
			})
		}
	}
}

func TestDeletePodWithSharedNameVersion(t *testing.T) {
	// Two live pods ask for the same name:version: whichever is deleted, the
	// biz stays for the other and no command is sent.
	for _, deleted := range []string{"first", "second"} {
		t.Run("delete "+deleted, func(t *testing.T) {
			h := newHarness(t)
			h.list()
			first := modulePod("first", t0, bizContainer("biz1", "0.0.1"))
			second := modulePod("second", t0.Add(time.Second), bizContainer("biz1", "0.0.1"))
			h.installed(first)
			h.create(second)
			h.requireSent()
			pods := map[string]*corev1.Pod{"first": first, "second": second}
			other := map[string]string{"first": "second", "second": "first"}[deleted]

			h.delete(pods[deleted])

			h.requireSent()
			require.Equal(t, []string{deleted}, h.releasedPods())
			h.requireGone(deleted)
			h.requireRunning(other)
			h.resyncAt(h.clk.Now().Add(10 * installWait))
			h.requireSent()
		})
	}
}

func TestDeleteSupersededPod(t *testing.T) {
	h := newHarness(t)
	v1 := modulePod("v1", t0, bizContainer("biz1", "0.0.1"))
	h.create(v1, modulePod("v2", t0.Add(time.Minute), bizContainer("biz1", "0.0.2")))
	h.list(
		listedWith("biz1", "0.0.1", protocol.BizDeactivated, t0.Add(time.Minute), "SWITCHED", "switch to new biz biz1:0.0.2"),
		listed("biz1", "0.0.2", protocol.BizActivated, t0.Add(time.Minute)),
	)
	require.Equal(t, corev1.PodFailed, h.status("v1").Phase)
	h.requireRunning("v2")

	h.delete(v1)

	h.requireSent(uninstallCmd("biz1", "0.0.1"))
	h.reply(uninstallReply("biz1", "0.0.1", protocol.CodeSuccess))
	h.requireSent()
	require.Equal(t, []string{"v1"}, h.releasedPods())
	h.requireGone("v1")
	h.list(listed("biz1", "0.0.2", protocol.BizActivated, t0.Add(time.Minute)))
	h.requireSent()
	h.requireRunning("v2")
	require.Empty(t, h.tun.CommandsFor(testBase, protocol.CommandInstallBiz))
	for _, c := range h.tun.CommandsFor(testBase, protocol.CommandUninstallBiz) {
		require.Equal(t, "biz1:0.0.1", c.Biz.Key(), "never touch the active version")
	}
}

func TestDeletePodBeforeTheBizListIsKnown(t *testing.T) {
	// Nothing tells whether the base has the biz: uninstall it anyway, and
	// release on NOT_FOUND_BIZ.
	h := newHarness(t)
	pod := modulePod("p", t0, bizContainer("biz1", "0.0.1"))
	h.create(pod)
	h.delete(pod)
	h.requireSent(uninstallCmd("biz1", "0.0.1"))

	h.list()
	h.requireSent()
	require.Empty(t, h.releasedPods(), "the answer decides, not a list that may predate the command")
	h.reply(uninstallReply("biz1", "0.0.1", protocol.CodeNotFoundBiz))
	h.requireSent()
	require.Equal(t, []string{"p"}, h.releasedPods())
}

func TestDeletePodWhoseBizIsAbsent(t *testing.T) {
	h := newHarness(t)
	h.list()
	pod := modulePod("p", t0, bizContainer("biz1", "0.0.1"))
	h.create(pod)
	h.requireSent(installCmd("biz1", "0.0.1"))
	h.reply(installFailed("biz1", "0.0.1"))
	h.list()
	h.requireSent()

	h.delete(pod)

	h.requireSent()
	require.Equal(t, []string{"p"}, h.releasedPods(), "released at once")
	h.requireGone("p")
}

func TestDeletePodWhileInstalling(t *testing.T) {
	tests := []struct {
		name  string
		reply protocol.BizOperation
		// after the reply: the commands, and whether the pod is released
		sent     []string
		released bool
	}{
		{name: "install succeeds", reply: installOK("biz1", "0.0.1", protocol.BizActivated, t0, ""), sent: []string{uninstallCmd("biz1", "0.0.1")}},
		{name: "install repeats", reply: installRepeat("biz1", "0.0.1"), sent: []string{uninstallCmd("biz1", "0.0.1"), protocol.CommandQueryAllBiz}},
		{name: "install conflicts", reply: conflict(protocol.CommandInstallBiz, "biz1", "0.0.1"), sent: []string{uninstallCmd("biz1", "0.0.1")}},
		{name: "install fails", reply: installFailed("biz1", "0.0.1"), released: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.list()
			pod := modulePod("p", t0, bizContainer("biz1", "0.0.1"))
			h.create(pod)
			h.requireSent(installCmd("biz1", "0.0.1"))

			h.delete(pod)

			h.requireSent() // an uninstall now would clash with the running install
			require.Empty(t, h.releasedPods(), "the base may be installing the biz right now")
			require.Equal(t, api.ReasonBizUninstalling, h.reason("p", "biz1"))

			h.reply(tt.reply)

			h.requireSent(tt.sent...)
			if tt.released {
				require.Equal(t, []string{"p"}, h.releasedPods())
				return
			}
			require.Empty(t, h.releasedPods())
			h.reply(uninstallReply("biz1", "0.0.1", protocol.CodeSuccess))
			h.requireSent()
			require.Equal(t, []string{"p"}, h.releasedPods())
			h.list()
			h.requireSent()
			require.Empty(t, h.events.about("node/"+testNodeName, api.ReasonOrphanBiz))
		})
	}
}

func TestDeletePodWhoseInstallWentUnanswered(t *testing.T) {
	// The install may still complete on the base: uninstall it rather than
	// leave it behind.
	h := newHarness(t)
	h.list()
	pod := modulePod("p", t0, bizContainer("biz1", "0.0.1"))
	h.create(pod)
	sentAt := h.clk.Now()
	h.requireSent(installCmd("biz1", "0.0.1"))
	h.delete(pod)
	h.requireSent()

	h.resyncAt(sentAt.Add(installWait))

	h.requireSent(uninstallCmd("biz1", "0.0.1"))
	h.reply(uninstallReply("biz1", "0.0.1", protocol.CodeNotFoundBiz))
	h.requireSent()
	require.Equal(t, []string{"p"}, h.releasedPods())
}

func TestUnknownPod(t *testing.T) {
	h := newHarness(t)
	pod := modulePod("ghost", t0, bizContainer("biz1", "0.0.1"))

	err := h.p.DeletePod(t.Context(), pod)
	require.True(t, errdefs.IsNotFound(err), "%v", err)
	_, err = h.p.GetPod(t.Context(), "default", "ghost")
	require.True(t, errdefs.IsNotFound(err), "%v", err)
	_, err = h.p.GetPodStatus(t.Context(), "default", "ghost")
	require.True(t, errdefs.IsNotFound(err), "%v", err)
	h.requireSent()
}

func TestDuplicateNameVersionOnOneBase(t *testing.T) {
	h := newHarness(t)
	h.list()
	first := modulePod("first", t0, bizContainer("biz1", "0.0.1"))
	h.installed(first)
	startedAt := h.container("first", "biz1").State.Running.StartedAt

	h.create(modulePod("second", t0.Add(time.Second), bizContainer("biz1", "0.0.1")))

	h.requireSent()
	cs := h.container("second", "biz1")
	require.Equal(t, api.ReasonBizOwnedElsewhere, stateReason(cs))
	require.Contains(t, cs.State.Waiting.Message, "default/first")
	require.Equal(t, corev1.PodPending, h.status("second").Phase)
	h.notify()
	ev := h.events.about("pod/default/second", api.ReasonBizOwnedElsewhere)
	require.Len(t, ev, 1)
	require.Equal(t, corev1.EventTypeWarning, ev[0].Type)

	h.delete(first)

	h.requireSent() // neither an uninstall nor a new install
	require.Equal(t, []string{"first"}, h.releasedPods())
	h.requireRunning("second")
	require.True(t, startedAt.Equal(&h.container("second", "biz1").State.Running.StartedAt))
	h.notify()
	require.Len(t, h.events.about("pod/default/second", api.ReasonBizInstalled), 1)
}

// TestDuplicateNameVersionInTheSameSecond: creation timestamps have a
// resolution of one second, so a second pod created in the same second as the
// owner must not take the biz over because its name sorts first.
func TestDuplicateNameVersionInTheSameSecond(t *testing.T) {
	h := newHarness(t)
	h.list()
	owner := modulePod("zeta", t0, bizContainer("biz1", "0.0.1"))
	h.installed(owner)

	h.create(modulePod("alpha", t0, bizContainer("biz1", "0.0.1")))

	h.requireSent()
	h.requireRunning("zeta")
	cs := h.container("alpha", "biz1")
	require.Equal(t, api.ReasonBizOwnedElsewhere, stateReason(cs))
	require.Contains(t, cs.State.Waiting.Message, "default/zeta")

	// The owner is deleted: the other pod takes over, nothing is sent.
	h.delete(owner)
	h.requireSent()
	h.requireRunning("alpha")
}

func TestUpdatePodImageReplacesTheBiz(t *testing.T) {
	h := newHarness(t)
	h.list()
	pod := modulePod("p", t0, bizContainer("biz1", "0.0.1"))
	h.installed(pod)
	const hotfix = "https://repo.example.com/modules/biz1-0.0.1-hotfix.jar"
	h.update(pod.DeepCopy())
	h.requireSent() // an update that changes nothing sends nothing
	updated := pod.DeepCopy()
	updated.Spec.Containers[0].Image = hotfix

	h.update(updated)

	h.requireSent(uninstallCmd("biz1", "0.0.1"))
	h.resyncAt(h.clk.Now().Add(time.Second))
	h.update(updated)
	h.requireSent() // no install before the base confirms

	h.reply(uninstallReply("biz1", "0.0.1", protocol.CodeSuccess))

	h.requireSent("installBiz biz1:0.0.1 " + hotfix)
	require.Equal(t, api.ReasonBizInstalling, h.reason("p", "biz1"))
	h.reply(installOK("biz1", "0.0.1", protocol.BizActivated, h.clk.Now(), ""))
	h.requireSent()
	h.requireRunning("p")
	require.Equal(t, hotfix, h.container("p", "biz1").Image)
	require.Empty(t, h.releasedPods())
}

// baselineHarness has a base whose four pods run: "a" (biz1, biz2), "dup"
// (biz1 again), "bad" (biz3 and an invalid container) and "gone" (biz4,
// being deleted). Then the base restarts and asks for its baseline.
func baselineHarness(t *testing.T) (*harness, []protocol.BizModel) {
	h := newHarness(t)
	gone := modulePod("gone", t0, bizContainer("biz4", "0.0.1"))
	h.create(
		modulePod("a", t0, bizContainer("biz1", "0.0.1"), bizContainer("biz2", "0.0.1")),
		modulePod("dup", t0.Add(time.Second), bizContainer("biz1", "0.0.1")),
		modulePod("bad", t0, bizContainer("biz3", "0.0.1"), corev1.Container{Name: "web", Image: "nginx:latest", Env: []corev1.EnvVar{{Name: api.EnvBizVersion, Value: "1"}}}),
		gone,
	)
	h.list(
		listed("biz1", "0.0.1", protocol.BizActivated, t0),
		listed("biz2", "0.0.1", protocol.BizActivated, t0),
		listed("biz3", "0.0.1", protocol.BizActivated, t0),
		listed("biz4", "0.0.1", protocol.BizActivated, t0),
	)
	h.delete(gone)
	h.requireSent(uninstallCmd("biz4", "0.0.1"))
	h.notify()
	select { // empty the notifier's mailbox
	case <-h.p.podsChanged:
	default:
	}

	return h, h.p.Baseline()
}

func TestBaselineIsTheLivePodsBizs(t *testing.T) {
	h, got := baselineHarness(t)

	require.ElementsMatch(t, []protocol.BizModel{
		{BizName: "biz1", BizVersion: "0.0.1", BizURL: jarURL("biz1", "0.0.1")},
		{BizName: "biz2", BizVersion: "0.0.1", BizURL: jarURL("biz2", "0.0.1")},
		{BizName: "biz3", BizVersion: "0.0.1", BizURL: jarURL("biz3", "0.0.1")},
	}, got, "no deleted pod, no invalid container, each name:version once")
	require.Equal(t, api.ReasonBizInstalling, h.reason("a", "biz1"), "the restarted base has nothing yet")
	// The new base process has none of the old one's bizs and will not
	// answer what was sent to it: the deleted pod goes at once.
	h.requireSent()
	require.Equal(t, []string{"gone"}, h.releasedPods())
	require.Len(t, h.p.podsChanged, 1, "the notifier is woken")
	changed := h.notify()
	require.Len(t, changed, 2, "a and bad changed; dup and gone did not")
	require.Equal(t, []string{"a", "bad"}, []string{changed[0].Name, changed[1].Name})
}

func TestBaselineOutcome(t *testing.T) {
	entry := func(name string, state protocol.BizState) protocol.ClientResponse {
		return protocol.ClientResponse{Code: protocol.CodeSuccess, BizInfos: []protocol.BizInfo{bizInfo(name, "0.0.1", state, t0.Add(time.Hour), "")}}
	}
	batch := func(code string, entries map[string]protocol.ClientResponse) protocol.BatchInstallResult {
		r := protocol.BatchInstallResult{Command: protocol.CommandBatchInstallBiz}
		r.Response.Code = code
		r.Response.Data = protocol.BatchInstallResponse{Code: code, BizURLToResponse: entries}
		if code != protocol.CodeSuccess {
			r.Response.Message = "install biz not success!"
			r.Response.Data.Message = "batch install failed"
		}
		return r
	}
	const entryFailure = "internal exception: java.lang.IllegalStateException: biz3 failed to start\n\tat com.example.Biz3Application.main(Biz3Application.java:9)"
	tests := []struct {
		name   string
		result protocol.BatchInstallResult
		sent   []string
		check  func(t *testing.T, h *harness)
	}{{
		name: "every biz installed",
		result: batch(protocol.CodeSuccess, map[string]protocol.ClientResponse{
			jarURL("biz1", "0.0.1"): entry("biz1", protocol.BizActivated),
			jarURL("biz2", "0.0.1"): entry("biz2", protocol.BizActivated),
			jarURL("biz3", "0.0.1"): entry("biz3", protocol.BizActivated),
		}),
		sent: []string{protocol.CommandQueryAllBiz},
		check: func(t *testing.T, h *harness) {
			h.requireRunning("a")
			require.Equal(t, t0.Add(time.Hour), h.container("a", "biz1").State.Running.StartedAt.UTC())
			require.Equal(t, "Running", h.reason("bad", "biz3"))
		},
	}, {
		name: "the whole batch failed",
		result: protocol.BatchInstallResult{Command: protocol.CommandBatchInstallBiz, Response: protocol.Output[protocol.BatchInstallResponse]{
			Code: protocol.CodeFailed, Message: "java.io.FileNotFoundException: " + jarURL("biz3", "0.0.1"),
			Data: protocol.BatchInstallResponse{Code: protocol.CodeFailed, Message: "java.io.FileNotFoundException: " + jarURL("biz3", "0.0.1") + "\n\tat java.net.URL.openStream(URL.java:1093)"},
		}},
		sent: []string{installCmd("biz1", "0.0.1"), installCmd("biz2", "0.0.1"), installCmd("biz3", "0.0.1"), protocol.CommandQueryAllBiz},
		check: func(t *testing.T, h *harness) {
			// Installing one by one: no pod is blamed for the batch.
			require.Equal(t, api.ReasonBizInstalling, h.reason("a", "biz1"))
			require.Equal(t, api.ReasonBizInstalling, h.reason("bad", "biz3"))
			h.notify()
			require.Empty(t, h.events.about("pod/default/a", api.ReasonBizInstallFailed))
		},
	}, {
		name: "one biz failed",
		result: batch(protocol.CodeFailed, map[string]protocol.ClientResponse{
			jarURL("biz1", "0.0.1"): entry("biz1", protocol.BizActivated),
			jarURL("biz2", "0.0.1"): entry("biz2", protocol.BizActivated),
			jarURL("biz3", "0.0.1"): {Code: protocol.CodeFailed, Message: entryFailure},
		}),
		sent: []string{protocol.CommandQueryAllBiz},
		check: func(t *testing.T, h *harness) {
			h.requireRunning("a")
			cs := h.container("bad", "biz3")
			require.Equal(t, api.ReasonBizInstallFailed, stateReason(cs))
			require.Equal(t, "internal exception: java.lang.IllegalStateException: biz3 failed to start", cs.State.Waiting.Message)
			h.notify()
			ev := h.events.about("pod/default/bad", api.ReasonBizInstallFailed)
			require.Len(t, ev, 1)
			require.Equal(t, entryFailure, ev[0].Message)
			h.resyncAt(h.clk.Now().Add(retryBase))
			h.requireSent(installCmd("biz3", "0.0.1"))
		},
	}, {
		name: "a biz was already there",
		result: batch(protocol.CodeFailed, map[string]protocol.ClientResponse{
			jarURL("biz1", "0.0.1"): {Code: protocol.CodeRepeatBiz, Message: "Biz: biz1:0.0.1 has been installed or registered."},
			jarURL("biz2", "0.0.1"): entry("biz2", protocol.BizActivated),
			jarURL("biz3", "0.0.1"): entry("biz3", protocol.BizActivated),
		}),
		sent: []string{protocol.CommandQueryAllBiz},
		check: func(t *testing.T, h *harness) {
			require.Equal(t, api.ReasonBizInstalling, h.reason("a", "biz1"))
			h.list(listed("biz1", "0.0.1", protocol.BizActivated, t0), listed("biz2", "0.0.1", protocol.BizActivated, t0), listed("biz3", "0.0.1", protocol.BizActivated, t0))
			h.requireSent()
			h.requireRunning("a")
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := baselineHarness(t)

			h.p.OnBatchInstall(tt.result, h.at())

			h.requireSent(tt.sent...)
			tt.check(t, h)
			require.Equal(t, api.ReasonBizOwnedElsewhere, h.reason("dup", "biz1"))
		})
	}
}

func TestOrphanBizsAreReportedOnce(t *testing.T) {
	h := newHarness(t)
	h.create(modulePod("p", t0, bizContainer("biz1", "0.0.1")))
	list := []protocol.SimpleBizInfo{
		listed("biz1", "0.0.1", protocol.BizActivated, t0),
		listed("base-plugin", "1.0.0", protocol.BizActivated, t0),
		listed("biz9", "0.1.0", protocol.BizDeactivated, t0),
	}

	h.list(list...)
	h.list(list...) // the periodic query
	h.resyncAt(h.clk.Now().Add(time.Minute))
	h.list(list...)

	ev := h.events.about("node/"+testNodeName, api.ReasonOrphanBiz)
	require.Len(t, ev, 2, "%v", ev)
	require.Equal(t, corev1.EventTypeWarning, ev[0].Type)
	require.ElementsMatch(t,
		[]string{"biz base-plugin:1.0.0 runs on the base but no pod on this node asks for it", "biz biz9:0.1.0 runs on the base but no pod on this node asks for it"},
		[]string{ev[0].Message, ev[1].Message})
	require.EqualValues(t, 2, h.orphans.n.Load())
	h.requireSent() // UninstallOrphans is off

	// Gone and back: reported again.
	h.list(list[:2]...)
	h.list(list...)
	require.Len(t, h.events.about("node/"+testNodeName, api.ReasonOrphanBiz), 3)
}

func TestUninstallOrphansOnlyTouchesOwnBizs(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.UninstallOrphans = true })
	mine := modulePod("mine", t0, bizContainer("biz1", "0.0.1"))
	adopter := modulePod("adopter", t0, bizContainer("adopted", "1.0.0"))
	h.create(adopter)
	h.list(listed("adopted", "1.0.0", protocol.BizActivated, t0))
	h.requireRunning("adopter")
	h.installed(mine)
	h.list(
		listed("biz1", "0.0.1", protocol.BizActivated, t0),
		listed("adopted", "1.0.0", protocol.BizActivated, t0),
		listed("base-plugin", "1.0.0", protocol.BizActivated, t0),
	)
	h.requireSent()
	require.Len(t, h.events.about("node/"+testNodeName, api.ReasonOrphanBiz), 1, "the baked-in biz is reported")

	// Both pods turn their containers into something that is not a biz: the
	// bizs they had are orphans now.
	for _, pod := range []*corev1.Pod{mine, adopter} {
		broken := pod.DeepCopy()
		broken.Spec.Containers[0].Image = "nginx:latest"
		h.update(broken)
	}

	h.requireSent(uninstallCmd("biz1", "0.0.1")) // never the adopted or baked-in ones
	require.Len(t, h.events.about("node/"+testNodeName, api.ReasonOrphanBiz), 3)
	require.EqualValues(t, 3, h.orphans.n.Load())
	h.reply(uninstallReply("biz1", "0.0.1", protocol.CodeSuccess))
	h.list(listed("adopted", "1.0.0", protocol.BizActivated, t0), listed("base-plugin", "1.0.0", protocol.BizActivated, t0))
	h.resyncAt(h.clk.Now().Add(10 * installWait))
	h.requireSent()
	require.Equal(t, api.ReasonInvalidBiz, h.reason("mine", "biz1"))
}

func TestNotifyPodsOnlyOnChange(t *testing.T) {
	h := newHarness(t)
	h.create(modulePod("p", t0, bizContainer("biz1", "0.0.1")), modulePod("q", t0, bizContainer("biz2", "0.0.1")))
	list := []protocol.SimpleBizInfo{listed("biz1", "0.0.1", protocol.BizActivated, t0), listed("biz2", "0.0.1", protocol.BizActivated, t0)}

	h.list(list...)
	first := h.notify()
	require.Len(t, first, 2)
	require.Equal(t, []string{"p", "q"}, []string{first[0].Name, first[1].Name})

	h.resyncAt(h.clk.Now().Add(time.Minute))
	h.list(list...)
	require.Empty(t, h.notify(), "the same biz list changes nothing")

	h.list(listedWith("biz1", "0.0.1", protocol.BizBroken, t0.Add(2*time.Minute), "INSTALL_FAILED", stackTrace), list[1])
	changed := h.notify()
	require.Len(t, changed, 1, "only the pod whose status changed")
	require.Equal(t, "p", changed[0].Name)
	cs := findContainerStatus(changed[0].Status.ContainerStatuses, "biz1")
	require.Equal(t, api.ReasonBizBroken, stateReason(*cs))
	require.Equal(t, "java.lang.IllegalStateException: biz1 failed to start", cs.State.Waiting.Message)
	ev := h.events.about("pod/default/p", api.ReasonBizBroken)
	require.Len(t, ev, 1)
	require.Equal(t, corev1.EventTypeWarning, ev[0].Type)
	require.Equal(t, stackTrace, ev[0].Message, "the Event carries the full text")
}

func TestReleaseIsRetried(t *testing.T) {
	h := newHarness(t)
	h.list()
	pod := modulePod("p", t0, bizContainer("biz1", "0.0.1"))
	h.installed(pod)
	h.delete(pod)
	h.requireSent(uninstallCmd("biz1", "0.0.1"))
	h.mu.Lock()
	h.releaseErr = errors.New("apiserver unavailable")
	h.mu.Unlock()

	h.reply(uninstallReply("biz1", "0.0.1", protocol.CodeSuccess))
	h.requireSent()
	require.Empty(t, h.releasedPods())

	h.p.Resync()
	h.requireSent()
	require.Equal(t, []string{"p"}, h.releasedPods())
	h.requireGone("p")
	h.p.Resync()
	h.requireSent()
	require.Equal(t, []string{"p"}, h.releasedPods())
}

func TestSplitKey(t *testing.T) {
	for key, want := range map[string][2]string{
		"biz1:0.0.1":    {"biz1", "0.0.1"},
		"biz1:1.0:rc-1": {"biz1", "1.0:rc-1"},
		"biz1":          {"biz1", ""},
	} {
		n, v := splitKey(key)
		require.Equal(t, want, [2]string{n, v}, key)
	}
}

// TestRunAndNotifyPods runs the real dispatcher and notifier goroutines.
func TestRunAndNotifyPods(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	go h.p.Run(ctx)
	notified := make(chan *corev1.Pod, 64)
	h.p.NotifyPods(ctx, func(p *corev1.Pod) { notified <- p })
	waitFor := func(what string, ok func(*corev1.Pod) bool) *corev1.Pod {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case p := <-notified:
				if ok(p) {
					return p
				}
			case <-deadline:
				t.Fatalf("no notification: %s", what)
				return nil
			}
		}
	}
	pod := modulePod("p", t0, bizContainer("biz1", "0.0.1"), bizContainer("biz2", "0.0.1"))

	h.list()
	h.create(pod)

	h.tun.WaitForCommands(t, 5*time.Second, 2, tunneltest.Named(testBase, protocol.CommandInstallBiz))
	waitFor("installing", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodPending && stateReason(p.Status.ContainerStatuses[0]) == api.ReasonBizInstalling
	})
	h.reply(installOK("biz1", "0.0.1", protocol.BizActivated, t0, ""))
	h.reply(installOK("biz2", "0.0.1", protocol.BizActivated, t0, ""))
	running := waitFor("running", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning && p.Status.ContainerStatuses[0].Ready && p.Status.ContainerStatuses[1].Ready
	})
	require.Equal(t, testBase, running.Status.PodIP)

	// The same list twice hands out nothing: the next notification is the
	// next real change.
	list := []protocol.SimpleBizInfo{listed("biz1", "0.0.1", protocol.BizActivated, t0), listed("biz2", "0.0.1", protocol.BizActivated, t0)}
	h.list(list...)
	h.list(list...)
	h.list(listed("biz1", "0.0.1", protocol.BizBroken, t0.Add(time.Minute)), list[1])
	select {
	case p := <-notified:
		require.Equal(t, api.ReasonBizBroken, stateReason(p.Status.ContainerStatuses[0]), "unexpected notification %+v", p.Status)
	case <-time.After(5 * time.Second):
		t.Fatal("no notification of the broken biz")
	}
	h.list(list...)
	waitFor("running again", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning && p.Status.ContainerStatuses[0].Ready
	})

	h.delete(pod)
	h.tun.WaitForCommands(t, 5*time.Second, 2, tunneltest.Named(testBase, protocol.CommandUninstallBiz))
	h.reply(uninstallReply("biz1", "0.0.1", protocol.CodeSuccess))
	h.reply(uninstallReply("biz2", "0.0.1", protocol.CodeNotFoundBiz))
	select {
	case name := <-h.releases:
		require.Equal(t, "p", name)
	case <-time.After(5 * time.Second):
		t.Fatal("the pod was not released")
	}
	require.Len(t, h.releasedPods(), 1)
	require.Len(t, h.tun.CommandsFor(testBase, protocol.CommandInstallBiz), 2)
	require.Len(t, h.tun.CommandsFor(testBase, protocol.CommandUninstallBiz), 2)
}

func TestRunRetriesCommandsThatCannotBeSent(t *testing.T) {
	h := newHarness(t)
	h.tun.SetSendError(errors.New("not connected"))
	h.list()
	h.create(modulePod("p", t0, bizContainer("biz1", "0.0.1")))
	require.Empty(t, h.flush())
	cs := h.container("p", "biz1")
	require.Equal(t, api.ReasonBizInstallFailed, stateReason(cs))
	require.Contains(t, cs.State.Waiting.Message, "not connected")

	h.tun.SetSendError(nil)
	h.resyncAt(h.clk.Now().Add(retryBase))
	h.requireSent(installCmd("biz1", "0.0.1"))
}

func TestCommandsWaitUntilTheBaseListens(t *testing.T) {
	// After a controller restart a base is adopted before it showed any sign
	// of life; with the embedded broker restarted too, it may not be
	// connected yet, and whatever is published to it would be lost.
	h := newHarness(t, func(c *Config) {
		c.Readiness = Readiness{Reachable: true, Waiting: true, Reason: api.ReasonBaseAdopted}
	})
	pod := modulePod("p", t0, bizContainer("biz1", "0.0.1"))
	h.create(pod)
	h.list(listed("biz1", "0.0.1", protocol.BizActivated, t0))
	h.delete(pod)
	h.p.Resync()
	h.requireSent()
	require.Empty(t, h.releasedPods())

	h.p.SetReadiness(Readiness{Reachable: true, Reason: api.ReasonBaseReady})
	h.requireSent(uninstallCmd("biz1", "0.0.1"))

	// An unreachable base gets nothing either, until it is back.
	h.p.SetReadiness(Readiness{Reachable: false, Reason: api.ReasonBaseUnreachable})
	h.create(modulePod("q", t0, bizContainer("biz2", "0.0.1")))
	h.resyncAt(h.clk.Now().Add(time.Hour))
	h.requireSent()
	h.p.SetReadiness(Readiness{Reachable: true, Reason: api.ReasonBaseReady})
	got := h.flush()
	require.Contains(t, got, installCmd("biz2", "0.0.1"))
}

func TestPodsAreNotReadyWhileTheBaseIsUnreachable(t *testing.T) {
	h := newHarness(t)
	h.list()
	h.installed(modulePod("p", t0, bizContainer("biz1", "0.0.1")))
	h.notify()

	h.p.SetReadiness(Readiness{Reachable: false, Reason: api.ReasonBaseUnreachable, Message: "no heartbeat for 25s"})
	changed := h.notify()
	require.Len(t, changed, 1, "the pod's status changes when its base goes silent")
	st := changed[0].Status
	require.Equal(t, corev1.PodRunning, st.Phase, "the module may still run: the phase stays")
	ready := podCondition(t, st, corev1.PodReady)
	require.Equal(t, corev1.ConditionFalse, ready.Status)
	require.Equal(t, api.ReasonBaseUnreachable, ready.Reason)
	require.Equal(t, corev1.ConditionTrue, podCondition(t, st, corev1.ContainersReady).Status, "the last known container state is kept")
	h.requireSent()

	h.p.SetReadiness(Readiness{Reachable: true, Reason: api.ReasonBaseReady})
	require.Len(t, h.notify(), 1, "ready again once the base is back")
	h.requireRunning("p")
}

func TestUnsolicitedResultsAreDropped(t *testing.T) {
	// Results for commands this process never sent (a previous process's,
	// a replay, a spoof) change nothing and are counted.
	unsolicited := &counter{}
	h := newHarness(t, func(c *Config) { c.UnsolicitedResults = unsolicited })
	h.list()
	pod := modulePod("p", t0, bizContainer("biz1", "0.0.1"))
	h.create(pod)
	h.requireSent(installCmd("biz1", "0.0.1"))
	h.notify()

	h.reply(installOK("other", "0.0.1", protocol.BizActivated, t0, ""))
	h.reply(uninstallReply("biz1", "0.0.1", "SUCCESS"))
	require.Equal(t, int64(2), unsolicited.n.Load())
	require.Equal(t, api.ReasonBizInstalling, h.reason("p", "biz1"), "an uninstall nobody sent does not touch the pod")
	h.requireSent()

	h.reply(installOK("biz1", "0.0.1", protocol.BizActivated, t0, ""))
	h.requireRunning("p")
	require.Equal(t, int64(2), unsolicited.n.Load(), "the answer to the install sent is taken")
}

func TestUnsolicitedInstallDoesNotStartAPod(t *testing.T) {
	// A pod waiting for the base's list is not turned Running by an install
	// result nobody asked for.
	unsolicited := &counter{}
	h := newHarness(t, func(c *Config) { c.UnsolicitedResults = unsolicited })
	h.create(modulePod("p", t0, bizContainer("biz1", "0.0.1")))
	h.reply(installOK("biz1", "0.0.1", protocol.BizActivated, t0, ""))
	require.Equal(t, int64(1), unsolicited.n.Load())
	require.Equal(t, api.ReasonWaitingForBase, h.reason("p", "biz1"))
	require.Equal(t, corev1.PodPending, h.status("p").Phase)
}

func TestRestartedControllerKeepsReportedStatus(t *testing.T) {
	// A restarted controller finds a pod Running in the API server before
	// the base's list arrives: it keeps that status (absence of data is not
	// a change of state) until the list says otherwise.
	h := newHarness(t)
	h.list()
	h.installed(modulePod("p", t0, bizContainer("biz1", "0.0.1")))
	running := h.status("p")
	require.Equal(t, corev1.PodRunning, running.Phase)

	restarted := newHarness(t, func(c *Config) {
		c.Readiness = Readiness{Reachable: true, Waiting: true, Reason: api.ReasonBaseAdopted}
	})
	pod := modulePod("p", t0, bizContainer("biz1", "0.0.1"))
	pod.Status = running
	restarted.create(pod)
	require.Empty(t, restarted.notify(), "nothing is written back before the base's list")
	require.Equal(t, corev1.PodRunning, restarted.status("p").Phase)

	// The list is the source of truth: the biz is gone, so it is installed
	// again once the base is heard from, and the pod shows it.
	restarted.list()
	restarted.p.SetReadiness(Readiness{Reachable: true, Reason: api.ReasonBaseReady})
	restarted.requireSent(installCmd("biz1", "0.0.1"))
	require.Equal(t, api.ReasonBizInstalling, restarted.reason("p", "biz1"))
}

func TestCommandQueueNeverBlocks(t *testing.T) {
	// Nothing drains the queue here (Run is not running): enqueueing far
	// more than it holds returns at once and counts what it dropped.
	dropped := &counter{}
	h := newHarness(t, func(c *Config) { c.DroppedCommands = dropped })
	h.list()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range maxQueuedCommands + 10 {
			h.create(modulePod(fmt.Sprintf("p%d", i), t0, bizContainer(fmt.Sprintf("biz%d", i), "0.0.1")))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("creating pods blocked on a full command queue")
	}
	require.Equal(t, int64(10), dropped.n.Load())
	require.Len(t, h.flush(), maxQueuedCommands)

	// A dropped install is still outstanding and is retried when it times out.
	h.resyncAt(h.clk.Now().Add(installWait + time.Second))
	require.NotEmpty(t, h.flush())
}
