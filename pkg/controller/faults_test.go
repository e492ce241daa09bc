package controller

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/moduleops/module-controller/pkg/api"
	"github.com/moduleops/module-controller/pkg/protocol"
	"github.com/moduleops/module-controller/provider"
	"github.com/moduleops/module-controller/tunnel"
	"github.com/moduleops/module-controller/tunnel/tunneltest"
)

// fault fails calls of one verb on one resource with an internal error
// while armed; it counts every call.
type fault struct {
	armed atomic.Int32 // calls left to fail
	calls atomic.Int32
}

// injectFault installs a fault on the fixture's client; call it from the
// Config hook of newFixture, before anything uses the client.
func injectFault(c *Config, verb, resource string) *fault {
	ft := &fault{}
	c.Client.(*fake.Clientset).PrependReactor(verb, resource, func(clienttesting.Action) (bool, k8sruntime.Object, error) {
		ft.calls.Add(1)
		if ft.armed.Add(-1) >= 0 {
			return true, nil, apierrors.NewInternalError(errors.New("injected"))
		}
		ft.armed.Store(0)
		return false, nil, nil
	})
	return ft
}

// stepUntil steps the fake clock by d until cond holds.
func (f *fixture) stepUntil(d time.Duration, cond func() bool) {
	f.t.Helper()
	require.Eventually(f.t, func() bool {
		if cond() {
			return true
		}
		f.clock.Step(d)
		return false
	}, waitFor, 20*time.Millisecond)
}

func (f *fixture) nodeExists(name string) bool {
	_, err := f.client.CoreV1().Nodes().Get(f.t.Context(), name, metav1.GetOptions{})
	return err == nil
}

func TestFailedRegistrationIsRetriedOnAFreshNodeController(t *testing.T) {
	// An API server that refuses the first registrations must not take the
	// controller down (a NodeController runs once only): a new one retries.
	var creates *fault
	f := newFixture(t, func(c *Config) {
		creates = injectFault(c, "create", "nodes")
		creates.armed.Store(3)
	})
	f.heartbeat("base-1", "activated")
	f.stepUntil(time.Second, func() bool { return f.nodeExists("vnode.base-1.default") })
	require.GreaterOrEqual(t, creates.calls.Load(), int32(4))
	require.GreaterOrEqual(t, testutil.ToFloat64(f.ctrl.metrics.registrations), 3.0)
	f.node("vnode.base-1.default", isReady(corev1.ConditionTrue, api.ReasonBaseReady))

	// Another base is served meanwhile and after.
	f.heartbeat("base-2", "activated")
	f.node("vnode.base-2.default", isReady(corev1.ConditionTrue, api.ReasonBaseReady))

	// Removal of the base once registered after retries does not panic.
	f.heartbeat("base-1", "deactivated")
	f.nodeGone("vnode.base-1.default")
}

