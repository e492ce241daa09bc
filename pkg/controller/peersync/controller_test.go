package peersync

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	core "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
)

const waitFor = 10 * time.Second

var deploymentsResource = appsv1.SchemeGroupVersion.WithResource("deployments")

// vnode returns a Ready virtual node of base id, labelled and tainted as the
// provider does, with cluster-name c1; mod adjusts it.
func vnode(id string, mod func(*corev1.Node)) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "vnode." + id + ".default", Labels: map[string]string{
			"virtual-kubelet.koupleless.io/component": "vnode",
			"virtual-kubelet.koupleless.io/env":       "default",
			"base.koupleless.io/name":                 "base",
			"base.koupleless.io/version":              "1.0.0",
			"base.koupleless.io/cluster-name":         "c1",
			"base.koupleless.io/stack":                "java",
			"kubernetes.io/hostname":                  "vnode." + id + ".default",
			"type":                                    "virtual-kubelet",
		}},
		Spec:   corev1.NodeSpec{Taints: []corev1.Taint{{Key: "schedule.koupleless.io/virtual-node", Value: "True", Effect: corev1.TaintEffectNoExecute}}},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
	}
	if mod != nil {
		mod(n)
	}
	return n
}

// guideTemplate is the operations guide's module template for biz1 version v.
func guideTemplate(v string) corev1.PodTemplateSpec {
	labels := map[string]string{"module.koupleless.io/name": "biz1", "module.koupleless.io/version": v}
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "biz1", Image: "https://modules.example.test/biz1-" + v + "-ark-biz.jar",
				Env: []corev1.EnvVar{{Name: "BIZ_VERSION", Value: v}},
			}},
			Affinity: &corev1.Affinity{
				NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
					NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
						{Key: "base.koupleless.io/stack", Operator: corev1.NodeSelectorOpIn, Values: []string{"java"}},
						{Key: "base.koupleless.io/version", Operator: corev1.NodeSelectorOpIn, Values: []string{"1.0.0"}},
						{Key: "base.koupleless.io/name", Operator: corev1.NodeSelectorOpIn, Values: []string{"base"}},
					}}},
				}},
				PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
					LabelSelector: &metav1.LabelSelector{MatchLabels: labels},
					TopologyKey:   "kubernetes.io/hostname",
				}}},
			},
			Tolerations: []corev1.Toleration{{
				Key: "schedule.koupleless.io/virtual-node", Operator: corev1.TolerationOpEqual, Value: "True", Effect: corev1.TaintEffectNoExecute,
			}},
		},
	}
}

// peerDeployment is a peer Deployment of biz1 with the given replicas.
func peerDeployment(name string, replicas int32, mod func(*appsv1.Deployment)) *appsv1.Deployment {
	tmpl := guideTemplate("0.0.1")
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "mods", Labels: map[string]string{
			"virtual-kubelet.koupleless.io/strategy": "peer",
		}},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"module.koupleless.io/name": "biz1"}},
			Template: tmpl,
		},
	}
	if mod != nil {
		mod(d)
	}
	return d
}

// fixture is sample-controller's test fixture: a fake clientset holding the
// objects, the controller's caches seeded with the same objects, and the
// actions the sync is expected to take.
type fixture struct {
	t        *testing.T
	client   *fake.Clientset
	recorder *record.FakeRecorder
	reg      *prometheus.Registry

	nodes       []*corev1.Node
	deployments []*appsv1.Deployment
	pods        []*corev1.Pod
}

func newFixture(t *testing.T) *fixture {
	return &fixture{t: t, recorder: record.NewFakeRecorder(10), reg: prometheus.NewRegistry()}
}

