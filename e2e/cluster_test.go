//go:build e2e

package e2e

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/moduleops/module-controller/e2e/framework"
	"github.com/moduleops/module-controller/pkg/basesim"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// Cluster-mode timing of these tests: a Lease not renewed for 6 s may be
// taken; a replica stops acting 4 s after its last renewal started.
const clusterLeaseDuration = 6 * time.Second

// clusterEnv is an env served by several controller replicas in cluster
// mode, all on one Mosquitto, sharing Leases in the env's namespace.
type clusterEnv struct {
	*env
	replicas []*framework.Controller
	// proxies are the network between a replica and the broker, for the
	// replicas started behind one.
	proxies map[int]*framework.Proxy
}

func newClusterEnv(t *testing.T, replicas int, behindProxy ...int) *clusterEnv {
	t.Helper()
	e := newBareEnv(t)
	c := e.cluster
	e.broker = framework.StartBroker(t, framework.Mosquitto)
	ce := &clusterEnv{env: e, proxies: map[int]*framework.Proxy{}}
	for i := range replicas {
		brokerURL := e.broker.URL
		if slices.Contains(behindProxy, i) {
			p, err := framework.StartProxy(strings.TrimPrefix(e.broker.URL, "tcp://"))
			require.NoError(t, err)
			t.Cleanup(p.Close)
			ce.proxies[i] = p
			brokerURL = "tcp://" + p.Address()
		}
		args := append(append([]string{}, fastControllerArgs...),
			"--cluster-mode", "--namespace="+e.namespace, "--client-id=mc-"+strconv.Itoa(i),
			"--cluster-lease-duration=6s", "--cluster-renew-deadline=4s", "--cluster-renew-interval=2s", "--cluster-retry-period=1s")
		ctrl := framework.StartController(t, framework.ControllerOptions{Kubeconfig: c.Kubeconfig, Env: e.name, BrokerURL: brokerURL, Args: args})
		t.Cleanup(func() { _ = ctrl.Signal(syscall.SIGCONT) }) // a stopped process cannot stop cleanly
		ce.replicas = append(ce.replicas, ctrl)
	}
	e.controller = ce.replicas[0]
	return ce
}

var ownedRE = regexp.MustCompile(`(?m)^module_controller_cluster_bases_owned (\d+)$`)

// owned returns how many bases each replica says it owns (-1: no answer).
func (ce *clusterEnv) owned() []int {
	out := make([]int, len(ce.replicas))
	for i := range ce.replicas {
		out[i] = ce.ownedBy(i)
	}
	return out
}

// ownedBy returns how many bases replica i says it owns (-1: no answer). A
// stopped replica's metrics would not answer: ask only running ones.
func (ce *clusterEnv) ownedBy(i int) int {
	m, err := ce.replicas[i].Metrics()
	if err != nil {
		return -1
	}
	if g := ownedRE.FindStringSubmatch(m); g != nil {
		n, _ := strconv.Atoi(g[1])
		return n
	}
	return -1
}

// holders returns the holder of every base Lease, by base ID.
func (ce *clusterEnv) holders() map[string]string {
	ce.t.Helper()
	list, err := ce.client.CoordinationV1().Leases(ce.namespace).List(ce.t.Context(), metav1.ListOptions{LabelSelector: "module-controller.koupleless.io/lease=base"})
	require.NoError(ce.t, err)
	out := map[string]string{}
	for _, l := range list.Items {
		if l.Spec.HolderIdentity != nil {
			out[l.Annotations["module-controller.koupleless.io/base"]] = *l.Spec.HolderIdentity
		}
	}
	return out
}

// startFleet starts n bases, each with one module pod, and waits until
// every pod runs.
func (ce *clusterEnv) startFleet(n int) (ids []string, bases map[string]*basesim.Base) {
	bases = map[string]*basesim.Base{}
	for i := range n {
		id := fmt.Sprintf("10.41.0.%d", i+1)
		ids = append(ids, id)
		bases[id] = ce.startBase(id, nil)
	}
	for i, id := range ids {
		ce.waitNode(id, "Ready", isReady)
		ce.createPod(ce.modulePod("m"+strconv.Itoa(i), id, "biz1:0.0.1"))
	}
	for i := range ids {
		ce.waitPod("m"+strconv.Itoa(i), "Running", running)
	}
	return ids, bases
}

