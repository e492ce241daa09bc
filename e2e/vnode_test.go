//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/yaml"

	"github.com/moduleops/module-controller/e2e/framework"
	"github.com/moduleops/module-controller/pkg/basesim"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// TestBasesBecomeVirtualNodes runs the virtual-node lifecycle against each
// broker: three bases become Ready nodes with exactly the documented labels
// and taint, the operations guide's sample Deployment schedules onto them,
// a silent base goes NotReady and is removed, and comes back.
func TestBasesBecomeVirtualNodes(t *testing.T) {
	for _, kind := range allKinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind)
			ids := []string{"10.1.0.1", "10.1.0.2", "10.1.0.3"}
			bases := map[string]*basesim.Base{}
			for _, id := range ids {
				start := time.Now()
				bases[id] = e.startBase(id, nil)
				e.waitNode(id, "Ready", isReady)
				t.Logf("base %s: node Ready %s after start", id, time.Since(start).Round(time.Millisecond))
			}
			for _, id := range ids {
				n := e.waitNode(id, "Ready", isReady)
				checkNodeFields(t, e, n, id)
			}

			// The guide's sample Deployment, as written, schedules onto them.
			d := sampleDeployment(t)
			d.Namespace = e.namespace
			_, err := e.client.AppsV1().Deployments(e.namespace).Create(t.Context(), d, metav1.CreateOptions{})
			require.NoError(t, err)
			// waitOnlyPod waits until the Deployment has exactly one pod and
			// cond holds for it, and returns the id of the base it is bound to.
			waitOnlyPod := func(what string, cond func(p *corev1.Pod, base string) bool) string {
				t.Helper()
				var seen []string
				var base string
				require.Eventuallyf(t, func() bool {
					pods, err := e.client.CoreV1().Pods(e.namespace).List(t.Context(), metav1.ListOptions{LabelSelector: "module.koupleless.io/name=biz1"})
					if err != nil {
						return false
					}
					seen = seen[:0]
					for _, p := range pods.Items {
						seen = append(seen, p.Name+" "+describePod(&p))
					}
					if len(pods.Items) != 1 {
						return false
					}
					id, _, ok := cutNode(pods.Items[0].Spec.NodeName, e.name)
					base = id
					return ok && cond(&pods.Items[0], id)
				}, waitLong, poll, "%s; pods: %v", what, &seen)
				return base
			}
			hosting := waitOnlyPod("the sample Deployment's pod runs on one of the virtual nodes",
				func(p *corev1.Pod, _ string) bool { return running(p) })

			// Silence the module's base: NotReady with a reason and the module
			// pod no longer Ready; then the node is removed with its pod, and
			// the Deployment's replacement runs on another base; back: Ready.
			silent := hosting
			bases[silent].Silence(true)
			n := e.waitNode(silent, "Ready=Unknown BaseUnreachable", func(n *corev1.Node) bool {
				return ready(n).Status == corev1.ConditionUnknown && ready(n).Reason == "BaseUnreachable"
			})
			require.Contains(t, ready(n).Message, "no heartbeat")
			waitOnlyPod("the module pod on the silent base is Running but not Ready", func(p *corev1.Pod, _ string) bool {
				for _, c := range p.Status.Conditions {
					if c.Type == corev1.PodReady {
						return p.Status.Phase == corev1.PodRunning && c.Status == corev1.ConditionFalse && c.Reason == "BaseUnreachable"
					}
				}
				return false
			})
			e.waitNodeGone(silent)
			waitOnlyPod("the Deployment's replacement runs on another base",
				func(p *corev1.Pod, base string) bool { return base != silent && running(p) })
			bases[silent].Silence(false)
			e.waitNode(silent, "Ready again", isReady)
			for _, id := range ids[:2] {
				require.True(t, isReady(e.waitNode(id, "still Ready", isReady)))
			}
		})
	}
}

// TestHealthRepliesKeepBaseAlive covers a real base whose heartbeat task died
// after a failed publish while it still answers health queries.
func TestHealthRepliesKeepBaseAlive(t *testing.T) {
	e := newEnv(t, "embedded")
	b := e.startBase("base-health", nil)
	e.waitNode("base-health", "Ready", isReady)
	b.StopHeartbeats()
	// Sample the node for longer than remove-after: it must stay Ready.
	deadline := time.After(12 * time.Second)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for sampling := true; sampling; {
		select {
		case <-deadline:
			sampling = false
		case <-tick.C:
			n := e.waitNode("base-health", "exists", func(*corev1.Node) bool { return true })
			require.Equal(t, corev1.ConditionTrue, ready(n).Status, "health replies keep the node Ready")
		}
	}
}

