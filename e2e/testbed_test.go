//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/moduleops/module-controller/e2e/framework"
)

const (
	virtualNodeTaintKey = "schedule.koupleless.io/virtual-node"
	bindTimeout         = 2 * time.Minute
	mqttTimeout         = 15 * time.Second
)

// TestTestBed proves the test bed is real: the real DaemonSet controller and
// scheduler bind a module pod to a Ready virtual node, and each broker kind
// carries QoS 1 messages.
func TestTestBed(t *testing.T) {
	began := time.Now()
	c := framework.StartCluster(t, framework.Options{})
	t.Logf("control plane ready in %s (dir %s)", time.Since(began).Round(100*time.Millisecond), c.Dir)

	t.Run("daemonset pod bound to virtual node", func(t *testing.T) {
		testDaemonSetBindsToVirtualNode(t, c.Client)
	})
	t.Run("serviceaccount kubeconfig", func(t *testing.T) {
		testServiceAccountKubeconfig(t, c)
	})
	for _, kind := range framework.BrokerKinds {
		t.Run("mqtt/"+string(kind), func(t *testing.T) {
			testBroker(t, kind)
		})
	}
}

func testDaemonSetBindsToVirtualNode(t *testing.T, client kubernetes.Interface) {
	ctx := t.Context()
	nodeName := "vnode." + framework.RandomName("", 8) + ".default"
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: nodeName,
			Labels: map[string]string{
				"virtual-kubelet.koupleless.io/component": "vnode",
				"base.koupleless.io/stack":                "java",
				"base.koupleless.io/name":                 "base",
				"base.koupleless.io/version":              "1.0.0",
				"kubernetes.io/hostname":                  nodeName,
				"type":                                    "virtual-kubelet",
			},
		},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{
			Key: virtualNodeTaintKey, Value: "True", Effect: corev1.TaintEffectNoExecute,
		}}},
	}
	node, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = client.CoreV1().Nodes().Delete(context.WithoutCancel(ctx), nodeName, metav1.DeleteOptions{})
	})
	markReady(t, client, node)
	// No kubelet runs: heartbeat so the node lifecycle controller does not
	// mark the node unreachable if the machine is slow.
	go heartbeat(ctx, client, nodeName)

	labels := map[string]string{
		"module.koupleless.io/name":    "biz1",
		"module.koupleless.io/version": "0.0.1",
	}
	templateLabels := map[string]string{"module-controller.koupleless.io/component": "module"}
	for k, v := range labels {
		templateLabels[k] = v
	}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{
			Name:      framework.RandomName("biz1-", 6),
			Namespace: metav1.NamespaceDefault,
			Labels:    map[string]string{"module-controller.koupleless.io/component": "module-deployment"},
		},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: templateLabels},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name:  "biz1",
						Image: "https://serverless-opensource.oss-cn-shanghai.aliyuncs.com/module-packages/test_modules/biz1-0.0.1-ark-biz.jar",
						Env:   []corev1.EnvVar{{Name: "BIZ_VERSION", Value: "0.0.1"}},
					}},
					Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
						RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
							NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
								{Key: "base.koupleless.io/stack", Operator: corev1.NodeSelectorOpIn, Values: []string{"java"}},
								{Key: "base.koupleless.io/version", Operator: corev1.NodeSelectorOpIn, Values: []string{"1.0.0"}},
								{Key: "base.koupleless.io/name", Operator: corev1.NodeSelectorOpIn, Values: []string{"base"}},
							}}},
						},
					}},
					Tolerations: []corev1.Toleration{{
						Key: virtualNodeTaintKey, Operator: corev1.TolerationOpEqual, Value: "True", Effect: corev1.TaintEffectNoExecute,
					}},
				},
			},
		},
	}
	ds, err = client.AppsV1().DaemonSets(ds.Namespace).Create(ctx, ds, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = client.AppsV1().DaemonSets(ds.Namespace).Delete(context.WithoutCancel(ctx), ds.Name, metav1.DeleteOptions{})
	})

	began := time.Now()
	var bound *corev1.Pod
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, bindTimeout, true, func(ctx context.Context) (bool, error) {
		pods, err := client.CoreV1().Pods(ds.Namespace).List(ctx, metav1.ListOptions{
			LabelSelector: metav1.FormatLabelSelector(ds.Spec.Selector),
		})
		if err != nil {
			return false, err
		}
		for i := range pods.Items {
			if metav1.IsControlledBy(&pods.Items[i], ds) && pods.Items[i].Spec.NodeName == nodeName {
				bound = &pods.Items[i]
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		pods, _ := client.CoreV1().Pods(ds.Namespace).List(context.WithoutCancel(ctx), metav1.ListOptions{})
		events, _ := client.CoreV1().Events(ds.Namespace).List(context.WithoutCancel(ctx), metav1.ListOptions{})
		for _, p := range pods.Items {
			t.Logf("pod %s node=%q phase=%s conditions=%v", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.Conditions)
		}
		for _, e := range events.Items {
			t.Logf("event %s/%s %s: %s", e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
		}
	}
	require.NoError(t, err, "no pod of DaemonSet %s bound to node %s", ds.Name, nodeName)
	t.Logf("pod %s bound to %s in %s", bound.Name, nodeName, time.Since(began).Round(10*time.Millisecond))
	require.Equal(t, "biz1", bound.Spec.Containers[0].Name)
}

func readyStatus(node *corev1.Node) {
	now := metav1.Now()
	node.Status.Conditions = []corev1.NodeCondition{
		{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "base is ready", LastHeartbeatTime: now, LastTransitionTime: now},
		{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", LastHeartbeatTime: now, LastTransitionTime: now},
		{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", LastHeartbeatTime: now, LastTransitionTime: now},
		{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID", LastHeartbeatTime: now, LastTransitionTime: now},
		{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionFalse, Reason: "RouteCreated", LastHeartbeatTime: now, LastTransitionTime: now},
	}
	node.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
		{Type: corev1.NodeHostName, Address: node.Name},
	}
	resources := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("8"),
		corev1.ResourceMemory: resource.MustParse("16Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	node.Status.Capacity, node.Status.Allocatable = resources, resources
}

func markReady(t *testing.T, client kubernetes.Interface, node *corev1.Node) {
	t.Helper()
	readyStatus(node)
	_, err := client.CoreV1().Nodes().UpdateStatus(t.Context(), node, metav1.UpdateOptions{})
	require.NoError(t, err)
}

func heartbeat(ctx context.Context, client kubernetes.Interface, name string) {
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		node, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			continue
		}
		readyStatus(node)
		_, _ = client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	}
}

func testServiceAccountKubeconfig(t *testing.T, c *framework.Cluster) {
	ctx := t.Context()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: framework.RandomName("sa-", 6), Namespace: metav1.NamespaceDefault}}
	_, err := c.Client.CoreV1().ServiceAccounts(sa.Namespace).Create(ctx, sa, metav1.CreateOptions{})
	require.NoError(t, err)
	path, cfg, err := c.ServiceAccountKubeconfig(ctx, sa.Namespace, sa.Name, 0)
	require.NoError(t, err)
	require.FileExists(t, path)
	saClient, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	// Authenticated as the ServiceAccount, and RBAC is enforced: no role grants it node access.
	review, err := saClient.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.Equal(t, "system:serviceaccount:"+sa.Namespace+":"+sa.Name, review.Status.UserInfo.Username)
	_, err = saClient.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	require.Error(t, err)
	require.Contains(t, err.Error(), "forbidden")
}

func testBroker(t *testing.T, kind framework.BrokerKind) {
	cases := []struct {
		name string
		opts []framework.BrokerOption
	}{
		{"anonymous", nil},
		{"credentials", []framework.BrokerOption{framework.WithAuth("base", framework.RandomName("pw-", 12))}},
		{"tls", []framework.BrokerOption{framework.WithTLS()}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := framework.StartBroker(t, kind, tc.opts...)
			roundTrip(t, b)
		})
	}
	t.Run("wrong credentials rejected", func(t *testing.T) {
		b := framework.StartBroker(t, kind, framework.WithAuth("base", "right"))
		_, err := connect(t, b.URL, b.TLSConfig, b.Username, "wrong")
		require.Error(t, err)
	})
	t.Run("restart on same port", func(t *testing.T) {
		b := framework.StartBroker(t, kind)
		url := b.URL
		roundTrip(t, b)
		require.NoError(t, b.Restart(t.Context()))
		require.Equal(t, url, b.URL)
		roundTrip(t, b)
	})
}