// newClient returns a fake clientset holding objs that serves the scale
// subresource of Deployments, which the fake's object tracker does not.
func newClient(t *testing.T, objs ...runtime.Object) *fake.Clientset {
	client := fake.NewClientset(objs...)
	client.PrependReactor("get", "deployments", func(action core.Action) (bool, runtime.Object, error) {
		if action.GetSubresource() != "scale" {
			return false, nil, nil
		}
		name := action.(core.GetAction).GetName()
		obj, err := client.Tracker().Get(deploymentsResource, action.GetNamespace(), name)
		if err != nil {
			return true, nil, err
		}
		d := obj.(*appsv1.Deployment)
		return true, &autoscalingv1.Scale{
			ObjectMeta: metav1.ObjectMeta{Name: d.Name, Namespace: d.Namespace, ResourceVersion: d.ResourceVersion},
			Spec:       autoscalingv1.ScaleSpec{Replicas: replicas(d)},
		}, nil
	})
	client.PrependReactor("update", "deployments", func(action core.Action) (bool, runtime.Object, error) {
		if action.GetSubresource() != "scale" {
			return false, nil, nil
		}
		scale := action.(core.UpdateAction).GetObject().(*autoscalingv1.Scale)
		obj, err := client.Tracker().Get(deploymentsResource, action.GetNamespace(), scale.Name)
		if err != nil {
			return true, nil, err
		}
		d := obj.(*appsv1.Deployment).DeepCopy()
		d.Spec.Replicas = &scale.Spec.Replicas
		if err := client.Tracker().Update(deploymentsResource, d, d.Namespace); err != nil {
			t.Errorf("update deployment in the tracker: %v", err)
		}
		return true, scale, nil
	})
	return client
}

// newController builds the controller on a fake clientset holding the
// fixture's objects, and seeds its caches with them (not started).
func (f *fixture) newController() *Controller {
	var objs []runtime.Object
	for _, n := range f.nodes {
		objs = append(objs, n)
	}
	for _, d := range f.deployments {
		objs = append(objs, d)
	}
	for _, p := range f.pods {
		objs = append(objs, p)
	}
	f.client = newClient(f.t, objs...)
	c, err := New(Config{Client: f.client, Recorder: f.recorder, Registerer: f.reg, MarkDelay: time.Millisecond})
	require.NoError(f.t, err)
	for _, n := range f.nodes {
		require.NoError(f.t, c.nodeFactory.Core().V1().Nodes().Informer().GetIndexer().Add(n))
	}
	for _, d := range f.deployments {
		require.NoError(f.t, c.deploymentFactory.Apps().V1().Deployments().Informer().GetIndexer().Add(d))
	}
	f.client.ClearActions()
	return c
}

// run syncs one key and checks the actions taken on the fake clientset.
func (f *fixture) run(key string, wantResult string, want []core.Action) {
	f.t.Helper()
	c := f.newController()
	result, err := c.sync(f.t.Context(), key)
	require.NoError(f.t, err)
	require.Equal(f.t, wantResult, result)
	got := f.client.Actions()
	require.Len(f.t, got, len(want), "actions: %v", got)
	for i, w := range want {
		require.True(f.t, w.Matches(got[i].GetVerb(), got[i].GetResource().Resource), "action %d: want %s, got %s", i, describe(w), describe(got[i]))
		require.Equal(f.t, w.GetSubresource(), got[i].GetSubresource(), "action %d subresource", i)
		require.Equal(f.t, w.GetNamespace(), got[i].GetNamespace(), "action %d namespace", i)
		if wu, ok := w.(core.UpdateAction); ok {
			require.Equal(f.t, wu.GetObject().(*autoscalingv1.Scale).Spec.Replicas, got[i].(core.UpdateAction).GetObject().(*autoscalingv1.Scale).Spec.Replicas)
		}
	}
}

func describe(a core.Action) string {
	return a.GetVerb() + " " + a.GetResource().Resource + "/" + a.GetSubresource()
}

