//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/moduleops/module-controller/pkg/basesim"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// TestPeerAndNonPeerSamplesApply: the guide's sample and the peer and
// non-peer samples under deploy/samples pass `kubectl apply --dry-run=server`
// on the real API server, admission and defaulting included.
func TestPeerAndNonPeerSamplesApply(t *testing.T) {
	c := sharedCluster(t)
	for _, file := range []string{"sample-deployment.yaml", "daemonset.yaml", "deployment-nonpeer.yaml", "deployment-zone-spread.yaml"} {
		out, err := kubectlIn(t, c, "apply", "--dry-run=server", "-f", sampleFile(t, file))
		require.NoError(t, err, "%s: %s", file, out)
		require.Contains(t, out, "(server dry run)", file)
	}
}

// TestNonPeerGuideSample applies the operations guide's sample Deployment as
// written (deploy/samples/sample-deployment.yaml): its one replica runs on a
// base its node affinity selects (stack java, name base, version 1.0.0) and
// never on a base or node with another stack, name or version. Scaled up on
// bases without zones, its zone anti-affinity spreads nothing, so, as the
// guide warns, replicas share bases: one pod per base runs the biz, the
// others wait with BizOwnedByOtherPod, and no base installs it twice.
func TestNonPeerGuideSample(t *testing.T) {
	e := newEnv(t, "embedded")
	bases := map[string]*basesim.Base{}
	for _, id := range []string{"10.22.0.1", "10.22.0.2", "10.22.0.3"} {
		bases[id] = e.startBase(id, nil)
	}
	others := map[string]*basesim.Base{
		"10.22.1.1": e.startBase("10.22.1.1", func(c *basesim.Config) { c.Version = "2.0.0" }),
		"10.22.1.2": e.startBase("10.22.1.2", func(c *basesim.Config) { c.Name = "other-base" }),
	}
	foreign := e.foreignNode("foreign-"+e.name, map[string]string{"base.koupleless.io/stack": "nodejs"})
	for _, m := range []map[string]*basesim.Base{bases, others} {
		for id := range m {
			e.waitNode(id, "Ready", isReady)
		}
	}

	var d appsv1.Deployment
	decodeSample(t, "sample-deployment.yaml", &d)
	d.Namespace = e.namespace
	start := time.Now()
	_, err := e.client.AppsV1().Deployments(e.namespace).Create(t.Context(), &d, metav1.CreateOptions{})
	require.NoError(t, err)
	pods := e.waitPods(biz1Selector, "one Running pod on a matching base", waitLong, func(pods []corev1.Pod) bool {
		return len(pods) == 1 && running(&pods[0]) && e.baseOf(&pods[0], bases) != ""
	})
	t.Logf("MEASURED: guide's sample Deployment (1 replica) Running %s after create", time.Since(start).Round(time.Millisecond))
	id := e.baseOf(&pods[0], bases)
	require.Equal(t, []string{"0.0.1"}, activeBizVersions(bases[id], "biz1"))
	require.Equal(t, "0.0.1", pods[0].Labels[labelModuleVersion])

	// kubectl scale --replicas=6
	e.scaleDeployment(d.Name, 6)
	pods = e.waitPods(biz1Selector, "6 pods on matching bases, one running the biz per base", waitLong, func(pods []corev1.Pod) bool {
		if len(pods) != 6 {
			return false
		}
		for node, ps := range podsByNode(pods) {
			if node == "" || e.baseOf(&ps[0], bases) == "" {
				return false
			}
			run, owned := 0, 0
			for i := range ps {
				switch {
				case running(&ps[i]):
					run++
				case firstWaitingReason(&ps[i]) == "BizOwnedByOtherPod":
					owned++
				}
			}
			if run != 1 || run+owned != len(ps) {
				return false
			}
		}
		return true
	})
	used := podsByNode(pods)
	t.Logf("guide's sample scaled to 6 on 3 bases without zones: pods per base %v", countPerNode(used))
	require.Eventually(t, func() bool {
		got, err := e.client.AppsV1().Deployments(e.namespace).Get(t.Context(), d.Name, metav1.GetOptions{})
		return err == nil && got.Status.AvailableReplicas == int32(len(used)) && got.Status.Replicas == 6
	}, waitLong, poll, "available replicas = bases used")
	for id, b := range bases {
		n := 0
		if len(used[e.nodeName(id)]) > 0 {
			n = 1
			require.Equal(t, []string{"0.0.1"}, activeBizVersions(b, "biz1"), "base %s", id)
		}
		require.Equal(t, n, b.ReceivedCount(protocol.CommandInstallBiz, "biz1:0.0.1"), "base %s: installed once, however many pods share it", id)
	}
	e.requireUntouched(others)
	require.Empty(t, used[foreign.Name], "a node of another stack gets no module pod")
	e.requireSchedulable(foreign.Name)
}