// connect opens a paho client (clean session, unique client ID, no automatic
// reconnect) and disconnects it when the test ends.
func connect(t *testing.T, url string, tlsCfg *tls.Config, user, pass string) (paho.Client, error) {
	t.Helper()
	opts := paho.NewClientOptions().
		AddBroker(url).
		SetClientID(framework.RandomName("e2e-", 10)).
		SetUsername(user).
		SetPassword(pass).
		SetTLSConfig(tlsCfg).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectTimeout(mqttTimeout)
	c := paho.NewClient(opts)
	if err := await(t, c.Connect()); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(250) })
	return c, nil
}

// roundTrip publishes one QoS 1 message and receives it through the broker.
func roundTrip(t *testing.T, b *framework.Broker) {
	t.Helper()
	c, err := connect(t, b.URL, b.TLSConfig, b.Username, b.Password)
	require.NoError(t, err)
	topic := "koupleless_test/" + framework.RandomName("", 10) + "/base/heart"
	got := make(chan paho.Message, 1)
	require.NoError(t, await(t, c.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) { got <- m })))
	payload := fmt.Sprintf(`{"publishTimestamp":%d}`, time.Now().UnixMilli())
	require.NoError(t, await(t, c.Publish(topic, 1, false, payload)))
	select {
	case m := <-got:
		require.Equal(t, payload, string(m.Payload()))
		require.Equal(t, byte(1), m.Qos())
	case <-time.After(mqttTimeout):
		t.Fatalf("message on %s not delivered by %s broker", topic, b.Kind)
	}
}

