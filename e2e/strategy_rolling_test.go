//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/moduleops/module-controller/pkg/basesim"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// rollingCase is one configuration of docs/strategies/rolling-update.md.
type rollingCase struct {
	name       string
	broker     string
	bases      int
	replicas   int32
	maxSurge   int
	maxUnavail int
	// installDelay is how long each install takes at the bases.
	installDelay time.Duration
	// activation is the bases' mode for a second version of an active biz.
	activation basesim.Activation
	// perVersionAntiAffinity narrows the sample's anti-affinity to the
	// module name and version, so that a new-version pod may land on a base
	// that runs the old version.
	perVersionAntiAffinity bool
	// revisionHistoryLimit, if set, replaces the sample's.
	revisionHistoryLimit *int32
}

// TestRollingUpdate updates the sample Deployment deploy/samples/
// deployment-rolling-update.yaml from biz1 0.0.1 to 0.0.2 in each
// configuration of docs/strategies/rolling-update.md that installs before it
// removes. Throughout the rollout it counts, through a pod watch, the
// available (Running, Ready, not terminating) module pods and, by polling the
// simulated bases, the ACTIVATED biz1 instances; neither may drop below
// replicas - maxUnavailable. At the end every pod and every base runs 0.0.2,
// each base that ran 0.0.1 received exactly one uninstallBiz for it, and no
// base still has it.
func TestRollingUpdate(t *testing.T) {
	cases := []rollingCase{
		// Spare bases: name-only anti-affinity, surge pods land on bases that
		// run no biz1. Works with every base activation mode.
		{name: "spare-bases/surge1-unavailable0", broker: "embedded", bases: 5, replicas: 3, maxSurge: 1, maxUnavail: 0},
		{name: "spare-bases/surge2-unavailable1", broker: "mosquitto", bases: 5, replicas: 3, maxSurge: 2, maxUnavail: 1,
			installDelay: 300 * time.Millisecond},
		// The same install-before-remove rollout over the arklet HTTP tunnel.
		{name: "http/surge1-unavailable0", broker: httpKind, bases: 5, replicas: 3, maxSurge: 1, maxUnavail: 0,
			installDelay: 300 * time.Millisecond},
		// One pod per base on every base: the new version lands next to the
		// old one, which the bases must keep active (multi-version bases).
		{name: "multi-version-bases/surge1-unavailable0", broker: "mosquitto", bases: 5, replicas: 5, maxSurge: 1, maxUnavail: 0,
			installDelay: 300 * time.Millisecond, activation: basesim.ActivateAll, perVersionAntiAffinity: true},
		// One pod per base on every base, on bases that activate the new
		// version and deactivate the old one: the handover happens inside the
		// base, the old pod goes Failed (BizDeactivate), and deleting the old
		// ReplicaSets at the end of the rollout removes those pods and with
		// them the old version.
		{name: "activate-new-bases/surge1-unavailable0", broker: "embedded", bases: 5, replicas: 5, maxSurge: 1, maxUnavail: 0,
			installDelay: 300 * time.Millisecond, activation: basesim.ActivateNew, perVersionAntiAffinity: true, revisionHistoryLimit: ptr(int32(0))},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { testRollingUpdate(t, tc, fmt.Sprintf("10.31.%d", i)) })
	}
}

