//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/moduleops/module-controller/pkg/basesim"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// hold lets an injected fault last d (the fault's duration, not a wait for
// a condition).
func hold(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-time.After(d):
	case <-t.Context().Done():
		t.Fatal("test ended during a fault")
	}
}

// metricLine reports whether the controller's metrics contain line.
func (e *env) metricLine(line string) bool {
	m, err := e.controller.Metrics()
	return err == nil && strings.Contains(m, line)
}

// deletions records the nodes and pods of this env deleted while it runs.
type deletions struct {
	ch   chan string
	stop func()
}

func (e *env) watchDeletions() *deletions {
	e.t.Helper()
	nw, err := e.client.CoreV1().Nodes().Watch(e.t.Context(), metav1.ListOptions{LabelSelector: "virtual-kubelet.koupleless.io/env=" + e.name})
	require.NoError(e.t, err)
	pw, err := e.client.CoreV1().Pods(e.namespace).Watch(e.t.Context(), metav1.ListOptions{})
	require.NoError(e.t, err)
	d := &deletions{ch: make(chan string, 100), stop: func() { nw.Stop(); pw.Stop() }}
	forward := func(w watch.Interface) {
		for ev := range w.ResultChan() {
			if ev.Type != watch.Deleted {
				continue
			}
			switch o := ev.Object.(type) {
			case *corev1.Node:
				d.ch <- "node/" + o.Name
			case *corev1.Pod:
				d.ch <- "pod/" + o.Name
			}
		}
	}
	go forward(nw)
	go forward(pw)
	e.t.Cleanup(d.stop)
	return d
}

func (d *deletions) seen() []string {
	var out []string
	for {
		select {
		case s := <-d.ch:
			out = append(out, s)
		default:
			return out
		}
	}
}

// TestBrokerOutageLongerThanRemovalRemovesNothing stops Mosquitto for longer
// than the removal window: the controller enters tunnel disruption mode, no
// node or pod is deleted, and when the broker returns every module is
// adopted as it runs: no install, no uninstall at any base.
func TestBrokerOutageLongerThanRemovalRemovesNothing(t *testing.T) {
	e := newEnv(t, "mosquitto")
	ids := []string{"10.31.0.1", "10.31.0.2", "10.31.0.3"}
	bases := map[string]*basesim.Base{}
	for i, id := range ids {
		bases[id] = e.startBase(id, nil)
		e.waitNode(id, "Ready", isReady)
		e.createPod(e.modulePod("m"+string(rune('a'+i)), id, "biz1:0.0.1"))
	}
	for i := range ids {
		e.waitPod("m"+string(rune('a'+i)), "Running", running)
	}
	for _, b := range bases {
		b.ResetReceived()
	}
	gone := e.watchDeletions()

	require.NoError(t, e.broker.Stop())
	require.Eventually(t, func() bool { return e.metricLine("module_controller_tunnel_disrupted 1") }, waitLong, poll)
	hold(t, 12*time.Second) // remove-after is 8 s
	for _, id := range ids {
		n := e.waitNode(id, "held Ready", isReady)
		require.Equal(t, "TunnelDisrupted", ready(n).Reason)
	}
	require.NoError(t, e.broker.Restart(t.Context()))

	require.Eventually(t, func() bool { return e.metricLine("module_controller_tunnel_disrupted 0") }, waitLong, poll)
	for i, id := range ids {
		e.waitNode(id, "Ready after the outage", func(n *corev1.Node) bool { return isReady(n) && ready(n).Reason == "BaseReady" })
		e.waitPod("m"+string(rune('a'+i)), "Running", running)
	}
	// The biz list query after the outage is the last command each base
	// gets: once every base answered it, nothing else is on its way.
	for _, b := range bases {
		require.Eventually(t, func() bool { return b.ReceivedCount(protocol.CommandQueryAllBiz, "") > 0 }, waitLong, poll)
	}
	require.Empty(t, gone.seen(), "nodes or pods deleted because the controller lost the broker")
	for id, b := range bases {
		require.Zero(t, b.ReceivedCount(protocol.CommandInstallBiz, "biz1:0.0.1"), "base %s got a second install", id)
		require.Zero(t, b.ReceivedCount(protocol.CommandUninstallBiz, "biz1:0.0.1"), "base %s got an uninstall", id)
		require.Equal(t, "ACTIVATED", bizState(b, "biz1", "0.0.1"))
	}
	require.True(t, e.metricLine("module_controller_node_transitions_total{to=\"unreachable\"} 0") ||
		!e.metricLine("module_controller_node_transitions_total{to=\"unreachable\"}"), "no node went unreachable")
}

// TestInvalidHeartbeatDoesNotTakeTheControllerDown: a base whose heartbeat
// cannot become a valid Node (a label value the API server rejects) gets no
// node; the controller stays up past the removal window and keeps serving the
// bases before and after it.
func TestInvalidHeartbeatDoesNotTakeTheControllerDown(t *testing.T) {
	e := newEnv(t, "embedded")
	e.startBase("10.32.0.1", nil)
	e.waitNode("10.32.0.1", "Ready", isReady)

	bad := e.startBase("10.32.0.66", func(c *basesim.Config) { c.Name = "not a valid label value!" })
	hold(t, 4*time.Second)
	bad.Stop() // its teardown is where a reused NodeController used to panic
	hold(t, 12*time.Second)

	_, err := e.client.CoreV1().Nodes().Get(t.Context(), e.nodeName("10.32.0.66"), metav1.GetOptions{})
	require.Error(t, err, "the invalid heartbeat got a node")
	metrics, err := e.controller.Metrics()
	require.NoError(t, err, "the controller is down:\n%s", e.controller.LogTail(40))
	require.Regexp(t, `module_controller_heartbeats_rejected_total\{reason="label_value"\} [1-9]`, metrics,
		"the heartbeat was not rejected by validation")
	e.waitNode("10.32.0.1", "still Ready", isReady)
	e.startBase("10.32.0.2", nil)
	e.waitNode("10.32.0.2", "Ready", isReady)
}
