//go:build e2e

package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/moduleops/module-controller/pkg/basesim"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// Label selectors of the recipe in docs/batch-update.md.
const (
	selV1 = "module.koupleless.io/name=biz1,module.koupleless.io/version=0.0.1"
	selV2 = "module.koupleless.io/name=biz1,module.koupleless.io/version=0.0.2"
)

// TestBatchUpdate follows docs/batch-update.md step by step on four bases
// (activate.new.module=true): biz1 0.0.1 from deploy/samples/batch-update/
// biz1-v1.yaml, then 0.0.2 from biz1-v2.yaml two bases at a time. Each API
// call below is the kubectl command of the step named in its comment. A
// sampler polls the bases every 10 ms for the whole update: every base runs
// exactly one ACTIVATED biz1 at every sample.
func TestBatchUpdate(t *testing.T) {
	e := newEnv(t, "mosquitto")
	bases := e.startBases("10.32.0", 4, func(c *basesim.Config) { c.Activation = basesim.ActivateNew })
	ctx := t.Context()
	deployments := e.client.AppsV1().Deployments(e.namespace)

	// Before you start: biz1 0.0.1 runs on every base.
	// kubectl apply -f deploy/samples/batch-update/biz1-v1.yaml
	// kubectl rollout status deployment/biz1-v1
	v1 := e.confine(loadSample(t, "batch-update/biz1-v1.yaml"))
	_, err := deployments.Create(ctx, v1, metav1.CreateOptions{})
	require.NoError(t, err)
	e.waitDeploymentAvailable("biz1-v1", 4)
	e.requireBaseVersions(bases, map[string]string{})
	sampler := e.sampleBases(bases, "biz1", 10*time.Millisecond)
	began := time.Now()

	// Step 1: detach the old pods from their workload.
	// kubectl delete deployment biz1-v1 --cascade=orphan
	// kubectl delete replicaset -l <selV1> --cascade=orphan
	orphan := metav1.DeletePropagationOrphan
	require.NoError(t, deployments.Delete(ctx, "biz1-v1", metav1.DeleteOptions{PropagationPolicy: &orphan}))
	e.waitGone("deployment biz1-v1", func() error { _, err := deployments.Get(ctx, "biz1-v1", metav1.GetOptions{}); return err })
	rss, err := e.client.AppsV1().ReplicaSets(e.namespace).List(ctx, metav1.ListOptions{LabelSelector: selV1})
	require.NoError(t, err)
	require.Len(t, rss.Items, 1)
	for _, rs := range rss.Items {
		require.NoError(t, e.client.AppsV1().ReplicaSets(e.namespace).Delete(ctx, rs.Name, metav1.DeleteOptions{PropagationPolicy: &orphan}))
		e.waitGone("replicaset "+rs.Name, func() error {
			_, err := e.client.AppsV1().ReplicaSets(e.namespace).Get(ctx, rs.Name, metav1.GetOptions{})
			return err
		})
	}
	// kubectl get pods -l <selV1>: four Running pods, none controlled.
	old := e.listPods(selV1)
	require.Len(t, old, 4)
	for i := range old {
		require.True(t, available(&old[i]), "pod %s", old[i].Name)
		require.Empty(t, old[i].OwnerReferences, "pod %s still has an owner", old[i].Name)
	}

	// Step 2: the first batch.
	// kubectl apply -f deploy/samples/batch-update/biz1-v2.yaml   (replicas: 2)
	// kubectl rollout status deployment/biz1-v2
	v2 := e.confine(loadSample(t, "batch-update/biz1-v2.yaml"))
	require.EqualValues(t, 2, *v2.Spec.Replicas, "the sample's batch size")
	_, err = deployments.Create(ctx, v2, metav1.CreateOptions{})
	require.NoError(t, err)
	e.waitDeploymentAvailable("biz1-v2", 2)
	// kubectl get pods -l module.koupleless.io/name=biz1 -o wide
	updated := e.waitBatch(2)
	e.requireBaseVersions(bases, updated)

	// Step 3: delete the superseded pods.
	// kubectl delete pods -l <selV1> --field-selector=status.phase=Failed
	e.deleteFailed(selV1, 2)
	e.requireBaseVersions(bases, updated)
	e.requireUninstalled(bases, updated)

	// Step 4: the next batch, then step 3 again.
	// kubectl scale deployment biz1-v2 --replicas=4
	// kubectl rollout status deployment/biz1-v2
	_, err = deployments.UpdateScale(ctx, "biz1-v2", &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{Name: "biz1-v2", Namespace: e.namespace},
		Spec:       autoscalingv1.ScaleSpec{Replicas: 4},
	}, metav1.UpdateOptions{})
	require.NoError(t, err)
	e.waitDeploymentAvailable("biz1-v2", 4)
	updated = e.waitBatch(4)
	e.requireBaseVersions(bases, updated)
	// kubectl delete pods -l <selV1> --field-selector=status.phase=Failed
	e.deleteFailed(selV1, 2)

	// Step 5: check that nothing of 0.0.1 is left.
	// kubectl get pods -l <selV1>   → No resources found
	require.Empty(t, e.listPods(selV1))
	e.requireUninstalled(bases, updated)
	took := time.Since(began)
	sampler.Stop()
	e.requireBaseVersions(bases, updated)
	t.Logf("batch update of 4 bases, 2 at a time, by the recipe: %s from step 1 to 0.0.1 gone from every base", took.Round(time.Millisecond))

	notOne := sampler.NotExactlyOne()
	t.Logf("%d samples of the bases; most versions active on one base: %d", sampler.Samples(), sampler.MaxPerBase())
	require.Empty(t, notOne, "a base did not run exactly one ACTIVATED biz1")
	for _, b := range bases {
		for _, key := range []string{"biz1:0.0.1", "biz1:0.0.2"} {
			require.Equal(t, 1, b.ReceivedCount(protocol.CommandInstallBiz, key), "installBiz %s at base %s", key, b.Identity())
		}
		require.Equal(t, 1, b.ReceivedCount(protocol.CommandUninstallBiz, "biz1:0.0.1"), "base %s", b.Identity())
		require.Zero(t, b.ReceivedCount(protocol.CommandUninstallBiz, "biz1:0.0.2"), "base %s", b.Identity())
	}
}

