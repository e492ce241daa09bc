package controller

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// recordingHandler records the events a view delivers, as "add ns/name",
// "update ns/name" and "delete ns/name".
type recordingHandler struct {
	mu     sync.Mutex
	events []string
}

func (h *recordingHandler) record(verb string, obj any) {
	pod := obj.(*corev1.Pod)
	h.mu.Lock()
	h.events = append(h.events, verb+" "+pod.Namespace+"/"+pod.Name)
	h.mu.Unlock()
}

func (h *recordingHandler) OnAdd(obj any, _ bool)  { h.record("add", obj) }
func (h *recordingHandler) OnUpdate(_, newObj any) { h.record("update", newObj) }
func (h *recordingHandler) OnDelete(obj any)       { h.record("delete", obj) }
func (h *recordingHandler) snapshot() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.events)
}
func (h *recordingHandler) has(event string) func() bool {
	return func() bool { return slices.Contains(h.snapshot(), event) }
}

func testPod(name, nodeName string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name), Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "biz", Image: name + ".jar"}}},
	}
}

func startPodCache(t *testing.T, client *fake.Clientset) *podCache {
	t.Helper()
	pc, err := newPodCache(client, "default")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		pc.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	require.True(t, pc.waitForSync(t.Context()))
	return pc
}

func TestServedViewDeliversAndListsOnlyServedPods(t *testing.T) {
	nodeA, nodeB, nodeC := protocol.NodeName("default", "a"), protocol.NodeName("default", "b"), protocol.NodeName("default", "c")
	client := fake.NewClientset(testPod("a1", nodeA), testPod("b1", nodeB), testPod("c1", nodeC), testPod("unbound", ""))
	pc := startPodCache(t, client)
	view := pc.served

	require.NoError(t, view.serve(nodeA))
	var h recordingHandler
	require.True(t, view.Informer().HasSynced())
	_, err := view.Informer().AddEventHandler(&h)
	require.NoError(t, err)
	// The handler added after sync is first given the served pods, as by an
	// informer of its own; a node served later has its pods replayed.
	require.Equal(t, []string{"add ns/a1"}, h.snapshot())
	require.NoError(t, view.serve(nodeB))
	require.Equal(t, []string{"add ns/a1", "add ns/b1"}, h.snapshot())

	ctx := t.Context()
	pods := client.CoreV1().Pods("ns")
	_, err = pods.Create(ctx, testPod("a2", nodeA), metav1.CreateOptions{})
	require.NoError(t, err)
	require.Eventually(t, h.has("add ns/a2"), waitFor, time.Millisecond)

	a1 := testPod("a1", nodeA)
	a1.Labels["changed"] = "yes"
	_, err = pods.Update(ctx, a1, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, h.has("update ns/a1"), waitFor, time.Millisecond)

	require.NoError(t, pods.Delete(ctx, "a2", metav1.DeleteOptions{}))
	require.Eventually(t, h.has("delete ns/a2"), waitFor, time.Millisecond)

	// Binding a pod to a served node is its add there.
	bound := testPod("unbound", nodeB)
	_, err = pods.Update(ctx, bound, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, h.has("add ns/unbound"), waitFor, time.Millisecond)

	// Pods of a node not served are not delivered (a later served pod's
	// event proves the dispatcher went past them).
	c1 := testPod("c1", nodeC)
	c1.Labels["changed"] = "yes"
	_, err = pods.Update(ctx, c1, metav1.UpdateOptions{})
	require.NoError(t, err)
	_, err = pods.Create(ctx, testPod("c2", nodeC), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = pods.Create(ctx, testPod("b2", nodeB), metav1.CreateOptions{})
	require.NoError(t, err)
	require.Eventually(t, h.has("add ns/b2"), waitFor, time.Millisecond)

	require.Equal(t, []string{"add ns/a1", "add ns/b1", "add ns/a2", "update ns/a1", "delete ns/a2", "add ns/unbound", "add ns/b2"}, h.snapshot())

	list, err := view.Lister().List(labels.Everything())
	require.NoError(t, err)
	var names []string
	for _, p := range list {
		names = append(names, p.Name)
	}
	require.ElementsMatch(t, []string{"a1", "b1", "unbound", "b2"}, names)
	list, err = view.Lister().Pods("other").List(labels.Everything())
	require.NoError(t, err)
	require.Empty(t, list)
	got, err := view.Lister().Pods("ns").Get("a1")
	require.NoError(t, err)
	require.Equal(t, "yes", got.Labels["changed"])
	_, err = view.Lister().Pods("ns").Get("c1")
	require.True(t, apierrors.IsNotFound(err), "a pod of a node not served: %v", err)
	_, err = view.Lister().Pods("ns").Get("a2")
	require.True(t, apierrors.IsNotFound(err), "a deleted pod: %v", err)
}

func TestUnservedNodeGetsOnlyDeletesThenAReplay(t *testing.T) {
	nodeA := protocol.NodeName("default", "a")
	client := fake.NewClientset(testPod("a1", nodeA), testPod("a2", nodeA))
	pc := startPodCache(t, client)
	view := pc.served
	var h recordingHandler
	_, err := view.Informer().AddEventHandler(&h)
	require.NoError(t, err)
	require.NoError(t, view.serve(nodeA))
	require.ElementsMatch(t, []string{"add ns/a1", "add ns/a2"}, h.snapshot())
	view.unserve(nodeA)

	// While the node is not served, its pods' changes are not delivered, but
	// the deletion of a pod the handler knows is: virtual-kubelet must
	// forget it.
	ctx := t.Context()
	pods := client.CoreV1().Pods("ns")
	a1 := testPod("a1", nodeA)
	a1.Labels["changed"] = "yes"
	_, err = pods.Update(ctx, a1, metav1.UpdateOptions{})
	require.NoError(t, err)
	_, err = pods.Create(ctx, testPod("a3", nodeA), metav1.CreateOptions{})
	require.NoError(t, err)
	require.NoError(t, pods.Delete(ctx, "a2", metav1.DeleteOptions{}))
	require.Eventually(t, h.has("delete ns/a2"), waitFor, time.Millisecond)
	require.Len(t, h.snapshot(), 3)

	// Served again (the base came back): every pod of the node is handed
	// over again, also the one the handler was given before.
	require.NoError(t, view.serve(nodeA))
	require.ElementsMatch(t, []string{"add ns/a1", "add ns/a2", "delete ns/a2", "add ns/a1", "add ns/a3"}, h.snapshot())
	require.Error(t, view.Informer().RemoveEventHandler(nil), "handlers live as long as the process")
}

func TestServedViewOrdersEventsOfPodsItWasNotGiven(t *testing.T) {
	nodeA := protocol.NodeName("default", "a")
	pc, err := newPodCache(fake.NewClientset(), "default")
	require.NoError(t, err)
	view := pc.served
	var h recordingHandler
	_, err = view.Informer().AddEventHandler(&h)
	require.NoError(t, err)
	require.NoError(t, view.serve(nodeA))

	// An update of a pod the handler was never given (its add went by
	// before the handler came) arrives as an add; a delete of such a pod is
	// not delivered; a second add of a pod it has is dropped.
	old, cur := testPod("a1", nodeA), testPod("a1", nodeA)
	cur.Labels["v"] = "2"
	pc.onUpdate(old, cur)
	pc.onAdd(cur)
	pc.onDelete(testPod("gone", nodeA))
	pc.onUpdate(old, cur)
	pc.onDelete(cache.DeletedFinalStateUnknown{Key: "ns/a1", Obj: cur})
	require.Equal(t, []string{"add ns/a1", "update ns/a1", "delete ns/a1"}, h.snapshot())
}

func TestForeignPodsAreTrimmed(t *testing.T) {
	trim := trimForeignPod("default")
	own := testPod("own", protocol.NodeName("default", "a"))
	own.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	got, err := trim(own)
	require.NoError(t, err)
	require.Equal(t, "own.jar", got.(*corev1.Pod).Spec.Containers[0].Image)
	require.Nil(t, got.(*corev1.Pod).ManagedFields)

	for _, nodeName := range []string{"worker-1", protocol.NodeName("other", "a")} {
		foreign := testPod("foreign", nodeName)
		foreign.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.9", HostIP: "192.168.0.1"}
		got, err := trim(foreign)
		require.NoError(t, err)
		pod := got.(*corev1.Pod)
		// What lookupTopology reads of a base's own Pod stays.
		require.Equal(t, corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.9"}, pod.Status)
		require.Equal(t, nodeName, pod.Spec.NodeName)
		require.Equal(t, "foreign", pod.Name)
		require.Empty(t, pod.Spec.Containers, "pod on %s", nodeName)
		require.Empty(t, pod.Labels, "pod on %s", nodeName)
	}
}