// requireUndisturbed checks that every module pod still runs, and that each
// base got its one install and no uninstall.
func (ce *clusterEnv) requireUndisturbed(ids []string, bases map[string]*basesim.Base, gone *deletions) {
	ce.t.Helper()
	for i, id := range ids {
		p, err := ce.client.CoreV1().Pods(ce.namespace).Get(ce.t.Context(), "m"+strconv.Itoa(i), metav1.GetOptions{})
		require.NoError(ce.t, err)
		require.True(ce.t, running(p), "pod on %s disturbed: %s", id, describePod(p))
		n, err := ce.client.CoreV1().Nodes().Get(ce.t.Context(), ce.nodeName(id), metav1.GetOptions{})
		require.NoError(ce.t, err)
		require.True(ce.t, isReady(n), "node of %s: %s", id, describeNode(n))
		b := bases[id]
		require.Equal(ce.t, 1, b.ReceivedCount(protocol.CommandInstallBiz, "biz1:0.0.1"), "base %s: installs", id)
		require.Zero(ce.t, b.ReceivedCount(protocol.CommandUninstallBiz, ""), "base %s got an uninstall", id)
		require.Zero(ce.t, b.ReceivedCount(basesim.CommandBaseline, ""), "base %s got a baseline", id)
	}
	require.Empty(ce.t, gone.seen(), "nodes or pods deleted")
}

// TestClusterSpreadAndKill: three replicas share 30 bases ten each; after
// kill -9 of one, its bases are owned and served again within the lease
// duration and a round, with no module pod disturbed and no install or
// uninstall repeated; restarted, it takes its share back the same way.
func TestClusterSpreadAndKill(t *testing.T) {
	ce := newClusterEnv(t, 3)
	ids, bases := ce.startFleet(30)
	require.Eventually(t, func() bool {
		o := ce.owned()
		return o[0]+o[1]+o[2] == 30 && len(ce.holders()) == 30
	}, waitLong, poll)
	spread := ce.owned()
	t.Logf("bases owned per replica: %v", spread)
	for i, n := range spread {
		require.InDelta(t, 10, n, 2, "replica mc-%d owns %d bases", i, n)
	}
	gone := ce.watchDeletions()
	defer gone.stop()
	ce.requireUndisturbed(ids, bases, gone)

	// Steady state: Lease writes of all replicas, per base per minute.
	w0, at0 := ce.leaseWrites(), time.Now()
	hold(t, 10*time.Second)
	w1, elapsed := ce.leaseWrites(), time.Since(at0)
	perBase := (w1[LeaseKindBase] - w0[LeaseKindBase]) / float64(len(ids)) / elapsed.Minutes()
	perReplica := (w1[LeaseKindReplica] - w0[LeaseKindReplica]) / 3 / elapsed.Minutes()
	t.Logf("Lease writes: %.1f per base per minute, %.1f per replica per minute (renew interval 2 s: expected 0 and 30)", perBase, perReplica)
	// A base Lease holds through its holder's member Lease: only the
	// member Leases are renewed.
	require.Zero(t, perBase, "base Leases written in the steady state")
	require.InDelta(t, 30, perReplica, 6)

	victim := map[string]bool{}
	for id, h := range ce.holders() {
		if h == "mc-2" {
			victim[id] = true
		}
	}
	for id := range victim {
		bases[id].ResetReceived()
	}
	// Reset keeps the counts comparable: the first install happened before.
	require.NoError(t, ce.replicas[2].Kill())
	killed := time.Now()
	require.Eventually(t, func() bool {
		o := ce.owned()
		return o[0]+o[1] == 30
	}, clusterLeaseDuration+10*time.Second, 100*time.Millisecond, "the killed replica's bases were not taken over")
	owned := time.Since(killed)
	// Served again: the new owner adopted the base and asked for its biz list.
	require.Eventually(t, func() bool {
		for id := range victim {
			if bases[id].ReceivedCount(protocol.CommandQueryAllBiz, "") == 0 {
				return false
			}
		}
		return true
	}, waitLong, 50*time.Millisecond)
	served := time.Since(killed)
	t.Logf("kill -9 of mc-2 (%d bases): all owned again after %s, all served (queryAllBiz) after %s; lease duration %s",
		len(victim), owned.Round(10*time.Millisecond), served.Round(10*time.Millisecond), clusterLeaseDuration)
	// A Lease is taken a lease duration after the round that first saw its
	// last version, at a round: up to two retry periods late, plus slack
	// for a loaded machine.
	require.Less(t, owned, clusterLeaseDuration+4*time.Second)
	for id := range victim {
		require.Zero(t, bases[id].ReceivedCount(protocol.CommandInstallBiz, ""), "base %s got an install after the failover", id)
		require.Zero(t, bases[id].ReceivedCount(protocol.CommandUninstallBiz, ""), "base %s got an uninstall after the failover", id)
	}
	hold(t, 3*time.Second) // a few heartbeats and health polls under the new owners

	// Restarted, it takes its share back from the others through released
	// Leases, with the same guarantees.
	require.NoError(t, ce.replicas[2].Start(t.Context()))
	require.Eventually(t, func() bool {
		o := ce.owned()
		return o[0]+o[1]+o[2] == 30 && o[2] >= 8
	}, waitLong, poll)
	t.Logf("after the restart: %v", ce.owned())
	hold(t, 3*time.Second)
	for i, id := range ids {
		p, err := ce.client.CoreV1().Pods(ce.namespace).Get(t.Context(), "m"+strconv.Itoa(i), metav1.GetOptions{})
		require.NoError(t, err)
		require.True(t, running(p), "pod on %s disturbed: %s", id, describePod(p))
		require.Zero(t, bases[id].ReceivedCount(protocol.CommandUninstallBiz, ""), "base %s got an uninstall", id)
		if victim[id] {
			require.Zero(t, bases[id].ReceivedCount(protocol.CommandInstallBiz, ""), "base %s got a second install", id)
		} else {
			require.Equal(t, 1, bases[id].ReceivedCount(protocol.CommandInstallBiz, "biz1:0.0.1"), "base %s: installs", id)
		}
	}
	require.Empty(t, gone.seen(), "nodes or pods deleted")
}

