package controller

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// TestGuardWritesRefusesUnownedBases: through a client whose transport is
// wrapped by GuardWrites, writes about the node of a base this replica does
// not own never reach the API server; reads, owned bases, other envs and
// other objects pass.
func TestGuardWritesRefusesUnownedBases(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path)
		mu.Unlock()
		// Echo the object in the encoding it came in (client-go sends
		// protobuf for built-in types).
		w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
		if len(body) == 0 {
			w.Header().Set("Content-Type", "application/json")
			body = []byte(`{}`)
		}
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	client, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL, WrapTransport: GuardWrites("Default", ownsOnly("base-1"))})
	require.NoError(t, err)
	ctx := t.Context()
	node := func(id string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "vnode." + id + ".default"}}
	}
	pod := func(nodeName string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "m", Namespace: "ns"}, Spec: corev1.PodSpec{NodeName: nodeName}}
	}
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "vnode.base-2.default", Namespace: corev1.NamespaceNodeLease}}

	refused := map[string]error{}
	_, refused["node status"] = client.CoreV1().Nodes().UpdateStatus(ctx, node("base-2"), metav1.UpdateOptions{})
	_, refused["node create"] = client.CoreV1().Nodes().Create(ctx, node("base-2"), metav1.CreateOptions{})
	_, refused["node patch"] = client.CoreV1().Nodes().Patch(ctx, "vnode.base-2.default", types.StrategicMergePatchType, []byte(`{}`), metav1.PatchOptions{}, "status")
	refused["node delete"] = client.CoreV1().Nodes().Delete(ctx, "vnode.base-2.default", metav1.DeleteOptions{})
	_, refused["lease update"] = client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Update(ctx, lease, metav1.UpdateOptions{})
	_, refused["lease create"] = client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Create(ctx, lease, metav1.CreateOptions{})
	_, refused["pod status"] = client.CoreV1().Pods("ns").UpdateStatus(ctx, pod("vnode.base-2.default"), metav1.UpdateOptions{})
	for what, err := range refused {
		require.True(t, apierrors.IsForbidden(err), "%s: want Forbidden, got %v", what, err)
	}
	mu.Lock()
	require.Empty(t, seen, "a refused write reached the API server")
	mu.Unlock()

	passed := map[string]error{}
	_, passed["owned node status"] = client.CoreV1().Nodes().UpdateStatus(ctx, node("base-1"), metav1.UpdateOptions{})
	_, passed["owned pod status"] = client.CoreV1().Pods("ns").UpdateStatus(ctx, pod("vnode.base-1.default"), metav1.UpdateOptions{})
	_, passed["read"] = client.CoreV1().Nodes().Get(ctx, "vnode.base-2.default", metav1.GetOptions{})
	_, passed["other env"] = client.CoreV1().Nodes().UpdateStatus(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "vnode.base-2.prod"}}, metav1.UpdateOptions{})
	_, passed["real node"] = client.CoreV1().Nodes().UpdateStatus(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-1"}}, metav1.UpdateOptions{})
	_, passed["pod on a real node"] = client.CoreV1().Pods("ns").UpdateStatus(ctx, pod("worker-1"), metav1.UpdateOptions{})
	_, passed["event"] = client.CoreV1().Events("ns").Create(ctx, &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "e"}}, metav1.CreateOptions{})
	for what, err := range passed {
		require.NoError(t, err, what)
	}
	mu.Lock()
	require.Len(t, seen, len(passed))
	mu.Unlock()
}