// TestNonPeerHostnameSpread follows deploy/samples/deployment-nonpeer.yaml:
// three replicas, at most one per base (hostname anti-affinity). Replicas
// beyond the matching bases stay Pending with FailedScheduling, one of them is
// placed as soon as a matching base joins, a scale-down uninstalls at the
// bases, and the sample's update strategy (maxSurge 0) replaces the version
// with every base full.
func TestNonPeerHostnameSpread(t *testing.T) {
	e := newEnv(t, "embedded")
	bases := map[string]*basesim.Base{}
	for _, id := range []string{"10.23.0.1", "10.23.0.2", "10.23.0.3"} {
		bases[id] = e.startBase(id, nil)
	}
	others := map[string]*basesim.Base{
		"10.23.1.1": e.startBase("10.23.1.1", func(c *basesim.Config) { c.Version = "2.0.0" }),
	}
	for _, m := range []map[string]*basesim.Base{bases, others} {
		for id := range m {
			e.waitNode(id, "Ready", isReady)
		}
	}

	start := time.Now()
	e.applySample("deployment-nonpeer.yaml")
	e.waitSpread(bases, 3, 0, "0.0.1")
	t.Logf("MEASURED: non-peer Deployment, 3 replicas on 3 bases, Running %s after kubectl apply", time.Since(start).Round(time.Millisecond))

	// Two replicas too many: they stay Pending and say why.
	e.scaleDeployment("biz1-nonpeer", 5)
	pending := e.waitSpread(bases, 3, 2, "0.0.1")
	for _, p := range pending {
		msg, _ := unschedulable(&p)
		require.Contains(t, msg, "anti-affinity", "pod %s", p.Name)
		require.Eventually(t, func() bool { return hasEvent(t, e, p.Name, "FailedScheduling") }, waitLong, poll, "pod %s", p.Name)
	}
	e.requireUntouched(others)

	// A matching base joins: one Pending replica lands on it.
	start = time.Now()
	bases["10.23.0.4"] = e.startBase("10.23.0.4", nil)
	e.waitSpread(bases, 4, 1, "0.0.1")
	t.Logf("MEASURED: base joined → Pending replica Running on it %s after the base started", time.Since(start).Round(time.Millisecond))

	// Scale down to 3: the Pending replica and one running one go, the latter
	// uninstalled at its base. The ReplicaSet deletes both at once, and the
	// freed base can take the Pending pod for the moment before its own
	// deletion lands; so what must hold is that every install not running
	// now was uninstalled (waitSpread: the fourth base holds nothing).
	e.scaleDeployment("biz1-nonpeer", 3)
	e.waitSpread(bases, 3, 0, "0.0.1")
	installed, uninstalled := 0, 0
	for _, b := range bases {
		installed += b.ReceivedCount(protocol.CommandInstallBiz, "biz1:0.0.1")
		uninstalled += b.ReceivedCount(protocol.CommandUninstallBiz, "biz1:0.0.1")
	}
	require.GreaterOrEqual(t, uninstalled, 1)
	require.Equal(t, 3, installed-uninstalled, "every install but the 3 running ones was uninstalled (%d installs)", installed)

	// The sample's update strategy copes with one replica per base: each
	// base's old pod goes before the new one is placed, and every base ends
	// with 0.0.2 only.
	start = time.Now()
	e.updateDeployment("biz1-nonpeer", func(d *appsv1.Deployment) { setTemplateVersion(&d.Spec.Template, "0.0.2") })
	e.waitSpread(bases, 3, 0, "0.0.2")
	t.Logf("MEASURED: non-peer Deployment update 0.0.1 → 0.0.2 on 3 of 4 bases (maxSurge 0, maxUnavailable 1) took %s", time.Since(start).Round(time.Millisecond))
	e.requireUntouched(others)
}

