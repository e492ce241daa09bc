//go:build e2e

package e2e

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/moduleops/module-controller/pkg/basesim"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// TestModulePodLifecycle: a two-module pod installs both bizs and runs; its
// deletion uninstalls exactly them and releases the pod right away.
func TestModulePodLifecycle(t *testing.T) {
	for _, kind := range allKinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind)
			b := e.startBase("10.5.0.1", nil)
			e.waitNode("10.5.0.1", "Ready", isReady)

			start := time.Now()
			e.createPod(e.modulePod("two", "10.5.0.1", "biz1:0.0.1", "biz2:0.0.1"))
			p := e.waitPod("two", "Running and Ready", running)
			t.Logf("two-module pod Running %s after create", time.Since(start).Round(time.Millisecond))
			require.Equal(t, e.baseIP("10.5.0.1"), p.Status.PodIP)
			require.NotNil(t, p.Status.StartTime)
			for _, cs := range p.Status.ContainerStatuses {
				require.True(t, cs.Ready, cs.Name)
				require.NotNil(t, cs.State.Running, cs.Name)
			}
			require.Equal(t, "ACTIVATED", bizState(b, "biz1", "0.0.1"))
			require.Equal(t, "ACTIVATED", bizState(b, "biz2", "0.0.1"))
			require.Equal(t, 1, b.ReceivedCount(protocol.CommandInstallBiz, "biz1:0.0.1"))

			start = time.Now()
			require.NoError(t, e.client.CoreV1().Pods(e.namespace).Delete(t.Context(), "two", metav1.DeleteOptions{}))
			require.Eventually(t, func() bool {
				_, err := e.client.CoreV1().Pods(e.namespace).Get(t.Context(), "two", metav1.GetOptions{})
				return apierrors.IsNotFound(err)
			}, 20*time.Second, poll, "pod released once the base confirmed (well before the 30 s grace period)")
			t.Logf("pod gone %s after delete", time.Since(start).Round(time.Millisecond))
			require.Empty(t, bizState(b, "biz1", "0.0.1"))
			require.Empty(t, bizState(b, "biz2", "0.0.1"))
			require.Equal(t, 1, b.ReceivedCount(protocol.CommandUninstallBiz, "biz1:0.0.1"))
			require.Equal(t, 1, b.ReceivedCount(protocol.CommandUninstallBiz, "biz2:0.0.1"))
		})
	}
}

// TestInstallFailureIsVisible: the base's error shows on the pod.
func TestInstallFailureIsVisible(t *testing.T) {
	for _, kind := range tunnelKinds {
		t.Run(kind, func(t *testing.T) { testInstallFailureIsVisible(t, kind) })
	}
}

func testInstallFailureIsVisible(t *testing.T, kind string) {
	e := newEnv(t, kind)
	e.startBase("10.6.0.1", func(c *basesim.Config) {
		c.FailInstall = func(m protocol.BizModel) error {
			if m.BizName == "broken" {
				return errors.New("java.lang.IllegalStateException: module main failed\n\tat com.example.Main.main(Main.java:12)")
			}
			return nil
		}
	})
	e.waitNode("10.6.0.1", "Ready", isReady)
	e.createPod(e.modulePod("bad", "10.6.0.1", "broken:1.0.0"))
	p := e.waitPod("bad", "install failure shown", func(p *corev1.Pod) bool {
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && w.Reason == "BizInstallFailed" {
				return strings.Contains(w.Message, "module main failed")
			}
		}
		return false
	})
	require.NotEqual(t, corev1.PodRunning, p.Status.Phase)
	require.Eventually(t, func() bool { return hasEvent(t, e, "bad", "BizInstallFailed") }, waitLong, poll)
}

