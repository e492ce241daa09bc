package controller

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/moduleops/module-controller/pkg/api"
	"github.com/moduleops/module-controller/pkg/fieldcheck"
	"github.com/moduleops/module-controller/pkg/protocol"
	"github.com/moduleops/module-controller/tunnel"
	"github.com/moduleops/module-controller/tunnel/tunneltest"
)

const waitFor = 10 * time.Second

type fixture struct {
	t       *testing.T
	client  *fake.Clientset
	tunnel  *tunneltest.Tunnel
	clock   *clocktesting.FakeClock
	ctrl    *Controller
	reg     *prometheus.Registry
	stopped chan struct{}
	cancel  context.CancelFunc
}

// stop stops the controller and waits until Run returned.
func (f *fixture) stop() {
	f.cancel()
	<-f.stopped
}

func newFixture(t *testing.T, mod func(*Config), objects ...corev1.Node) *fixture {
	t.Helper()
	f := &fixture{
		t:       t,
		client:  fake.NewClientset(),
		tunnel:  tunneltest.New(),
		clock:   clocktesting.NewFakeClock(time.Now()),
		reg:     prometheus.NewRegistry(),
		stopped: make(chan struct{}),
	}
	for i := range objects {
		_, err := f.client.CoreV1().Nodes().Create(t.Context(), &objects[i], metav1.CreateOptions{})
		require.NoError(t, err)
	}
	cfg := Config{
		Client: f.client, Tunnel: f.tunnel, Env: "default", Version: "v9.9.9",
		Clock: f.clock, Registerer: f.reg,
	}
	if mod != nil {
		mod(&cfg)
	}
	ctrl, err := New(cfg)
	require.NoError(t, err)
	f.ctrl = ctrl
	ctx, cancel := context.WithCancel(t.Context())
	f.cancel = cancel
	go func() {
		defer close(f.stopped)
		require.NoError(t, ctrl.Run(ctx))
	}()
	t.Cleanup(func() {
		cancel()
		<-f.stopped
	})
	select {
	case <-ctrl.Ready():
	case <-time.After(waitFor):
		t.Fatal("controller not ready")
	}
	return f
}

func (f *fixture) heartbeat(id, state string) {
	f.tunnel.Inject(tunnel.BaseHeartbeat{
		Header: tunnel.Header{BaseID: id, PublishedAt: f.clock.Now()},
		Status: protocol.BaseStatus{
			BaseMetadata:  protocol.BaseMetadata{Identity: id, Name: "base", Version: "1.0.0", ClusterName: "default"},
			LocalIP:       "10.0.0.1",
			LocalHostName: "host-a",
			State:         state,
		},
	})
}

// node waits until the node exists and cond holds for it.
func (f *fixture) node(name string, cond func(*corev1.Node) bool) *corev1.Node {
	f.t.Helper()
	var got *corev1.Node
	defer func() {
		if f.t.Failed() {
			f.t.Logf("last node: %+v", got)
		}
	}()
	require.Eventually(f.t, func() bool {
		n, err := f.client.CoreV1().Nodes().Get(f.t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		got = n
		return cond(n)
	}, waitFor, 10*time.Millisecond)
	return got
}

func (f *fixture) nodeGone(name string) {
	f.t.Helper()
	require.Eventually(f.t, func() bool {
		_, err := f.client.CoreV1().Nodes().Get(f.t.Context(), name, metav1.GetOptions{})
		_, lerr := f.client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(f.t.Context(), name, metav1.GetOptions{})
		return apierrors.IsNotFound(err) && apierrors.IsNotFound(lerr)
	}, waitFor, 10*time.Millisecond)
}

// advance moves the fake clock and lets one liveness check run.
func (f *fixture) advance(d time.Duration) {
	f.t.Helper()
	require.Eventually(f.t, f.clock.HasWaiters, waitFor, time.Millisecond)
	f.clock.Step(d)
}

func readyStatus(n *corev1.Node) (corev1.ConditionStatus, string) {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status, c.Reason
		}
	}
	return "", ""
}

func isReady(status corev1.ConditionStatus, reason string) func(*corev1.Node) bool {
	return func(n *corev1.Node) bool {
		s, r := readyStatus(n)
		return s == status && r == reason
	}
}