// events drains the fake recorder.
func (f *fixture) events() []string {
	var out []string
	for {
		select {
		case e := <-f.recorder.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func getScale(name string) core.Action {
	return core.NewGetSubresourceAction(deploymentsResource, "mods", "scale", name)
}

func listPods() core.Action {
	return core.NewListAction(corev1.SchemeGroupVersion.WithResource("pods"), corev1.SchemeGroupVersion.WithKind("Pod"), "mods", metav1.ListOptions{})
}

func patchPod(name string) core.Action {
	return core.NewPatchAction(corev1.SchemeGroupVersion.WithResource("pods"), "mods", name, "application/merge-patch+json", nil)
}

// modulePod is a Running pod of biz1 bound to the node of base id.
func modulePod(name, id string, mod func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "mods", Labels: map[string]string{"module.koupleless.io/name": "biz1"}},
		Spec:       corev1.PodSpec{NodeName: "vnode." + id + ".default"},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	if mod != nil {
		mod(p)
	}
	return p
}

func updateScale(replicas int32) core.Action {
	return core.NewUpdateSubresourceAction(deploymentsResource, "scale", "mods", &autoscalingv1.Scale{Spec: autoscalingv1.ScaleSpec{Replicas: replicas}})
}

func TestSyncScalesToMatchingVirtualNodesReadyOrNot(t *testing.T) {
	f := newFixture(t)
	f.nodes = []*corev1.Node{
		vnode("a", nil), vnode("b", nil), vnode("c", nil),
		vnode("notready", func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionUnknown }),
		vnode("cordoned", func(n *corev1.Node) { n.Spec.Unschedulable = true }),
		vnode("newbase", func(n *corev1.Node) { n.Labels["base.koupleless.io/version"] = "2.0.0" }),
		vnode("real", func(n *corev1.Node) { delete(n.Labels, "virtual-kubelet.koupleless.io/component"); n.Spec.Taints = nil }),
	}
	f.deployments = []*appsv1.Deployment{peerDeployment("biz1", 1, nil)}
	f.run("mods/biz1", resultScaled, []core.Action{getScale("biz1"), updateScale(4)})

	events := f.events()
	require.Len(t, events, 1)
	require.Equal(t, "Normal PeerReplicasSynced Scaled replicas from 1 to 4: 4 virtual nodes match the pod template", events[0])

	d, err := f.client.AppsV1().Deployments("mods").Get(t.Context(), "biz1", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, int32(4), *d.Spec.Replicas)
}

func TestSyncScalesDownAndToZero(t *testing.T) {
	for _, tc := range []struct {
		nodes int
		from  int32
	}{{nodes: 2, from: 3}, {nodes: 0, from: 2}} {
		t.Run(fmt.Sprintf("%d nodes", tc.nodes), func(t *testing.T) {
			f := newFixture(t)
			for i := range tc.nodes {
				f.nodes = append(f.nodes, vnode(fmt.Sprintf("n%d", i), nil))
			}
			f.deployments = []*appsv1.Deployment{peerDeployment("biz1", tc.from, nil)}
			f.run("mods/biz1", resultScaled, []core.Action{getScale("biz1"), listPods(), updateScale(int32(tc.nodes))})
			require.Equal(t, []string{fmt.Sprintf("Normal PeerReplicasSynced Scaled replicas from %d to %d: %d virtual nodes match the pod template", tc.from, tc.nodes, tc.nodes)}, f.events())
		})
	}
}

func TestSyncWritesNothingWhenEqual(t *testing.T) {
	f := newFixture(t)
	f.nodes = []*corev1.Node{vnode("a", nil), vnode("b", nil)}
	f.deployments = []*appsv1.Deployment{peerDeployment("biz1", 2, nil)}
	f.run("mods/biz1", resultUnchanged, nil)
	require.Empty(t, f.events())
}

func TestSyncWritesNothingWhenTheServerIsAlreadyThere(t *testing.T) {
	// The cache lags behind another replica's write: the scale read from the
	// server already has the count, so nothing is written and no Event recorded.
	f := newFixture(t)
	f.nodes = []*corev1.Node{vnode("a", nil), vnode("b", nil)}
	f.deployments = []*appsv1.Deployment{peerDeployment("biz1", 1, nil)}
	c := f.newController()
	d := peerDeployment("biz1", 2, nil)
	require.NoError(t, f.client.Tracker().Update(deploymentsResource, d, "mods"))
	f.client.ClearActions()
	result, err := c.sync(t.Context(), "mods/biz1")
	require.NoError(t, err)
	require.Equal(t, resultUnchanged, result)
	require.Len(t, f.client.Actions(), 1)
	require.Equal(t, "get deployments/scale", describe(f.client.Actions()[0]))
	require.Empty(t, f.events())
}

func TestSyncSkips(t *testing.T) {
	now := metav1.Now()
	for name, d := range map[string]*appsv1.Deployment{
		"opted out": peerDeployment("biz1", 1, func(d *appsv1.Deployment) {
			d.Labels["virtual-kubelet.koupleless.io/replicas-control"] = "disabled"
		}),
		"not peer": peerDeployment("biz1", 1, func(d *appsv1.Deployment) {
			d.Labels["virtual-kubelet.koupleless.io/strategy"] = "daemon"
		}),
		"being deleted": peerDeployment("biz1", 1, func(d *appsv1.Deployment) {
			d.DeletionTimestamp = &now
			d.Finalizers = []string{"foregroundDeletion"}
		}),
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			f.nodes = []*corev1.Node{vnode("a", nil), vnode("b", nil)}
			f.deployments = []*appsv1.Deployment{d}
			f.run("mods/biz1", resultSkipped, nil)
			require.Empty(t, f.events())
		})
	}
	t.Run("gone", func(t *testing.T) {
		f := newFixture(t)
		f.nodes = []*corev1.Node{vnode("a", nil)}
		f.run("mods/biz1", resultSkipped, nil)
	})
}