// TestInvalidPodsGetReasons: containers that cannot be bizs are never sent.
func TestInvalidPodsGetReasons(t *testing.T) {
	e := newEnv(t, "embedded")
	b := e.startBase("10.7.0.1", nil)
	e.waitNode("10.7.0.1", "Ready", isReady)
	p := e.modulePod("noversion", "10.7.0.1", "biz1:0.0.1")
	p.Spec.Containers[0].Env = nil
	e.createPod(p)
	p = e.modulePod("notaurl", "10.7.0.1", "biz2:0.0.1")
	p.Spec.Containers[0].Image = "nginx:latest"
	e.createPod(p)
	for _, name := range []string{"noversion", "notaurl"} {
		e.waitPod(name, "InvalidBizSpec", func(p *corev1.Pod) bool {
			return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Waiting != nil &&
				p.Status.ContainerStatuses[0].State.Waiting.Reason == "InvalidBizSpec"
		})
		require.Eventually(t, func() bool { return hasEvent(t, e, name, "InvalidBizSpec") }, waitLong, poll)
	}
	require.Zero(t, b.ReceivedCount(protocol.CommandInstallBiz, ""), "nothing was sent for invalid containers")
}

// TestSupersededModuleFails covers the batch-update mechanism in both base
// modes: installing biz1 0.0.2 next to 0.0.1 deactivates one of them, and the
// pod of the deactivated version goes Failed with reason BizDeactivate.
func TestSupersededModuleFails(t *testing.T) {
	for _, kind := range tunnelKinds {
		t.Run(kind, func(t *testing.T) { testSupersededModuleFails(t, kind) })
	}
}

func testSupersededModuleFails(t *testing.T, kind string) {
	t.Run("activate.new.module=true", func(t *testing.T) {
		e := newEnv(t, kind)
		b := e.startBase("10.8.0.1", nil)
		e.waitNode("10.8.0.1", "Ready", isReady)
		e.createPod(e.modulePod("v1", "10.8.0.1", "biz1:0.0.1"))
		e.waitPod("v1", "Running", running)
		e.createPod(e.modulePod("v2", "10.8.0.1", "biz1:0.0.2"))
		e.waitPod("v2", "Running", running)
		old := e.waitPod("v1", "Failed BizDeactivate", func(p *corev1.Pod) bool {
			return p.Status.Phase == corev1.PodFailed && p.Status.Reason == "BizDeactivate"
		})
		require.Contains(t, old.Status.Message, "biz1:0.0.2")
		require.Eventually(t, func() bool { return hasEvent(t, e, "v1", "BizDeactivate") }, waitLong, poll)

		// A restarted controller still owns the Failed pod's biz (virtual-kubelet
		// never hands terminal pods to a provider; the controller adopts them).
		require.NoError(t, e.controller.Restart(t.Context()))
		e.waitPod("v2", "Running after the restart", running)

		// Deleting the Failed pod uninstalls 0.0.1 exactly once and leaves 0.0.2.
		require.NoError(t, e.client.CoreV1().Pods(e.namespace).Delete(t.Context(), "v1", metav1.DeleteOptions{}))
		// Well within the 30 s install timeout: the first uninstall must not be
		// lost while the base reconnects to the restarted embedded broker.
		require.Eventually(t, func() bool { return bizState(b, "biz1", "0.0.1") == "" }, 20*time.Second, poll,
			"0.0.1 uninstalled by the first uninstallBiz, not by a retry after the install timeout")
		require.Equal(t, 1, b.ReceivedCount(protocol.CommandUninstallBiz, "biz1:0.0.1"))
		require.Zero(t, b.ReceivedCount(protocol.CommandUninstallBiz, "biz1:0.0.2"))
		require.Equal(t, "ACTIVATED", bizState(b, "biz1", "0.0.2"))
		require.True(t, running(e.waitPod("v2", "Running", running)))
	})
	t.Run("sofa-ark default", func(t *testing.T) {
		e := newEnv(t, kind)
		e.startBase("10.8.0.2", func(c *basesim.Config) { c.Activation = basesim.KeepOld })
		e.waitNode("10.8.0.2", "Ready", isReady)
		e.createPod(e.modulePod("v1", "10.8.0.2", "biz1:0.0.1"))
		e.waitPod("v1", "Running", running)
		e.createPod(e.modulePod("v2", "10.8.0.2", "biz1:0.0.2"))
		p := e.waitPod("v2", "Failed BizDeactivate", func(p *corev1.Pod) bool {
			return p.Status.Phase == corev1.PodFailed && p.Status.Reason == "BizDeactivate"
		})
		require.Contains(t, p.Status.Message, "biz1:0.0.1", "the message names the version that stayed active")
		require.True(t, running(e.waitPod("v1", "still Running", running)))
	})
}

