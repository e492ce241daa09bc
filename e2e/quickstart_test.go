//go:build e2e

package e2e

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/e2e/framework"
)

// TestQuickstart runs what `make quickstart` runs, as a user would: the
// quickstart binary with the built bin/module-controller and bin/base-sim,
// once with --exit-when-ready (as CI does) and once stopped with Ctrl-C
// (SIGINT). Each run must bring the sample module pod to Running on one of
// three Ready virtual nodes, print the kubectl line, exit 0 and leave no
// process and no file behind. A third run with a module no base can take
// must fail with exit status 1, show the pod's scheduling events and keep
// only its logs.
func TestQuickstart(t *testing.T) {
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	for _, bin := range []string{"module-controller", "base-sim"} {
		_, err := os.Stat(filepath.Join(root, "bin", bin))
		require.NoError(t, err, "bin/%s missing: run `make build`", bin)
	}
	quickstart := filepath.Join(t.TempDir(), "quickstart")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", quickstart, "./e2e/cmd/quickstart")
	build.Dir = root
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build ./e2e/cmd/quickstart: %s", out)

	t.Run("exit-when-ready", func(t *testing.T) {
		r := startQuickstart(t, quickstart, "--exit-when-ready")
		require.NoError(t, r.wait(t), "quickstart failed; output:\n%s", r.output())
		r.checkReadyOutput(t)
		r.checkCleanedUp(t)
	})
	t.Run("pods not running", func(t *testing.T) {
		// A module for a base version nobody runs cannot be scheduled: the
		// quickstart must give up, show why and still clean up.
		sample, err := os.ReadFile(filepath.Join(root, "deploy", "samples", "sample-deployment.yaml"))
		require.NoError(t, err)
		unschedulable := strings.Replace(string(sample), `values: ["1.0.0"]`, `values: ["9.9.9"]`, 1)
		require.NotEqual(t, string(sample), unschedulable, "the sample no longer pins base version 1.0.0")
		path := filepath.Join(t.TempDir(), "unschedulable.yaml")
		require.NoError(t, os.WriteFile(path, []byte(unschedulable), 0o600))

		r := startQuickstart(t, quickstart, "--exit-when-ready", "--sample="+path, "--timeout=15s")
		err = r.wait(t)
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, "quickstart must fail; output:\n%s", r.output())
		require.Equal(t, 1, exit.ExitCode())
		out := r.output()
		for _, want := range []string{"quickstart failed: module pods not Running: 0 of 1 Running (1 created)", "$ kubectl describe pod/test-module-deployment-",
			"FailedScheduling", "module-controller log"} {
			require.Contains(t, out, want)
		}
		// Every process is gone; the logs stay for a look.
		for _, pid := range r.pids(t) {
			require.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "pid %d still running after quickstart exited", pid)
		}
		m := regexp.MustCompile(`logs kept in (\S+)`).FindStringSubmatch(out)
		require.NotNil(t, m, "no logs line in:\n%s", out)
		t.Cleanup(func() { _ = os.RemoveAll(m[1]) })
		require.FileExists(t, filepath.Join(m[1], "module-controller-1.log"))
		require.Contains(t, out, filepath.Join(m[1], "module-controller-1.log"))
		require.NoFileExists(t, r.kubeconfig)
	})
	t.Run("ctrl-c", func(t *testing.T) {
		r := startQuickstart(t, quickstart)
		require.Eventually(t, func() bool { return strings.Contains(r.output(), "Press Ctrl-C") || r.exited() },
			3*time.Minute, poll, "quickstart never got ready")
		require.False(t, r.exited(), "quickstart exited before Ctrl-C; output:\n%s", r.output())
		r.checkReadyOutput(t)
		// Everything keeps running until the signal.
		for _, pid := range r.pids(t) {
			require.NoError(t, syscall.Kill(pid, 0), "pid %d gone before Ctrl-C", pid)
		}
		require.NoError(t, r.cmd.Process.Signal(os.Interrupt))
		require.NoError(t, r.wait(t), "quickstart failed after Ctrl-C; output:\n%s", r.output())
		r.checkCleanedUp(t)
	})
}

