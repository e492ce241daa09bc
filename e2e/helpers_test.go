//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/moduleops/module-controller/e2e/framework"
	"github.com/moduleops/module-controller/pkg/basesim"
)

// Timings of the controller under test: short, so liveness transitions take
// seconds, not minutes.
var fastControllerArgs = []string{
	"--unreachable-after=3s",
	"--remove-after=8s",
	"--health-interval=1s",
}

const (
	baseHeartbeat = time.Second
	waitLong      = 60 * time.Second
	poll          = 100 * time.Millisecond
)

var (
	shared     *framework.Cluster
	sharedDir  string
	sharedErr  error
	sharedOnce sync.Once
)

// TestMain stops the shared control plane after every test ran.
func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop shared control plane:", err)
			code = 1
		}
	}
	if sharedDir != "" {
		_ = os.RemoveAll(sharedDir)
	}
	os.Exit(code)
}

// sharedCluster returns one control plane for all tests of the package; tests
// keep apart by using their own env, namespace and base names.
func sharedCluster(t *testing.T) *framework.Cluster {
	t.Helper()
	sharedOnce.Do(func() {
		sharedDir, sharedErr = os.MkdirTemp("", "e2e-cluster-")
		if sharedErr != nil {
			return
		}
		// The cluster outlives the test that starts it (TestMain stops it), so
		// it must not end with that test's context.
		shared, sharedErr = framework.Start(context.WithoutCancel(t.Context()), framework.Options{Dir: sharedDir})
	})
	require.NoError(t, sharedErr, "start the shared control plane")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("control plane logs:\n%s", shared.LogTails(20))
		}
	})
	return shared
}

// brokerKinds are the brokers every tunnel scenario runs against: the
// controller's embedded broker and a real Mosquitto.
var brokerKinds = []string{"embedded", "mosquitto"}

// httpKind is the transport kind of the arklet HTTP tunnel: no broker, the
// controller serves --http-tunnel alone and bases post heartbeats to it.
const httpKind = "http"

// tunnelKinds are the transports the key scenarios run on: MQTT through the
// embedded broker, and HTTP.
var tunnelKinds = []string{"embedded", httpKind}

// allKinds are the MQTT brokers and the HTTP tunnel.
var allKinds = append(append([]string{}, brokerKinds...), httpKind)

// env is one test's isolated world: an env name, a namespace, a controller
// and the broker bases connect to.
type env struct {
	t          *testing.T
	name       string
	namespace  string
	cluster    *framework.Cluster
	client     kubernetes.Interface
	broker     *framework.Broker // nil for the embedded broker
	controller *framework.Controller
}

// newBareEnv makes an env with its own name and namespace on the shared
// control plane, and no controller yet. Its cleanup runs after the test's
// controllers stopped: a stopped controller leaves its nodes for the next one
// to adopt, so they are removed, with their leases, and no later test's pods
// get scheduled onto this test's stale nodes.
func newBareEnv(t *testing.T) *env {
	t.Helper()
	c := sharedCluster(t)
	e := &env{t: t, name: framework.RandomName("e", 6), cluster: c, client: c.Client}
	e.namespace = "ns-" + e.name
	_, err := c.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.namespace}}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx := context.WithoutCancel(t.Context()) // t.Context is done once cleanups run
		_ = c.Client.CoreV1().Namespaces().Delete(ctx, e.namespace, metav1.DeleteOptions{})
		nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "virtual-kubelet.koupleless.io/env=" + e.name})
		if err != nil {
			return
		}
		for _, n := range nodes.Items {
			_ = c.Client.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{})
			_ = c.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Delete(ctx, n.Name, metav1.DeleteOptions{})
		}
	})
	return e
}

// newEnv starts a controller with its own env and namespace against the given
// broker kind.
func newEnv(t *testing.T, brokerKind string, extraArgs ...string) *env {
	t.Helper()
	e := newBareEnv(t)
	c := e.cluster
	opts := framework.ControllerOptions{Kubeconfig: c.Kubeconfig, Env: e.name, Args: append(append([]string{}, fastControllerArgs...), extraArgs...)}
	opts.HTTPTunnel = brokerKind == httpKind
	if brokerKind == "mosquitto" {
		e.broker = framework.StartBroker(t, framework.Mosquitto)
		opts.BrokerURL = e.broker.URL
	}
	e.controller = framework.StartController(t, opts)
	return e
}

// startBase starts a simulated base with identity id in this env.
func (e *env) startBase(id string, mod func(*basesim.Config)) *basesim.Base {
	e.t.Helper()
	cfg := basesim.Config{
		Broker:            e.controller.BrokerURL(),
		Env:               e.name,
		Identity:          id,
		HeartbeatInterval: baseHeartbeat,
	}
	if e.http() {
		cfg.Tunnel, cfg.HTTPEndpoint = basesim.TunnelHTTP, e.controller.HTTPEndpoint()
	}
	if mod != nil {
		mod(&cfg)
	}
	b, err := basesim.New(cfg)
	require.NoError(e.t, err)
	require.NoError(e.t, b.Start(e.t.Context()))
	e.t.Cleanup(b.Stop)
	return b
}

// http reports whether the env's bases use the HTTP tunnel.
func (e *env) http() bool {
	return e.controller != nil && e.controller.HTTPEndpoint() != "" && e.controller.BrokerURL() == ""
}