func testRollingUpdate(t *testing.T, tc rollingCase, prefix string) {
	e := newEnv(t, tc.broker)
	bases := e.startBases(prefix, tc.bases, func(c *basesim.Config) {
		c.Activation, c.InstallDelay = tc.activation, tc.installDelay
	})

	d := e.confine(loadSample(t, "deployment-rolling-update.yaml"))
	d.Spec.Replicas = &tc.replicas
	surge, unavail := intstr.FromInt32(int32(tc.maxSurge)), intstr.FromInt32(int32(tc.maxUnavail))
	d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: &surge, MaxUnavailable: &unavail}
	if tc.perVersionAntiAffinity {
		setAntiAffinityVersion(t, &d.Spec.Template, "0.0.1")
	}
	if tc.revisionHistoryLimit != nil {
		d.Spec.RevisionHistoryLimit = tc.revisionHistoryLimit
	}
	const selector = "module.koupleless.io/name=biz1"
	tally := e.tallyPods(selector)

	began := time.Now()
	d, err := e.client.AppsV1().Deployments(e.namespace).Create(t.Context(), d, metav1.CreateOptions{})
	require.NoError(t, err)
	e.waitRolledOut(d.Name, "0.0.1", tc.replicas)
	t.Logf("%d replicas of 0.0.1 available %s after create", tc.replicas, time.Since(began).Round(time.Millisecond))
	v1Bases := map[string]bool{}
	for _, b := range bases {
		if _, ok := b.Biz("biz1", "0.0.1"); ok {
			v1Bases[b.Identity()] = true
		}
	}
	require.Len(t, v1Bases, int(tc.replicas), "one 0.0.1 per base")

	// The update, as `kubectl apply` of the edited sample does it.
	floor := int(tc.replicas) - tc.maxUnavail
	tally.Arm(floor)
	sampler := e.sampleBases(bases, "biz1", 10*time.Millisecond)
	began = time.Now()
	d = e.updateDeployment(d.Name, func(d *appsv1.Deployment) {
		setVersion(&d.Spec.Template, "biz1", "0.0.1", "0.0.2")
		if tc.perVersionAntiAffinity {
			setAntiAffinityVersion(t, &d.Spec.Template, "0.0.2")
		}
	})
	e.waitRolledOut(d.Name, "0.0.2", tc.replicas)
	rolledOut := time.Since(began)
	require.Eventually(t, func() bool {
		for _, b := range bases {
			if _, ok := b.Biz("biz1", "0.0.1"); ok {
				return false
			}
		}
		return true
	}, waitLong, poll, "0.0.1 uninstalled from every base")
	cleaned := time.Since(began)
	sampler.Stop()
	t.Logf("rolling update of %d replicas over %d bases (maxSurge=%d maxUnavailable=%d, install %s): Deployment complete %s, 0.0.1 gone from every base %s after the update",
		tc.replicas, tc.bases, tc.maxSurge, tc.maxUnavail, tc.installDelay, rolledOut.Round(time.Millisecond), cleaned.Round(time.Millisecond))

	minPods, at, events := tally.Min()
	dips, below, longest := tally.Dips()
	t.Logf("fewest available pods during the rollout: %d (floor %d) over %d watch events; %d dips below the floor, %s in all, longest %s",
		minPods, floor, events, dips, below.Round(time.Millisecond), longest.Round(time.Millisecond))
	deactivated := tally.Deactivated()
	t.Logf("pods that went Failed with BizDeactivate: %d", len(deactivated))
	if tc.activation == basesim.ActivateNew && tc.perVersionAntiAffinity {
		require.Len(t, deactivated, int(tc.replicas), "every old pod was superseded at its base")
		// The handover inside a base is one step, but its two pod status
		// writes (old pod Failed, new pod Running) reach the API server
		// separately, in either order: the count may dip by one between them.
		require.GreaterOrEqual(t, minPods, floor-1, "available pods dropped by more than one pod below replicas - maxUnavailable; pods then:%s", at)
	} else {
		require.Empty(t, deactivated, "no pod is superseded")
		require.GreaterOrEqual(t, minPods, floor, "available pods dropped below replicas - maxUnavailable; pods then:%s", at)
	}
	minActive, atBases := sampler.MinTotal()
	t.Logf("fewest ACTIVATED biz1 at the bases: %d over %d samples; most versions active on one base: %d", minActive, sampler.Samples(), sampler.MaxPerBase())
	require.GreaterOrEqual(t, minActive, floor, "ACTIVATED biz1 at the bases dropped below replicas - maxUnavailable; bases then:%s", atBases)

	// The new version everywhere, the old one nowhere.
	running := 0
	for _, b := range bases {
		versions := activeVersions(b, "biz1")
		require.LessOrEqual(t, len(versions), 1, "base %s", b.Identity())
		if len(versions) == 1 {
			require.Equal(t, "0.0.2", versions[0], "base %s", b.Identity())
			running++
		}
		want := 0
		if v1Bases[b.Identity()] {
			want = 1
		}
		require.Equal(t, want, b.ReceivedCount(protocol.CommandUninstallBiz, "biz1:0.0.1"), "uninstallBiz biz1:0.0.1 at base %s", b.Identity())
		require.Zero(t, b.ReceivedCount(protocol.CommandUninstallBiz, "biz1:0.0.2"), "base %s", b.Identity())
		require.LessOrEqual(t, b.ReceivedCount(protocol.CommandInstallBiz, "biz1:0.0.2"), 1, "base %s", b.Identity())
	}
	require.Equal(t, int(tc.replicas), running, "0.0.2 runs on replicas bases")

	if tc.perVersionAntiAffinity {
		// Every base ran 0.0.1, so every base got 0.0.2 next to it: the old
		// version was uninstalled only after the new one was ACTIVATED there.
		if tc.activation == basesim.ActivateAll {
			require.Equal(t, 2, sampler.MaxPerBase(), "both versions were active on a base at once")
		} else {
			require.Equal(t, 1, sampler.MaxPerBase(), "one version active per base at every sample")
		}
		for _, b := range bases {
			z, ok := b.Biz("biz1", "0.0.2")
			require.True(t, ok, "base %s", b.Identity())
			activated := activatedAt(t, z)
			uninstalled := commandAt(b, protocol.CommandUninstallBiz, "biz1:0.0.1")
			require.False(t, uninstalled.IsZero(), "base %s", b.Identity())
			require.True(t, activated.Before(uninstalled), "base %s: 0.0.2 ACTIVATED at %s, uninstall of 0.0.1 received at %s",
				b.Identity(), activated.Format(time.StampMilli), uninstalled.Format(time.StampMilli))
		}
	}
}

