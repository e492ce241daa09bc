//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/yaml"

	"github.com/moduleops/module-controller/e2e/framework"
	"github.com/moduleops/module-controller/pkg/basesim"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// Helpers shared by the rolling-update and batch-update strategy tests.

// loadSample reads a Deployment from deploy/samples/<rel>, strictly: a field
// the API does not know fails the test.
func loadSample(t *testing.T, rel string) *appsv1.Deployment {
	t.Helper()
	raw, err := os.ReadFile(samplePath(t, rel))
	require.NoError(t, err)
	var d appsv1.Deployment
	require.NoError(t, yaml.UnmarshalStrict(raw, &d), rel)
	return &d
}

// samplePath returns the path of deploy/samples/<rel>.
func samplePath(t *testing.T, rel string) string {
	t.Helper()
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	return filepath.Join(root, "deploy", "samples", rel)
}

// confine puts a sample into the env's namespace and restricts every node
// selector term to the env's virtual nodes, so that the sample's pods land
// only on this test's bases. Nothing else of the sample changes.
func (e *env) confine(d *appsv1.Deployment) *appsv1.Deployment {
	d.Namespace = e.namespace
	aff := d.Spec.Template.Spec.Affinity
	require.NotNil(e.t, aff, "the sample has an affinity")
	require.NotNil(e.t, aff.NodeAffinity, "the sample has a node affinity")
	terms := aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	for i := range terms {
		terms[i].MatchExpressions = append(terms[i].MatchExpressions, corev1.NodeSelectorRequirement{
			Key: "virtual-kubelet.koupleless.io/env", Operator: corev1.NodeSelectorOpIn, Values: []string{e.name},
		})
	}
	return d
}

// startBases starts n simulated bases with identities prefix.1 … prefix.n
// and waits until their nodes are Ready.
func (e *env) startBases(prefix string, n int, mod func(*basesim.Config)) []*basesim.Base {
	e.t.Helper()
	bases := make([]*basesim.Base, 0, n)
	for i := 1; i <= n; i++ {
		bases = append(bases, e.startBase(fmt.Sprintf("%s.%d", prefix, i), mod))
	}
	for _, b := range bases {
		e.waitNode(b.Identity(), "Ready", isReady)
	}
	return bases
}

// available reports a pod that serves: Running, Ready and not being deleted.
func available(p *corev1.Pod) bool {
	return p.DeletionTimestamp == nil && running(p)
}

// podTally follows the pods of one label selector through an informer and
// keeps the fewest available pods seen since Arm. Every watch event changes
// one pod, so the minimum is exact for the sequence of states the API server
// went through, not a sample of it.
type podTally struct {
	mu     sync.Mutex
	pods   map[string]*corev1.Pod
	armed  bool
	min    int
	minAt  string // the pods when the minimum was first reached
	events int

	deactivated map[string]bool // pods seen Failed with reason BizDeactivate

	floor      int       // dips are counted below this
	belowSince time.Time // zero unless below the floor now
	dips       int
	belowTotal time.Duration
	longestDip time.Duration
}

// tallyPods starts a podTally on the env's namespace; it stops with the test.
func (e *env) tallyPods(selector string) *podTally {
	e.t.Helper()
	pt := &podTally{pods: map[string]*corev1.Pod{}, deactivated: map[string]bool{}}
	f := informers.NewSharedInformerFactoryWithOptions(e.client, 0, informers.WithNamespace(e.namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
	inf := f.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { pt.set(obj, false) },
		UpdateFunc: func(_, obj any) { pt.set(obj, false) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			pt.set(obj, true)
		},
	})
	require.NoError(e.t, err)
	ctx, cancel := context.WithCancel(e.t.Context())
	f.Start(ctx.Done())
	e.t.Cleanup(func() { cancel(); f.Shutdown() })
	require.True(e.t, cache.WaitForCacheSync(ctx.Done(), inf.HasSynced))
	return pt
}

func (pt *podTally) set(obj any, deleted bool) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	pt.mu.Lock()
	defer pt.mu.Unlock()
	pt.events++
	if deleted {
		delete(pt.pods, p.Name)
	} else {
		pt.pods[p.Name] = p
		if p.Status.Phase == corev1.PodFailed && p.Status.Reason == "BizDeactivate" {
			pt.deactivated[p.Name] = true
		}
	}
	if !pt.armed {
		return
	}
	n := pt.availableLocked()
	if n < pt.min {
		pt.min, pt.minAt = n, pt.describeLocked()
	}
	switch now := time.Now(); {
	case n < pt.floor && pt.belowSince.IsZero():
		pt.belowSince = now
		pt.dips++
	case n >= pt.floor && !pt.belowSince.IsZero():
		d := now.Sub(pt.belowSince)
		pt.belowTotal += d
		pt.longestDip = max(pt.longestDip, d)
		pt.belowSince = time.Time{}
	}
}

func (pt *podTally) availableLocked() int {
	n := 0
	for _, p := range pt.pods {
		if available(p) {
			n++
		}
	}
	return n
}