// quickstartRun is one quickstart process and its collected output.
type quickstartRun struct {
	cmd        *exec.Cmd
	kubeconfig string
	mu         sync.Mutex
	out        strings.Builder
	done       chan struct{}
	err        error
}

func startQuickstart(t *testing.T, bin string, args ...string) *quickstartRun {
	t.Helper()
	r := &quickstartRun{kubeconfig: filepath.Join(t.TempDir(), "kubeconfig"), done: make(chan struct{})}
	args = append([]string{"--kubeconfig-out=" + r.kubeconfig, "--timeout=2m"}, args...)
	r.cmd = exec.Command(bin, args...)
	pipe, err := r.cmd.StdoutPipe()
	require.NoError(t, err)
	r.cmd.Stderr = r.cmd.Stdout
	require.NoError(t, r.cmd.Start())
	t.Cleanup(func() {
		if !r.exited() {
			_ = r.cmd.Process.Kill()
			<-r.done
		}
	})
	go func() {
		s := bufio.NewScanner(pipe)
		for s.Scan() {
			r.mu.Lock()
			r.out.WriteString(s.Text() + "\n")
			r.mu.Unlock()
		}
		r.err = r.cmd.Wait()
		close(r.done)
	}()
	return r
}

func (r *quickstartRun) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.String()
}

func (r *quickstartRun) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit and returns its exit error.
func (r *quickstartRun) wait(t *testing.T) error {
	select {
	case <-r.done:
		return r.err
	case <-t.Context().Done():
		return errors.New("test timed out before quickstart exited")
	}
}

// checkReadyOutput checks what quickstart printed once ready: three Ready
// virtual nodes, the sample's pod Running on one of them, and the kubectl line.
func (r *quickstartRun) checkReadyOutput(t *testing.T) {
	t.Helper()
	out := r.output()
	for i := range 3 {
		require.Regexp(t, `(?m)^vnode\.base-`+strconv.Itoa(i)+`\.default\s+Ready\s`, out)
	}
	require.Regexp(t, `(?m)^test-module-deployment-\S+\s+1/1\s+Running\s.*vnode\.base-\d\.default`, out)
	require.Contains(t, out, "--kubeconfig "+r.kubeconfig+" get pods -o wide")
}

var pidRes = []*regexp.Regexp{
	regexp.MustCompile(`(?:etcd|kube-apiserver|kube-scheduler|kube-controller-manager) (\d+)`),
	regexp.MustCompile(`module-controller ready \(pid (\d+)\)`),
	regexp.MustCompile(`simulated bases \(pid (\d+)\)`),
}

// pids returns every process ID quickstart reported starting: the control
// plane's four, module-controller and base-sim.
func (r *quickstartRun) pids(t *testing.T) []int {
	t.Helper()
	out := r.output()
	seen := map[int]bool{}
	var pids []int
	for _, re := range pidRes {
		for _, m := range re.FindAllStringSubmatch(out, -1) {
			pid, err := strconv.Atoi(m[1])
			require.NoError(t, err)
			if !seen[pid] {
				seen[pid] = true
				pids = append(pids, pid)
			}
		}
	}
	require.Len(t, pids, 6, "etcd, kube-apiserver, kube-scheduler, kube-controller-manager, module-controller, base-sim in:\n%s", out)
	return pids
}

// checkCleanedUp checks that every process quickstart started is gone and
// that its working directory and kubeconfig were removed.
func (r *quickstartRun) checkCleanedUp(t *testing.T) {
	t.Helper()
	out := r.output()
	for _, pid := range r.pids(t) {
		require.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "pid %d still running after quickstart exited", pid)
	}
	m := regexp.MustCompile(`removed (\S+)`).FindStringSubmatch(out)
	require.NotNil(t, m, "no cleanup line in:\n%s", out)
	require.NoDirExists(t, m[1])
	require.NoFileExists(t, r.kubeconfig)
	require.NotContains(t, out, "did not stop cleanly")
}
