//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/moduleops/module-controller/e2e/framework"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// The names deploy/ gives the controller's identity.
const (
	deployNamespace      = "module-controller"
	deployServiceAccount = "module-controller"
)

// kubectl runs the control plane's kubectl (with built-in kustomize) from the
// repository root and returns its combined output.
func kubectl(t *testing.T, kubeconfig string, args ...string) (string, error) {
	t.Helper()
	binDir, err := framework.DefaultBinDir()
	require.NoError(t, err)
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	if kubeconfig != "" {
		args = append([]string{"--kubeconfig=" + kubeconfig}, args...)
	}
	cmd := exec.CommandContext(t.Context(), filepath.Join(binDir, "kubectl"), args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestDeployManifestsRBAC proves deploy/ on a real control plane: the
// kustomize base passes a server-side dry run, and the controller binary,
// running with nothing but its ServiceAccount's token, registers a base,
// installs and uninstalls a module and removes the node of a base that left
// without a single forbidden call — while it cannot read Secrets, create
// workloads or touch nodes, leases and pods that are not virtual.
func TestDeployManifestsRBAC(t *testing.T) {
	c := framework.StartCluster(t, framework.Options{})
	ctx := t.Context()

	rendered, err := kubectl(t, "", "kustomize", "deploy/")
	require.NoError(t, err, rendered)
	kinds := regexp.MustCompile(`(?m)^kind: (\S+)$`).FindAllStringSubmatch(rendered, -1)
	var got []string
	for _, k := range kinds {
		got = append(got, k[1])
	}
	require.ElementsMatch(t, []string{
		"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
		"ClusterRole", "RoleBinding", // peer replica sync's scale, in namespace default
		"Role", "RoleBinding", // cluster mode's Leases, in the controller's namespace
		"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "Deployment", "Service", "NetworkPolicy",
		"PodDisruptionBudget",                                 // the controller's replicas
		"ConfigMap", "Deployment", "Service", "NetworkPolicy", // the in-cluster Mosquitto
	}, got, "deploy/ renders exactly the controller's objects and its broker (no samples)")

	// A server-side dry run cannot create the namespace the other objects go
	// into, so it must exist first (docs/operations.md says so too).
	out, err := kubectl(t, c.Kubeconfig, "apply", "-f", "deploy/base/namespace.yaml")
	require.NoError(t, err, out)
	start := time.Now()
	out, err = kubectl(t, c.Kubeconfig, "apply", "-k", "deploy/", "--dry-run=server")
	require.NoError(t, err, out)
	t.Logf("kubectl apply -k deploy/ --dry-run=server (%s):\n%s", time.Since(start).Round(time.Millisecond), out)
	require.Contains(t, out, "deployment.apps/module-controller created (server dry run)")
	require.Contains(t, out, "deployment.apps/mosquitto created (server dry run)")
	require.NotContains(t, out, "Warning", "no warning, e.g. from the restricted Pod Security level")
	require.NotContains(t, out, "service/module-controller-mqtt", "the cluster install has no embedded broker's Service")
	// The single-replica install with the embedded broker.
	out, err = kubectl(t, c.Kubeconfig, "apply", "-k", "deploy/base/", "--dry-run=server")
	require.NoError(t, err, out)
	require.Contains(t, out, "service/module-controller-mqtt created (server dry run)")
	require.NotContains(t, out, "deployment.apps/mosquitto", "deploy/base runs no broker besides the embedded one")
	require.NotContains(t, out, "Warning", "no warning, e.g. from the restricted Pod Security level")

	// The identity, for real: ServiceAccount, RBAC and the
	// admission policy (not the Deployment: there is no kubelet to run it).
	out, err = kubectl(t, c.Kubeconfig, "apply", "-f", "deploy/base/rbac.yaml", "-f", "deploy/base/admission-policy.yaml")
	require.NoError(t, err, out)
	// The policy reads the controller's ServiceAccount from its Deployment
	// (paramKind): the shipped one, with no replicas (nothing could run it).
	controllerDeployment := shippedDeployment(t)
	controllerDeployment.Spec.Replicas = new(int32)
	_, err = c.Client.AppsV1().Deployments(deployNamespace).Create(ctx, controllerDeployment, metav1.CreateOptions{})
	require.NoError(t, err)
	kubeconfig, saConfig, err := c.ServiceAccountKubeconfig(ctx, deployNamespace, deployServiceAccount, 0)
	require.NoError(t, err)
	sa, err := kubernetes.NewForConfig(saConfig)
	require.NoError(t, err)

	// A real, non-virtual node and a pod bound to it, which the controller
	// must not be able to touch.
	realNode := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: framework.RandomName("worker", 6)}}
	_, err = c.Client.CoreV1().Nodes().Create(ctx, realNode, metav1.CreateOptions{})
	require.NoError(t, err)
	realPod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: metav1.NamespaceDefault},
		Spec:       corev1.PodSpec{NodeName: realNode.Name, Containers: []corev1.Container{{Name: "app", Image: "app:1"}}},
	}
	_, err = c.Client.CoreV1().Pods(metav1.NamespaceDefault).Create(ctx, realPod, metav1.CreateOptions{})
	require.NoError(t, err)

	// The admission policy is enforced once the API server loaded it; a
	// dry-run delete goes through admission without deleting anything.
	dryRun := metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}
	require.Eventually(t, func() bool {
		return apierrors.IsForbidden(sa.CoreV1().Nodes().Delete(ctx, realNode.Name, dryRun))
	}, waitLong, poll, "the admission policy forbids the controller to delete a real node")

	e := &env{t: t, name: framework.RandomName("e", 6), cluster: c, client: c.Client}
	e.namespace = "ns-" + e.name
	_, err = c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.namespace}}, metav1.CreateOptions{})
	require.NoError(t, err)
	// Peer replica sync may scale in the namespaces bound to
	// module-controller-peer-scale only; bind this test's, as
	// docs/operations.md tells operators to.
	out, err = kubectl(t, c.Kubeconfig, "-n", e.namespace, "create", "rolebinding", "module-controller-peer-scale",
		"--clusterrole=module-controller-peer-scale", "--serviceaccount="+deployNamespace+":"+deployServiceAccount)
	require.NoError(t, err, out)
	e.controller = framework.StartController(t, framework.ControllerOptions{
		Kubeconfig: kubeconfig, Env: e.name, Args: fastControllerArgs,
	})

	const id = "10.9.0.1"
	b := e.startBase(id, nil)
	e.waitNode(id, "Ready", isReady)
	// The lease is written by the node's own goroutine, just after the node.
	require.Eventually(t, func() bool {
		_, err := c.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, e.nodeName(id), metav1.GetOptions{})
		return err == nil
	}, waitLong, poll, "the node's lease is kept")

	start = time.Now()
	e.createPod(e.modulePod("mod", id, "biz1:0.0.1"))
	e.waitPod("mod", "Running and Ready", running)
	t.Logf("module pod Running %s after create, controller on its ServiceAccount token", time.Since(start).Round(time.Millisecond))
	require.Equal(t, "ACTIVATED", bizState(b, "biz1", "0.0.1"))
	require.Eventually(t, func() bool { return nodeEvent(t, c.Client, e.nodeName(id), "BaseRegistered") }, waitLong, poll,
		"the controller records Events")

	peer := controllerHasFlag(t, "--peer-replica-sync")
	if peer {
		// Peer replica sync (on by default) scales a peer Deployment to the
		// Ready bases its template fits, on the same token.
		const id2 = "10.9.0.2"
		e.startBase(id2, nil)
		e.waitNode(id2, "Ready", isReady)
		_, err := c.Client.AppsV1().Deployments(e.namespace).Create(ctx, peerModuleDeployment(e), metav1.CreateOptions{})
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			d, err := c.Client.AppsV1().Deployments(e.namespace).Get(ctx, "peer", metav1.GetOptions{})
			return err == nil && d.Spec.Replicas != nil && *d.Spec.Replicas == 2 && d.Status.ReadyReplicas == 2
		}, waitLong, poll, "peer Deployment scaled to both bases and Ready")
	} else {
		t.Log("this controller has no --peer-replica-sync; its RBAC is checked by access review only")
	}

	require.NoError(t, c.Client.CoreV1().Pods(e.namespace).Delete(ctx, "mod", metav1.DeleteOptions{}))
	require.Eventually(t, func() bool {
		_, err := c.Client.CoreV1().Pods(e.namespace).Get(ctx, "mod", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}, waitLong, poll, "pod released after the uninstall")
	require.Equal(t, 1, b.ReceivedCount(protocol.CommandUninstallBiz, "biz1:0.0.1"))

	b.Stop()
	e.waitNodeGone(id)
	require.Eventually(t, func() bool {
		_, err := c.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, e.nodeName(id), metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}, waitLong, poll, "the gone base's lease is deleted")
	if peer {
		// The scale-down marks the gone base's pod first (pods patch), so the
		// module on the live base stays.
		require.Eventually(t, func() bool {
			d, err := c.Client.AppsV1().Deployments(e.namespace).Get(ctx, "peer", metav1.GetOptions{})
			return err == nil && d.Spec.Replicas != nil && *d.Spec.Replicas == 1 && d.Status.ReadyReplicas == 1
		}, waitLong, poll, "peer Deployment scaled down to the base that is left")
	}

	log := e.controller.LogTail(5000)
	require.NotRegexp(t, `(?i)forbidden|cannot (list|watch|get|create|update|patch|delete)`, log, "no API call of the controller was refused")

	// What the ServiceAccount may not do, asked of the API server.
	denied := []authorizationv1.ResourceAttributes{
		{Verb: "list", Resource: "secrets"},
		{Verb: "get", Resource: "secrets", Namespace: deployNamespace},
		{Verb: "watch", Resource: "secrets"},
		{Verb: "list", Resource: "configmaps"},
		{Verb: "create", Group: "apps", Resource: "deployments", Namespace: metav1.NamespaceDefault},
		{Verb: "delete", Group: "apps", Resource: "deployments", Namespace: metav1.NamespaceDefault},
		{Verb: "patch", Group: "apps", Resource: "deployments", Namespace: metav1.NamespaceDefault},
		{Verb: "create", Resource: "pods", Namespace: metav1.NamespaceDefault},
		{Verb: "update", Resource: "pods", Namespace: metav1.NamespaceDefault},
		{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: metav1.NamespaceDefault},
		{Verb: "create", Resource: "pods", Subresource: "eviction", Namespace: metav1.NamespaceDefault},
		{Verb: "update", Resource: "nodes"},
		{Verb: "patch", Resource: "nodes"},
		{Verb: "deletecollection", Resource: "nodes"},
		{Verb: "get", Group: "coordination.k8s.io", Resource: "leases", Namespace: metav1.NamespaceDefault},
		{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: "kube-system"},
		{Verb: "list", Group: "coordination.k8s.io", Resource: "leases", Namespace: corev1.NamespaceNodeLease},
		{Verb: "create", Resource: "serviceaccounts", Subresource: "token", Namespace: deployNamespace},
		{Verb: "list", Resource: "events"},
		{Verb: "escalate", Group: "rbac.authorization.k8s.io", Resource: "clusterroles"},
		{Verb: "bind", Group: "rbac.authorization.k8s.io", Resource: "clusterroles"},
		{Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings"},
		{Verb: "update", Group: "admissionregistration.k8s.io", Resource: "validatingadmissionpolicies"},
		{Verb: "update", Group: "apps", Resource: "deployments", Subresource: "status", Namespace: metav1.NamespaceDefault},
		// Scaling only in the namespaces bound to module-controller-peer-scale.
		{Verb: "update", Group: "apps", Resource: "deployments", Subresource: "scale", Namespace: metav1.NamespaceSystem},
		{Verb: "update", Group: "apps", Resource: "deployments", Subresource: "scale"},
	}
	for _, ra := range denied {
		require.Falsef(t, allowed(t, sa, ra), "the controller must not %s", describeAccess(ra))
	}
	// Peer replica sync (pkg/controller/peersync) reads module Deployments
	// and scales them: granted, and nothing more on Deployments (above).
	for _, ra := range []authorizationv1.ResourceAttributes{
		{Verb: "watch", Resource: "nodes"},
		{Verb: "watch", Group: "apps", Resource: "deployments"},
		{Verb: "get", Group: "apps", Resource: "deployments", Subresource: "scale", Namespace: metav1.NamespaceDefault},
		{Verb: "update", Group: "apps", Resource: "deployments", Subresource: "scale", Namespace: metav1.NamespaceDefault},
		{Verb: "patch", Resource: "pods", Namespace: metav1.NamespaceDefault},
	} {
		require.Truef(t, allowed(t, sa, ra), "peer replica sync needs to %s", describeAccess(ra))
	}

	// The kubelet API (kubectl logs on module pods) reads pods and the base
	// pod's logs and reviews its callers' tokens and access.
	for _, ra := range []authorizationv1.ResourceAttributes{
		{Verb: "get", Resource: "pods", Namespace: metav1.NamespaceDefault},
		{Verb: "get", Resource: "pods", Subresource: "log", Namespace: metav1.NamespaceDefault},
		{Verb: "create", Group: "authentication.k8s.io", Resource: "tokenreviews"},
		{Verb: "create", Group: "authorization.k8s.io", Resource: "subjectaccessreviews"},
	} {
		require.Truef(t, allowed(t, sa, ra), "the kubelet API needs to %s", describeAccess(ra))
	}

	// And for real.
	_, err = sa.CoreV1().Secrets(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	require.True(t, apierrors.IsForbidden(err), "list secrets cluster-wide: %v", err)
	_, err = sa.CoreV1().Secrets(deployNamespace).Get(ctx, "module-controller-mqtt", metav1.GetOptions{})
	require.True(t, apierrors.IsForbidden(err), "read a secret of its own namespace: %v", err)
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: metav1.NamespaceDefault},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"a": "b"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "x"}}},
			},
		},
	}
	_, err = sa.AppsV1().Deployments(metav1.NamespaceDefault).Create(ctx, dep, metav1.CreateOptions{})
	require.True(t, apierrors.IsForbidden(err), "create a deployment: %v", err)
	err = sa.CoreV1().Nodes().Delete(ctx, realNode.Name, metav1.DeleteOptions{})
	require.True(t, apierrors.IsForbidden(err), "delete a real node: %v", err)
	_, err = sa.CoreV1().Nodes().Patch(ctx, realNode.Name, types.StrategicMergePatchType,
		[]byte(`{"status":{"conditions":[{"type":"Ready","status":"False","reason":"Spoofed"}]}}`), metav1.PatchOptions{}, "status")
	require.True(t, apierrors.IsForbidden(err), "patch a real node's status: %v", err)
	err = sa.CoreV1().Pods(metav1.NamespaceDefault).Delete(ctx, realPod.Name, metav1.DeleteOptions{})
	require.True(t, apierrors.IsForbidden(err), "delete a pod on a real node: %v", err)
	_, err = sa.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "not-virtual"}}, metav1.CreateOptions{})
	require.True(t, apierrors.IsForbidden(err), "register a non-virtual node: %v", err)
	_, err = c.Client.CoreV1().Nodes().Get(ctx, realNode.Name, metav1.GetOptions{})
	require.NoError(t, err, "the real node is still there")
	_, err = c.Client.CoreV1().Pods(metav1.NamespaceDefault).Get(ctx, realPod.Name, metav1.GetOptions{})
	require.NoError(t, err, "the real pod is still there")

	// The policy follows the Deployment's serviceAccountName, not a literal:
	// once the Deployment runs as another account, this one is no longer
	// the controller's (RBAC alone lets it delete nodes; a dry run shows it).
	d, err := c.Client.AppsV1().Deployments(deployNamespace).Get(ctx, controllerDeployment.Name, metav1.GetOptions{})
	require.NoError(t, err)
	d.Spec.Template.Spec.ServiceAccountName = "someone-else"
	_, err = c.Client.AppsV1().Deployments(deployNamespace).Update(ctx, d, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return sa.CoreV1().Nodes().Delete(ctx, realNode.Name, dryRun) == nil
	}, waitLong, poll, "the policy moved to the Deployment's new ServiceAccount")
}

