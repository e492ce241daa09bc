//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/moduleops/module-controller/e2e/framework"
	"github.com/moduleops/module-controller/pkg/basesim"
)

// Labels of the peer replica sync (provider/keys.go; e2e is black-box).
const (
	labelStrategy        = "virtual-kubelet.koupleless.io/strategy"
	labelReplicasControl = "virtual-kubelet.koupleless.io/replicas-control"
	reasonReplicasSynced = "PeerReplicasSynced"
)

// peerDeployment is the peer Deployment of deploy/samples/peer-deployment.yaml
// for biz1 at version, restricted to this test's env so that nodes of other
// tests never count: one replica per matching Ready base (hostname
// anti-affinity), install-before-remove updates.
func (e *env) peerDeployment(name, version string) *appsv1.Deployment {
	podLabels := map[string]string{
		"module-controller.koupleless.io/component": "module",
		"module.koupleless.io/name":                 "biz1",
		"module.koupleless.io/version":              version,
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.namespace, Labels: map[string]string{
			"module-controller.koupleless.io/component": "module-deployment",
			labelStrategy: "peer",
		}},
		Spec: appsv1.DeploymentSpec{
			Replicas:             new(int32(1)),
			RevisionHistoryLimit: new(int32(0)),
			// Not the version: a selector is immutable, and the update changes it.
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"module.koupleless.io/name": "biz1"}},
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxSurge:       new(intstr.FromInt32(1)),
					MaxUnavailable: new(intstr.FromInt32(0)),
				},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name:  "biz1",
						Image: "https://modules.example.test/biz1-" + version + "-ark-biz.jar",
						Env:   []corev1.EnvVar{{Name: "BIZ_VERSION", Value: version}},
					}},
					Affinity: &corev1.Affinity{
						NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
							NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
								{Key: "base.koupleless.io/stack", Operator: corev1.NodeSelectorOpIn, Values: []string{"java"}},
								{Key: "base.koupleless.io/version", Operator: corev1.NodeSelectorOpIn, Values: []string{"1.0.0"}},
								{Key: "base.koupleless.io/name", Operator: corev1.NodeSelectorOpIn, Values: []string{"base"}},
								{Key: "virtual-kubelet.koupleless.io/env", Operator: corev1.NodeSelectorOpIn, Values: []string{e.name}},
							}}},
						}},
						// One pod of a version per base. The selector names the
						// version so that the new version may land next to the old.
						PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
							LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{
								"module.koupleless.io/name":    "biz1",
								"module.koupleless.io/version": version,
							}},
							TopologyKey: "kubernetes.io/hostname",
						}}},
					},
					Tolerations: []corev1.Toleration{{
						Key: "schedule.koupleless.io/virtual-node", Operator: corev1.TolerationOpEqual, Value: "True", Effect: corev1.TaintEffectNoExecute,
					}},
				},
			},
		},
	}
}

// replicas returns the Deployment's spec.replicas, or -1 if it cannot be read.
func (e *env) replicas(name string) int32 {
	d, err := e.client.AppsV1().Deployments(e.namespace).Get(e.t.Context(), name, metav1.GetOptions{})
	if err != nil || d.Spec.Replicas == nil {
		return -1
	}
	return *d.Spec.Replicas
}

// waitReplicas waits until the Deployment's spec.replicas is want.
func (e *env) waitReplicas(name string, want int32, why string) {
	e.t.Helper()
	require.Eventuallyf(e.t, func() bool { return e.replicas(name) == want }, waitLong, poll,
		"%s: deployment %s replicas %d, want %d", why, name, e.replicas(name), want)
}

// modulePods returns the live (not terminal, not deleting) pods of biz1 by
// node name.
func (e *env) modulePods() map[string][]corev1.Pod {
	e.t.Helper()
	pods, err := e.client.CoreV1().Pods(e.namespace).List(e.t.Context(), metav1.ListOptions{LabelSelector: "module.koupleless.io/name=biz1"})
	require.NoError(e.t, err)
	out := map[string][]corev1.Pod{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			continue
		}
		out[p.Spec.NodeName] = append(out[p.Spec.NodeName], p)
	}
	return out
}

