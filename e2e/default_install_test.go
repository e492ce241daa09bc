//go:build e2e

package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/moduleops/module-controller/e2e/framework"
	"github.com/moduleops/module-controller/pkg/basesim"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// defaultInstall is what `kubectl apply -k deploy/` installs, as rendered by
// kubectl's kustomize.
type defaultInstall struct {
	controller *appsv1.Deployment
	pdbs       []*policyv1.PodDisruptionBudget
	broker     *appsv1.Deployment // the in-cluster broker, if any
}

func renderDefaultInstall(t *testing.T) defaultInstall {
	t.Helper()
	rendered, err := kubectl(t, "", "kustomize", "deploy/")
	require.NoError(t, err, rendered)
	var out defaultInstall
	for doc := range strings.SplitSeq(rendered, "\n---\n") {
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		require.NoError(t, yaml.Unmarshal([]byte(doc), &meta))
		switch meta.Kind {
		case "Deployment":
			var d appsv1.Deployment
			require.NoError(t, yaml.Unmarshal([]byte(doc), &d))
			switch d.Name {
			case "module-controller":
				out.controller = &d
			case "mosquitto":
				out.broker = &d
			}
		case "PodDisruptionBudget":
			var pdb policyv1.PodDisruptionBudget
			require.NoError(t, yaml.Unmarshal([]byte(doc), &pdb))
			out.pdbs = append(out.pdbs, &pdb)
		}
	}
	require.NotNil(t, out.controller, "deploy/ renders the controller's Deployment")
	return out
}

// containerEnv resolves the controller container's environment as a kubelet
// would for a pod named podName: literal values, the downward API, and the
// keys of Secret module-controller-mqtt from secrets.
func containerEnv(t *testing.T, c corev1.Container, podName, namespace string, secrets map[string]string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, v := range c.Env {
		switch {
		case v.ValueFrom == nil:
			env[v.Name] = v.Value
		case v.ValueFrom.FieldRef != nil:
			switch v.ValueFrom.FieldRef.FieldPath {
			case "metadata.name":
				env[v.Name] = podName
			case "metadata.namespace":
				env[v.Name] = namespace
			case "status.podIP":
				env[v.Name] = "127.0.0.1"
			default:
				t.Fatalf("env %s: downward API field %s not simulated", v.Name, v.ValueFrom.FieldRef.FieldPath)
			}
		case v.ValueFrom.SecretKeyRef != nil:
			ref := v.ValueFrom.SecretKeyRef
			require.Equal(t, "module-controller-mqtt", ref.Name, "env %s reads an unexpected Secret", v.Name)
			val, ok := secrets[ref.Key]
			require.True(t, ok, "env %s: key %s of Secret %s", v.Name, ref.Key, ref.Name)
			env[v.Name] = val
		default:
			t.Fatalf("env %s: source not simulated", v.Name)
		}
	}
	return env
}

// TestDefaultInstallRunsTwoReplicas: `kubectl apply -k deploy/` installs
// the controller as at least two replicas in cluster mode, on a broker they
// share, with a rolling update that never takes both down and a
// PodDisruptionBudget. Two controller processes run with exactly the
// environment the rendered Deployment gives its pods (only the broker's
// address and CA point at this test's Mosquitto, which stands in for the
// installed one): both start, share two bases, and run a module pod on each.
func TestDefaultInstallRunsTwoReplicas(t *testing.T) {
	inst := renderDefaultInstall(t)
	d := inst.controller
	require.NotNil(t, d.Spec.Replicas)
	require.GreaterOrEqual(t, *d.Spec.Replicas, int32(2), "the default install runs 2+ replicas")
	require.Equal(t, appsv1.RollingUpdateDeploymentStrategyType, d.Spec.Strategy.Type)
	require.NotNil(t, d.Spec.Strategy.RollingUpdate)
	require.Equal(t, 1, d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue(), "a rolling update replaces one replica at a time")
	require.NotNil(t, inst.broker, "the default install brings the broker the replicas share")
	var covered bool
	for _, pdb := range inst.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		require.NoError(t, err)
		if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			covered = true
			require.NotNil(t, pdb.Spec.MaxUnavailable)
			require.Equal(t, 1, pdb.Spec.MaxUnavailable.IntValue())
		}
	}
	require.True(t, covered, "a PodDisruptionBudget covers the controller's pods")
	aff := d.Spec.Template.Spec.Affinity
	require.True(t, aff != nil && aff.PodAntiAffinity != nil, "the replicas spread over nodes")

	e := newBareEnv(t)
	secret := func() string { return framework.RandomName("pw", 16) }
	ctlPassword, basePassword := secret(), secret()
	const baseA, baseB = "10.12.0.1", "10.12.0.2"
	broker := framework.StartBroker(t, framework.Mosquitto, framework.WithTLS(),
		framework.WithAuth(controllerMQTTUser, ctlPassword),
		framework.WithUser(baseA, basePassword), framework.WithUser(baseB, basePassword))
	e.broker = broker

	var replicas []*framework.Controller
	for _, pod := range []string{"module-controller-7d9f-a", "module-controller-7d9f-b"} {
		env := containerEnv(t, d.Spec.Template.Spec.Containers[0], pod, e.namespace,
			map[string]string{"username": controllerMQTTUser, "password": ctlPassword})
		require.Equal(t, "true", env["CLUSTER_MODE"], "the replicas run in cluster mode")
		require.NotEmpty(t, env["MQTT_BROKER"], "the replicas use a shared broker, not each its own")
		require.Equal(t, pod, env["CLIENT_ID"], "a replica's identity is its pod name")
		for k := range env {
			require.False(t, strings.HasPrefix(k, "EMBEDDED_BROKER_"), "%s: the replicas serve no embedded broker", k)
		}
		// This test's broker and env instead of the installed ones.
		env["MQTT_BROKER"], env["MQTT_CA_PATH"], env["ENV"] = broker.URL, broker.CAFile, e.name
		delete(env, "MQTT_PORT")
		var environ []string
		for k, v := range env {
			environ = append(environ, k+"="+v)
		}
		replicas = append(replicas, framework.StartController(t, framework.ControllerOptions{
			Kubeconfig: e.cluster.Kubeconfig, Env: e.name, BrokerURL: broker.URL, Environ: environ,
		}))
	}
	e.controller = replicas[0]

	var bases []*basesim.Base
	for _, id := range []string{baseA, baseB} {
		bases = append(bases, e.startBase(id, func(cfg *basesim.Config) {
			cfg.Username, cfg.Password, cfg.TLS = id, basePassword, broker.TLSConfig
		}))
	}
	for i, id := range []string{baseA, baseB} {
		e.waitNode(id, "Ready", isReady)
		e.createPod(e.modulePod("m"+string(rune('a'+i)), id, "biz1:0.0.1"))
	}
	for i := range bases {
		e.waitPod("m"+string(rune('a'+i)), "Running", running)
	}
	// Every base is owned by exactly one replica, and each got one install.
	require.Eventually(t, func() bool {
		total := 0
		for i := range replicas {
			m, err := replicas[i].Metrics()
			if err != nil {
				return false
			}
			g := ownedRE.FindStringSubmatch(m)
			if g == nil {
				return false
			}
			n, err := strconv.Atoi(g[1])
			if err != nil {
				return false
			}
			total += n
		}
		return total == 2
	}, 30*time.Second, 200*time.Millisecond, "the two bases are owned once in all")
	for i, b := range bases {
		require.Equal(t, 1, b.ReceivedCount(protocol.CommandInstallBiz, "biz1:0.0.1"), "base %d: installs", i)
	}
}
