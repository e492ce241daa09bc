//go:build e2e

package chaos

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/yaml"

	"github.com/moduleops/module-controller/e2e/framework"
	"github.com/moduleops/module-controller/pkg/basesim"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// Labels and names the suite reads (e2e is black-box: the values, not the
// provider's constants).
const (
	labelEnv      = "virtual-kubelet.koupleless.io/env"
	labelBizName  = "module.koupleless.io/name"
	labelBizVer   = "module.koupleless.io/version"
	labelStrategy = "virtual-kubelet.koupleless.io/strategy"
	envBizVersion = "BIZ_VERSION"

	// The three workloads, one biz name each so they never conflict on a base.
	bizDaemonSet = "chaosds"
	bizPeer      = "chaospeer"
	bizNonPeer   = "chaosnp"
	firstVersion = "0.0.1"
)

// workloads lists the biz names of the three workloads.
var workloads = []string{bizDaemonSet, bizPeer, bizNonPeer}

// simBase is one simulated base behind its own link to the broker.
type simBase struct {
	*basesim.Base
	link *framework.Proxy
	gone bool // disappeared for good (base gone): its node should be removed
}

// world is one run of the suite on one broker: a control plane, a broker, a
// supervised controller, the bases and the three workloads.
type world struct {
	t        *testing.T
	kind     framework.BrokerKind
	set      settings
	cluster  *framework.Cluster
	client   kubernetes.Interface
	broker   *framework.Broker // Mosquitto only; the embedded broker lives in the controller
	ctrl     *supervisor
	env, ns  string
	bases    []*simBase
	nodes    *nodeLog
	pods     *podLog
	versions map[string]string // biz name → the version its workload runs now
	rows     []row
}

// newWorld starts everything and rolls the workloads out.
func newWorld(t *testing.T, kind framework.BrokerKind, set settings) *world {
	t.Helper()
	began := time.Now()
	w := &world{t: t, kind: kind, set: set, env: framework.RandomName("chaos", 5), versions: map[string]string{}}
	w.ns = "ns-" + w.env
	w.cluster = framework.StartCluster(t, framework.Options{})
	w.client = w.cluster.Client

	opts := framework.ControllerOptions{Kubeconfig: w.cluster.Kubeconfig, Env: w.env, Args: []string{"--log-level=info"}}
	if kind == framework.Mosquitto {
		w.broker = framework.StartBroker(t, framework.Mosquitto)
		opts.BrokerURL = w.broker.URL
	}
	w.ctrl = supervise(t, framework.StartController(t, opts))
	upstream := strings.TrimPrefix(w.ctrl.BrokerURL(), "tcp://")

	_, err := w.client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: w.ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	w.nodes = watchNodes(t, w.client, w.env)
	w.pods = watchPods(t, w.client, w.ns)

	ids := basesim.IPIdentities(netip.MustParseAddr("10.77.0.1"))
	for i := range set.bases {
		link, err := framework.StartProxy(upstream)
		require.NoError(t, err)
		t.Cleanup(link.Close)
		b, err := basesim.New(basesim.Config{
			Broker:          "tcp://" + link.Address(),
			Env:             w.env,
			Identity:        ids(i),
			InstallDelay:    300 * time.Millisecond,
			UninstallDelay:  100 * time.Millisecond,
			RestartDowntime: set.restartDowntime,
		})
		require.NoError(t, err)
		require.NoError(t, b.Start(t.Context()))
		t.Cleanup(b.Stop)
		w.bases = append(w.bases, &simBase{Base: b, link: link})
	}
	w.deploy()
	s, _ := w.waitConverged(set.converge)
	require.Empty(t, s.problems, "the workloads did not roll out on %d bases in %s", set.bases, set.converge)
	t.Logf("%s: %d bases, %d module pods Running in %s", kind, set.bases, s.running, time.Since(began).Round(time.Second))
	return w
}

// live returns the bases that should have a node.
func (w *world) live() []*simBase {
	var out []*simBase
	for _, b := range w.bases {
		if !b.gone {
			out = append(out, b)
		}
	}
	return out
}