// waitOneRunningPerBase waits until each of the bases runs exactly one live
// biz1 pod, Running, of the given version, and no other node runs one.
func (e *env) waitOneRunningPerBase(version string, bases ...*basesim.Base) {
	e.t.Helper()
	var last map[string][]corev1.Pod
	require.Eventuallyf(e.t, func() bool {
		last = e.modulePods()
		if len(last) != len(bases) {
			return false
		}
		for _, b := range bases {
			pods := last[e.nodeName(b.Identity())]
			if len(pods) != 1 || !running(&pods[0]) || pods[0].Labels["module.koupleless.io/version"] != version {
				return false
			}
			if bizState(b, "biz1", version) != "ACTIVATED" {
				return false
			}
		}
		return true
	}, waitLong, poll, "one Running biz1 %s pod per base; pods by node: %s", version, describePlacement(last))
}

func describePlacement(byNode map[string][]corev1.Pod) string {
	var parts []string
	for node, pods := range byNode {
		for _, p := range pods {
			parts = append(parts, fmt.Sprintf("%s=%s(%s)", node, p.Name, describePod(&p)))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// syncEvents returns the messages of the replica sync's Events on the
// Deployment.
func (e *env) syncEvents(name string) []string {
	events, err := e.client.CoreV1().Events(e.namespace).List(e.t.Context(), metav1.ListOptions{})
	if err != nil {
		return nil
	}
	var out []string
	for _, ev := range events.Items {
		if ev.InvolvedObject.Kind == "Deployment" && ev.InvolvedObject.Name == name && ev.Reason == reasonReplicasSynced {
			out = append(out, ev.Message)
		}
	}
	return out
}

// waitSyncEvent waits for the replica sync's Event saying it scaled the
// Deployment to n because n virtual nodes match.
func (e *env) waitSyncEvent(name string, n int) {
	e.t.Helper()
	suffix := fmt.Sprintf(" to %d: %d virtual nodes match the pod template", n, n)
	require.Eventuallyf(e.t, func() bool {
		for _, m := range e.syncEvents(name) {
			if strings.HasPrefix(m, "Scaled replicas from ") && strings.HasSuffix(m, suffix) {
				return true
			}
		}
		return false
	}, waitLong, poll, "Event ...%s on deployment %s; have %q", suffix, name, e.syncEvents(name))
}

// TestPeerReplicaSync: a peer Deployment follows its bases. Three bases give
// three replicas, one Running module per base; a base that joins gets one
// (the time to its pod Running is reported), a base that leaves or whose
// labels stop matching costs one replica, each change is an Event on the
// Deployment, and the opt-out label stops the sync.
func TestPeerReplicaSync(t *testing.T) {
	for _, kind := range brokerKinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind)
			prefix := map[string]string{"embedded": "10.31.0.", "mosquitto": "10.32.0."}[kind]
			var bases []*basesim.Base
			for i := 1; i <= 3; i++ {
				bases = append(bases, e.startBase(fmt.Sprintf("%s%d", prefix, i), nil))
			}
			for _, b := range bases {
				e.waitNode(b.Identity(), "Ready", isReady)
			}

			const name = "biz1-peer"
			start := time.Now()
			_, err := e.client.AppsV1().Deployments(e.namespace).Create(t.Context(), e.peerDeployment(name, "0.0.1"), metav1.CreateOptions{})
			require.NoError(t, err)
			e.waitReplicas(name, 3, "three matching bases")
			e.waitSyncEvent(name, 3)
			e.waitOneRunningPerBase("0.0.1", bases...)
			t.Logf("peer deployment created → one module Running on each of 3 bases: %s", time.Since(start).Round(time.Millisecond))

			// A base joins: one more replica, and its module runs there.
			start = time.Now()
			joined := e.startBase(prefix+"4", nil)
			e.waitNode(joined.Identity(), "Ready", isReady)
			nodeReady := time.Since(start)
			e.waitReplicas(name, 4, "a base joined")
			scaled := time.Since(start)
			bases = append(bases, joined)
			e.waitOneRunningPerBase("0.0.1", bases...)
			t.Logf("base joined: node Ready %s, replicas 4 %s, its module pod Running %s after the base started",
				nodeReady.Round(time.Millisecond), scaled.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
			e.waitSyncEvent(name, 4)

			// A base leaves: its node goes NotReady, and still counts (the
			// controller merely lost contact), then is removed, and the
			// count drops.
			start = time.Now()
			joined.Stop()
			e.waitNode(joined.Identity(), "NotReady", func(n *corev1.Node) bool { return !isReady(n) })
			require.Equal(t, int32(4), e.replicas(name), "a NotReady node was counted out")
			e.waitReplicas(name, 3, "a base left")
			t.Logf("base left: replicas 3 %s after it stopped", time.Since(start).Round(time.Millisecond))
			// The pod on the base that left is the one that goes (it got the
			// lowest pod-deletion-cost before the scale-down): the remaining
			// bases keep theirs.
			bases = bases[:3]
			e.waitOneRunningPerBase("0.0.1", bases...)
			t.Logf("base left: its pod deleted, the 3 others kept, %s after it stopped", time.Since(start).Round(time.Millisecond))
			for _, b := range bases {
				require.Equal(t, 1, b.ReceivedCount("installBiz", "biz1:0.0.1"), "base %s kept its module", b.Identity())
			}
			e.waitNodeGone(joined.Identity())
			e.waitSyncEvent(name, 3)
			require.Equal(t, int32(3), e.replicas(name), "the removed node does not come back into the count")

			// A base is upgraded to a version the template does not select:
			// same identity, new base version label.
			upgraded := bases[2]
			upgraded.Stop()
			bases[2] = e.startBase(upgraded.Identity(), func(c *basesim.Config) { c.Version = "2.0.0" })
			e.waitNode(upgraded.Identity(), "relabelled base.koupleless.io/version=2.0.0", func(n *corev1.Node) bool {
				return isReady(n) && n.Labels["base.koupleless.io/version"] == "2.0.0"
			})
			e.waitReplicas(name, 2, "a base no longer matches")
			e.waitSyncEvent(name, 2)
			// The module leaves the base that no longer matches, not another.
			e.waitOneRunningPerBase("0.0.1", bases[0], bases[1])
			require.Eventually(t, func() bool { return bizState(bases[2], "biz1", "0.0.1") == "" }, waitLong, poll,
				"biz1 uninstalled from the upgraded base: %v", bases[2].Bizs())
			for _, b := range bases[:2] {
				require.Equal(t, 1, b.ReceivedCount("installBiz", "biz1:0.0.1"), "base %s kept its module", b.Identity())
			}

			// Opt out, then let a base join: the replicas stay as they are.
			// As `kubectl label deployment … replicas-control=disabled` does: a
			// patch, which no concurrent status write can make conflict.
			e.labelDeployment(name, labelReplicasControl, "disabled")
			late := e.startBase(prefix+"5", nil)
			e.waitNode(late.Identity(), "Ready", isReady)
			// A second peer Deployment is a witness that the sync saw the node.
			witness := e.peerDeployment("witness", "0.0.1")
			witness.Spec.Template.Spec.Containers[0].Name = "witness"
			witness.Spec.Template.Labels["module.koupleless.io/name"] = "witness"
			witness.Spec.Selector.MatchLabels["module.koupleless.io/name"] = "witness"
			witness.Spec.Template.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0].LabelSelector.MatchLabels["module.koupleless.io/name"] = "witness"
			_, err = e.client.AppsV1().Deployments(e.namespace).Create(t.Context(), witness, metav1.CreateOptions{})
			require.NoError(t, err)
			e.waitReplicas("witness", 3, "the witness counts the late base")
			require.Equal(t, int32(2), e.replicas(name), "the opted-out Deployment keeps its replicas")

			// Opting back in syncs again.
			e.labelDeployment(name, labelReplicasControl, "")
			e.waitReplicas(name, 3, "opted back in")
		})
	}
}

