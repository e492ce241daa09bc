//go:build e2e

package e2e

import (
	"slices"
	"strconv"
	"strings"
	"sync"
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

// TestDaemonSetPeerDeployment follows docs/strategies/daemonset.md with
// deploy/samples/daemonset.yaml, applied by kubectl: biz1 reaches every
// matching base and no other, a base that joins later gets it, a base that
// leaves takes its pod with it, and a rolling update replaces 0.0.1 by 0.0.2
// one base at a time, uninstalling before installing, as seen by the bases.
func TestDaemonSetPeerDeployment(t *testing.T) {
	for _, kind := range []string{"mosquitto", httpKind} {
		t.Run(kind, func(t *testing.T) { testDaemonSetPeerDeployment(t, kind) })
	}
}

func testDaemonSetPeerDeployment(t *testing.T, kind string) {
	e := newEnv(t, kind)
	// Each install takes this long at the base (RESOLVED, then ACTIVATED), so
	// the measured times include a module start, if a very quick one.
	const installTime = 300 * time.Millisecond
	withInstallTime := func(c *basesim.Config) { c.InstallDelay = installTime }
	bases := map[string]*basesim.Base{}
	for _, id := range []string{"10.21.0.1", "10.21.0.2", "10.21.0.3", "10.21.0.4", "10.21.0.5"} {
		bases[id] = e.startBase(id, withInstallTime)
	}
	// Bases the sample's node affinity rules out: another version, another name.
	others := map[string]*basesim.Base{
		"10.21.1.1": e.startBase("10.21.1.1", func(c *basesim.Config) { c.Version = "2.0.0" }),
		"10.21.1.2": e.startBase("10.21.1.2", func(c *basesim.Config) { c.Name = "other-base" }),
	}
	for id := range bases {
		e.waitNode(id, "Ready", isReady)
	}
	for id := range others {
		e.waitNode(id, "Ready", isReady)
	}

	var ds appsv1.DaemonSet
	decodeSample(t, "daemonset.yaml", &ds)
	start := time.Now()
	e.applySample("daemonset.yaml")
	e.waitPeer(ds.Name, bases, "0.0.1")
	t.Logf("MEASURED: DaemonSet of one module Running on %d bases %s after kubectl apply (install time at the base %s)", len(bases), time.Since(start).Round(time.Millisecond), installTime)
	e.requireUntouched(others)

	// A base that joins later gets the module without anyone touching the DaemonSet.
	start = time.Now()
	bases["10.21.0.6"] = e.startBase("10.21.0.6", withInstallTime)
	e.waitPeer(ds.Name, bases, "0.0.1")
	t.Logf("MEASURED: base joined → module Running on it %s after the base started", time.Since(start).Round(time.Millisecond))

	// A base that leaves (its process dies, no more heartbeats) loses its node
	// and its pod; the other bases keep theirs.
	gone := "10.21.0.1"
	start = time.Now()
	bases[gone].Stop()
	delete(bases, gone)
	e.waitNodeGone(gone)
	t.Logf("MEASURED: base stopped → node removed %s later", time.Since(start).Round(time.Millisecond))
	e.waitPods(biz1Selector, "no pod left on the departed base", waitLong, func(pods []corev1.Pod) bool {
		for _, p := range pods {
			if p.Spec.NodeName == e.nodeName(gone) {
				return false
			}
		}
		return true
	})
	t.Logf("MEASURED: base stopped → its pod deleted %s later", time.Since(start).Round(time.Millisecond))
	e.waitPeer(ds.Name, bases, "0.0.1")

	// Rolling update to 0.0.2 across the remaining five bases.
	require.Len(t, bases, 5)
	for _, b := range bases {
		b.ResetReceived()
	}
	sampler := sampleRollout(t, bases, "biz1")
	start = time.Now()
	e.setDaemonSetVersion(ds.Name, "0.0.2")
	e.waitPeer(ds.Name, bases, "0.0.2")
	elapsed := time.Since(start)
	sampler.finish()
	t.Logf("MEASURED: DaemonSet rolling update 0.0.1 → 0.0.2 across %d bases took %s (install time at the base %s; %d samples of the bases)", len(bases), elapsed.Round(time.Millisecond), installTime, sampler.samples)

	require.Empty(t, sampler.both, "remove-before-install: no base ever held both versions")
	require.LessOrEqual(t, sampler.maxWithout, 1, "maxUnavailable 1: at most one base without an active biz1 at a time")
	require.Equal(t, 1, sampler.maxWithout, "each base was without biz1 for a moment (remove, then install)")
	for id, b := range bases {
		un := commandIndex(b, protocol.CommandUninstallBiz, "biz1:0.0.1")
		in := commandIndex(b, protocol.CommandInstallBiz, "biz1:0.0.2")
		require.GreaterOrEqual(t, un, 0, "base %s: 0.0.1 uninstalled", id)
		require.Greater(t, in, un, "base %s: 0.0.2 installed after 0.0.1 was uninstalled", id)
		require.Equal(t, 1, b.ReceivedCount(protocol.CommandInstallBiz, "biz1:0.0.2"), "base %s", id)
		require.Zero(t, b.ReceivedCount(protocol.CommandInstallBiz, "biz1:0.0.1"), "base %s: old version never reinstalled", id)
	}
	e.requireUntouched(others)
}

// waitPeer waits until the DaemonSet runs version on exactly the given bases:
// one Running pod of that version per base's node and no other pod, the
// DaemonSet's status agreeing, and every base running exactly biz1 at version
// and nothing else.
func (e *env) waitPeer(name string, bases map[string]*basesim.Base, version string) {
	e.t.Helper()
	var ds *appsv1.DaemonSet
	require.Eventuallyf(e.t, func() bool {
		var err error
		ds, err = e.client.AppsV1().DaemonSets(e.namespace).Get(e.t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		n := int32(len(bases))
		s := ds.Status
		return s.ObservedGeneration == ds.Generation && s.DesiredNumberScheduled == n && s.CurrentNumberScheduled == n &&
			s.UpdatedNumberScheduled == n && s.NumberAvailable == n && s.NumberReady == n && s.NumberMisscheduled == 0
	}, waitLong, poll, "DaemonSet %s on %d bases; status: %+v", name, len(bases), ptrStatus(&ds))
	e.waitPods(biz1Selector, "one Running "+version+" pod per matching base", waitLong, func(pods []corev1.Pod) bool {
		if len(pods) != len(bases) {
			return false
		}
		seen := map[string]bool{}
		for i := range pods {
			p := &pods[i]
			id, _, mine := cutNode(p.Spec.NodeName, e.name)
			if !mine || bases[id] == nil || seen[id] || !running(p) || p.Labels[labelModuleVersion] != version {
				return false
			}
			seen[id] = true
		}
		return true
	})
	require.Eventuallyf(e.t, func() bool {
		for _, b := range bases {
			bizs := b.Bizs()
			if len(bizs) != 1 || bizs[0].Key() != "biz1:"+version || bizs[0].State != protocol.BizActivated {
				return false
			}
		}
		return true
	}, waitLong, poll, "every base runs biz1:%s only: %v", version, describeBasesLazy(bases))
}

// ptrStatus prints a DaemonSet's status when the failure message is printed.
type dsStatus struct{ ds **appsv1.DaemonSet }

func ptrStatus(ds **appsv1.DaemonSet) dsStatus { return dsStatus{ds} }

func itoa(n int32) string { return strconv.Itoa(int(n)) }

func (s dsStatus) String() string {
	if *s.ds == nil {
		return "none"
	}
	st := (*s.ds).Status
	return strings.Join([]string{
		"desired=" + itoa(st.DesiredNumberScheduled), "current=" + itoa(st.CurrentNumberScheduled),
		"updated=" + itoa(st.UpdatedNumberScheduled), "ready=" + itoa(st.NumberReady),
		"available=" + itoa(st.NumberAvailable), "misscheduled=" + itoa(st.NumberMisscheduled),
	}, " ")
}

// basesLazy prints what each base runs when the failure message is printed.
type basesLazy map[string]*basesim.Base

func describeBasesLazy(b map[string]*basesim.Base) basesLazy { return basesLazy(b) }

func (b basesLazy) String() string { return describeBaseMap(b) }

// requireUntouched checks that bases outside the workload's node affinity got
// no pod and no command.
func (e *env) requireUntouched(bases map[string]*basesim.Base) {
	e.t.Helper()
	byNode := podsByNode(e.pods(biz1Selector))
	for id, b := range bases {
		require.Empty(e.t, byNode[e.nodeName(id)], "base %s is outside the node affinity", id)
		require.Zero(e.t, b.ReceivedCount(protocol.CommandInstallBiz, ""), "base %s received an install", id)
		require.Empty(e.t, b.Bizs(), "base %s", id)
	}
}

// setDaemonSetVersion changes the module version of the DaemonSet's template:
// image, BIZ_VERSION and version label, as docs/strategies/daemonset.md says.
func (e *env) setDaemonSetVersion(name, version string) {
	e.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ds, err := e.client.AppsV1().DaemonSets(e.namespace).Get(e.t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		setTemplateVersion(&ds.Spec.Template, version)
		_, err = e.client.AppsV1().DaemonSets(e.namespace).Update(e.t.Context(), ds, metav1.UpdateOptions{})
		return err
	})
	require.NoError(e.t, err)
}

// setTemplateVersion points the template's biz1 container at version.
func setTemplateVersion(tpl *corev1.PodTemplateSpec, version string) {
	tpl.Labels[labelModuleVersion] = version
	c := &tpl.Spec.Containers[0]
	old := c.Env[0].Value
	c.Image = strings.Replace(c.Image, "-"+old+"-", "-"+version+"-", 1)
	c.Env[0].Value = version
}

// rolloutSampler watches simulated bases during a rollout, as often as it
// can: how many bases at once had no ACTIVATED version of the biz, and which
// bases ever held two versions.
type rolloutSampler struct {
	stop, done chan struct{}
	stopOnce   func()
	samples    int
	maxWithout int
	both       []string
}

func sampleRollout(t *testing.T, bases map[string]*basesim.Base, biz string) *rolloutSampler {
	s := &rolloutSampler{stop: make(chan struct{}), done: make(chan struct{})}
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(s.stop) }); <-s.done })
	go func() {
		defer close(s.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			without := 0
			for id, b := range bases {
				if len(activeBizVersions(b, biz)) == 0 {
					without++
				}
				versions := 0
				for _, z := range b.Bizs() {
					if z.Name == biz {
						versions++
					}
				}
				if versions > 1 && !slices.Contains(s.both, id) {
					s.both = append(s.both, id)
				}
			}
			s.maxWithout = max(s.maxWithout, without)
			s.samples++
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	s.stopOnce = func() { once.Do(func() { close(s.stop) }) }
	return s
}

// finish stops sampling; the results are stable afterwards.
func (s *rolloutSampler) finish() {
	s.stopOnce()
	<-s.done
}