// baseIP is the address a base's heartbeat announces: its identity over
// MQTT, the loopback address its arklet server listens on over HTTP.
func (e *env) baseIP(id string) string {
	if e.http() {
		return "127.0.0.1"
	}
	return id
}

// nodeName is the virtual node of a base in this env.
func (e *env) nodeName(id string) string { return "vnode." + id + "." + e.name }

// waitNode waits until the node exists and ok holds.
func (e *env) waitNode(id string, what string, ok func(*corev1.Node) bool) *corev1.Node {
	e.t.Helper()
	var last *corev1.Node
	require.Eventuallyf(e.t, func() bool {
		n, err := e.client.CoreV1().Nodes().Get(e.t.Context(), e.nodeName(id), metav1.GetOptions{})
		if err != nil {
			return false
		}
		last = n
		return ok(n)
	}, waitLong, poll, "node %s: %s; last seen: %s", e.nodeName(id), what, lazy(func() string { return describeNode(last) }))
	return last
}

// waitNodeGone waits until the node is deleted.
func (e *env) waitNodeGone(id string) {
	e.t.Helper()
	require.Eventuallyf(e.t, func() bool {
		_, err := e.client.CoreV1().Nodes().Get(e.t.Context(), e.nodeName(id), metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}, waitLong, poll, "node %s still exists", e.nodeName(id))
}

// ready returns the node's Ready condition.
func ready(n *corev1.Node) corev1.NodeCondition {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c
		}
	}
	return corev1.NodeCondition{}
}

func isReady(n *corev1.Node) bool { return ready(n).Status == corev1.ConditionTrue }

// lazy formats as f() when printed, so a failure message shows what a wait
// saw last rather than what it saw before it started.
type lazy func() string

func (l lazy) String() string { return l() }

func describeNode(n *corev1.Node) string {
	if n == nil {
		return "none"
	}
	r := ready(n)
	return fmt.Sprintf("Ready=%s reason=%s labels=%v", r.Status, r.Reason, n.Labels)
}

// waitPod waits until the pod satisfies ok and returns it.
func (e *env) waitPod(name, what string, ok func(*corev1.Pod) bool) *corev1.Pod {
	e.t.Helper()
	var last *corev1.Pod
	require.Eventuallyf(e.t, func() bool {
		p, err := e.client.CoreV1().Pods(e.namespace).Get(e.t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		last = p
		return ok(p)
	}, waitLong, poll, "pod %s: %s; last seen: %s", name, what, lazy(func() string { return describePod(last) }))
	return last
}

func describePod(p *corev1.Pod) string {
	if p == nil {
		return "none"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "node=%s phase=%s reason=%s message=%q", p.Spec.NodeName, p.Status.Phase, p.Status.Reason, p.Status.Message)
	for _, cs := range p.Status.ContainerStatuses {
		fmt.Fprintf(&b, " [%s ready=%v %s]", cs.Name, cs.Ready, stateString(cs.State))
	}
	return b.String()
}

func stateString(s corev1.ContainerState) string {
	switch {
	case s.Running != nil:
		return "running"
	case s.Waiting != nil:
		return "waiting:" + s.Waiting.Reason + ":" + s.Waiting.Message
	case s.Terminated != nil:
		return "terminated:" + s.Terminated.Reason + ":" + s.Terminated.Message
	}
	return "none"
}

// running reports a Running, Ready pod.
func running(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// modulePod is a pod pinned to a base's node (like a scheduler would bind
// it) with one container per biz "name:version".
func (e *env) modulePod(name, baseID string, bizs ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.namespace},
		Spec: corev1.PodSpec{
			NodeName: e.nodeName(baseID),
			Tolerations: []corev1.Toleration{{
				Key: "schedule.koupleless.io/virtual-node", Operator: corev1.TolerationOpEqual, Value: "True", Effect: corev1.TaintEffectNoExecute,
			}},
		},
	}
	for _, b := range bizs {
		n, v, _ := strings.Cut(b, ":")
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{
			Name:  n,
			Image: "https://modules.example.test/" + n + "-" + v + "-ark-biz.jar",
			Env:   []corev1.EnvVar{{Name: "BIZ_VERSION", Value: v}},
		})
	}
	return p
}

// createPod creates a pod in the env's namespace.
func (e *env) createPod(p *corev1.Pod) {
	e.t.Helper()
	_, err := e.client.CoreV1().Pods(e.namespace).Create(e.t.Context(), p, metav1.CreateOptions{})
	require.NoError(e.t, err)
}

// bizState returns the state of name:version on a base, or "" if absent.
func bizState(b *basesim.Base, name, version string) string {
	z, ok := b.Biz(name, version)
	if !ok {
		return ""
	}
	return string(z.State)
}

// updateDeployment applies mutate to the latest Deployment and updates it,
// retrying on the conflicts the Deployment controller's own status writes
// cause, as kubectl does. It returns the updated Deployment.
func (e *env) updateDeployment(name string, mutate func(*appsv1.Deployment)) *appsv1.Deployment {
	e.t.Helper()
	var updated *appsv1.Deployment
	require.NoError(e.t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := e.client.AppsV1().Deployments(e.namespace).Get(e.t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		mutate(d)
		updated, err = e.client.AppsV1().Deployments(e.namespace).Update(e.t.Context(), d, metav1.UpdateOptions{})
		return err
	}), "update deployment %s", name)
	return updated
}
