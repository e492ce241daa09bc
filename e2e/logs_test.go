//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/moduleops/module-controller/e2e/framework"
)

// TestKubectlLogsOnModulePod proves the virtual nodes' kubelet API on the
// real control plane: the API server, holding its kubelet client
// certificate, dials the controller for `kubectl logs` on a module pod, and
// the controller answers with the log stream of the base's own Pod — which
// runs on a real node served by a fake kubelet — with --tail and --follow
// working. Without the client certificate the controller's port refuses the
// caller.
func TestKubectlLogsOnModulePod(t *testing.T) {
	e := newEnv(t, "embedded", "--kubelet-client-ca="+sharedCluster(t).KubeletClientCAFile)
	c, ctx := e.cluster, t.Context()

	// The base runs as Pod base-0 on a real node whose kubelet is fake.
	const id = "10.9.3.1"
	kubelet := framework.StartFakeKubelet(t, c)
	basePod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "base-0", Namespace: e.namespace},
		Spec: corev1.PodSpec{
			NodeName:   kubelet.Node,
			Containers: []corev1.Container{{Name: "base", Image: "base:1"}, {Name: "sidecar", Image: "sidecar:1"}},
		},
	}
	// Pods are admitted once the namespace's default ServiceAccount exists.
	var err error
	require.Eventually(t, func() bool {
		var created *corev1.Pod
		created, err = c.Client.CoreV1().Pods(e.namespace).Create(ctx, basePod, metav1.CreateOptions{})
		if err == nil {
			basePod = created
		}
		return err == nil
	}, waitLong, poll, "create the base pod")
	require.NoError(t, err)
	basePod.Status.Phase = corev1.PodRunning
	basePod.Status.PodIP = id
	basePod.Status.PodIPs = []corev1.PodIP{{IP: id}}
	_, err = c.Client.CoreV1().Pods(e.namespace).UpdateStatus(ctx, basePod, metav1.UpdateOptions{})
	require.NoError(t, err)
	kubelet.AppendLog(e.namespace, "base-0", "base", "base started", "biz1 installed", "biz1 serving")
	kubelet.AppendLog(e.namespace, "base-0", "sidecar", "not this one")

	e.startBase(id, nil)
	node := e.waitNode(id, "Ready", isReady)
	require.Equal(t, e.controller.KubeletAddr, "127.0.0.1:"+strconv.Itoa(int(node.Status.DaemonEndpoints.KubeletEndpoint.Port)),
		"the node advertises the controller's kubelet port")
	require.Contains(t, node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: "127.0.0.1"}, "the API server dials the controller")
	require.Contains(t, node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: id}, "the base keeps its IP")

	e.createPod(e.modulePod("mod", id, "biz1:0.0.1"))
	pod := e.waitPod("mod", "Running and Ready", running)
	require.Equal(t, id, pod.Status.PodIP, "the module pod shows the base's IP")

	pods := c.Client.CoreV1().Pods(e.namespace)
	out, err := pods.GetLogs("mod", &corev1.PodLogOptions{Container: "biz1"}).DoRaw(ctx)
	require.NoError(t, err)
	require.Equal(t, "base started\nbiz1 installed\nbiz1 serving\n", string(out), "the base pod's first container's logs")

	out, err = pods.GetLogs("mod", &corev1.PodLogOptions{Container: "biz1", TailLines: new(int64(1))}).DoRaw(ctx)
	require.NoError(t, err)
	require.Equal(t, "biz1 serving\n", string(out))

	kout, err := kubectl(t, c.Kubeconfig, "-n", e.namespace, "logs", "mod", "--tail=2")
	require.NoError(t, err, kout)
	require.Equal(t, "biz1 installed\nbiz1 serving\n", kout, "kubectl logs")

	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stream, err := pods.GetLogs("mod", &corev1.PodLogOptions{Container: "biz1", Follow: true, TailLines: new(int64(1))}).Stream(fctx)
	require.NoError(t, err)
	defer func() { _ = stream.Close() }()
	lines := bufio.NewScanner(stream)
	require.True(t, lines.Scan(), "first followed line: %v", lines.Err())
	require.Equal(t, "biz1 serving", lines.Text())
	kubelet.AppendLog(e.namespace, "base-0", "base", "biz2 installed")
	require.True(t, lines.Scan(), "a line appended later arrives on the followed stream: %v", lines.Err())
	require.Equal(t, "biz2 installed", lines.Text())
	_ = stream.Close()

	// A base that is not a pod of this cluster: a clear answer.
	const outside = "10.9.3.2"
	e.startBase(outside, nil)
	e.waitNode(outside, "Ready", isReady)
	e.createPod(e.modulePod("mod-outside", outside, "biz1:0.0.1"))
	e.waitPod("mod-outside", "Running and Ready", running)
	_, err = pods.GetLogs("mod-outside", &corev1.PodLogOptions{Container: "biz1"}).DoRaw(ctx)
	// The API server hands on the 500 but not its text, which the unit
	// tests and the controller's log show.
	require.Error(t, err)
	t.Logf("logs of a module pod whose base is no pod: %v", err)
	require.Contains(t, e.controller.LogTail(200), "is not a pod in this cluster")

	// exec answers at once that module pods have none.
	xctx, xcancel := context.WithTimeout(ctx, 30*time.Second)
	defer xcancel()
	began := time.Now()
	xout, err := kubectlCtx(xctx, t, c.Kubeconfig, "-n", e.namespace, "exec", "mod", "--", "sh")
	require.Error(t, err)
	t.Logf("kubectl exec on a module pod (%s): %s", time.Since(began).Round(time.Millisecond), xout)
	require.Contains(t, xout, "not supported for module pods")
	require.Less(t, time.Since(began), 20*time.Second, "exec does not hang")

	// No client certificate: the controller's port refuses the caller.
	insecure := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, // the controller's self-signed certificate; what is tested is that it refuses us
		MinVersion:         tls.VersionTLS12,
	}}}
	resp, err := insecure.Get("https://" + e.controller.KubeletAddr + "/containerLogs/" + e.namespace + "/mod/biz1")
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		t.Fatalf("an anonymous caller got %s: %s", resp.Status, body)
	}
}