// nodeName is the virtual node of base id.
func (w *world) nodeName(id string) string { return "vnode." + id + "." + w.env }

// hold keeps a fault in place for d (a fault's duration, not a wait for a
// condition); it returns early if the test ends.
func (w *world) hold(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-w.t.Context().Done():
	}
}

// deploy creates the DaemonSet, the peer Deployment and the non-peer
// Deployment from deploy/samples, each with its own biz name and confined to
// this world's env.
func (w *world) deploy() {
	t, ctx := w.t, w.t.Context()
	var ds appsv1.DaemonSet
	w.loadSample("daemonset.yaml", &ds)
	ds.Name, ds.Namespace = "chaos-ds", w.ns
	w.shape(&ds.Spec.Template, ds.Spec.Selector, bizDaemonSet, firstVersion)
	_, err := w.client.AppsV1().DaemonSets(w.ns).Create(ctx, &ds, metav1.CreateOptions{})
	require.NoError(t, err)

	var peer appsv1.Deployment
	w.loadSample("peer-deployment.yaml", &peer)
	require.Equal(t, "peer", peer.Labels[labelStrategy], "the peer sample asks for the replica sync")
	peer.Name, peer.Namespace = "chaos-peer", w.ns
	w.shape(&peer.Spec.Template, peer.Spec.Selector, bizPeer, firstVersion)
	_, err = w.client.AppsV1().Deployments(w.ns).Create(ctx, &peer, metav1.CreateOptions{})
	require.NoError(t, err)

	var np appsv1.Deployment
	w.loadSample("deployment-nonpeer.yaml", &np)
	np.Name, np.Namespace = "chaos-np", w.ns
	np.Spec.Replicas = new(int32(w.set.nonPeerReplicas))
	w.shape(&np.Spec.Template, np.Spec.Selector, bizNonPeer, firstVersion)
	_, err = w.client.AppsV1().Deployments(w.ns).Create(ctx, &np, metav1.CreateOptions{})
	require.NoError(t, err)
	for _, biz := range workloads {
		w.versions[biz] = firstVersion
	}
}

// loadSample reads deploy/samples/<name> strictly into obj.
func (w *world) loadSample(name string, obj any) {
	root, err := framework.RepoRoot()
	require.NoError(w.t, err)
	raw, err := os.ReadFile(filepath.Join(root, "deploy", "samples", name))
	require.NoError(w.t, err)
	require.NoError(w.t, yaml.UnmarshalStrict(raw, obj), name)
}

// shape turns a sample's biz1 into biz at version and confines its node
// affinity to this world's env; everything else of the sample stays.
func (w *world) shape(tpl *corev1.PodTemplateSpec, sel *metav1.LabelSelector, biz, version string) {
	sel.MatchLabels[labelBizName] = biz
	setVersion(tpl, biz, version)
	aff := tpl.Spec.Affinity
	require.NotNil(w.t, aff.NodeAffinity, "the sample has a node affinity")
	terms := aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	for i := range terms {
		terms[i].MatchExpressions = append(terms[i].MatchExpressions, corev1.NodeSelectorRequirement{
			Key: labelEnv, Operator: corev1.NodeSelectorOpIn, Values: []string{w.env},
		})
	}
}

// setVersion makes the template run biz at version: labels, container name,
// image and BIZ_VERSION, and the anti-affinity selectors that name the biz.
func setVersion(tpl *corev1.PodTemplateSpec, biz, version string) {
	tpl.Labels[labelBizName] = biz
	tpl.Labels[labelBizVer] = version
	c := &tpl.Spec.Containers[0]
	c.Name = biz
	c.Image = bizURL(biz, version)
	for i := range c.Env {
		if c.Env[i].Name == envBizVersion {
			c.Env[i].Value = version
		}
	}
	if aa := tpl.Spec.Affinity.PodAntiAffinity; aa != nil {
		for i := range aa.RequiredDuringSchedulingIgnoredDuringExecution {
			ml := aa.RequiredDuringSchedulingIgnoredDuringExecution[i].LabelSelector.MatchLabels
			ml[labelBizName] = biz
			if _, ok := ml[labelBizVer]; ok {
				ml[labelBizVer] = version
			}
		}
	}
}