// TestNonPeerZoneSpread spreads over zones. Bases get
// topology.kubernetes.io/zone from the real node hosting the Pod whose IP is
// the base's IP, so the test sets up exactly that: two zone-labelled nodes,
// base Pods on them carrying the bases' IPs, and one base without a Pod (no
// zone). deploy/samples/deployment-zone-spread.yaml then runs one replica
// per zone and never on the zone-less base; the guide's sample, whose zone
// anti-affinity does not require a zone, runs one replica per zone plus one
// on the zone-less base.
func TestNonPeerZoneSpread(t *testing.T) {
	e := newEnv(t, "embedded")
	zones := map[string]string{"10.24.0.1": "zone-a", "10.24.0.2": "zone-a", "10.24.0.3": "zone-b", "10.24.0.4": "zone-b"}
	e.hostBasePods(zones)
	bases := map[string]*basesim.Base{}
	for id := range zones {
		bases[id] = e.startBase(id, nil)
	}
	zoneless := "10.24.0.5"
	bases[zoneless] = e.startBase(zoneless, nil)
	for id, zone := range zones {
		e.waitNode(id, "Ready in "+zone, func(n *corev1.Node) bool {
			return isReady(n) && n.Labels[corev1.LabelTopologyZone] == zone
		})
	}
	n := e.waitNode(zoneless, "Ready", isReady)
	require.NotContains(t, n.Labels, corev1.LabelTopologyZone)

	start := time.Now()
	e.applySample("deployment-zone-spread.yaml")
	e.waitZones(bases, zones, 2, 0)
	t.Logf("MEASURED: zone-spread Deployment, 2 replicas in 2 zones, Running %s after kubectl apply", time.Since(start).Round(time.Millisecond))

	e.scaleDeployment("biz1-zone-spread", 3)
	pending := e.waitZones(bases, zones, 2, 1)
	msg, _ := unschedulable(&pending[0])
	require.Contains(t, msg, "anti-affinity")
	require.Eventually(t, func() bool { return hasEvent(t, e, pending[0].Name, "FailedScheduling") }, waitLong, poll)
	require.Empty(t, bases[zoneless].Bizs(), "the zone-less base is outside the sample's node affinity")

	// Remove the sample; its bizs are uninstalled everywhere.
	require.NoError(t, e.client.AppsV1().Deployments(e.namespace).Delete(t.Context(), "biz1-zone-spread", metav1.DeleteOptions{}))
	e.waitPods(biz1Selector, "all gone", waitLong, func(pods []corev1.Pod) bool { return len(pods) == 0 })
	for id, b := range bases {
		require.Eventually(t, func() bool { return len(b.Bizs()) == 0 }, waitLong, poll, "base %s", id)
	}

	// The guide's sample as written, scaled to 4: at most one per zone, but a
	// node without the topology key is no zone to avoid, so the replicas the
	// zones cannot take all land on the zone-less base, where one runs the biz
	// and the others wait with BizOwnedByOtherPod.
	var d appsv1.Deployment
	decodeSample(t, "sample-deployment.yaml", &d)
	d.Namespace = e.namespace
	d.Spec.Replicas = ptr(int32(4))
	_, err := e.client.AppsV1().Deployments(e.namespace).Create(t.Context(), &d, metav1.CreateOptions{})
	require.NoError(t, err)
	pods := e.waitPods(biz1Selector, "at most one per zone, the rest on the zone-less base", waitLong, func(pods []corev1.Pod) bool {
		if len(pods) != 4 {
			return false
		}
		perZone := map[string]int{}
		run, owned := 0, 0
		for i := range pods {
			p := &pods[i]
			id := e.baseOf(p, bases)
			if id == "" {
				return false
			}
			if id != zoneless {
				if perZone[zones[id]]++; perZone[zones[id]] > 1 || !running(p) {
					return false
				}
				continue
			}
			switch {
			case running(p):
				run++
			case firstWaitingReason(p) == "BizOwnedByOtherPod":
				owned++
			}
		}
		onZoneless := 4 - perZone["zone-a"] - perZone["zone-b"]
		return onZoneless >= 2 && run == 1 && owned == onZoneless-1
	})
	require.Equal(t, 1, bases[zoneless].ReceivedCount(protocol.CommandInstallBiz, "biz1:0.0.1"))
	t.Logf("guide's sample with zones: %s", podSummary(pods))
}