// TestBaseRestartReinstallsBaseline: a restarted base gets exactly the bizs
// of the pods bound to its node back: over MQTT it asks for its baseline,
// over HTTP (no baseline query) it comes back empty and its biz list makes
// the controller install each one again, once.
func TestBaseRestartReinstallsBaseline(t *testing.T) {
	for _, kind := range []string{"mosquitto", httpKind} {
		t.Run(kind, func(t *testing.T) { testBaseRestartReinstallsBaseline(t, kind) })
	}
}

func testBaseRestartReinstallsBaseline(t *testing.T, kind string) {
	e := newEnv(t, kind)
	b := e.startBase("10.9.0.1", nil)
	e.waitNode("10.9.0.1", "Ready", isReady)
	e.createPod(e.modulePod("a", "10.9.0.1", "biz1:0.0.1"))
	e.createPod(e.modulePod("b", "10.9.0.1", "biz2:0.0.1", "biz3:0.0.1"))
	e.waitPod("a", "Running", running)
	e.waitPod("b", "Running", running)

	b.ResetReceived()
	require.NoError(t, b.Restart(t.Context()))
	require.Eventually(t, func() bool {
		return bizState(b, "biz1", "0.0.1") == "ACTIVATED" && bizState(b, "biz2", "0.0.1") == "ACTIVATED" && bizState(b, "biz3", "0.0.1") == "ACTIVATED"
	}, waitLong, poll, "the baseline reinstalled every bound biz: %v", b.Bizs())
	require.Len(t, b.Bizs(), 3)
	var baselines [][]protocol.BizModel
	for _, c := range b.Received() {
		if c.Name == basesim.CommandBaseline {
			baselines = append(baselines, c.Bizs)
		}
	}
	if kind == httpKind {
		require.Empty(t, baselines, "no baseline over HTTP")
		for _, k := range []string{"biz1:0.0.1", "biz2:0.0.1", "biz3:0.0.1"} {
			require.Equal(t, 1, b.ReceivedCount(protocol.CommandInstallBiz, k), "reinstalled once: %s", k)
		}
	} else {
		require.Len(t, baselines, 1)
		require.ElementsMatch(t, []string{"biz1:0.0.1", "biz2:0.0.1", "biz3:0.0.1"}, keys(baselines[0]))
	}
	e.waitPod("a", "Running", running)
	e.waitPod("b", "Running", running)
}

// TestControllerRestartSendsNoDuplicateInstall: after a restart, running bizs
// are adopted from the base's list; no installBiz is sent again.
func TestControllerRestartSendsNoDuplicateInstall(t *testing.T) {
	for _, kind := range []string{"mosquitto", httpKind} {
		t.Run(kind, func(t *testing.T) { testControllerRestartSendsNoDuplicateInstall(t, kind) })
	}
}

func testControllerRestartSendsNoDuplicateInstall(t *testing.T, kind string) {
	e := newEnv(t, kind)
	b := e.startBase("10.10.0.1", nil)
	e.waitNode("10.10.0.1", "Ready", isReady)
	e.createPod(e.modulePod("a", "10.10.0.1", "biz1:0.0.1", "biz2:0.0.1"))
	e.waitPod("a", "Running", running)
	require.NoError(t, e.controller.Restart(t.Context()))
	// A pod created after the restart proves the new process is serving.
	e.createPod(e.modulePod("c", "10.10.0.1", "biz3:0.0.1"))
	e.waitPod("c", "Running", running)
	e.waitPod("a", "Running", running)
	require.Equal(t, 1, b.ReceivedCount(protocol.CommandInstallBiz, "biz1:0.0.1"))
	require.Equal(t, 1, b.ReceivedCount(protocol.CommandInstallBiz, "biz2:0.0.1"))
}

func keys(bizs []protocol.BizModel) []string {
	out := make([]string, 0, len(bizs))
	for _, b := range bizs {
		out = append(out, b.Key())
	}
	return out
}

// hasEvent reports whether an Event with reason was recorded on the pod.
func hasEvent(t *testing.T, e *env, pod, reason string) bool {
	events, err := e.client.CoreV1().Events(e.namespace).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		return false
	}
	for _, ev := range events.Items {
		if ev.InvolvedObject.Name == pod && ev.Reason == reason {
			return true
		}
	}
	return false
}