// TestKubeletAPITokenAuth proves the kubelet API's other mode, without a
// client CA: a caller's bearer token is checked by TokenReview and its
// nodes/proxy access by SubjectAccessReview; no token answers 401, a token
// without access 403.
func TestKubeletAPITokenAuth(t *testing.T) {
	e := newEnv(t, "embedded")
	c, ctx := e.cluster, t.Context()
	for _, name := range []string{"reader", "nobody"} {
		_, err := c.Client.CoreV1().ServiceAccounts(e.namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "kubelet-api-" + e.name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:kubelet-api-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "reader", Namespace: e.namespace}},
	}
	_, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = c.Client.RbacV1().ClusterRoleBindings().Delete(context.WithoutCancel(ctx), binding.Name, metav1.DeleteOptions{})
	})
	token := func(sa string) string {
		_, cfg, err := c.ServiceAccountKubeconfig(ctx, e.namespace, sa, 0)
		require.NoError(t, err)
		return cfg.BearerToken
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, // the controller's self-signed certificate; the test is about the caller's credentials
		MinVersion:         tls.VersionTLS12,
	}}}
	get := func(bearer string) (int, string) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+e.controller.KubeletAddr+"/containerLogs/"+e.namespace+"/nope/biz1", nil)
		require.NoError(t, err)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := hc.Do(req)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return resp.StatusCode, string(body)
	}
	code, body := get("")
	require.Equal(t, http.StatusUnauthorized, code, body)
	code, body = get("not-a-token")
	require.Equal(t, http.StatusUnauthorized, code, body)
	code, body = get(token("nobody"))
	require.Equal(t, http.StatusForbidden, code, body)
	require.Contains(t, body, "nodes/proxy")
	code, body = get(token("reader"))
	require.Equal(t, http.StatusNotFound, code, "authenticated and authorized, the pod is looked up: %s", body)
	require.Contains(t, body, "nope")
}

// kubectlCtx runs the control plane's kubectl until ctx ends and returns its
// combined output.
func kubectlCtx(ctx context.Context, t *testing.T, kubeconfig string, args ...string) (string, error) {
	t.Helper()
	binDir, err := framework.DefaultBinDir()
	require.NoError(t, err)
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "kubectl"), append([]string{"--kubeconfig=" + kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