func TestHeartbeatCreatesReadyNodeWithLease(t *testing.T) {
	f := newFixture(t, nil)
	f.heartbeat("base-1", "activated")

	n := f.node("vnode.base-1.default", isReady(corev1.ConditionTrue, api.ReasonBaseReady))
	require.Equal(t, "java", n.Labels[api.LabelBaseStack])
	require.Equal(t, "v9.9.9", n.Status.NodeInfo.KubeletVersion)
	require.Eventually(t, func() bool {
		_, err := f.client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(t.Context(), n.Name, metav1.GetOptions{})
		return err == nil
	}, waitFor, 10*time.Millisecond)
	require.Equal(t, 1.0, testutil.ToFloat64(f.ctrl.metrics.bases))
}

func TestSilentBaseGoesUnreachableThenComesBackThenIsRemoved(t *testing.T) {
	f := newFixture(t, nil)
	f.heartbeat("base-1", "activated")
	name := "vnode.base-1.default"
	f.node(name, isReady(corev1.ConditionTrue, api.ReasonBaseReady))

	f.advance(DefaultUnreachableAfter + time.Second)
	f.node(name, isReady(corev1.ConditionUnknown, api.ReasonBaseUnreachable))

	f.heartbeat("base-1", "activated")
	f.node(name, isReady(corev1.ConditionTrue, api.ReasonBaseReady))

	f.advance(DefaultRemoveAfter)
	f.nodeGone(name)
	require.Equal(t, 0.0, testutil.ToFloat64(f.ctrl.metrics.bases))
	require.Equal(t, 1.0, testutil.ToFloat64(f.ctrl.metrics.transitions.WithLabelValues("removed")))
}

func TestHealthReplyKeepsBaseAlive(t *testing.T) {
	f := newFixture(t, nil)
	f.heartbeat("base-1", "activated")
	name := "vnode.base-1.default"
	f.node(name, isReady(corev1.ConditionTrue, api.ReasonBaseReady))

	var n *corev1.Node
	for i := range 3 {
		f.advance(DefaultUnreachableAfter - time.Second)
		health := protocol.HealthReply{Code: protocol.CodeSuccess}
		health.Data.HealthData.MasterBizInfo.BizState = "ACTIVATED"
		// A different figure per reply shows when each one was handled: the
		// clock must not move on before that, or the base would be removed
		// while a reply waits in the queue.
		metaspace := int64(256+i) << 20
		health.Data.HealthData.JVM.JavaMaxMetaspace = metaspace
		f.tunnel.Inject(tunnel.BaseHealth{Header: tunnel.Header{BaseID: "base-1", PublishedAt: f.clock.Now()}, Health: health})
		n = f.node(name, func(n *corev1.Node) bool {
			m, ok := n.Status.Capacity[corev1.ResourceMemory]
			return ok && m.Value() == metaspace
		})
	}
	status, _ := readyStatus(n)
	require.Equal(t, corev1.ConditionTrue, status, "health replies alone keep the node Ready")
	require.NotEmpty(t, f.tunnel.CommandsFor("base-1", protocol.CommandHealth), "the controller polls health")
}

func TestRemovedBaseTakesItsPods(t *testing.T) {
	f := newFixture(t, nil)
	f.heartbeat("base-1", "activated")
	name := "vnode.base-1.default"
	f.node(name, isReady(corev1.ConditionTrue, api.ReasonBaseReady))
	for _, p := range []*corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Name: "on-base", Namespace: "a", UID: "u1"}, Spec: corev1.PodSpec{NodeName: name}},
		{ObjectMeta: metav1.ObjectMeta{Name: "also-on-base", Namespace: "b", UID: "u2"}, Spec: corev1.PodSpec{NodeName: name}},
		{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere", Namespace: "a", UID: "u3"}, Spec: corev1.PodSpec{NodeName: "vnode.base-2.default"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "unscheduled", Namespace: "a", UID: "u4"}},
	} {
		_, err := f.client.CoreV1().Pods(p.Namespace).Create(t.Context(), p, metav1.CreateOptions{})
		require.NoError(t, err)
	}

	f.advance(DefaultRemoveAfter + time.Second)
	f.nodeGone(name)
	require.Eventually(t, func() bool {
		pods, err := f.client.CoreV1().Pods(metav1.NamespaceAll).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return false
		}
		var left []string
		for _, p := range pods.Items {
			left = append(left, p.Name)
		}
		slices.Sort(left)
		return assert.ObjectsAreEqual([]string{"elsewhere", "unscheduled"}, left)
	}, waitFor, 10*time.Millisecond, "only the removed node's pods are deleted")
	require.Eventually(t, func() bool {
		events, err := f.client.CoreV1().Events("").List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return false
		}
		var about []string
		for _, e := range events.Items {
			if e.Reason == "BaseGone" && e.InvolvedObject.Kind == "Pod" && strings.Contains(e.Message, name) {
				about = append(about, e.InvolvedObject.Namespace+"/"+e.InvolvedObject.Name)
			}
		}
		slices.Sort(about)
		return assert.ObjectsAreEqual([]string{"a/on-base", "b/also-on-base"}, about)
	}, waitFor, 10*time.Millisecond, "each deleted pod gets an Event saying why")
}