// TestClusterSplitBrain: a replica stopped (SIGSTOP) past its lease
// duration loses its bases to the others; resumed (SIGCONT), it sends no
// command and writes no node or pod status for a base before it owns it
// again (as its log shows: every command sent and status written is logged
// at debug level with the base).
func TestClusterSplitBrain(t *testing.T) {
	ce := newClusterEnv(t, 2)
	ids, bases := ce.startFleet(10)
	require.Eventually(t, func() bool {
		o := ce.owned()
		return o[0]+o[1] == 10 && len(ce.holders()) == 10
	}, waitLong, poll)
	gone := ce.watchDeletions()
	defer gone.stop()
	lost := map[string]bool{}
	for id, h := range ce.holders() {
		if h == "mc-1" {
			lost[id] = true
		}
	}
	require.NotEmpty(t, lost)

	require.NoError(t, ce.replicas[1].Signal(syscall.SIGSTOP))
	stopped := time.Now()
	require.Eventually(t, func() bool { return ce.ownedBy(0) == 10 }, clusterLeaseDuration+10*time.Second, 100*time.Millisecond)
	t.Logf("mc-1 stopped: mc-0 owns all 10 bases after %s", time.Since(stopped).Round(10*time.Millisecond))
	hold(t, 2*time.Second)
	offset, err := ce.replicas[1].LogSize() // the stopped process writes nothing: later lines are after SIGCONT
	require.NoError(t, err)
	require.NoError(t, ce.replicas[1].Signal(syscall.SIGCONT))
	// It rejoins and takes its share back through released Leases.
	require.Eventually(t, func() bool {
		o := ce.owned()
		return o[0]+o[1] == 10 && o[1] >= 4
	}, waitLong, poll)
	hold(t, 2*time.Second)

	// In its log since SIGCONT, no command to a base comes before it took
	// that base's Lease again.
	logText, err := ce.replicas[1].Log(offset)
	require.NoError(t, err)
	retaken := map[string]bool{}
	sentBeforeOwning := map[string]int{}
	for _, line := range strings.Split(logText, "\n") {
		base := logField(line, "base")
		if base == "" {
			continue
		}
		switch {
		case strings.Contains(line, "took the base's Lease"):
			retaken[base] = true
		case !retaken[base] && (strings.Contains(line, "mqtt command sent") ||
			strings.Contains(line, "updated node status in api server") || strings.Contains(line, "Updated pod status in kubernetes")):
			sentBeforeOwning[base]++
			t.Logf("before owning %s again: %s", base, line)
		}
	}
	require.NotEmpty(t, retaken, "the resumed replica's log shows no base taken back: the check below would see nothing")
	require.Empty(t, sentBeforeOwning, "the resumed replica sent commands or wrote status for bases it did not own")
	ce.requireUndisturbed(ids, bases, gone)
}

