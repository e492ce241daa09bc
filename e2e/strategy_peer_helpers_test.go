//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/yaml"

	"github.com/moduleops/module-controller/e2e/framework"
	"github.com/moduleops/module-controller/pkg/basesim"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// Labels of module workloads, as the operations guide writes them.
const (
	labelModuleName    = "module.koupleless.io/name"
	labelModuleVersion = "module.koupleless.io/version"
	biz1Selector       = labelModuleName + "=biz1"
)

// sampleFile returns the path of deploy/samples/<file>.
func sampleFile(t *testing.T, file string) string {
	t.Helper()
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	return filepath.Join(root, "deploy", "samples", file)
}

// decodeSample decodes deploy/samples/<file> strictly into obj, so a typo in a
// sample fails the test instead of being dropped.
func decodeSample(t *testing.T, file string, obj any) {
	t.Helper()
	raw, err := os.ReadFile(sampleFile(t, file))
	require.NoError(t, err)
	require.NoError(t, yaml.UnmarshalStrict(raw, obj), "decode %s", file)
}

// kubectlIn runs kubectl (see rbac_test.go) against the cluster, with its
// discovery cache in a temp dir rather than the home directory.
func kubectlIn(t *testing.T, c *framework.Cluster, args ...string) (string, error) {
	t.Helper()
	return kubectl(t, c.Kubeconfig, append([]string{"--cache-dir=" + t.TempDir()}, args...)...)
}

// applySample runs `kubectl apply -f deploy/samples/<file>` in the env's
// namespace, as a user would.
func (e *env) applySample(file string) {
	e.t.Helper()
	out, err := kubectlIn(e.t, e.cluster, "apply", "-n", e.namespace, "-f", sampleFile(e.t, file))
	require.NoError(e.t, err, "kubectl apply %s: %s", file, out)
	e.t.Logf("kubectl apply -f %s: %s", file, strings.TrimSpace(out))
}

// pods lists the pods of the env's namespace that match a label selector.
func (e *env) pods(selector string) []corev1.Pod {
	e.t.Helper()
	l, err := e.client.CoreV1().Pods(e.namespace).List(e.t.Context(), metav1.ListOptions{LabelSelector: selector})
	require.NoError(e.t, err)
	return l.Items
}

// waitPods polls the pods matching selector until ok holds and returns them.
func (e *env) waitPods(selector, what string, timeout time.Duration, ok func([]corev1.Pod) bool) []corev1.Pod {
	e.t.Helper()
	var last podList
	require.Eventuallyf(e.t, func() bool {
		l, err := e.client.CoreV1().Pods(e.namespace).List(e.t.Context(), metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false
		}
		last = l.Items
		return ok(last)
	}, timeout, poll, "pods %s: %s; last seen: %s", selector, what, &last)
	return last
}

// podList prints as a pod summary; a *podList passed to a failure message
// shows the pods as they were last seen.
type podList []corev1.Pod

func (l *podList) String() string { return podSummary(*l) }

// podSummary is one line per pod: name, node, phase and container states.
func podSummary(pods []corev1.Pod) string {
	lines := make([]string, 0, len(pods))
	for i := range pods {
		lines = append(lines, pods[i].Name+" "+describePod(&pods[i]))
	}
	sort.Strings(lines)
	return strings.Join(lines, "; ")
}

// podsByNode groups live (not deleting) pods by node name; unscheduled pods
// are under "".
func podsByNode(pods []corev1.Pod) map[string][]corev1.Pod {
	m := map[string][]corev1.Pod{}
	for _, p := range pods {
		if p.DeletionTimestamp == nil {
			m[p.Spec.NodeName] = append(m[p.Spec.NodeName], p)
		}
	}
	return m
}

// unschedulable reports a pod the scheduler could not place, with the reason
// it gave (PodScheduled=False, reason Unschedulable).
func unschedulable(p *corev1.Pod) (string, bool) {
	if p.Spec.NodeName != "" {
		return "", false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return c.Message, true
		}
	}
	return "", false
}

// activeBizVersions returns the ACTIVATED versions of biz name on the base.
func activeBizVersions(b *basesim.Base, name string) []string {
	var out []string
	for _, z := range b.Bizs() {
		if z.Name == name && z.State == protocol.BizActivated {
			out = append(out, z.Version)
		}
	}
	return out
}

// bizKeys returns every biz registered on the base as name:version@STATE.
func bizKeys(b *basesim.Base) []string {
	var out []string
	for _, z := range b.Bizs() {
		out = append(out, z.Key()+"@"+string(z.State))
	}
	return out
}

// describeBaseMap formats what each base runs, for failure messages.
func describeBaseMap(bases map[string]*basesim.Base) string {
	ids := make([]string, 0, len(bases))
	for id := range bases {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var b strings.Builder
	for _, id := range ids {
		fmt.Fprintf(&b, "%s=%v ", id, bizKeys(bases[id]))
	}
	return b.String()
}

// commandIndex returns the position of the last command named name for key
// in the base's received commands, or -1.
func commandIndex(b *basesim.Base, name, key string) int {
	cmds := b.Received()
	for i := len(cmds) - 1; i >= 0; i-- {
		if cmds[i].Name != name {
			continue
		}
		for _, m := range cmds[i].Bizs {
			if m.Key() == key {
				return i
			}
		}
	}
	return -1
}

// foreignNode creates a Ready node that is not a base of this env: it looks
// like a virtual node (taint, base labels) but with the given labels changed,
// e.g. another stack. It stays schedulable long enough for a test, so a pod
// that ignores the differing label would land on it. Deleted on cleanup.
func (e *env) foreignNode(name string, labels map[string]string) *corev1.Node {
	e.t.Helper()
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			"base.koupleless.io/stack":   "java",
			"base.koupleless.io/name":    "base",
			"base.koupleless.io/version": "1.0.0",
			"kubernetes.io/hostname":     name,
			"type":                       "virtual-kubelet",
		}},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{
			Key: "schedule.koupleless.io/virtual-node", Value: "True", Effect: corev1.TaintEffectNoExecute,
		}}},
	}
	for k, v := range labels {
		n.Labels[k] = v
	}
	n, err := e.client.CoreV1().Nodes().Create(e.t.Context(), n, metav1.CreateOptions{})
	require.NoError(e.t, err)
	e.t.Cleanup(func() {
		_ = e.client.CoreV1().Nodes().Delete(context.WithoutCancel(e.t.Context()), name, metav1.DeleteOptions{})
	})
	// The node lifecycle controller may update the new node meanwhile.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err = e.client.CoreV1().Nodes().Get(e.t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		n.Status = corev1.NodeStatus{
			Capacity:    corev1.ResourceList{corev1.ResourcePods: *resource.NewQuantity(110, resource.DecimalSI)},
			Allocatable: corev1.ResourceList{corev1.ResourcePods: *resource.NewQuantity(110, resource.DecimalSI)},
			Conditions: []corev1.NodeCondition{{
				Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
				LastHeartbeatTime: now, LastTransitionTime: now,
			}},
		}
		n, err = e.client.CoreV1().Nodes().UpdateStatus(e.t.Context(), n, metav1.UpdateOptions{})
		return err
	})
	require.NoError(e.t, err)
	return n
}

func ptr[T any](v T) *T { return &v }