func TestFailedRemovalIsRetriedUntilItSucceeds(t *testing.T) {
	var deletes *fault
	f := newFixture(t, func(c *Config) { deletes = injectFault(c, "delete", "leases") })
	f.heartbeat("base-1", "activated")
	f.node("vnode.base-1.default", isReady(corev1.ConditionTrue, api.ReasonBaseReady))
	// The lease is created by the node's own goroutine, after the node.
	require.Eventually(t, func() bool {
		_, err := f.client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(t.Context(), "vnode.base-1.default", metav1.GetOptions{})
		return err == nil
	}, waitFor, 10*time.Millisecond)
	deletes.armed.Store(2)
	f.heartbeat("base-1", "deactivated")
	f.stepUntil(time.Second, func() bool {
		_, err := f.client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(t.Context(), "vnode.base-1.default", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	require.GreaterOrEqual(t, deletes.calls.Load(), int32(3))
	f.nodeGone("vnode.base-1.default")
}

// heartbeatAll sends a heartbeat from every base.
func (f *fixture) heartbeatAll(ids ...string) {
	for _, id := range ids {
		f.heartbeat(id, "activated")
	}
}

func baseIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("base-%d", i)
	}
	return ids
}

func TestBrokerOutageRemovesNothing(t *testing.T) {
	f := newFixture(t, nil)
	ids := baseIDs(4)
	f.heartbeatAll(ids...)
	for _, id := range ids {
		f.node(protocol.NodeName("default", id), isReady(corev1.ConditionTrue, api.ReasonBaseReady))
	}

	// The broker goes away for far longer than the removal window.
	f.tunnel.SetConnected(false)
	for range 10 {
		f.advance(DefaultRemoveAfter / 2)
	}
	// The last tick is handled by the Run goroutine, maybe not yet.
	require.Eventually(t, f.ctrl.Disrupted, waitFor, 10*time.Millisecond)
	require.Equal(t, 1.0, testutil.ToFloat64(f.ctrl.metrics.disrupted))
	for _, id := range ids {
		f.node(protocol.NodeName("default", id), isReady(corev1.ConditionTrue, api.ReasonTunnelDisrupted))
	}
	require.Zero(t, testutil.ToFloat64(f.ctrl.metrics.transitions.WithLabelValues("removed")))
	require.Zero(t, testutil.ToFloat64(f.ctrl.metrics.transitions.WithLabelValues("unreachable")))

	// It returns, and three bases are heard from again: the disruption
	// ends, and the fourth, still silent, gets a full window from then on.
	f.tunnel.SetConnected(true)
	queries := len(f.tunnel.CommandsFor("base-0", protocol.CommandQueryAllBiz))
	f.heartbeatAll(ids[:3]...)
	for _, id := range ids[:3] {
		f.node(protocol.NodeName("default", id), isReady(corev1.ConditionTrue, api.ReasonBaseReady))
	}
	require.Greater(t, len(f.tunnel.CommandsFor("base-0", protocol.CommandQueryAllBiz)), queries,
		"the first sign of life after the outage asks for the biz list")
	f.stepUntil(time.Second, func() bool { return !f.ctrl.Disrupted() })
	f.node(protocol.NodeName("default", ids[3]), isReady(corev1.ConditionTrue, api.ReasonTunnelRestored))
	restored := f.clock.Now()

	// base-3 stays silent: unreachable, then removed a full window after
	// the tunnel returned; the others stay.
	f.stepUntil(time.Second, func() bool {
		f.heartbeatAll(ids[:3]...)
		return !f.nodeExists(protocol.NodeName("default", ids[3]))
	})
	require.GreaterOrEqual(t, f.clock.Since(restored), DefaultRemoveAfter)
	f.nodeGone(protocol.NodeName("default", ids[3]))
	for _, id := range ids[:3] {
		require.True(t, f.nodeExists(protocol.NodeName("default", id)))
	}
	require.False(t, f.ctrl.Disrupted())
}

func TestMostBasesSilentAtOnceIsADisruption(t *testing.T) {
	f := newFixture(t, nil)
	ids := baseIDs(5)
	f.heartbeatAll(ids...)
	for _, id := range ids {
		f.node(protocol.NodeName("default", id), isReady(corev1.ConditionTrue, api.ReasonBaseReady))
	}
	// Only base-0 keeps reporting: 4 of 5 silent is the path, not the bases.
	start := f.clock.Now()
	f.stepUntil(time.Second, func() bool {
		f.heartbeat("base-0", "activated")
		return f.clock.Since(start) > 2*DefaultRemoveAfter
	})
	require.True(t, f.ctrl.Disrupted())
	for _, id := range ids {
		require.True(t, f.nodeExists(protocol.NodeName("default", id)))
	}
	f.node(protocol.NodeName("default", "base-1"), isReady(corev1.ConditionTrue, api.ReasonTunnelDisrupted))
	f.node(protocol.NodeName("default", "base-0"), isReady(corev1.ConditionTrue, api.ReasonBaseReady))
}

func TestOneSilentBaseAmongManyIsStillRemoved(t *testing.T) {
	f := newFixture(t, nil)
	ids := baseIDs(5)
	f.heartbeatAll(ids...)
	for _, id := range ids {
		f.node(protocol.NodeName("default", id), isReady(corev1.ConditionTrue, api.ReasonBaseReady))
	}
	f.stepUntil(time.Second, func() bool {
		f.heartbeatAll(ids[1:]...)
		return !f.nodeExists(protocol.NodeName("default", "base-0"))
	})
	f.nodeGone(protocol.NodeName("default", "base-0"))
	require.False(t, f.ctrl.Disrupted())
}

func TestMaxBasesRejectsFurtherBases(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxBases = 2 })
	f.heartbeatAll(baseIDs(3)...)
	f.node("vnode.base-1.default", isReady(corev1.ConditionTrue, api.ReasonBaseReady))
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(f.ctrl.metrics.rejected.WithLabelValues("max_bases")) == 1
	}, waitFor, 10*time.Millisecond)
	require.False(t, f.nodeExists("vnode.base-2.default"))
}