// TestBadMessagesChangeNothing sends garbage and spoofed heartbeats: no node
// appears for the spoofed identity, existing nodes keep their labels, and
// the controller keeps running.
func TestBadMessagesChangeNothing(t *testing.T) {
	for _, kind := range brokerKinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind)
			b := e.startBase("10.2.0.1", nil)
			before := e.waitNode("10.2.0.1", "Ready", isReady)

			spoof, err := protocol.Encode(protocol.BaseStatus{
				BaseMetadata: protocol.BaseMetadata{Identity: "10.2.0.99", Name: "evil", Version: "6.6.6", ClusterName: "x"},
				LocalIP:      "10.2.0.99", State: "activated",
			}, time.Now())
			require.NoError(t, err)
			stale, err := protocol.Encode(protocol.BaseStatus{
				BaseMetadata: protocol.BaseMetadata{Identity: "10.2.0.1", Name: "base", Version: "9.9.9", ClusterName: "default"},
				LocalIP:      "10.2.0.1", State: "activated",
			}, time.Now().Add(-time.Hour))
			require.NoError(t, err)
			// Over the controller's heartbeat cap (16 KiB) yet under the
			// brokers' packet limit, so that the controller is what drops it.
			oversized := make([]byte, 64<<10)
			for _, payload := range [][]byte{[]byte("{not json"), []byte(`{"data":42,"publishTimestamp":1}`), oversized, spoof, stale} {
				require.NoError(t, b.SendRaw(protocol.SuffixHeartbeat, payload))
			}
			require.NoError(t, b.SendRaw(protocol.SuffixSimpleBiz, []byte(`[[[`)))
			require.NoError(t, b.SendRaw(protocol.SuffixBizOperation, []byte(`{"data":{"command":"rm -rf"},"publishTimestamp":1}`)))

			// A marker: a fresh base registers after the garbage, so the
			// controller processed everything before it.
			e.startBase("10.2.0.2", nil)
			e.waitNode("10.2.0.2", "Ready", isReady)
			_, err = e.client.CoreV1().Nodes().Get(t.Context(), e.nodeName("10.2.0.99"), metav1.GetOptions{})
			require.Error(t, err, "a spoofed identity gets no node")
			after := e.waitNode("10.2.0.1", "Ready", isReady)
			for k, v := range before.Labels {
				require.Equal(t, v, after.Labels[k], "garbage changed label %s", k)
			}
			metrics, err := e.controller.Metrics()
			require.NoError(t, err)
			require.Contains(t, metrics, `module_controller_mqtt_messages_dropped_total{reason="base_id_mismatch"} 1`)
			require.Contains(t, metrics, `module_controller_mqtt_messages_dropped_total{reason="stale"} 1`)
			require.Contains(t, metrics, `module_controller_mqtt_messages_dropped_total{reason="too_large"} 1`)
		})
	}
}

// TestControllerRestartKeepsNodes restarts the controller: the same nodes
// stay, none is deleted, and they stay Ready.
func TestControllerRestartKeepsNodes(t *testing.T) {
	e := newEnv(t, "mosquitto")
	ids := []string{"10.3.0.1", "10.3.0.2"}
	uids := map[string]string{}
	for _, id := range ids {
		e.startBase(id, nil)
		uids[id] = string(e.waitNode(id, "Ready", isReady).UID)
	}
	w, err := e.client.CoreV1().Nodes().Watch(t.Context(), metav1.ListOptions{})
	require.NoError(t, err)
	defer w.Stop()

	require.NoError(t, e.controller.Restart(t.Context()))
	for _, id := range ids {
		n := e.waitNode(id, "Ready after restart", func(n *corev1.Node) bool { return isReady(n) && ready(n).Reason == "BaseReady" })
		require.Equal(t, uids[id], string(n.UID), "node was recreated")
	}
	for {
		select {
		case ev := <-w.ResultChan():
			if ev.Type == watch.Deleted {
				if n, ok := ev.Object.(*corev1.Node); ok {
					if _, _, mine := cutNode(n.Name, e.name); mine {
						t.Fatalf("node %s deleted during the restart", n.Name)
					}
				}
			}
			continue
		default:
		}
		break
	}
}

// TestBrokerRestartKeepsNodesReady restarts Mosquitto: nodes stay Ready and
// per-base replies keep flowing (health replies refresh capacity).
func TestBrokerRestartKeepsNodesReady(t *testing.T) {
	e := newEnv(t, "mosquitto")
	b := e.startBase("10.4.0.1", nil)
	e.waitNode("10.4.0.1", "Ready", isReady)
	require.NoError(t, e.broker.Restart(t.Context()))
	require.Eventually(t, b.Connected, waitLong, poll, "base reconnects")
	before := b.PublishedCount(protocol.SuffixHealth)
	require.Eventually(t, func() bool { return b.PublishedCount(protocol.SuffixHealth) > before+1 }, waitLong, poll,
		"health queries reach the base again after the broker restart")
	n := e.waitNode("10.4.0.1", "Ready", isReady)
	require.Equal(t, "BaseReady", ready(n).Reason)
}

