package provider

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/moduleops/module-controller/pkg/api"
	"github.com/moduleops/module-controller/pkg/protocol"
	"github.com/moduleops/module-controller/tunnel/tunneltest"
)

// nopRecorder discards Events.
type nopRecorder struct{}

func (nopRecorder) Event(runtime.Object, string, string, string)          {}
func (nopRecorder) Eventf(runtime.Object, string, string, string, ...any) {}

func heartbeat(id string) protocol.BaseStatus {
	return protocol.BaseStatus{
		BaseMetadata:  protocol.BaseMetadata{Identity: id, Name: "base", Version: "1.0.0", ClusterName: "default"},
		LocalIP:       id,
		LocalHostName: "base-7c9d8f6b5-x2k4p",
		State:         "activated",
	}
}

func testNodeConfig(id string) NodeConfig {
	return NodeConfig{Env: "default", BaseID: id, ControllerVersion: "v1.2.3", MaxPods: 110, Arch: "amd64"}
}

func TestBuildNodeLabelsTaintsAndStatus(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	n := buildNode(testNodeConfig("10.244.0.17"), BaseInfo{Status: heartbeat("10.244.0.17")},
		Readiness{Reachable: true, Reason: api.ReasonBaseReady, Message: "base is publishing heartbeats"}, nil, now)

	require.Equal(t, "vnode.10.244.0.17.default", n.Name)
	require.Equal(t, map[string]string{
		"virtual-kubelet.koupleless.io/component": "vnode",
		"virtual-kubelet.koupleless.io/env":       "default",
		"base.koupleless.io/name":                 "base",
		"base.koupleless.io/version":              "1.0.0",
		"base.koupleless.io/cluster-name":         "default",
		"base.koupleless.io/host-name":            "base-7c9d8f6b5-x2k4p",
		"base.koupleless.io/stack":                "java",
		"kubernetes.io/hostname":                  "vnode.10.244.0.17.default",
		"kubernetes.io/os":                        "linux",
		"kubernetes.io/arch":                      "amd64",
		"type":                                    "virtual-kubelet",
	}, n.Labels)
	require.Equal(t, []corev1.Taint{{Key: "schedule.koupleless.io/virtual-node", Value: "True", Effect: corev1.TaintEffectNoExecute}}, n.Spec.Taints)
	require.Equal(t, []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "10.244.0.17"},
		{Type: corev1.NodeHostName, Address: "base-7c9d8f6b5-x2k4p"},
	}, n.Status.Addresses)
	require.Equal(t, "v1.2.3", n.Status.NodeInfo.KubeletVersion)
	pods := n.Status.Capacity[corev1.ResourcePods]
	require.Equal(t, int64(110), pods.Value())
	_, hasMemory := n.Status.Capacity[corev1.ResourceMemory]
	require.False(t, hasMemory, "no memory capacity before a health reply")
	_, hasCPU := n.Status.Capacity[corev1.ResourceCPU]
	require.False(t, hasCPU, "no CPU capacity before a health reply")

	ready := nodeCondition(t, n, corev1.NodeReady)
	require.Equal(t, corev1.ConditionTrue, ready.Status)
	require.Equal(t, api.ReasonBaseReady, ready.Reason)
	for _, c := range []corev1.NodeConditionType{corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure, corev1.NodeNetworkUnavailable} {
		require.Equal(t, corev1.ConditionFalse, nodeCondition(t, n, c).Status, c)
	}
}

func TestBuildNodeKubeletEndpoint(t *testing.T) {
	cfg := testNodeConfig("10.244.0.17")
	cfg.KubeletAddress, cfg.KubeletPort = "10.244.3.9", 10250
	n := buildNode(cfg, BaseInfo{Status: heartbeat("10.244.0.17")}, Readiness{Reachable: true}, nil, time.Now())
	// The API server dials Hostname first (its default preference order);
	// the base keeps its IP as the InternalIP and its host name as a label.
	require.Equal(t, []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "10.244.0.17"},
		{Type: corev1.NodeHostName, Address: "10.244.3.9"},
	}, n.Status.Addresses)
	require.Equal(t, int32(10250), n.Status.DaemonEndpoints.KubeletEndpoint.Port)
	require.Equal(t, "base-7c9d8f6b5-x2k4p", n.Labels[api.LabelBaseHostName])

	cfg.KubeletPort = 0 // kubelet API off: nothing advertised
	n = buildNode(cfg, BaseInfo{Status: heartbeat("10.244.0.17")}, Readiness{Reachable: true}, nil, time.Now())
	require.Zero(t, n.Status.DaemonEndpoints.KubeletEndpoint.Port)
	require.Contains(t, n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: "base-7c9d8f6b5-x2k4p"})
}