func TestInvalidHeartbeatsChangeNothing(t *testing.T) {
	f := newFixture(t, nil)
	bad := func(id string, edit func(*protocol.BaseStatus)) {
		s := protocol.BaseStatus{
			BaseMetadata: protocol.BaseMetadata{Identity: id, Name: "base", Version: "1.0.0", ClusterName: "default"},
			LocalIP:      "10.0.0.1", State: "activated",
		}
		edit(&s)
		f.tunnel.Inject(tunnel.BaseHeartbeat{Header: tunnel.Header{BaseID: id, PublishedAt: f.clock.Now()}, Status: s})
	}
	f.heartbeat("base-1", "activated")
	before := f.node("vnode.base-1.default", isReady(corev1.ConditionTrue, api.ReasonBaseReady))

	bad("base-2", func(s *protocol.BaseStatus) { s.Port = -1 })
	bad("base-3", func(s *protocol.BaseStatus) { s.BaseMetadata.Version = "not a label value" })
	bad("base-1", func(s *protocol.BaseStatus) { s.LocalIP = "999.1.1.1" })
	f.heartbeat("base-4", "activated") // processed after the bad ones
	f.node("vnode.base-4.default", isReady(corev1.ConditionTrue, api.ReasonBaseReady))

	for reason, want := range map[string]float64{provider.FieldReasonPortRange: 1, provider.FieldReasonLabelValue: 1, provider.FieldReasonLocalIP: 1} {
		require.Equal(t, want, testutil.ToFloat64(f.ctrl.metrics.rejected.WithLabelValues(reason)), reason)
	}
	require.False(t, f.nodeExists("vnode.base-2.default"))
	require.False(t, f.nodeExists("vnode.base-3.default"))
	after := f.node("vnode.base-1.default", isReady(corev1.ConditionTrue, api.ReasonBaseReady))
	require.Equal(t, before.Status.Addresses, after.Status.Addresses, "a known base's invalid heartbeat changed its node")
}

func TestLoopbackBaseIPNeedsTheDevelopmentSetting(t *testing.T) {
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprint("allowed=", allow), func(t *testing.T) {
			f := newFixture(t, func(c *Config) { c.AllowLoopbackBaseIP = allow })
			f.tunnel.Inject(tunnel.BaseHeartbeat{Header: tunnel.Header{BaseID: "base-1", PublishedAt: f.clock.Now()}, Status: protocol.BaseStatus{
				BaseMetadata: protocol.BaseMetadata{Identity: "base-1", Name: "base", Version: "1.0.0", ClusterName: "default"},
				LocalIP:      "127.0.0.1", State: "activated",
			}})
			f.heartbeat("base-2", "activated") // processed after base-1's
			f.node("vnode.base-2.default", isReady(corev1.ConditionTrue, api.ReasonBaseReady))
			if allow {
				f.node("vnode.base-1.default", isReady(corev1.ConditionTrue, api.ReasonBaseReady))
			} else {
				require.False(t, f.nodeExists("vnode.base-1.default"))
			}
			require.Equal(t, map[bool]float64{false: 1, true: 0}[allow], testutil.ToFloat64(f.ctrl.metrics.rejected.WithLabelValues(provider.FieldReasonLocalIP)))
		})
	}
}

func TestInvalidBizEntriesAreDropped(t *testing.T) {
	f := newFixture(t, nil)
	f.heartbeat("base-1", "activated")
	f.node("vnode.base-1.default", isReady(corev1.ConditionTrue, api.ReasonBaseReady))
	f.tunnel.Inject(tunnel.BizStatus{
		Header: tunnel.Header{BaseID: "base-1", PublishedAt: f.clock.Now()},
		Bizs: []protocol.SimpleBizInfo{
			{Name: "ok", Version: "1.0.0", State: "ACTIVATED"},
			{Name: "bad name", Version: "1.0.0", State: "ACTIVATED"},
			{Name: "ok", Version: "", State: "ACTIVATED"},
		},
	})
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(f.ctrl.metrics.dropped.WithLabelValues("invalid_biz")) == 2
	}, waitFor, 10*time.Millisecond)
}

func TestMessagesBeyondTheBaseRateAreDropped(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.BaseMessageRate, c.BaseMessageBurst = 1, 5 })
	f.heartbeat("base-1", "activated")
	f.node("vnode.base-1.default", isReady(corev1.ConditionTrue, api.ReasonBaseReady))
	for range 20 {
		f.heartbeat("base-1", "activated") // the fake clock stands still
	}
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(f.ctrl.metrics.dropped.WithLabelValues("rate_limited")) == 15
	}, waitFor, 10*time.Millisecond)
}