// TestNonPeerReplicaSet runs a plain ReplicaSet of biz2 with hostname
// anti-affinity: replicas on distinct bases, a deleted pod replaced and its
// biz uninstalled, scale up and down to zero reflected at the bases.
func TestNonPeerReplicaSet(t *testing.T) {
	for _, kind := range []string{"mosquitto", httpKind} {
		t.Run(kind, func(t *testing.T) { testNonPeerReplicaSet(t, kind) })
	}
}

func testNonPeerReplicaSet(t *testing.T, kind string) {
	e := newEnv(t, kind)
	bases := map[string]*basesim.Base{}
	for _, id := range []string{"10.25.0.1", "10.25.0.2", "10.25.0.3"} {
		bases[id] = e.startBase(id, nil)
	}
	for id := range bases {
		e.waitNode(id, "Ready", isReady)
	}
	rs := replicaSet("biz2-rs", "biz2", "0.0.1", 2)
	start := time.Now()
	_, err := e.client.AppsV1().ReplicaSets(e.namespace).Create(t.Context(), rs, metav1.CreateOptions{})
	require.NoError(t, err)
	const sel = labelModuleName + "=biz2"
	spread := func(n int) []corev1.Pod {
		t.Helper()
		return e.waitPods(sel, "Running on distinct bases", waitLong, func(pods []corev1.Pod) bool {
			byNode := podsByNode(pods)
			if len(pods) != n || len(byNode) != n {
				return false
			}
			for i := range pods {
				if !running(&pods[i]) || e.baseOf(&pods[i], bases) == "" {
					return false
				}
			}
			holding := 0
			for _, b := range bases {
				switch v := activeBizVersions(b, "biz2"); len(v) {
				case 0:
				case 1:
					holding++
				default:
					return false
				}
			}
			return holding == n
		})
	}
	pods := spread(2)
	t.Logf("MEASURED: ReplicaSet, 2 replicas, Running %s after create", time.Since(start).Round(time.Millisecond))

	// A deleted replica is replaced and its base uninstalls the biz: the
	// anti-affinity keeps the replacement off that base until the deleted pod
	// is gone, which is after the base confirmed the uninstall.
	victim := pods[0]
	require.NoError(t, e.client.CoreV1().Pods(e.namespace).Delete(t.Context(), victim.Name, metav1.DeleteOptions{}))
	e.waitPods(sel, "replacement", waitLong, func(pods []corev1.Pod) bool {
		for _, p := range pods {
			if p.UID == victim.UID {
				return false
			}
		}
		return len(pods) == 2
	})
	spread(2)
	require.Equal(t, 1, bases[e.baseOf(&victim, bases)].ReceivedCount(protocol.CommandUninstallBiz, "biz2:0.0.1"))

	e.scaleReplicaSet(rs.Name, 3)
	spread(3)
	e.scaleReplicaSet(rs.Name, 0)
	e.waitPods(sel, "none", waitLong, func(pods []corev1.Pod) bool { return len(pods) == 0 })
	for id, b := range bases {
		require.Empty(t, b.Bizs(), "base %s", id)
	}
}