// TestBatchUpdateKeepingOldWorkload is what docs/batch-update.md says not to
// do: introduce 0.0.2 while the 0.0.1 Deployment still controls its pods.
// Its ReplicaSet replaces the Failed pod at once; the scheduler ignores
// Failed pods, so the replacement's per-version anti-affinity lets it land on
// the very base that now runs 0.0.2, where it waits for the biz the Failed
// pod still holds. Deleting the Failed pod (step 3 of the recipe) hands the
// deactivated 0.0.1 to the replacement, which fails in turn and is replaced
// again: the base never gets rid of 0.0.1, and the Failed pods never stop
// coming. The base keeps 0.0.2.
func TestBatchUpdateKeepingOldWorkload(t *testing.T) {
	e := newEnv(t, "embedded")
	bases := e.startBases("10.33.0", 2, nil)
	ctx := t.Context()
	v1 := e.confine(loadSample(t, "batch-update/biz1-v1.yaml"))
	two, one := int32(2), int32(1)
	v1.Spec.Replicas = &two
	_, err := e.client.AppsV1().Deployments(e.namespace).Create(ctx, v1, metav1.CreateOptions{})
	require.NoError(t, err)
	e.waitDeploymentAvailable("biz1-v1", 2)

	// Skipping step 1: the v1 Deployment still controls its pods.
	v2 := e.confine(loadSample(t, "batch-update/biz1-v2.yaml"))
	v2.Spec.Replicas = &one
	_, err = e.client.AppsV1().Deployments(e.namespace).Create(ctx, v2, metav1.CreateOptions{})
	require.NoError(t, err)
	e.waitDeploymentAvailable("biz1-v2", 1)
	v2Pods := e.listPods(selV2)
	require.Len(t, v2Pods, 1)
	node := v2Pods[0].Spec.NodeName
	var base *basesim.Base
	for _, b := range bases {
		if e.nodeName(b.Identity()) == node {
			base = b
		}
	}
	require.NotNil(t, base)

	for round := 1; round <= 2; round++ {
		// The ReplicaSet's replacement lands on the base that runs 0.0.2
		// and waits for the biz the Failed pod still holds there.
		var waiting *corev1.Pod
		var failed []string
		require.Eventuallyf(t, func() bool {
			waiting, failed = nil, nil
			for _, p := range e.listPods(selV1) {
				if p.Spec.NodeName != node {
					continue
				}
				switch {
				case p.Status.Phase == corev1.PodFailed && p.Status.Reason == "BizDeactivate":
					failed = append(failed, p.Name)
				case podWaitingReason(&p) == "BizOwnedByOtherPod":
					waiting = &p
				}
			}
			return waiting != nil && len(failed) > 0
		}, waitLong, poll, "round %d: a Failed 0.0.1 pod and a replacement waiting on %s:%s", round, node, describePods(e.listPods("")))
		require.Equal(t, []string{"0.0.2"}, activeVersions(base, "biz1"), "the base keeps 0.0.2")
		z, ok := base.Biz("biz1", "0.0.1")
		require.True(t, ok, "0.0.1 stays on the base")
		require.Equal(t, protocol.BizDeactivated, z.State)

		// Step 3 of the recipe only moves the problem to the replacement.
		for _, name := range failed {
			require.NoError(t, e.client.CoreV1().Pods(e.namespace).Delete(ctx, name, metav1.DeleteOptions{}))
		}
		e.waitPod(waiting.Name, "Failed BizDeactivate after taking over the deactivated biz", func(p *corev1.Pod) bool {
			return p.Status.Phase == corev1.PodFailed && p.Status.Reason == "BizDeactivate"
		})
	}
	require.Equal(t, 1, base.ReceivedCount(protocol.CommandInstallBiz, "biz1:0.0.1"), "0.0.1 was never installed again")
	require.Zero(t, base.ReceivedCount(protocol.CommandUninstallBiz, "biz1:0.0.1"), "0.0.1 was never uninstalled")
	require.Equal(t, []string{"0.0.2"}, activeVersions(base, "biz1"))
	t.Logf("after two cleanups: %s%s", baseList([]*basesim.Base{base}), describePods(e.listPods("")))
}