// waitRolledOut waits until the Deployment reports every replica updated and
// available with no old pod left (what `kubectl rollout status` waits for)
// and its pods are exactly replicas available pods of version.
func (e *env) waitRolledOut(name, version string, replicas int32) {
	e.t.Helper()
	var last string
	require.Eventuallyf(e.t, func() bool {
		d, err := e.client.AppsV1().Deployments(e.namespace).Get(e.t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		st := d.Status
		last = fmt.Sprintf("generation=%d observed=%d replicas=%d updated=%d available=%d", d.Generation, st.ObservedGeneration, st.Replicas, st.UpdatedReplicas, st.AvailableReplicas)
		if st.ObservedGeneration < d.Generation || st.UpdatedReplicas != replicas || st.Replicas != replicas || st.AvailableReplicas != replicas {
			return false
		}
		pods := e.listPods("module.koupleless.io/name=biz1")
		last += describePods(pods)
		if len(pods) != int(replicas) {
			return false
		}
		for i := range pods {
			if pods[i].Labels["module.koupleless.io/version"] != version || !available(&pods[i]) {
				return false
			}
		}
		return true
	}, 2*waitLong, poll, "Deployment %s rolled out to %s: %s", name, version, &last)
}

// setVersion changes the version of module name in a pod template in the
// three places a user edits: the version label, the image and BIZ_VERSION.
func setVersion(tpl *corev1.PodTemplateSpec, name, from, to string) {
	tpl.Labels["module.koupleless.io/version"] = to
	for i := range tpl.Spec.Containers {
		c := &tpl.Spec.Containers[i]
		if c.Name != name {
			continue
		}
		c.Image = strings.ReplaceAll(c.Image, name+"-"+from+"-", name+"-"+to+"-")
		for j := range c.Env {
			if c.Env[j].Name == "BIZ_VERSION" {
				c.Env[j].Value = to
			}
		}
	}
}

// setAntiAffinityVersion narrows the template's required anti-affinity terms
// to one version of the module.
func setAntiAffinityVersion(t *testing.T, tpl *corev1.PodTemplateSpec, version string) {
	t.Helper()
	terms := tpl.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	require.NotEmpty(t, terms)
	for i := range terms {
		terms[i].LabelSelector.MatchLabels["module.koupleless.io/version"] = version
	}
}

// activatedAt returns when a biz last became ACTIVATED, on the base's clock.
func activatedAt(t *testing.T, z basesim.Biz) time.Time {
	t.Helper()
	for i := len(z.Records) - 1; i >= 0; i-- {
		if z.Records[i].State == "ACTIVATED" {
			return z.Records[i].ChangedAt()
		}
	}
	t.Fatalf("%s was never ACTIVATED: %+v", z.Key(), z.Records)
	return time.Time{}
}

// commandAt returns when the base first received command for key, or zero.
func commandAt(b *basesim.Base, command, key string) time.Time {
	for _, c := range b.Received() {
		if c.Name != command {
			continue
		}
		for _, m := range c.Bizs {
			if m.Key() == key {
				return c.At
			}
		}
	}
	return time.Time{}
}

// TestRolloutSamplesApply: the rolling-update and batch-update samples pass
// `kubectl apply --dry-run=server` on the real API server, as written.
func TestRolloutSamplesApply(t *testing.T) {
	c := sharedCluster(t)
	for _, f := range []string{"deployment-rolling-update.yaml", "batch-update/biz1-v1.yaml", "batch-update/biz1-v2.yaml"} {
		t.Run(f, func(t *testing.T) {
			out, err := kubectlIn(t, c, "apply", "--dry-run=server", "-f", samplePath(t, f))
			require.NoError(t, err, out)
			require.Contains(t, out, "(server dry run)")
			loadSample(t, f) // and strictly a Deployment
		})
	}
	out, err := kubectlIn(t, c, "apply", "--dry-run=server", "-f", samplePath(t, "batch-update"))
	require.NoError(t, err, out)
}

// TestRollingUpdateWithoutSpareBase: the sample as written (name-only
// anti-affinity, maxSurge 1, maxUnavailable 0) on exactly replicas bases. The
// surge pod fits nowhere and stays Pending, unschedulable; no old pod is
// deleted and every base keeps running 0.0.1: the rollout stops, as
// docs/strategies/rolling-update.md says.
func TestRollingUpdateWithoutSpareBase(t *testing.T) {
	e := newEnv(t, "embedded")
	bases := e.startBases("10.34.0", 3, nil)
	d := e.confine(loadSample(t, "deployment-rolling-update.yaml"))
	d, err := e.client.AppsV1().Deployments(e.namespace).Create(t.Context(), d, metav1.CreateOptions{})
	require.NoError(t, err)
	e.waitRolledOut(d.Name, "0.0.1", *d.Spec.Replicas)
	require.EqualValues(t, len(bases), *d.Spec.Replicas, "as many bases as replicas")

	e.updateDeployment(d.Name, func(d *appsv1.Deployment) { setVersion(&d.Spec.Template, "biz1", "0.0.1", "0.0.2") })
	var surge *corev1.Pod
	require.Eventually(t, func() bool {
		for _, p := range e.listPods("module.koupleless.io/version=0.0.2") {
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
					surge = &p
					return true
				}
			}
		}
		return false
	}, waitLong, poll, "the surge pod is unschedulable")
	require.Empty(t, surge.Spec.NodeName)
	// The scheduler retries the pod while the Deployment waits for it; give
	// both a few seconds to do anything else.
	require.Never(t, func() bool {
		n := 0
		for _, p := range e.listPods("module.koupleless.io/version=0.0.1") {
			if available(&p) {
				n++
			}
		}
		return n != len(bases) || len(e.listPods("module.koupleless.io/version=0.0.2")) != 1
	}, 5*time.Second, poll, "old pods stay, one surge pod")
	for _, b := range bases {
		require.Equal(t, []string{"0.0.1"}, activeVersions(b, "biz1"), "base %s", b.Identity())
		require.Zero(t, b.ReceivedCount(protocol.CommandInstallBiz, "biz1:0.0.2"), "base %s", b.Identity())
	}
}