// baseOf returns the ID of the base in bases whose node the pod is bound
// to, or "".
func (e *env) baseOf(p *corev1.Pod, bases map[string]*basesim.Base) string {
	id, _, mine := cutNode(p.Spec.NodeName, e.name)
	if !mine || bases[id] == nil {
		return ""
	}
	return id
}

// firstWaitingReason returns the reason of the pod's first waiting container.
func firstWaitingReason(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Waiting != nil {
			return cs.State.Waiting.Reason
		}
	}
	return ""
}

func countPerNode(byNode map[string][]corev1.Pod) map[string]int {
	m := map[string]int{}
	for n, ps := range byNode {
		m[n] = len(ps)
	}
	return m
}

// waitSpread waits until the biz1 pods are placed run Running pods of
// version on distinct bases of the given set, each base holding exactly that
// one biz, plus pending unschedulable pods; it returns the pending pods.
func (e *env) waitSpread(bases map[string]*basesim.Base, run, pending int, version string) []corev1.Pod {
	e.t.Helper()
	pods := e.waitPods(biz1Selector, "spread one per base", waitLong, func(pods []corev1.Pod) bool {
		if len(pods) != run+pending {
			return false
		}
		byNode := podsByNode(pods)
		if len(byNode[""]) != pending {
			return false
		}
		for _, p := range byNode[""] {
			if _, ok := unschedulable(&p); !ok {
				return false
			}
		}
		for node, ps := range byNode {
			if node == "" {
				continue
			}
			if len(ps) != 1 || e.baseOf(&ps[0], bases) == "" || !running(&ps[0]) || ps[0].Labels[labelModuleVersion] != version {
				return false
			}
		}
		holding := 0
		for _, b := range bases {
			switch keys := bizKeys(b); {
			case len(keys) == 0:
			case len(keys) == 1 && keys[0] == "biz1:"+version+"@ACTIVATED":
				holding++
			default:
				return false
			}
		}
		return holding == run
	})
	return podsByNode(pods)[""]
}

// waitZones waits until run Running biz1 pods sit in distinct zones (bases
// in zones) with pending pods unschedulable; it returns the pending pods.
func (e *env) waitZones(bases map[string]*basesim.Base, zones map[string]string, run, pending int) []corev1.Pod {
	e.t.Helper()
	pods := e.waitPods(biz1Selector, "one per zone", waitLong, func(pods []corev1.Pod) bool {
		byNode := podsByNode(pods)
		if len(pods) != run+pending || len(byNode[""]) != pending {
			return false
		}
		for _, p := range byNode[""] {
			if _, ok := unschedulable(&p); !ok {
				return false
			}
		}
		seen := map[string]bool{}
		for i := range pods {
			p := &pods[i]
			if p.Spec.NodeName == "" {
				continue
			}
			id := e.baseOf(p, bases)
			if id == "" || zones[id] == "" || seen[zones[id]] || !running(p) {
				return false
			}
			seen[zones[id]] = true
		}
		return len(seen) == run
	})
	return podsByNode(pods)[""]
}