func TestSyncReturnsWriteErrors(t *testing.T) {
	f := newFixture(t)
	f.nodes = []*corev1.Node{vnode("a", nil)}
	f.deployments = []*appsv1.Deployment{peerDeployment("biz1", 3, nil)}
	c := f.newController()
	f.client.PrependReactor("update", "deployments", func(core.Action) (bool, runtime.Object, error) {
		return true, nil, fmt.Errorf("scale rejected: %w", errWrite)
	})
	_, err := c.sync(t.Context(), "mods/biz1")
	require.ErrorIs(t, err, errWrite)
	require.Empty(t, f.events(), "no Event for a write that failed")
}

var errWrite = errors.New("write failed")

// allowed is the RBAC the controller is documented to need.
var allowed = map[string][]string{
	"nodes":             {"list", "watch"},
	"deployments":       {"get", "list", "watch"},
	"deployments/scale": {"get", "update"},
	"pods":              {"list", "patch"},
	"events":            {"create", "patch"},
}

// TestRunFollowsNodesWithinItsRBAC runs the whole controller on a fake
// clientset: it follows bases that join, change labels and leave, records its
// Events through a real broadcaster, and uses nothing beyond its documented
// RBAC.
func TestRunFollowsNodesWithinItsRBAC(t *testing.T) {
	client := newClient(t, vnode("a", nil), peerDeployment("biz1", 1, nil),
		peerDeployment("optout", 5, func(d *appsv1.Deployment) {
			d.Labels["virtual-kubelet.koupleless.io/replicas-control"] = "disabled"
		}))
	c, err := New(Config{Client: client})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case <-c.Ready():
	case <-time.After(waitFor):
		t.Fatal("not ready")
	}

	replicasOf := func(name string) int32 {
		d, err := client.AppsV1().Deployments("mods").Get(t.Context(), name, metav1.GetOptions{})
		require.NoError(t, err)
		return *d.Spec.Replicas
	}
	waitReplicas := func(want int32, why string) {
		t.Helper()
		require.Eventually(t, func() bool { return replicasOf("biz1") == want }, waitFor, 10*time.Millisecond, "%s: replicas %d", why, replicasOf("biz1"))
	}
	waitReplicas(1, "one matching node at start")

	nodes := client.CoreV1().Nodes()
	for _, id := range []string{"b", "c"} {
		_, err := nodes.Create(t.Context(), vnode(id, nil), metav1.CreateOptions{})
		require.NoError(t, err)
	}
	waitReplicas(3, "two bases joined")

	b := vnode("b", func(n *corev1.Node) { n.Labels["base.koupleless.io/version"] = "2.0.0" })
	_, err = nodes.Update(t.Context(), b, metav1.UpdateOptions{})
	require.NoError(t, err)
	waitReplicas(2, "base b no longer matches")

	cNode := vnode("c", func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionUnknown })
	_, err = nodes.UpdateStatus(t.Context(), cNode, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.NoError(t, nodes.Delete(t.Context(), "vnode.a.default", metav1.DeleteOptions{}))
	waitReplicas(1, "base a left; unreachable base c still counts")

	require.NoError(t, nodes.Delete(t.Context(), "vnode.c.default", metav1.DeleteOptions{}))
	waitReplicas(0, "base c removed")
	require.Equal(t, int32(5), replicasOf("optout"), "an opted-out Deployment is left alone")

	// Events arrive through the broadcaster.
	require.Eventually(t, func() bool {
		events, err := client.CoreV1().Events("mods").List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return false
		}
		n := 0
		for _, e := range events.Items {
			if e.Reason == ReasonReplicasSynced && e.InvolvedObject.Kind == "Deployment" && e.InvolvedObject.Name == "biz1" && e.Source.Component == componentName {
				n++
			}
		}
		return n >= 3
	}, waitFor, 10*time.Millisecond)

	cancel()
	require.NoError(t, <-done)

	for _, a := range client.Actions() {
		resource := a.GetResource().Resource
		if a.GetSubresource() != "" {
			resource += "/" + a.GetSubresource()
		}
		if testCalls[a.GetVerb()+" "+resource] {
			continue
		}
		require.Contains(t, allowed[resource], a.GetVerb(), "%s is beyond the documented RBAC", describe(a))
	}
}