// logField returns the value of key=value (or key="value") in a text log line.
func logField(line, key string) string {
	i := strings.Index(line, " "+key+"=")
	if i < 0 {
		return ""
	}
	v := line[i+len(key)+2:]
	if strings.HasPrefix(v, `"`) {
		if j := strings.Index(v[1:], `"`); j >= 0 {
			return v[1 : j+1]
		}
		return ""
	}
	if j := strings.IndexByte(v, ' '); j >= 0 {
		return v[:j]
	}
	return v
}

// TestClusterRollingRestart: restarting the replicas one at a time (SIGTERM,
// as a rolling update does) hands each one's bases over at once and back
// again: no module pod disturbed, no install repeated, no uninstall.
func TestClusterRollingRestart(t *testing.T) {
	ce := newClusterEnv(t, 3)
	ids, bases := ce.startFleet(30)
	require.Eventually(t, func() bool {
		o := ce.owned()
		return o[0]+o[1]+o[2] == 30
	}, waitLong, poll)
	gone := ce.watchDeletions()
	defer gone.stop()
	for i, r := range ce.replicas {
		// The old pod stops (SIGTERM) and releases its Leases: the others
		// take its bases well before the Leases could expire.
		start := time.Now()
		require.NoError(t, r.Stop())
		require.Eventually(t, func() bool {
			sum := 0
			for j := range ce.replicas {
				if j != i {
					sum += ce.ownedBy(j)
				}
			}
			return sum == 30
		}, waitLong, 50*time.Millisecond)
		handover := time.Since(start)
		t.Logf("SIGTERM of mc-%d: its bases owned by the others after %s", i, handover.Round(10*time.Millisecond))
		require.Less(t, handover, clusterLeaseDuration, "the stopping replica did not release its Leases")
		// The new pod joins and takes its share back.
		require.NoError(t, r.Start(t.Context()))
		require.Eventually(t, func() bool {
			o := ce.owned()
			return o[0]+o[1]+o[2] == 30 && o[i] >= 8
		}, waitLong, poll)
		t.Logf("mc-%d back: %v", i, ce.owned())
	}
	hold(t, 3*time.Second)
	ce.requireUndisturbed(ids, bases, gone)
	for i := range ce.replicas {
		m, err := ce.replicas[i].Metrics()
		require.NoError(t, err)
		require.NotRegexp(t, `module_controller_cluster_handovers_total\{cause="failover",direction="gained"\} [1-9]`, m, "mc-%d: a handover waited for expiry", i)
		require.Regexp(t, `module_controller_cluster_handovers_total\{cause="failover",direction="gained"\} 0`, m)
	}
}