// waitDeploymentAvailable waits for what `kubectl rollout status` waits for.
func (e *env) waitDeploymentAvailable(name string, replicas int32) {
	e.t.Helper()
	var last *appsv1.Deployment
	require.Eventuallyf(e.t, func() bool {
		d, err := e.client.AppsV1().Deployments(e.namespace).Get(e.t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		last = d
		st := d.Status
		return st.ObservedGeneration >= d.Generation && st.UpdatedReplicas == replicas && st.Replicas == replicas && st.AvailableReplicas == replicas
	}, waitLong, poll, "deployment %s: %d replicas available; last status: %+v", name, replicas, &last)
}

// waitGone waits until get returns NotFound (what `kubectl delete` waits for).
func (e *env) waitGone(what string, get func() error) {
	e.t.Helper()
	require.Eventuallyf(e.t, func() bool { return apierrors.IsNotFound(get()) }, waitLong, poll, "%s still exists", what)
}

// waitBatch waits until n 0.0.2 pods run, each on its own node, and the
// 0.0.1 pod on each of those nodes is Failed with reason BizDeactivate while
// every other 0.0.1 pod still runs. It returns node → "0.0.2" for the
// updated nodes.
func (e *env) waitBatch(n int) map[string]string {
	e.t.Helper()
	var updated map[string]string
	var last string
	require.Eventuallyf(e.t, func() bool {
		updated = map[string]string{}
		pods := e.listPods("module.koupleless.io/name=biz1")
		last = describePods(pods)
		for i := range pods {
			if pods[i].Labels["module.koupleless.io/version"] == "0.0.2" {
				if !available(&pods[i]) {
					return false
				}
				updated[pods[i].Spec.NodeName] = "0.0.2"
			}
		}
		if len(updated) != n {
			return false
		}
		for i := range pods {
			p := &pods[i]
			if p.Labels["module.koupleless.io/version"] != "0.0.1" {
				continue
			}
			superseded := updated[p.Spec.NodeName] != ""
			if superseded && (p.Status.Phase != corev1.PodFailed || p.Status.Reason != "BizDeactivate") {
				return false
			}
			if !superseded && !available(p) {
				return false
			}
		}
		return true
	}, waitLong, poll, "%d bases updated, their 0.0.1 pods Failed/BizDeactivate, the others running 0.0.1; pods:%s", n, &last)
	return updated
}

// deleteFailed deletes the Failed pods of selector, as `kubectl delete pods
// -l <selector> --field-selector=status.phase=Failed` does, expects want of
// them, and waits until they are gone.
func (e *env) deleteFailed(selector string, want int) {
	e.t.Helper()
	ctx := e.t.Context()
	pods, err := e.client.CoreV1().Pods(e.namespace).List(ctx, metav1.ListOptions{LabelSelector: selector, FieldSelector: "status.phase=Failed"})
	require.NoError(e.t, err)
	require.Len(e.t, pods.Items, want, "Failed pods of %s:%s", selector, describePods(pods.Items))
	for _, p := range pods.Items {
		require.Equal(e.t, "BizDeactivate", p.Status.Reason, "pod %s", p.Name)
		require.NoError(e.t, e.client.CoreV1().Pods(e.namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}))
	}
	for _, p := range pods.Items {
		e.waitGone("pod "+p.Name, func() error {
			_, err := e.client.CoreV1().Pods(e.namespace).Get(ctx, p.Name, metav1.GetOptions{})
			return err
		})
	}
}

