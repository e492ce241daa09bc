package controller

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// A pod whose node is not served here must not come back to virtual-kubelet
// as a provider error: it would write the pod as failed for a loss of
// contact that is ours.
func TestRouterLeavesPodsOfUnservedNodesAlone(t *testing.T) {
	nodeA := protocol.NodeName("default", "a")
	pod := testPod("a1", nodeA)
	pc := startPodCache(t, fake.NewClientset(pod))
	r := newPodRouter(pc)
	ctx := t.Context()

	require.NoError(t, r.CreatePod(ctx, pod))
	require.NoError(t, r.UpdatePod(ctx, pod))
	require.True(t, errdefs.IsNotFound(r.DeletePod(ctx, pod)))
	got, err := r.GetPod(ctx, "ns", "a1")
	require.True(t, errdefs.IsNotFound(err), "cached pod of a node not served: %v", err)
	require.Nil(t, got)
	_, err = r.GetPodStatus(ctx, "ns", "gone")
	require.True(t, errdefs.IsNotFound(err), "pod in no cache and no provider: %v", err)
	pods, err := r.GetPods(ctx)
	require.NoError(t, err)
	require.Empty(t, pods)
}