// hostBasePods makes each base look like a Pod of this cluster: a real node
// per zone and, on it, a Running Pod whose IP is the base's IP. The
// controller copies the zone of that node onto the base's virtual node. Call
// it before the bases start: the controller looks the host up once, when it
// starts serving a base.
func (e *env) hostBasePods(zones map[string]string) {
	e.t.Helper()
	ctx := e.t.Context()
	hosts := map[string]string{}
	for ip, zone := range zones {
		host := hosts[zone]
		if host == "" {
			host = "host-" + zone + "-" + e.name
			hosts[zone] = host
			_, err := e.client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
				Name:   host,
				Labels: map[string]string{corev1.LabelTopologyZone: zone, corev1.LabelTopologyRegion: "region-1", corev1.LabelHostname: host},
			}}, metav1.CreateOptions{})
			require.NoError(e.t, err)
			e.t.Cleanup(func() {
				_ = e.client.CoreV1().Nodes().Delete(context.WithoutCancel(ctx), host, metav1.DeleteOptions{})
			})
		}
		name := "java-base-" + strings.ReplaceAll(ip, ".", "-")
		p, err := e.client.CoreV1().Pods(e.namespace).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "java-base"}},
			Spec:       corev1.PodSpec{NodeName: host, Containers: []corev1.Container{{Name: "base", Image: "example.test/base:1"}}},
		}, metav1.CreateOptions{})
		require.NoError(e.t, err)
		e.t.Cleanup(func() {
			// No kubelet runs on the host node to finish a graceful delete.
			_ = e.client.CoreV1().Pods(e.namespace).Delete(context.WithoutCancel(ctx), name, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))})
		})
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}, HostIP: "192.0.2.1"}
		_, err = e.client.CoreV1().Pods(e.namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		require.NoError(e.t, err)
	}
}

// requireSchedulable proves a node was a valid target all along: a bare pod
// tolerating the virtual-node taint and pinned to it by node selector gets
// bound to it. The pod is force-deleted afterwards (no kubelet runs there).
func (e *env) requireSchedulable(nodeName string) {
	e.t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probe-" + nodeName},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{corev1.LabelHostname: nodeName},
			Tolerations: []corev1.Toleration{{
				Key: "schedule.koupleless.io/virtual-node", Operator: corev1.TolerationOpEqual, Value: "True", Effect: corev1.TaintEffectNoExecute,
			}},
			Containers: []corev1.Container{{Name: "probe", Image: "example.test/probe:1"}},
		},
	}
	e.createPod(p)
	defer func() {
		_ = e.client.CoreV1().Pods(e.namespace).Delete(context.WithoutCancel(e.t.Context()), p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))})
	}()
	e.waitPod(p.Name, "bound to "+nodeName, func(p *corev1.Pod) bool { return p.Spec.NodeName == nodeName })
}

// scaleDeployment sets replicas through the scale subresource, as
// `kubectl scale` does.
func (e *env) scaleDeployment(name string, n int32) {
	e.t.Helper()
	require.NoError(e.t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := e.client.AppsV1().Deployments(e.namespace).GetScale(e.t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.Spec.Replicas = n
		_, err = e.client.AppsV1().Deployments(e.namespace).UpdateScale(e.t.Context(), name, s, metav1.UpdateOptions{})
		return err
	}))
}

// scaleReplicaSet sets replicas through the scale subresource.
func (e *env) scaleReplicaSet(name string, n int32) {
	e.t.Helper()
	require.NoError(e.t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := e.client.AppsV1().ReplicaSets(e.namespace).GetScale(e.t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.Spec.Replicas = n
		_, err = e.client.AppsV1().ReplicaSets(e.namespace).UpdateScale(e.t.Context(), name, s, metav1.UpdateOptions{})
		return err
	}))
}

// replicaSet is a module ReplicaSet of biz name:version with at most one
// replica per base.
func replicaSet(rsName, biz, version string, replicas int32) *appsv1.ReplicaSet {
	labels := map[string]string{labelModuleName: biz, labelModuleVersion: version, "module-controller.koupleless.io/component": "module"}
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: rsName},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{labelModuleName: biz}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name:  biz,
						Image: "https://modules.example.test/" + biz + "-" + version + "-ark-biz.jar",
						Env:   []corev1.EnvVar{{Name: "BIZ_VERSION", Value: version}},
					}},
					Affinity: &corev1.Affinity{
						NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
							NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
								{Key: "base.koupleless.io/stack", Operator: corev1.NodeSelectorOpIn, Values: []string{"java"}},
								{Key: "base.koupleless.io/name", Operator: corev1.NodeSelectorOpIn, Values: []string{"base"}},
							}}},
						}},
						PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
							LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{labelModuleName: biz}},
							TopologyKey:   corev1.LabelHostname,
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