func bizURL(biz, version string) string {
	return "https://modules.example.test/" + biz + "-" + version + "-ark-biz.jar"
}

// bumpDaemonSet starts a rolling update of the DaemonSet to the next version.
func (w *world) bumpDaemonSet() string {
	next := nextVersion(w.versions[bizDaemonSet])
	require.NoError(w.t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ds, err := w.client.AppsV1().DaemonSets(w.ns).Get(w.t.Context(), "chaos-ds", metav1.GetOptions{})
		if err != nil {
			return err
		}
		setVersion(&ds.Spec.Template, bizDaemonSet, next)
		_, err = w.client.AppsV1().DaemonSets(w.ns).Update(w.t.Context(), ds, metav1.UpdateOptions{})
		return err
	}))
	w.versions[bizDaemonSet] = next
	return next
}

// nextVersion turns 0.0.N into 0.0.N+1.
func nextVersion(v string) string {
	var n int
	if _, err := fmt.Sscanf(v, "0.0.%d", &n); err != nil {
		panic("version " + v + " is not 0.0.N")
	}
	return fmt.Sprintf("0.0.%d", n+1)
}

// allKeys returns every biz key the workloads ran or run: the keys the
// suite counts commands for.
func (w *world) allKeys() []string {
	var keys []string
	for _, biz := range workloads {
		last := w.versions[biz]
		for v := firstVersion; ; v = nextVersion(v) {
			keys = append(keys, protocol.BizKey(biz, v))
			if v == last {
				break
			}
		}
	}
	return keys
}

// nodeLog follows this world's nodes and records every deletion.
type nodeLog struct {
	mu      sync.Mutex
	deleted []deletedNode
}

type deletedNode struct {
	name string
	uid  types.UID
	at   time.Time
}

func watchNodes(t *testing.T, client kubernetes.Interface, env string) *nodeLog {
	t.Helper()
	nl := &nodeLog{}
	f := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = labelEnv + "=" + env }))
	inf := f.Core().V1().Nodes().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if n, ok := obj.(*corev1.Node); ok {
				nl.mu.Lock()
				nl.deleted = append(nl.deleted, deletedNode{name: n.Name, uid: n.UID, at: time.Now()})
				nl.mu.Unlock()
			}
		},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	f.Start(ctx.Done())
	t.Cleanup(func() { cancel(); f.Shutdown() })
	require.True(t, cache.WaitForCacheSync(ctx.Done(), inf.HasSynced))
	return nl
}

// since returns the deletions recorded at or after mark.
func (nl *nodeLog) since(mark time.Time) []deletedNode {
	nl.mu.Lock()
	defer nl.mu.Unlock()
	var out []deletedNode
	for _, d := range nl.deleted {
		if !d.at.Before(mark) {
			out = append(out, d)
		}
	}
	return out
}

// podLog follows this world's module pods and records every deletion.
type podLog struct {
	mu      sync.Mutex
	deleted []deletedPod
}

type deletedPod struct {
	name, node, key string
	at              time.Time
}

func watchPods(t *testing.T, client kubernetes.Interface, ns string) *podLog {
	t.Helper()
	pl := &podLog{}
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns))
	inf := f.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok && len(p.Spec.Containers) > 0 {
				pl.mu.Lock()
				pl.deleted = append(pl.deleted, deletedPod{name: p.Name, node: p.Spec.NodeName, key: podKey(p), at: time.Now()})
				pl.mu.Unlock()
			}
		},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	f.Start(ctx.Done())
	t.Cleanup(func() { cancel(); f.Shutdown() })
	require.True(t, cache.WaitForCacheSync(ctx.Done(), inf.HasSynced))
	return pl
}

// since returns the deletions recorded at or after mark.
func (pl *podLog) since(mark time.Time) []deletedPod {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	var out []deletedPod
	for _, d := range pl.deleted {
		if !d.at.Before(mark) {
			out = append(out, d)
		}
	}
	return out
}