func TestFutureStampedMessagesChangeNothing(t *testing.T) {
	f := newFixture(t, nil)
	f.heartbeat("base-1", "activated")
	f.node("vnode.base-1.default", isReady(corev1.ConditionTrue, api.ReasonBaseReady))
	later := f.clock.Now().Add(time.Hour)
	f.tunnel.Inject(tunnel.BizOperationResult{
		Header:    tunnel.Header{BaseID: "base-1", PublishedAt: later},
		Operation: protocol.BizOperation{Command: protocol.CommandInstallBiz, BizName: "biz1", BizVersion: "0.0.1"},
	})
	// A forged heartbeat of the served base with another base version, and
	// one of a new identity: neither may reach a node.
	for _, id := range []string{"base-1", "base-2"} {
		f.tunnel.Inject(tunnel.BaseHeartbeat{
			Header: tunnel.Header{BaseID: id, PublishedAt: later},
			Status: protocol.BaseStatus{
				BaseMetadata: protocol.BaseMetadata{Identity: id, Name: "base", Version: "6.6.6", ClusterName: "default"},
				LocalIP:      "10.0.0.1", State: "activated",
			},
		})
	}
	f.tunnel.Inject(tunnel.BizStatus{Header: tunnel.Header{BaseID: "base-1", PublishedAt: later}})
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(f.ctrl.metrics.dropped.WithLabelValues("future")) == 4
	}, waitFor, 10*time.Millisecond)
	n := f.node("vnode.base-1.default", isReady(corev1.ConditionTrue, api.ReasonBaseReady))
	require.Equal(t, "1.0.0", n.Labels[api.LabelBaseVersion], "a future heartbeat relabelled the node")
	require.False(t, f.nodeExists("vnode.base-2.default"))
}

func TestBaselineOfAnUnservedBaseIsEmptyAndListsNothing(t *testing.T) {
	f := newFixture(t, nil)
	// The shared pod informer's own LIST (and later WATCH) is not one per query.
	require.True(t, f.ctrl.pods.waitForSync(t.Context()))
	f.client.ClearActions()
	f.tunnel.Inject(tunnel.BaselineQuery{Header: tunnel.Header{BaseID: "new-base", PublishedAt: f.clock.Now()}})
	baselines := f.tunnel.WaitForCommands(t, waitFor, 1, tunneltest.Named("new-base", protocol.CommandBatchInstallBiz))
	require.Len(t, baselines, 1)
	require.Empty(t, baselines[0].Baseline)
	for _, a := range f.client.Actions() {
		if a.GetVerb() == "watch" {
			continue
		}
		require.NotEqual(t, schema.GroupVersionResource{Version: "v1", Resource: "pods"}, a.GetResource(), "no pod LIST per baseline query: %v", a)
	}
}

func TestFloodOfIdentitiesLeavesNoState(t *testing.T) {
	// 100,000 made-up identities, each sending what a base sends: at most
	// MaxBases get served, and once they are gone nothing of any identity
	// is left behind.
	f := newFixture(t, func(c *Config) { c.MaxBases = 5 })
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range 100_000 {
		id := fmt.Sprintf("flood-%d", i)
		h := tunnel.Header{BaseID: id, PublishedAt: f.clock.Now()}
		switch i % 3 {
		case 0:
			f.heartbeat(id, "activated")
		case 1:
			f.tunnel.Inject(tunnel.BaselineQuery{Header: h})
		case 2:
			f.tunnel.Inject(tunnel.BizStatus{Header: h})
		}
	}
	require.Eventually(t, func() bool { return len(f.tunnel.Events()) == 0 }, waitFor, 10*time.Millisecond)
	served := testutil.ToFloat64(f.ctrl.metrics.bases)
	require.LessOrEqual(t, served, 5.0)
	require.Positive(t, testutil.ToFloat64(f.ctrl.metrics.dropped.WithLabelValues("rate_limited"))+
		testutil.ToFloat64(f.ctrl.metrics.rejected.WithLabelValues("max_bases")))

	// The served ones (the first heartbeats) leave; afterwards no map holds
	// an identity.
	for i := 0; i < 300; i += 3 {
		f.heartbeat(fmt.Sprintf("flood-%d", i), "deactivated")
	}
	f.stepUntil(time.Second, func() bool { return testutil.ToFloat64(f.ctrl.metrics.bases) == 0 })
	f.stepUntil(time.Second, func() bool { return testutil.ToFloat64(f.ctrl.metrics.removing) == 0 })
	nodes, err := f.client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	require.NoError(t, err)
	require.Empty(t, nodes.Items)
	f.stop()
	require.Empty(t, f.ctrl.bases)
	require.Empty(t, f.ctrl.removing)
	require.Empty(t, f.ctrl.inflight)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	require.Less(t, int64(after.HeapAlloc)-int64(before.HeapAlloc), int64(32<<20), "heap grew by %d bytes", int64(after.HeapAlloc)-int64(before.HeapAlloc))
}
