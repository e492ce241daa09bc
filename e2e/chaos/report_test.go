//go:build e2e

package chaos

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/e2e/framework"
)

// table renders the rows as a Markdown table.
func table(rows []row) string {
	var b strings.Builder
	b.WriteString("| fault | broker | injected | convergence | lost | duplicate installs | wrongly removed (uninstalls / pods / nodes) | unexpected restarts | orphaned bizs |\n")
	b.WriteString("|---|---|---|---|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		conv := r.convergence.Round(time.Second).String()
		if !r.converged {
			conv = "**not converged** (" + conv + ")"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %d | %d / %d / %d | %d | %d |\n",
			r.fault, r.broker, strings.ReplaceAll(r.injected, "|", "/"), conv, r.lost, r.duplicates, r.wrongUninstalls, r.wrongPodDeletes, r.wrongNodeDeletes, r.restarts, r.orphans)
	}
	return b.String()
}

// environment is what the results were measured on.
type environment struct {
	cpu, kernel, memory   string
	cpus                  int
	goVersion             string
	controller            string
	kubernetes, mosquitto string
}

func describeEnvironment(t *testing.T, w *world) environment {
	env := environment{cpus: runtime.NumCPU(), goVersion: runtime.Version()}
	env.cpu = procField("/proc/cpuinfo", "model name")
	env.memory = procField("/proc/meminfo", "MemTotal")
	if raw, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		env.kernel = "Linux " + strings.TrimSpace(string(raw))
	}
	if bin, err := framework.ControllerBinary(); err == nil {
		if out, err := exec.CommandContext(t.Context(), bin, "--version").Output(); err == nil {
			env.controller = strings.TrimSpace(string(out))
		}
	}
	if v, err := w.client.Discovery().ServerVersion(); err == nil {
		env.kubernetes = "kube-apiserver " + v.GitVersion
	}
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = framework.MosquittoPath
	}
	// mosquitto -h prints its version first and exits non-zero.
	out, _ := exec.CommandContext(t.Context(), bin, "-h").Output()
	env.mosquitto, _, _ = strings.Cut(string(out), "\n")
	return env
}

// procField returns the value of the first "key: value" line of a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer func() { _ = f.Close() }()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// writeResults writes the table, the notes, the settings and the machine to path.
func writeResults(t *testing.T, path string, set settings, env environment, rows []row, took time.Duration) {
	var b strings.Builder
	b.WriteString("# Chaos suite results\n\n")
	fmt.Fprintf(&b, "Written by `make chaos` (e2e/chaos, TestChaos) on %s; the whole run took %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), took.Round(time.Second))
	b.WriteString("Each fault runs after the previous one converged (or timed out), on the same fleet. Counts, per fault, from the\n")
	b.WriteString("bases' own command logs (reset when the fault begins) and the API server:\n\n")
	b.WriteString("- **convergence**: from the end of the fault until every module pod that should run is Running on a Ready node with its biz\n")
	b.WriteString("  ACTIVATED on that base, every live base has a Ready node, no other node exists and the peer Deployment has one replica per live base.\n")
	b.WriteString("- **lost**: module placements that should run and did not when the convergence wait ended (0 when it converged).\n")
	b.WriteString("- **duplicate installs**: installBiz commands and baseline entries beyond the one a base needs for a module it did not have\n")
	b.WriteString("  (or lost in a restart) and has at the end.\n")
	b.WriteString("- **wrongly removed**: uninstallBiz commands a base received for a module it had at the start and should keep (its workload's\n")
	b.WriteString("  current version); module pods of the current version deleted from the node of a base that never left; and nodes of bases\n")
	b.WriteString("  that never left that were deleted (or recreated) during the fault.\n")
	b.WriteString("- **unexpected restarts**: controller process exits the suite did not inject (the suite restarts it like a kubelet, after 10 s).\n")
	b.WriteString("- **orphaned bizs**: bizs ACTIVATED on a live base with no pod for them at the end that were not orphaned at the start\n")
	b.WriteString("  (informational: a module running where Kubernetes does not know it).\n\n")
	b.WriteString(table(rows))
	b.WriteString("\n## Notes\n\n")
	for _, r := range rows {
		for _, n := range r.notes {
			fmt.Fprintf(&b, "- %s / %s: %s\n", r.fault, r.broker, n)
		}
	}
	b.WriteString("\n## Settings\n\n")
	var brokers []string
	for _, k := range set.brokers {
		brokers = append(brokers, string(k))
	}
	fmt.Fprintf(&b, "- %d simulated bases (pkg/basesim, heartbeat every 10 s, install 300 ms, uninstall 100 ms, JVM restart %s), each behind its own TCP link (e2e/framework.Proxy)\n", set.bases, set.restartDowntime)
	fmt.Fprintf(&b, "- workloads from deploy/samples: DaemonSet (daemonset.yaml), peer Deployment (peer-deployment.yaml), non-peer Deployment with %d replicas (deployment-nonpeer.yaml)\n", set.nonPeerReplicas)
	fmt.Fprintf(&b, "- controller with default timings (unreachable after %s, removed after %s), brokers: %s\n", unreachableAfter, removeAfter, strings.Join(brokers, ", "))
	fmt.Fprintf(&b, "- broker outage %s, apiserver down %s, partition %s, flood %d msg/s for %s, bad heartbeat watched %s, convergence wait %s\n",
		set.brokerOutage, set.apiserverDown, set.partition, set.floodRate, set.flood, set.observe, set.converge)
	fmt.Fprintf(&b, "- faults: %s\n", strings.Join(set.faults, ", "))
	b.WriteString("\n## Machine and versions\n\n")
	fmt.Fprintf(&b, "- %s, %d CPUs (%s), %s memory\n", env.kernel, env.cpus, env.cpu, env.memory)
	fmt.Fprintf(&b, "- %s, %s, %s, %s\n", env.controller, env.kubernetes, env.mosquitto, env.goVersion)
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	t.Logf("results written to %s", path)
}