func TestZoneComesFromTheBasePodsHost(t *testing.T) {
	host := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "host-1", Labels: map[string]string{
		corev1.LabelTopologyZone: "zone-b", corev1.LabelTopologyRegion: "region-1",
	}}}
	f := newFixture(t, nil, host)
	running := corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"}
	for _, p := range []*corev1.Pod{
		// Listed first: a module pod left on a former virtual node of a base
		// with the same IP, in another env.
		{ObjectMeta: metav1.ObjectMeta{Name: "a-module", Namespace: "a"}, Spec: corev1.PodSpec{NodeName: "vnode.10.0.0.1.other"}, Status: running},
		// A pod left on a node that was deleted.
		{ObjectMeta: metav1.ObjectMeta{Name: "a-stale-base", Namespace: "a"}, Spec: corev1.PodSpec{NodeName: "deleted-host"}, Status: running},
		{ObjectMeta: metav1.ObjectMeta{Name: "b-java-base", Namespace: "a"}, Spec: corev1.PodSpec{NodeName: host.Name}, Status: running},
	} {
		_, err := f.client.CoreV1().Pods(p.Namespace).Create(t.Context(), p, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	f.heartbeat("base-1", "activated") // localIP 10.0.0.1
	n := f.node("vnode.base-1.default", func(n *corev1.Node) bool { return n.Labels[corev1.LabelTopologyZone] != "" })
	require.Equal(t, "zone-b", n.Labels[corev1.LabelTopologyZone])
	require.Equal(t, "region-1", n.Labels[corev1.LabelTopologyRegion])
}

func TestDeactivatedHeartbeatRemovesNode(t *testing.T) {
	f := newFixture(t, nil)
	f.heartbeat("base-1", "activated")
	name := "vnode.base-1.default"
	f.node(name, isReady(corev1.ConditionTrue, api.ReasonBaseReady))
	f.heartbeat("base-1", "deactivated")
	f.nodeGone(name)
}

func TestRestartAdoptsExistingNodesWithoutDeleting(t *testing.T) {
	existing := corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: "vnode.base-1.default",
		Labels: map[string]string{
			api.LabelComponent: api.ComponentVNode, api.LabelEnv: "default",
			api.LabelBaseName: "base", api.LabelBaseVersion: "1.0.0",
		},
	}}
	other := corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:   "vnode.base-2.dev",
		Labels: map[string]string{api.LabelComponent: api.ComponentVNode, api.LabelEnv: "dev"},
	}}
	f := newFixture(t, nil, existing, other)
	name := existing.Name

	n := f.node(name, isReady(corev1.ConditionTrue, api.ReasonBaseAdopted))
	require.Equal(t, "1.0.0", n.Labels[api.LabelBaseVersion], "adopted node keeps its labels")

	f.advance(DefaultUnreachableAfter - time.Second)
	f.heartbeat("base-1", "activated")
	f.node(name, isReady(corev1.ConditionTrue, api.ReasonBaseReady))

	_, err := f.client.CoreV1().Nodes().Get(t.Context(), other.Name, metav1.GetOptions{})
	require.NoError(t, err, "nodes of another env are left alone")
}