// requireBaseVersions checks at the bases that each runs exactly one
// ACTIVATED biz1: 0.0.2 on the nodes in updated, 0.0.1 elsewhere.
func (e *env) requireBaseVersions(bases []*basesim.Base, updated map[string]string) {
	e.t.Helper()
	for _, b := range bases {
		want := "0.0.1"
		if v := updated[e.nodeName(b.Identity())]; v != "" {
			want = v
		}
		require.Equal(e.t, []string{want}, activeVersions(b, "biz1"), "base %s", b.Identity())
	}
}

// requireUninstalled waits until 0.0.1 is gone from the updated bases.
func (e *env) requireUninstalled(bases []*basesim.Base, updated map[string]string) {
	e.t.Helper()
	require.Eventually(e.t, func() bool {
		for _, b := range bases {
			if updated[e.nodeName(b.Identity())] == "" {
				continue
			}
			if _, ok := b.Biz("biz1", "0.0.1"); ok {
				return false
			}
		}
		return true
	}, waitLong, poll, "0.0.1 uninstalled from the updated bases: %s", baseList(bases))
}

// baseList formats what each base runs, for failure messages.
func baseList(bases []*basesim.Base) string {
	var out []string
	for _, b := range bases {
		var bizs []string
		for _, z := range b.Bizs() {
			bizs = append(bizs, z.Key()+"="+string(z.State))
		}
		out = append(out, fmt.Sprintf("%s%v", b.Identity(), bizs))
	}
	slices.Sort(out)
	return fmt.Sprint(out)
}