// testCalls are the calls the test itself makes on the shared fake
// clientset; the controller never writes nodes or lists Events.
var testCalls = map[string]bool{
	"create nodes": true, "update nodes": true, "update nodes/status": true, "delete nodes": true,
	"list events": true,
}

func TestWorkerCountsResultsAndRequeuesErrors(t *testing.T) {
	f := newFixture(t)
	f.nodes = []*corev1.Node{vnode("a", nil), vnode("b", nil)}
	f.deployments = []*appsv1.Deployment{peerDeployment("biz1", 1, nil), peerDeployment("equal", 2, nil)}
	c := f.newController()
	c.queue.Add("mods/biz1")
	c.queue.Add("mods/equal")
	require.True(t, c.processNextWorkItem(t.Context()))
	require.True(t, c.processNextWorkItem(t.Context()))
	require.Equal(t, 1.0, testutil.ToFloat64(c.metrics.syncs.WithLabelValues(resultScaled)))
	require.Equal(t, 1.0, testutil.ToFloat64(c.metrics.syncs.WithLabelValues(resultUnchanged)))
	require.Zero(t, c.queue.Len())

	f.client.PrependReactor("get", "deployments", func(core.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("apiserver unavailable")
	})
	require.NoError(t, c.deploymentFactory.Apps().V1().Deployments().Informer().GetIndexer().Update(peerDeployment("biz1", 5, nil)))
	c.queue.Add("mods/biz1")
	require.True(t, c.processNextWorkItem(t.Context()))
	require.Equal(t, 1.0, testutil.ToFloat64(c.metrics.syncs.WithLabelValues(resultError)))
	require.Equal(t, 1, c.queue.NumRequeues("mods/biz1"), "a failed sync is retried with backoff")
	c.queue.ShutDown()
	require.False(t, c.processNextWorkItem(t.Context()))
}

func TestNewValidates(t *testing.T) {
	_, err := New(Config{Workers: -1})
	require.ErrorContains(t, err, "needs a Kubernetes client")
	require.ErrorContains(t, err, "at least one worker")
}

func TestPlacementChanged(t *testing.T) {
	base := vnode("a", nil)
	heartbeat := base.DeepCopy()
	heartbeat.Status.Conditions[0].LastHeartbeatTime = metav1.Now()
	heartbeat.ResourceVersion = "2"
	require.False(t, placementChanged(base, heartbeat), "a heartbeat changes nothing")
	require.True(t, placementChanged(base, vnode("a", func(n *corev1.Node) { n.Labels["x"] = "y" })))
	require.True(t, placementChanged(base, vnode("a", func(n *corev1.Node) { n.Spec.Taints = nil })))
	require.True(t, placementChanged(base, vnode("a", func(n *corev1.Node) { n.Spec.Unschedulable = true })))
	require.False(t, placementChanged(base, vnode("a", func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionFalse })),
		"readiness does not change the count")
}