// TestClusterBrokerOutage: with three replicas a broker outage longer than
// the removal window removes nothing, as with one replica: every replica
// holds its bases in disruption mode and keeps its Leases.
func TestClusterBrokerOutage(t *testing.T) {
	ce := newClusterEnv(t, 3)
	ids, bases := ce.startFleet(9)
	require.Eventually(t, func() bool {
		o := ce.owned()
		return o[0]+o[1]+o[2] == 9
	}, waitLong, poll)
	before := ce.holders()
	gone := ce.watchDeletions()
	defer gone.stop()

	require.NoError(t, ce.broker.Stop())
	require.Eventually(t, func() bool {
		for _, r := range ce.replicas {
			if m, err := r.Metrics(); err != nil || !strings.Contains(m, "module_controller_tunnel_disrupted 1") {
				return false
			}
		}
		return true
	}, waitLong, poll)
	hold(t, 12*time.Second) // remove-after is 8 s
	require.Equal(t, before, ce.holders(), "bases changed owner during the outage")
	require.NoError(t, ce.broker.Restart(t.Context()))
	for _, id := range ids {
		ce.waitNode(id, "Ready after the outage", func(n *corev1.Node) bool { return isReady(n) && ready(n).Reason == "BaseReady" })
	}
	for _, b := range bases {
		require.Eventually(t, func() bool { return b.ReceivedCount(protocol.CommandQueryAllBiz, "") > 1 }, waitLong, poll)
	}
	ce.requireUndisturbed(ids, bases, gone)
}

// phaseWatch records every module pod of the env's namespace that leaves
// Running or is deleted while it runs.
type phaseWatch struct {
	mu      sync.Mutex
	changes []string
	stop    func()
}

func (ce *clusterEnv) watchPhases() *phaseWatch {
	ce.t.Helper()
	w, err := ce.client.CoreV1().Pods(ce.namespace).Watch(ce.t.Context(), metav1.ListOptions{})
	require.NoError(ce.t, err)
	pw := &phaseWatch{stop: w.Stop}
	go func() {
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			if ev.Type == watch.Deleted || p.Status.Phase != corev1.PodRunning {
				pw.mu.Lock()
				pw.changes = append(pw.changes, fmt.Sprintf("%s %s phase=%s node=%s", ev.Type, p.Name, p.Status.Phase, p.Spec.NodeName))
				pw.mu.Unlock()
			}
		}
	}()
	return pw
}

func (pw *phaseWatch) seen() []string {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	return append([]string(nil), pw.changes...)
}

// moduleDeployment is a Deployment of biz2 on the env's bases, one pod per
// base at most.
func (ce *clusterEnv) moduleDeployment(replicas int32) *appsv1.Deployment {
	labels := map[string]string{labelModuleName: "biz2"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "biz2", Namespace: ce.namespace},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name: "biz2", Image: "https://modules.example.test/biz2-0.0.1-ark-biz.jar",
						Env: []corev1.EnvVar{{Name: "BIZ_VERSION", Value: "0.0.1"}},
					}},
					Affinity: &corev1.Affinity{
						NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
							NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
								Key: "virtual-kubelet.koupleless.io/env", Operator: corev1.NodeSelectorOpIn, Values: []string{ce.name},
							}}}},
						}},
						PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
							TopologyKey: corev1.LabelHostname, LabelSelector: &metav1.LabelSelector{MatchLabels: labels},
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