func TestBuildNodeOptionalParts(t *testing.T) {
	cfg := testNodeConfig("base-1")
	cfg.EnvTaint = true
	info := BaseInfo{Status: heartbeat("base-1"), Zone: "zone-a", Region: "region-1"}
	info.Status.Port = 1238
	info.Status.BaseMetadata.Name = "Not A Label Value!"
	info.JVM = &protocol.JVMInfo{JavaMaxMetaspace: 512 << 20, JavaCommittedMetaspace: 100 << 20, JavaUsedMetaspace: 480 << 20}
	info.CPUCount = 4

	n := buildNode(cfg, info, Readiness{Reachable: true}, nil, time.Now())

	require.Contains(t, n.Spec.Taints, corev1.Taint{Key: "schedule.koupleless.io/node-env", Value: "default", Effect: corev1.TaintEffectNoExecute})
	require.Equal(t, "zone-a", n.Labels[corev1.LabelTopologyZone])
	require.Equal(t, "region-1", n.Labels[corev1.LabelTopologyRegion])
	require.Equal(t, "1238", n.Labels[api.LabelBaseTunnelPort])
	require.NotContains(t, n.Labels, api.LabelBaseName, "an invalid label value is left out, not sent")
	require.True(t, resource.NewQuantity(512<<20, resource.BinarySI).Equal(n.Status.Capacity[corev1.ResourceMemory]))
	require.True(t, resource.NewQuantity(412<<20, resource.BinarySI).Equal(n.Status.Allocatable[corev1.ResourceMemory]))
	require.True(t, resource.NewQuantity(4, resource.DecimalSI).Equal(n.Status.Capacity[corev1.ResourceCPU]), "modules share the base's processors")
	require.True(t, resource.NewQuantity(4, resource.DecimalSI).Equal(n.Status.Allocatable[corev1.ResourceCPU]))
	require.Equal(t, corev1.ConditionTrue, nodeCondition(t, n, corev1.NodeMemoryPressure).Status)
}

func TestConditionTransitionTimesAreKept(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	cfg, info := testNodeConfig("base-1"), BaseInfo{Status: heartbeat("base-1")}
	first := buildNode(cfg, info, Readiness{Reachable: true}, nil, t0)
	same := buildNode(cfg, info, Readiness{Reachable: true}, first, t0.Add(time.Minute))
	require.Equal(t, t0, nodeCondition(t, same, corev1.NodeReady).LastTransitionTime.Time)
	require.False(t, nodeChanged(first, same), "only heartbeat times moved")

	lost := buildNode(cfg, info, Readiness{Reachable: false, Reason: api.ReasonBaseUnreachable}, same, t0.Add(2*time.Minute))
	require.True(t, nodeChanged(same, lost))
	ready := nodeCondition(t, lost, corev1.NodeReady)
	require.Equal(t, corev1.ConditionUnknown, ready.Status)
	require.Equal(t, api.ReasonBaseUnreachable, ready.Reason)
	require.Equal(t, t0.Add(2*time.Minute), ready.LastTransitionTime.Time)
	require.Equal(t, t0, nodeCondition(t, lost, corev1.NodeDiskPressure).LastTransitionTime.Time)
}

func TestProviderNotifiesOnlyRealChanges(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	p, err := New(Config{
		Node: testNodeConfig("base-1"), Base: BaseInfo{Status: heartbeat("base-1")},
		Readiness: Readiness{Reachable: true}, Tunnel: tunneltest.New(), Events: nopRecorder{}, Clock: clk,
	})
	require.NoError(t, err)
	got := make(chan *corev1.Node, 10)
	p.NotifyNodeStatus(t.Context(), func(n *corev1.Node) { got <- n })

	clk.Step(time.Minute)
	require.False(t, p.UpdateBase(heartbeat("base-1")), "an identical heartbeat changes nothing")
	changed := heartbeat("base-1")
	changed.BaseMetadata.Version = "1.0.1"
	require.True(t, p.UpdateBase(changed))
	n := receive(t, got)
	require.Equal(t, "1.0.1", n.Labels[api.LabelBaseVersion])

	require.True(t, p.SetReadiness(Readiness{Reachable: false, Reason: api.ReasonBaseUnreachable}))
	require.Equal(t, corev1.ConditionUnknown, nodeCondition(t, receive(t, got), corev1.NodeReady).Status)
	require.Empty(t, got, "no notification without a change")
}

func TestPushNodeStatusSinceWritesOnlyAChange(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	p, err := New(Config{
		Node: testNodeConfig("base-1"), Base: BaseInfo{Status: heartbeat("base-1")},
		Readiness: Readiness{Reachable: true}, Tunnel: tunneltest.New(), Events: nopRecorder{}, Clock: clk,
	})
	require.NoError(t, err)
	// No NotifyNodeStatus listener: the one-slot mailbox shows every push.
	registered := p.Node()
	clk.Step(time.Minute)
	p.PushNodeStatusSince(registered)
	require.Empty(t, p.wakeup, "no write of the node a controller just registered")

	changed := heartbeat("base-1")
	changed.BaseMetadata.Version = "1.0.1"
	require.True(t, p.UpdateBase(changed))
	<-p.wakeup // UpdateBase's own push, which a controller not listening yet misses
	p.PushNodeStatusSince(registered)
	require.Len(t, p.wakeup, 1, "a change since registration is written")
}

func TestNewRejectsBadBaseID(t *testing.T) {
	_, err := New(Config{Node: testNodeConfig("a/b"), Tunnel: tunneltest.New(), Events: nopRecorder{}})
	require.ErrorIs(t, err, protocol.ErrInvalidBaseID)
}

func receive(t *testing.T, ch <-chan *corev1.Node) *corev1.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	select {
	case n := <-ch:
		return n
	case <-ctx.Done():
		t.Fatal("no node notification")
		return nil
	}
}

func nodeCondition(t *testing.T, n *corev1.Node, typ corev1.NodeConditionType) corev1.NodeCondition {
	t.Helper()
	for _, c := range n.Status.Conditions {
		if c.Type == typ {
			return c
		}
	}
	t.Fatalf("node has no %s condition", typ)
	return corev1.NodeCondition{}
}