// TestPeerRollingUpdate: a peer Deployment on four bases is updated from
// 0.0.1 to 0.0.2 with install-before-remove (maxSurge 1, maxUnavailable 0).
// Every base always has an ACTIVATED biz1 during the rollout, and at the end
// every base runs 0.0.2 only: 0.0.1 is uninstalled everywhere.
//
// Two ways let the new version land next to the old one despite the hostname
// anti-affinity: the version in the term's label selector (any Kubernetes),
// and matchLabelKeys: [pod-template-hash] (Kubernetes 1.33 and later), which
// needs no edit of the term on an update.
func TestPeerRollingUpdate(t *testing.T) {
	t.Run("version in the selector/embedded", func(t *testing.T) { testPeerRollingUpdate(t, "embedded", "10.33.0.", nil) })
	t.Run("matchLabelKeys/mosquitto", func(t *testing.T) {
		testPeerRollingUpdate(t, "mosquitto", "10.34.0.", func(d *appsv1.Deployment) {
			term := &d.Spec.Template.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0]
			delete(term.LabelSelector.MatchLabels, "module.koupleless.io/version")
			term.MatchLabelKeys = []string{appsv1.DefaultDeploymentUniqueLabelKey}
		})
	})
}

func testPeerRollingUpdate(t *testing.T, kind, prefix string, mod func(*appsv1.Deployment)) {
	e := newEnv(t, kind)
	deployment := func(version string) *appsv1.Deployment {
		d := e.peerDeployment("biz1-peer", version)
		if mod != nil {
			mod(d)
		}
		return d
	}
	var bases []*basesim.Base
	for i := 1; i <= 4; i++ {
		bases = append(bases, e.startBase(fmt.Sprintf("%s%d", prefix, i), nil))
	}
	for _, b := range bases {
		e.waitNode(b.Identity(), "Ready", isReady)
	}
	const name = "biz1-peer"
	_, err := e.client.AppsV1().Deployments(e.namespace).Create(t.Context(), deployment("0.0.1"), metav1.CreateOptions{})
	require.NoError(t, err)
	e.waitReplicas(name, 4, "four bases")
	e.waitOneRunningPerBase("0.0.1", bases...)

	// Sample the bases during the rollout: none may be without an active biz1.
	var mu sync.Mutex
	var gaps []string
	samples := 0
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			mu.Lock()
			samples++
			for _, b := range bases {
				active := 0
				for _, z := range b.Bizs() {
					if z.Name == "biz1" && z.State == "ACTIVATED" {
						active++
					}
				}
				if active != 1 {
					gaps = append(gaps, fmt.Sprintf("%s: %d active biz1 %v", b.Identity(), active, b.Bizs()))
				}
			}
			mu.Unlock()
		}
	}()

	// Watch the pods: how many old-version pods the old ReplicaSet creates to
	// replace the ones BizDeactivate turned Failed, and how many go Failed.
	w, err := e.client.CoreV1().Pods(e.namespace).Watch(t.Context(), metav1.ListOptions{})
	require.NoError(t, err)
	t.Cleanup(w.Stop)
	var replacements, deactivated int
	replacementStates := map[string]bool{} // what the replacements showed
	seenPods := map[string]bool{}
	original := map[string]bool{}
	seenFailed := map[string]bool{}
	for _, pods := range e.modulePods() {
		for _, p := range pods {
			seenPods[p.Name] = true
			original[p.Name] = true
		}
	}
	go func() {
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			mu.Lock()
			if !seenPods[p.Name] {
				seenPods[p.Name] = true
				if p.Labels["module.koupleless.io/version"] == "0.0.1" {
					replacements++
				}
			}
			if p.Labels["module.koupleless.io/version"] == "0.0.1" && !original[p.Name] {
				for _, cs := range p.Status.ContainerStatuses {
					replacementStates[stateString(cs.State)] = true
				}
			}
			if p.Status.Phase == corev1.PodFailed && p.Status.Reason == "BizDeactivate" && !seenFailed[p.Name] {
				seenFailed[p.Name] = true
				deactivated++
			}
			mu.Unlock()
		}
	}()

	start := time.Now()
	e.updateDeployment(name, func(d *appsv1.Deployment) { d.Spec.Template = deployment("0.0.2").Spec.Template })

	e.waitOneRunningPerBase("0.0.2", bases...)
	t.Logf("rolling update: 0.0.2 Running on all 4 bases %s after the update", time.Since(start).Round(time.Millisecond))
	require.Eventually(t, func() bool {
		for _, b := range bases {
			if bizState(b, "biz1", "0.0.1") != "" || len(b.Bizs()) != 1 {
				return false
			}
		}
		return true
	}, waitLong, poll, "0.0.1 uninstalled from every base: %v", bizsOf(bases))
	t.Logf("rolling update: 0.0.1 uninstalled from all 4 bases %s after the update", time.Since(start).Round(time.Millisecond))
	require.Eventually(t, func() bool {
		d, err := e.client.AppsV1().Deployments(e.namespace).Get(t.Context(), name, metav1.GetOptions{})
		return err == nil && d.Status.ObservedGeneration == d.Generation && d.Status.UpdatedReplicas == 4 &&
			d.Status.AvailableReplicas == 4 && d.Status.Replicas == 4
	}, waitLong, poll, "rollout complete")
	close(stop)
	<-sampled

	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, gaps, "every base had exactly one active biz1 in each of %d samples", samples)
	t.Logf("rolling update: %d pods Failed with BizDeactivate, %d old-version replacement pods created by the old ReplicaSet, showing %v", deactivated, replacements, slices.Sorted(maps.Keys(replacementStates)))
	for _, b := range bases {
		require.Equal(t, "ACTIVATED", bizState(b, "biz1", "0.0.2"), b.Identity())
		t.Logf("base %s: installBiz biz1:0.0.1 ×%d, biz1:0.0.2 ×%d; uninstallBiz biz1:0.0.1 ×%d", b.Identity(),
			b.ReceivedCount("installBiz", "biz1:0.0.1"), b.ReceivedCount("installBiz", "biz1:0.0.2"), b.ReceivedCount("uninstallBiz", "biz1:0.0.1"))
		require.Equal(t, 1, b.ReceivedCount("installBiz", "biz1:0.0.1"), "the old version was never installed again on %s", b.Identity())
	}
	// The old ReplicaSet and its Failed (BizDeactivate) pods are gone.
	rss, err := e.client.AppsV1().ReplicaSets(e.namespace).List(t.Context(), metav1.ListOptions{LabelSelector: labels.SelectorFromSet(labels.Set{"module.koupleless.io/name": "biz1"}).String()})
	require.NoError(t, err)
	require.Len(t, rss.Items, 1, "revisionHistoryLimit 0 deletes the old ReplicaSet")
	pods, err := e.client.CoreV1().Pods(e.namespace).List(t.Context(), metav1.ListOptions{})
	require.NoError(t, err)
	failed := 0
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodFailed {
			failed++
		}
	}
	require.Zero(t, failed, "no Failed pod left behind")
	_, err = e.client.AppsV1().Deployments(e.namespace).Get(t.Context(), name, metav1.GetOptions{})
	require.False(t, apierrors.IsNotFound(err))
}