func await(t *testing.T, tok paho.Token) error {
	t.Helper()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-time.After(mqttTimeout):
		return errors.New("mqtt operation timed out")
	}
}

// TestClusterLeavesNoProcess checks that Stop, a failed start and a cancelled
// start all leave no component process or process group behind.
func TestClusterLeavesNoProcess(t *testing.T) {
	tests := []struct {
		name       string
		opts       framework.Options
		cancel     string // cancel the start once this component has started
		wantErr    bool
		wantStarts int // expected apiserver starts, if not 1
	}{
		{name: "stop after start"},
		{name: "failing apiserver", opts: framework.Options{ExtraArgs: map[string][]string{"kube-apiserver": {"--no-such-flag"}}}, wantErr: true},
		{name: "cancelled start", cancel: "kube-apiserver", wantErr: true},
		{name: "port taken on every attempt", opts: framework.Options{ExtraArgs: map[string][]string{
			"kube-apiserver": {"--secure-port=" + strconv.Itoa(heldPort(t))},
		}}, wantErr: true, wantStarts: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			pids := map[int]string{}
			apiserverStarts := 0
			opts := tc.opts
			opts.Dir = t.TempDir()
			opts.OnProcessStart = func(name string, pid int) {
				pids[pid] = name
				if name == "kube-apiserver" {
					apiserverStarts++
				}
				if name == tc.cancel {
					cancel()
				}
			}
			c, err := framework.Start(ctx, opts)
			if tc.wantErr {
				require.Error(t, err)
				t.Logf("start failed as expected: %.300s", err)
			} else {
				require.NoError(t, err)
				for name, pid := range c.PIDs() {
					require.Equal(t, name, pids[pid])
				}
				require.NoError(t, c.Stop())
			}
			require.NotEmpty(t, pids)
			require.Equal(t, max(tc.wantStarts, 1), apiserverStarts)
			for pid, name := range pids {
				require.True(t, gone(pid), "%s (pid %d) still running", name, pid)
				require.True(t, gone(-pid), "process group of %s (pgid %d) still has members", name, pid)
			}
		})
	}
}

// heldPort returns a loopback port that stays bound until the test ends.
func heldPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

// helperEnv makes the test binary, re-executed by TestKilledTestLeavesNoProcess,
// start a cluster in the named directory, print its PIDs and block until killed.
const helperEnv = "MODULE_CONTROLLER_E2E_KILLED_HELPER_DIR"

// TestKilledTestLeavesNoProcess starts a cluster in a child test process,
// SIGKILLs that process (as a CI timeout or Ctrl-\ would) and checks that
// Pdeathsig took every component down with it.
func TestKilledTestLeavesNoProcess(t *testing.T) {
	if dir := os.Getenv(helperEnv); dir != "" { //nolint:forbidigo // set by the parent below for its re-executed child only
		c, err := framework.Start(t.Context(), framework.Options{Dir: dir})
		require.NoError(t, err)
		line := "PIDS"
		for _, pid := range c.PIDs() {
			line += " " + strconv.Itoa(pid)
		}
		fmt.Println(line)    //nolint:forbidigo // stdout is the pipe the parent reads the PIDs from
		<-t.Context().Done() // never: the parent kills this process
		return
	}

	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestKilledTestLeavesNoProcess$", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), helperEnv+"="+t.TempDir()) //nolint:forbidigo // the child inherits the environment, plus its marker
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	pidsLine := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			if strings.HasPrefix(s.Text(), "PIDS ") {
				pidsLine <- s.Text()
			}
		}
		close(pidsLine)
	}()
	var line string
	select {
	case line = <-pidsLine:
	case <-time.After(framework.DefaultStartTimeout):
	}
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	require.NotEmpty(t, line, "helper did not start a cluster; stderr:\n%s", stderr.String())

	var pids []int
	for _, f := range strings.Fields(line)[1:] {
		pid, err := strconv.Atoi(f)
		require.NoError(t, err)
		pids = append(pids, pid)
	}
	require.Len(t, pids, len(framework.ControlPlaneBinaries))
	// The kernel kills the children at once; init reaps them shortly after.
	err = wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		for _, pid := range pids {
			if !gone(pid) {
				return false, nil
			}
		}
		return true, nil
	})
	require.NoError(t, err, "control-plane processes %v survived their killed parent", pids)
}

// gone reports whether no process (pid > 0) or process group (pid < 0) exists.
func gone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