// shippedDeployment is deploy/base/deployment.yaml.
func shippedDeployment(t *testing.T) *appsv1.Deployment {
	t.Helper()
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	data, err := os.ReadFile(filepath.Join(root, "deploy", "base", "deployment.yaml"))
	require.NoError(t, err)
	var d appsv1.Deployment
	require.NoError(t, yaml.Unmarshal(data, &d))
	return &d
}

// controllerHasFlag reports whether the built controller has a flag.
func controllerHasFlag(t *testing.T, flag string) bool {
	t.Helper()
	bin, err := framework.ControllerBinary()
	require.NoError(t, err)
	out, _ := exec.CommandContext(t.Context(), bin, "--help").CombinedOutput()
	return strings.Contains(string(out), flag)
}

// peerModuleDeployment is a Deployment that asks for one module pod on every
// Ready base of the env (peer strategy), without replicas of its own.
func peerModuleDeployment(e *env) *appsv1.Deployment {
	labels := map[string]string{"module.koupleless.io/name": "peer1"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "peer", Namespace: e.namespace, Labels: map[string]string{
			"virtual-kubelet.koupleless.io/strategy": "peer",
		}},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name:  "peer1",
						Image: "https://modules.example.test/peer1-1.0.0-ark-biz.jar",
						Env:   []corev1.EnvVar{{Name: "BIZ_VERSION", Value: "1.0.0"}},
					}},
					Tolerations: []corev1.Toleration{{
						Key: "schedule.koupleless.io/virtual-node", Operator: corev1.TolerationOpEqual, Value: "True", Effect: corev1.TaintEffectNoExecute,
					}},
					Affinity: &corev1.Affinity{
						NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
							NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
								Key: "virtual-kubelet.koupleless.io/env", Operator: corev1.NodeSelectorOpIn, Values: []string{e.name},
							}}}},
						}},
						PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
							LabelSelector: &metav1.LabelSelector{MatchLabels: labels},
							TopologyKey:   corev1.LabelHostname,
						}}},
					},
				},
			},
		},
	}
}