func TestScaleDownMarksThePodsOnNodesThatNoLongerCountFirst(t *testing.T) {
	f := newFixture(t)
	f.nodes = []*corev1.Node{
		vnode("a", nil), vnode("b", nil),
		vnode("upgraded", func(n *corev1.Node) { n.Labels["base.koupleless.io/version"] = "2.0.0" }),
	}
	f.deployments = []*appsv1.Deployment{peerDeployment("biz1", 5, nil)}
	f.pods = []*corev1.Pod{
		modulePod("on-a", "a", nil), modulePod("on-b", "b", nil),
		modulePod("on-upgraded", "upgraded", nil),
		modulePod("on-gone", "gone", nil), // its node was removed
		modulePod("pending", "", func(p *corev1.Pod) { p.Spec.NodeName = ""; p.Status.Phase = corev1.PodPending }),
		modulePod("failed", "gone", func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }),
		modulePod("already", "upgraded", func(p *corev1.Pod) {
			p.Annotations = map[string]string{"controller.kubernetes.io/pod-deletion-cost": "-2147483648"}
		}),
		modulePod("back", "b", func(p *corev1.Pod) { // marked while b was away
			p.Annotations = map[string]string{"controller.kubernetes.io/pod-deletion-cost": "-2147483648"}
		}),
	}
	c := f.newController()

	// First pass: mark, do not scale yet, come back after MarkDelay.
	result, err := c.sync(t.Context(), "mods/biz1")
	require.NoError(t, err)
	require.Equal(t, resultMarked, result)
	var got []string
	for _, a := range f.client.Actions() {
		got = append(got, describe(a))
		if p, ok := a.(core.PatchAction); ok {
			got[len(got)-1] += " " + p.GetName()
		}
	}
	require.ElementsMatch(t, []string{"get deployments/scale", "list pods/", "patch pods/ on-upgraded", "patch pods/ on-gone", "patch pods/ back"}, got)
	for _, name := range []string{"on-upgraded", "on-gone"} {
		p, err := f.client.CoreV1().Pods("mods").Get(t.Context(), name, metav1.GetOptions{})
		require.NoError(t, err)
		require.Equal(t, "-2147483648", p.Annotations["controller.kubernetes.io/pod-deletion-cost"], name)
	}
	p, err := f.client.CoreV1().Pods("mods").Get(t.Context(), "back", metav1.GetOptions{})
	require.NoError(t, err)
	require.NotContains(t, p.Annotations, "controller.kubernetes.io/pod-deletion-cost", "the mark comes off when the node counts again")
	require.Eventually(t, func() bool { return c.queue.Len() == 1 }, waitFor, time.Millisecond, "requeued after the mark delay")
	require.Empty(t, f.events())

	// Second pass: everything is marked, scale down.
	f.client.ClearActions()
	result, err = c.sync(t.Context(), "mods/biz1")
	require.NoError(t, err)
	require.Equal(t, resultScaled, result)
	require.Equal(t, []string{"get deployments/scale", "list pods/", "update deployments/scale"}, describeAll(f.client.Actions()))
	require.Equal(t, []string{"Normal PeerReplicasSynced Scaled replicas from 5 to 2: 2 virtual nodes match the pod template"}, f.events())
}

func TestScaleDownWithoutPodPatchStillScales(t *testing.T) {
	f := newFixture(t)
	f.nodes = []*corev1.Node{vnode("a", nil)}
	f.deployments = []*appsv1.Deployment{peerDeployment("biz1", 2, nil)}
	f.pods = []*corev1.Pod{modulePod("on-a", "a", nil), modulePod("on-gone", "gone", nil)}
	c := f.newController()
	f.client.PrependReactor("patch", "pods", func(core.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New(`pods "on-gone" is forbidden`)
	})
	result, err := c.sync(t.Context(), "mods/biz1")
	require.NoError(t, err)
	require.Equal(t, resultScaled, result, "marking is best effort")
	d, err := f.client.AppsV1().Deployments("mods").Get(t.Context(), "biz1", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, int32(1), *d.Spec.Replicas)
}

func describeAll(actions []core.Action) []string {
	var out []string
	for _, a := range actions {
		out = append(out, describe(a))
	}
	return out
}