// TestClusterDaemonSetAndDeploymentSurviveKill: 3 replicas, 30 bases, the
// sample DaemonSet of biz1 on every base and a Deployment of biz2 on 10 of
// them; kill -9 of one replica changes no module pod's phase and repeats or
// undoes no install.
func TestClusterDaemonSetAndDeploymentSurviveKill(t *testing.T) {
	ce := newClusterEnv(t, 3)
	bases := map[string]*basesim.Base{}
	for i := range 30 {
		id := fmt.Sprintf("10.42.0.%d", i+1)
		bases[id] = ce.startBase(id, nil)
	}
	for id := range bases {
		ce.waitNode(id, "Ready", isReady)
	}
	var ds appsv1.DaemonSet
	decodeSample(t, "daemonset.yaml", &ds)
	ce.applySample("daemonset.yaml")
	_, err := ce.client.AppsV1().Deployments(ce.namespace).Create(t.Context(), ce.moduleDeployment(10), metav1.CreateOptions{})
	require.NoError(t, err)
	ce.waitPods(biz1Selector, "one Running biz1 pod per base", waitLong, func(pods []corev1.Pod) bool {
		n := 0
		for i := range pods {
			if running(&pods[i]) {
				n++
			}
		}
		return n == 30
	})
	ce.waitPods(labelModuleName+"=biz2", "10 Running biz2 pods", waitLong, func(pods []corev1.Pod) bool {
		n := 0
		for i := range pods {
			if running(&pods[i]) {
				n++
			}
		}
		return n == 10
	})
	require.Eventually(t, func() bool {
		o := ce.owned()
		return o[0]+o[1]+o[2] == 30
	}, waitLong, poll)
	spread := ce.owned()
	t.Logf("bases owned per replica: %v", spread)
	for i, n := range spread {
		require.InDelta(t, 10, n, 2, "replica mc-%d owns %d bases", i, n)
	}
	installs := map[string]int{}
	for id, b := range bases {
		installs[id] = b.ReceivedCount(protocol.CommandInstallBiz, "")
	}
	phases := ce.watchPhases()
	defer phases.stop()

	require.NoError(t, ce.replicas[2].Kill())
	killed := time.Now()
	require.Eventually(t, func() bool {
		o := ce.owned()
		return o[0]+o[1] == 30
	}, clusterLeaseDuration+10*time.Second, 100*time.Millisecond)
	t.Logf("kill -9 of mc-2: all bases owned again after %s", time.Since(killed).Round(10*time.Millisecond))
	hold(t, 5*time.Second)
	require.Empty(t, phases.seen(), "module pods changed phase or were deleted")
	for id, b := range bases {
		require.Equal(t, installs[id], b.ReceivedCount(protocol.CommandInstallBiz, ""), "base %s got another install", id)
		require.Zero(t, b.ReceivedCount(protocol.CommandUninstallBiz, ""), "base %s got an uninstall", id)
		n, err := ce.client.CoreV1().Nodes().Get(t.Context(), ce.nodeName(id), metav1.GetOptions{})
		require.NoError(t, err)
		require.True(t, isReady(n), "node of %s: %s", id, describeNode(n))
	}
}

// Kinds of the lease_writes_total metric.
const (
	LeaseKindBase    = "base"
	LeaseKindReplica = "replica"
)

var leaseWritesRE = regexp.MustCompile(`(?m)^module_controller_cluster_lease_writes_total\{kind="(\w+)",verb="\w+"\} (\d+)$`)

// leaseWrites sums the Lease writes of every replica by kind.
func (ce *clusterEnv) leaseWrites() map[string]float64 {
	out := map[string]float64{}
	for _, r := range ce.replicas {
		m, err := r.Metrics()
		if err != nil {
			continue
		}
		for _, g := range leaseWritesRE.FindAllStringSubmatch(m, -1) {
			n, _ := strconv.ParseFloat(g[2], 64)
			out[g[1]] += n
		}
	}
	return out
}

// TestClusterCutOffReplicaHandsOver: a replica cut off from the broker while
// the other is not hands its bases over after a lease duration (instead of
// holding them in tunnel disruption mode), and takes its share back once
// its network returns; nothing is deleted, installed again or uninstalled.
func TestClusterCutOffReplicaHandsOver(t *testing.T) {
	ce := newClusterEnv(t, 2, 1)
	ids, bases := ce.startFleet(10)
	require.Eventually(t, func() bool {
		o := ce.owned()
		return o[0]+o[1] == 10 && o[1] > 0
	}, waitLong, poll)
	gone := ce.watchDeletions()
	defer gone.stop()

	ce.proxies[1].Cut()
	cut := time.Now()
	require.Eventually(t, func() bool { return ce.ownedBy(0) == 10 && ce.ownedBy(1) == 0 }, clusterLeaseDuration+15*time.Second, 100*time.Millisecond)
	t.Logf("mc-1 cut off from the broker: mc-0 serves all 10 bases after %s", time.Since(cut).Round(10*time.Millisecond))
	for _, id := range ids {
		ce.waitNode(id, "Ready under mc-0", func(n *corev1.Node) bool { return isReady(n) && ready(n).Reason == "BaseReady" })
	}

	require.NoError(t, ce.proxies[1].Restore(t.Context()))
	require.Eventually(t, func() bool {
		o := ce.owned()
		return o[0]+o[1] == 10 && o[1] >= 3
	}, waitLong, poll)
	t.Logf("mc-1 back: %v", ce.owned())
	hold(t, 3*time.Second)
	ce.requireUndisturbed(ids, bases, gone)
}