// checkNodeFields checks a virtual node field by field.
func checkNodeFields(t *testing.T, e *env, n *corev1.Node, id string) {
	t.Helper()
	want := map[string]string{
		"virtual-kubelet.koupleless.io/component": "vnode",
		"virtual-kubelet.koupleless.io/env":       e.name,
		"base.koupleless.io/name":                 "base",
		"base.koupleless.io/version":              "1.0.0",
		"base.koupleless.io/cluster-name":         "default",
		"base.koupleless.io/host-name":            id,
		"base.koupleless.io/stack":                "java",
		"kubernetes.io/hostname":                  e.nodeName(id),
		"kubernetes.io/os":                        "linux",
		"kubernetes.io/arch":                      "amd64",
		"type":                                    "virtual-kubelet",
	}
	for k, v := range want {
		require.Equal(t, v, n.Labels[k], "label %s", k)
	}
	require.NotContains(t, n.Labels, "topology.kubernetes.io/zone", "a base outside the cluster has no zone")
	// The node lifecycle controller removes its not-ready taint once it saw
	// the node Ready; then only ours is left.
	n = e.waitNode(id, "only the virtual-node taint", func(n *corev1.Node) bool {
		return len(n.Spec.Taints) == 1
	})
	require.Equal(t, []corev1.Taint{{Key: "schedule.koupleless.io/virtual-node", Value: "True", Effect: corev1.TaintEffectNoExecute}}, n.Spec.Taints)
	require.Contains(t, n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: e.baseIP(id)})
	if e.http() {
		require.NotEmpty(t, n.Labels["base.koupleless.io/tunnel-port"], "an HTTP base announces its arklet port")
	}
	require.NotEmpty(t, n.Status.NodeInfo.KubeletVersion)
	r := ready(n)
	require.Equal(t, corev1.ConditionTrue, r.Status)
	require.Equal(t, "BaseReady", r.Reason)
	_, err := e.client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(t.Context(), n.Name, metav1.GetOptions{})
	require.NoError(t, err, "node lease")
}

// sampleDeployment reads the operations guide's sample Deployment verbatim.
func sampleDeployment(t *testing.T) *appsv1.Deployment {
	t.Helper()
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	raw, err := os.ReadFile(filepath.Join(root, "deploy", "samples", "sample-deployment.yaml"))
	require.NoError(t, err)
	var d appsv1.Deployment
	require.NoError(t, yaml.UnmarshalStrict(raw, &d))
	return &d
}

// cutNode splits vnode.<id>.<env> and reports whether it belongs to env.
func cutNode(name, env string) (string, string, bool) {
	e, id, ok := protocol.BaseIDFromNodeName(name)
	return id, e, ok && e == env
}

// TestInClusterBaseGetsZoneOfItsHost: a base running as a Pod (its heartbeat
// IP is the Pod's IP) gets the zone and region of the real node hosting it.
func TestInClusterBaseGetsZoneOfItsHost(t *testing.T) {
	e := newEnv(t, "embedded")
	host := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:   "host-" + e.name,
		Labels: map[string]string{"topology.kubernetes.io/zone": "zone-b", "topology.kubernetes.io/region": "region-1"},
	}}
	_, err := e.client.CoreV1().Nodes().Create(t.Context(), host, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = e.client.CoreV1().Nodes().Delete(context.WithoutCancel(t.Context()), host.Name, metav1.DeleteOptions{})
	})
	basePod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "java-base", Namespace: e.namespace},
		Spec:       corev1.PodSpec{NodeName: host.Name, Containers: []corev1.Container{{Name: "base", Image: "example.test/base:1"}}},
	}
	basePod, err = e.client.CoreV1().Pods(e.namespace).Create(t.Context(), basePod, metav1.CreateOptions{})
	require.NoError(t, err)
	basePod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.7.7", PodIPs: []corev1.PodIP{{IP: "10.244.7.7"}}}
	_, err = e.client.CoreV1().Pods(e.namespace).UpdateStatus(t.Context(), basePod, metav1.UpdateOptions{})
	require.NoError(t, err)

	e.startBase("10.244.7.7", nil)
	n := e.waitNode("10.244.7.7", "zone from the host node", func(n *corev1.Node) bool {
		return n.Labels["topology.kubernetes.io/zone"] == "zone-b"
	})
	require.Equal(t, "region-1", n.Labels["topology.kubernetes.io/region"])
}