func (pt *podTally) describeLocked() string {
	names := make([]string, 0, len(pt.pods))
	for name := range pt.pods {
		names = append(names, name)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, name := range names {
		p := pt.pods[name]
		fmt.Fprintf(&b, "\n  %s v=%s available=%v terminating=%v %s", name, p.Labels["module.koupleless.io/version"],
			available(p), p.DeletionTimestamp != nil, describePod(p))
	}
	return b.String()
}

// Arm starts the minimum at the current number of available pods and starts
// timing the dips below floor.
func (pt *podTally) Arm(floor int) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	pt.armed, pt.min, pt.minAt, pt.floor = true, pt.availableLocked(), pt.describeLocked(), floor
}

// Deactivated returns the names of the pods seen Failed with reason
// BizDeactivate.
func (pt *podTally) Deactivated() []string {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	out := make([]string, 0, len(pt.deactivated))
	for name := range pt.deactivated {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// Dips returns how often the available pods dropped below the floor since
// Arm, how long they stayed below in all, and the longest dip, as seen by
// the watch.
func (pt *podTally) Dips() (int, time.Duration, time.Duration) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	return pt.dips, pt.belowTotal, pt.longestDip
}

// Min returns the fewest available pods seen since Arm, the pods at that
// moment and the number of watch events seen.
func (pt *podTally) Min() (int, string, int) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	return pt.min, pt.minAt, pt.events
}

// baseSampler polls the simulated bases every few milliseconds and keeps
// statistics on the ACTIVATED versions of one biz name.
type baseSampler struct {
	bases []*basesim.Base
	name  string

	mu         sync.Mutex
	samples    int
	minTotal   int      // fewest ACTIVATED instances over all bases
	minTotalAt string   // the bases at that sample
	maxPerBase int      // most ACTIVATED versions on one base
	notOne     []string // samples where a base did not run exactly one ACTIVATED version
	stop       context.CancelFunc
	done       chan struct{}
}

// sampleBases starts sampling the ACTIVATED versions of name on bases every
// interval until Stop.
func (e *env) sampleBases(bases []*basesim.Base, name string, interval time.Duration) *baseSampler {
	ctx, cancel := context.WithCancel(e.t.Context())
	s := &baseSampler{bases: bases, name: name, minTotal: int(^uint(0) >> 1), stop: cancel, done: make(chan struct{})}
	s.sample()
	go func() {
		defer close(s.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				s.sample()
			}
		}
	}()
	e.t.Cleanup(s.Stop)
	return s
}

// activeVersions returns the ACTIVATED versions of name on b, sorted.
func activeVersions(b *basesim.Base, name string) []string {
	var out []string
	for _, z := range b.Bizs() {
		if z.Name == name && z.State == protocol.BizActivated {
			out = append(out, z.Version)
		}
	}
	slices.Sort(out)
	return out
}

func (s *baseSampler) sample() {
	total, maxPer := 0, 0
	var desc strings.Builder
	var notOne []string
	for _, b := range s.bases {
		v := activeVersions(b, s.name)
		total += len(v)
		maxPer = max(maxPer, len(v))
		fmt.Fprintf(&desc, " %s=%v", b.Identity(), v)
		if len(v) != 1 {
			notOne = append(notOne, fmt.Sprintf("%s=%v", b.Identity(), v))
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples++
	if total < s.minTotal {
		s.minTotal, s.minTotalAt = total, desc.String()
	}
	s.maxPerBase = max(s.maxPerBase, maxPer)
	if len(notOne) > 0 && len(s.notOne) < 10 {
		s.notOne = append(s.notOne, strings.Join(notOne, " "))
	}
}

// Stop ends the sampling after one last sample; it is idempotent.
func (s *baseSampler) Stop() {
	s.stop()
	<-s.done
}

// MinTotal returns the fewest ACTIVATED instances seen over all bases in one
// sample, with that sample.
func (s *baseSampler) MinTotal() (int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.minTotal, s.minTotalAt
}

// MaxPerBase returns the most ACTIVATED versions seen on one base.
func (s *baseSampler) MaxPerBase() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxPerBase
}

// NotExactlyOne returns up to ten samples in which some base did not run
// exactly one ACTIVATED version.
func (s *baseSampler) NotExactlyOne() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.notOne)
}

// Samples returns the number of samples taken.
func (s *baseSampler) Samples() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}

// listPods lists the env's pods matching selector. Conditions polled by
// require.Never/Eventually call it from their own goroutine, which may still
// run when the test returns: a list cut short by the end of the test returns
// nothing rather than failing a finished test.
func (e *env) listPods(selector string) []corev1.Pod {
	e.t.Helper()
	pods, err := e.client.CoreV1().Pods(e.namespace).List(e.t.Context(), metav1.ListOptions{LabelSelector: selector})
	if err != nil && e.t.Context().Err() != nil {
		return nil
	}
	require.NoError(e.t, err)
	return pods.Items
}

// describePods formats pods for failure messages.
func describePods(pods []corev1.Pod) string {
	var b strings.Builder
	for i := range pods {
		fmt.Fprintf(&b, "\n  %s v=%s %s", pods[i].Name, pods[i].Labels["module.koupleless.io/version"], describePod(&pods[i]))
	}
	return b.String()
}

// podWaitingReason returns the reason of the pod's first waiting container, or "".
func podWaitingReason(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Waiting != nil {
			return cs.State.Waiting.Reason
		}
	}
	return ""
}