func TestAdoptedSilentBaseIsRemovedAfterFullWindow(t *testing.T) {
	existing := corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:   "vnode.base-1.default",
		Labels: map[string]string{api.LabelComponent: api.ComponentVNode, api.LabelEnv: "default"},
	}}
	f := newFixture(t, nil, existing)
	f.node(existing.Name, isReady(corev1.ConditionTrue, api.ReasonBaseAdopted))
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "on-base", Namespace: "a", UID: "u1"}, Spec: corev1.PodSpec{NodeName: existing.Name}}
	_, err := f.client.CoreV1().Pods("a").Create(t.Context(), pod, metav1.CreateOptions{})
	require.NoError(t, err)

	// Not judged before its full window has passed...
	f.advance(DefaultRemoveAfter - DefaultCheckInterval)
	f.node(existing.Name, isReady(corev1.ConditionUnknown, api.ReasonBaseUnreachable))
	_, err = f.client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(t.Context(), existing.Name, metav1.GetOptions{})
	require.NoError(t, err, "the lease stays while the node does")

	// ...and removed with its lease and pods once it has.
	f.stepUntil(time.Second, func() bool { return !f.nodeExists(existing.Name) })
	f.nodeGone(existing.Name)
	require.Eventually(t, func() bool {
		_, err := f.client.CoreV1().Pods("a").Get(t.Context(), "on-base", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}, waitFor, 10*time.Millisecond, "the node's pods go with it")
}

func TestDuplicateIdentityIsReported(t *testing.T) {
	f := newFixture(t, nil)
	f.heartbeat("base-1", "activated")
	f.node("vnode.base-1.default", isReady(corev1.ConditionTrue, api.ReasonBaseReady))
	f.tunnel.Inject(tunnel.BaseHeartbeat{
		Header: tunnel.Header{BaseID: "base-1", PublishedAt: f.clock.Now()},
		Status: protocol.BaseStatus{
			BaseMetadata: protocol.BaseMetadata{Identity: "base-1", Name: "base", Version: "1.0.0"},
			LocalIP:      "10.0.0.2", LocalHostName: "host-b", State: "activated",
		},
	})
	require.Eventually(t, func() bool { return testutil.ToFloat64(f.ctrl.metrics.duplicates) == 1 }, waitFor, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		events, err := f.client.CoreV1().Events("").List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return false
		}
		for _, e := range events.Items {
			if e.Reason == "DuplicateBaseIdentity" && e.InvolvedObject.Name == "vnode.base-1.default" {
				return true
			}
		}
		return false
	}, waitFor, 10*time.Millisecond)
}

func TestOwnershipFiltersBases(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Ownership = ownsOnly("base-2") })
	f.heartbeat("base-1", "activated")
	f.heartbeat("base-2", "activated")
	f.node("vnode.base-2.default", isReady(corev1.ConditionTrue, api.ReasonBaseReady))
	_, err := f.client.CoreV1().Nodes().Get(t.Context(), "vnode.base-1.default", metav1.GetOptions{})
	require.True(t, apierrors.IsNotFound(err), "a base this replica does not own gets no node")
}

type ownsOnly string

func (o ownsOnly) Owns(id string) bool { return id == string(o) }

func TestConfigValidation(t *testing.T) {
	_, err := New(Config{UnreachableAfter: time.Minute, RemoveAfter: time.Second})
	require.ErrorContains(t, err, "Kubernetes client")
	require.ErrorContains(t, err, "tunnel")
	_, envErr := New(Config{Env: "a/b"})
	require.ErrorContains(t, envErr, "Env invalid env")
	require.ErrorContains(t, err, "UnreachableAfter 1m0s must be shorter than RemoveAfter 1s")
	var fe *fieldcheck.Error
	require.ErrorAs(t, err, &fe, "each problem names its field, for the command line to name its flag")
	require.NoError(t, DefaultConfig().Validate(), "the defaults are valid")
}

func TestKubeletEndpointAndPodsWithIP(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.KubeletAddress, c.KubeletPort = "10.1.2.3", 10250 })
	base := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "base-0", Namespace: "apps"},
		Spec:       corev1.PodSpec{NodeName: "worker-1", Containers: []corev1.Container{{Name: "base"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"},
	}
	_, err := f.client.CoreV1().Pods("apps").Create(t.Context(), base, metav1.CreateOptions{})
	require.NoError(t, err)
	f.heartbeat("base-1", "activated")
	n := f.node("vnode.base-1.default", func(n *corev1.Node) bool { return n.Status.DaemonEndpoints.KubeletEndpoint.Port == 10250 })
	require.Contains(t, n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: "10.1.2.3"})
	require.Contains(t, n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "10.0.0.1"})

	require.Eventually(t, func() bool {
		pods, err := f.ctrl.PodsWithIP(t.Context(), "10.0.0.1")
		return err == nil && len(pods) == 1 && pods[0].Name == "base-0" && pods[0].Spec.NodeName == "worker-1"
	}, waitFor, 10*time.Millisecond, "the base's pod, from the shared cache")
}