// allowed asks the API server whether the client may do ra.
func allowed(t *testing.T, client kubernetes.Interface, ra authorizationv1.ResourceAttributes) bool {
	t.Helper()
	r, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(t.Context(), &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &ra},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	return r.Status.Allowed
}

func describeAccess(ra authorizationv1.ResourceAttributes) string {
	what := ra.Resource
	if ra.Group != "" {
		what = ra.Group + "/" + what
	}
	if ra.Subresource != "" {
		what += "/" + ra.Subresource
	}
	where := "cluster-wide"
	if ra.Namespace != "" {
		where = "in " + ra.Namespace
	}
	return strings.Join([]string{ra.Verb, what, where}, " ")
}

// nodeEvent reports whether an Event with reason was recorded about a node.
func nodeEvent(t *testing.T, client kubernetes.Interface, node, reason string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	list, err := client.CoreV1().Events(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + node})
	if err != nil {
		return false
	}
	for _, ev := range list.Items {
		if ev.Reason == reason {
			return true
		}
	}
	return false
}

// TestOperationsDocShowsTheClusterRole keeps the ClusterRole quoted in
// docs/operations.md identical to the one deploy/ applies.
func TestOperationsDocShowsTheClusterRole(t *testing.T) {
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	read := func(path string) string {
		b, err := os.ReadFile(filepath.Join(root, path))
		require.NoError(t, err)
		return string(b)
	}
	// From "kind: ClusterRole" to the end of its rules: the next document
	// separator in rbac.yaml, the end of the code block in the doc.
	clusterRole := func(text, end string) string {
		start := strings.Index(text, "kind: ClusterRole\n")
		require.GreaterOrEqual(t, start, 0, "no ClusterRole")
		rest := text[start:]
		stop := strings.Index(rest, end)
		require.GreaterOrEqual(t, stop, 0, "ClusterRole not terminated by %q", end)
		return rest[:stop]
	}
	require.Equal(t,
		clusterRole(read("deploy/base/rbac.yaml"), "---\n"),
		clusterRole(read("docs/operations.md"), "```\n"),
		"docs/operations.md quotes deploy/base/rbac.yaml's ClusterRole verbatim")
}