func bizsOf(bases []*basesim.Base) map[string][]string {
	out := map[string][]string{}
	for _, b := range bases {
		for _, z := range b.Bizs() {
			out[b.Identity()] = append(out[b.Identity()], z.Key()+"="+string(z.State))
		}
	}
	return out
}

// TestPeerSampleApplies: deploy/samples/peer-deployment.yaml is accepted by
// the API server as it is (only the namespace is this test's), and the
// replica sync gives it one Running module per base.
func TestPeerSampleApplies(t *testing.T) {
	e := newEnv(t, "embedded")
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	raw, err := os.ReadFile(filepath.Join(root, "deploy", "samples", "peer-deployment.yaml"))
	require.NoError(t, err)
	var d appsv1.Deployment
	require.NoError(t, yaml.UnmarshalStrict(raw, &d))
	d.Namespace = e.namespace
	require.Nil(t, d.Spec.Replicas, "the sample leaves replicas to the replica sync")

	bases := []*basesim.Base{e.startBase("10.35.0.1", nil), e.startBase("10.35.0.2", nil)}
	for _, b := range bases {
		e.waitNode(b.Identity(), "Ready", isReady)
	}
	_, err = e.client.AppsV1().Deployments(e.namespace).Create(t.Context(), &d, metav1.CreateOptions{})
	require.NoError(t, err)
	e.waitReplicas(d.Name, 2, "two bases")
	e.waitOneRunningPerBase("0.0.1", bases...)
	e.waitSyncEvent(d.Name, 2)
}

// labelDeployment sets a label on a Deployment with a merge patch, or removes
// it when value is empty, as `kubectl label` does.
func (e *env) labelDeployment(name, key, value string) {
	e.t.Helper()
	var v any
	if value != "" {
		v = value
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{key: v}}})
	require.NoError(e.t, err)
	_, err = e.client.AppsV1().Deployments(e.namespace).Patch(e.t.Context(), name, types.MergePatchType, patch, metav1.PatchOptions{})
	require.NoError(e.t, err)
}
