// Command quickstart is what `make quickstart` runs: it starts a local
// Kubernetes control plane, module-controller with its embedded MQTT broker and
// a fleet of simulated bases (bin/base-sim), applies a sample module workload,
// waits until its pods are Running, shows them, and keeps everything up until
// Ctrl-C (SIGINT) or SIGTERM, then stops every process it started and removes
// its files. With --exit-when-ready it stops right after showing the pods
// (the e2e test TestQuickstart runs it that way).
//
// It reuses the e2e test bed (e2e/framework) and, like the e2e tests, runs the
// controller as a black box: only the built binaries, the API and kubectl.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/moduleops/module-controller/e2e/framework"
)

// options are the command-line settings.
type options struct {
	bases          int
	env            string
	sample         string
	brokerAddress  string
	timeout        time.Duration
	exitWhenReady  bool
	binDir         string
	controllerBin  string
	baseSimBin     string
	kubeconfigOut  string
	identityPrefix string
}

// pollInterval is how often quickstart re-checks nodes and pods.
const pollInterval = 250 * time.Millisecond

// stopGrace is how long each process gets between SIGTERM and SIGKILL.
const stopGrace = 10 * time.Second

func main() {
	root, err := framework.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "quickstart: run it from the repository (make quickstart):", err)
		os.Exit(1)
	}
	var o options
	flag.IntVar(&o.bases, "bases", 3, "number of simulated bases")
	flag.StringVar(&o.env, "env", "default", "tunnel environment of the controller and the bases")
	flag.StringVar(&o.sample, "sample", filepath.Join(root, "deploy", "samples", "sample-deployment.yaml"), "module workload to apply: Deployments, DaemonSets or Pods in namespace default")
	flag.StringVar(&o.brokerAddress, "broker-address", "127.0.0.1:0", "where the controller's embedded MQTT broker listens (port 0: a free port)")
	flag.DurationVar(&o.timeout, "timeout", 3*time.Minute, "how long to wait for each step (control plane, nodes, pods)")
	flag.BoolVar(&o.exitWhenReady, "exit-when-ready", false, "stop everything and exit 0 as soon as the module pods are Running (for CI)")
	flag.StringVar(&o.binDir, "bin-dir", "", "control-plane binaries and kubectl (default: $"+framework.BinDirEnv+" or .cache/controlplane/bin)")
	flag.StringVar(&o.controllerBin, "controller-bin", filepath.Join(root, "bin", "module-controller"), "module-controller binary (make build)")
	flag.StringVar(&o.baseSimBin, "base-sim-bin", filepath.Join(root, "bin", "base-sim"), "base-sim binary (make build)")
	flag.StringVar(&o.kubeconfigOut, "kubeconfig-out", filepath.Join(root, ".cache", "quickstart", "kubeconfig"), "where to write the admin kubeconfig while running (removed on exit)")
	flag.StringVar(&o.identityPrefix, "identity-prefix", "base", "simulated bases are named <prefix>-0, <prefix>-1, …")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal a second one kills quickstart at once; the
		// kernel then kills its children (they are started with Pdeathsig).
		<-ctx.Done()
		stop()
	}()
	q := &quickstart{opts: o, began: time.Now()}
	err = q.run(ctx)
	if cerr := q.cleanup(err != nil); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "\nquickstart failed: %v\n", err)
		os.Exit(1)
	}
}

// quickstart holds what run started, for cleanup.
type quickstart struct {
	opts       options
	began      time.Time
	dir        string
	cluster    *framework.Cluster
	controller *framework.Controller
	bases      *framework.Process
	kubectl    string
	kubeconfig string
}

// step prints a progress line with the time since start.
func (q *quickstart) step(format string, args ...any) {
	fmt.Printf("[%5.1fs] %s\n", time.Since(q.began).Seconds(), fmt.Sprintf(format, args...))
}

func (q *quickstart) run(ctx context.Context) error {
	o := q.opts
	if o.bases < 1 {
		return fmt.Errorf("--bases %d: want at least 1", o.bases)
	}
	binDir := o.binDir
	if binDir == "" {
		var err error
		if binDir, err = framework.DefaultBinDir(); err != nil {
			return err
		}
	}
	q.kubectl = filepath.Join(binDir, "kubectl")
	var missing []string
	for _, bin := range append([]string{q.kubectl, o.controllerBin, o.baseSimBin}, prefixed(binDir, framework.ControlPlaneBinaries)...) {
		if _, err := os.Stat(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s: run `make quickstart`, which builds them (`make controlplane build`)", strings.Join(missing, ", "))
	}
	if _, err := os.Stat(o.sample); err != nil {
		return fmt.Errorf("--sample: %w", err)
	}
	if err := framework.PortFree(o.brokerAddress); err != nil {
		return fmt.Errorf("--broker-address: %w; pick another one or 127.0.0.1:0 for a free port", err)
	}

	var err error
	if q.dir, err = os.MkdirTemp("", "module-controller-quickstart-"); err != nil {
		return err
	}
	q.step("starting the control plane: etcd, kube-apiserver, kube-scheduler, kube-controller-manager (about 10 s)")
	q.cluster, err = framework.Start(ctx, framework.Options{
		BinDir: binDir, Dir: filepath.Join(q.dir, "cluster"), StartTimeout: o.timeout, StopGrace: stopGrace,
	})
	if err != nil {
		return fmt.Errorf("starting the control plane: %w", err)
	}
	q.kubeconfig = q.cluster.Kubeconfig
	if o.kubeconfigOut != "" {
		if err := copyFile(q.cluster.Kubeconfig, o.kubeconfigOut); err != nil {
			return err
		}
		q.kubeconfig = o.kubeconfigOut
	}
	pids := q.cluster.PIDs()
	var list []string
	for _, name := range framework.ControlPlaneBinaries {
		list = append(list, name+" "+strconv.Itoa(pids[name]))
	}
	q.step("control plane ready (pids: %s)", strings.Join(list, ", "))

	q.controller, err = framework.LaunchController(ctx, o.controllerBin, q.dir, framework.ControllerOptions{
		Kubeconfig: q.cluster.Kubeconfig, Env: o.env, EmbeddedBrokerAddress: o.brokerAddress,
		// The test bed's debug level is too chatty to read here. The kubelet
		// API requires the API server's kubelet client certificate.
		Args: []string{"--log-level=info", "--kubelet-client-ca=" + q.cluster.KubeletClientCAFile},
	})
	if err != nil {
		return fmt.Errorf("starting module-controller: %w", err)
	}
	brokerURL := q.controller.BrokerURL()
	q.step("module-controller ready (pid %d), embedded MQTT broker on %s", q.controller.PID(), brokerURL)

	args := []string{"--count=" + strconv.Itoa(o.bases), "--broker=" + brokerURL, "--env=" + o.env, "--identity-prefix=" + o.identityPrefix}
	q.bases, err = framework.LaunchProcess("base-sim", o.baseSimBin, args, filepath.Join(q.dir, "base-sim.log"))
	if err != nil {
		return err
	}
	q.step("started %d simulated bases (pid %d): %s %s", o.bases, q.bases.PID(), rel(o.baseSimBin), strings.Join(args, " "))
	nodes := make([]string, o.bases)
	for i := range nodes {
		nodes[i] = "vnode." + o.identityPrefix + "-" + strconv.Itoa(i) + "." + o.env
	}
	if err := q.waitNodes(ctx, nodes); err != nil {
		return err
	}
	q.step("%d virtual nodes Ready", len(nodes))

	q.step("applying %s", rel(o.sample))
	out, err := q.kubectlOutput(ctx, "apply", "-f", o.sample, "-o", "name")
	if err != nil {
		return fmt.Errorf("applying %s: %w", o.sample, err)
	}
	objects := strings.Fields(out)
	pods, err := q.waitRunning(ctx, objects)
	if err != nil {
		return err
	}
	q.step("%d/%d module pods Running", pods, pods)

	fmt.Println()
	for _, args := range [][]string{{"get", "nodes"}, {"get", "pods", "-o", "wide"}} {
		fmt.Printf("$ kubectl %s\n", strings.Join(args, " "))
		if err := q.kubectlTo(ctx, os.Stdout, args...); err != nil {
			return err
		}
		fmt.Println()
	}
	fmt.Println("Explore further:")
	fmt.Printf("  %s --kubeconfig %s get pods -o wide\n", rel(q.kubectl), rel(q.kubeconfig))
	// The simulated bases are no pods, so this fails (the controller logs
	// that the base is not a pod in this cluster); with bases running as
	// pods it streams their logs.
	fmt.Printf("  %s --kubeconfig %s logs deployment/test-module-deployment\n", rel(q.kubectl), rel(q.kubeconfig))
	fmt.Printf("Add bases:\n  %s --broker %s --env %s --identity-prefix more --count 2\n", rel(o.baseSimBin), brokerURL, o.env)
	fmt.Printf("Logs:\n  %s (module-controller-1.log, base-sim.log, cluster/)\n", q.dir)
	fmt.Print("Processes:\n ")
	pids = q.cluster.PIDs()
	for _, name := range framework.ControlPlaneBinaries {
		fmt.Printf(" %s %d,", name, pids[name])
	}
	fmt.Printf(" module-controller %d, base-sim %d\n", q.controller.PID(), q.bases.PID())
	if o.exitWhenReady {
		return nil
	}
	fmt.Println("\nPress Ctrl-C to stop everything.")
	select {
	case <-ctx.Done():
		fmt.Println()
		return nil
	case <-q.controller.Done():
		return fmt.Errorf("module-controller stopped: %w", q.controller.ExitError())
	case <-q.bases.Done():
		return fmt.Errorf("base-sim stopped: %w", q.bases.ExitError())
	}
}

// waitNodes waits until every named node exists and is Ready.
func (q *quickstart) waitNodes(ctx context.Context, names []string) error {
	var notReady []string
	err := q.poll(ctx, func(ctx context.Context) (bool, error) {
		notReady = notReady[:0]
		for _, name := range names {
			n, err := q.cluster.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil || !nodeReady(n) {
				notReady = append(notReady, name)
			}
		}
		return len(notReady) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("virtual nodes %s not Ready: %w\nmodule-controller log:\n%s\nbase-sim log:\n%s",
			strings.Join(notReady, ", "), err, q.controller.LogTail(20), q.bases.LogTail(20))
	}
	return nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitRunning waits until every pod of the applied objects (kubectl's
// "kind.group/name" output) runs, and returns how many there are.
func (q *quickstart) waitRunning(ctx context.Context, objects []string) (int, error) {
	client := q.cluster.Client
	// The last complete observation, kept to explain a timeout (a check cut
	// short by the deadline must not blank it).
	var pods []corev1.Pod
	var want int
	namespace := metav1.NamespaceDefault
	err := q.poll(ctx, func(ctx context.Context) (bool, error) {
		var seen []corev1.Pod
		var n int
		for _, obj := range objects {
			kind, name, _ := strings.Cut(obj, "/")
			var selector labels.Selector
			switch kind {
			case "deployment.apps":
				d, err := client.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return false, nil
				}
				if selector, err = metav1.LabelSelectorAsSelector(d.Spec.Selector); err != nil {
					return false, err
				}
				n += int(ptrOr(d.Spec.Replicas, 1))
			case "daemonset.apps":
				ds, err := client.AppsV1().DaemonSets(namespace).Get(ctx, name, metav1.GetOptions{})
				if err != nil || ds.Status.ObservedGeneration < ds.Generation {
					return false, nil
				}
				if selector, err = metav1.LabelSelectorAsSelector(ds.Spec.Selector); err != nil {
					return false, err
				}
				n += int(ds.Status.DesiredNumberScheduled)
			case "pod":
				selector = labels.Everything()
				n++
			default:
				continue
			}
			list, err := client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
			if err != nil {
				return false, nil
			}
			for _, p := range list.Items {
				if kind == "pod" && p.Name != name {
					continue
				}
				if p.DeletionTimestamp == nil {
					seen = append(seen, p)
				}
			}
		}
		pods, want = seen, n
		if want == 0 || len(pods) != want {
			return false, nil
		}
		for _, p := range pods {
			if p.Status.Phase != corev1.PodRunning {
				return false, nil
			}
		}
		return true, nil
	})
	if err == nil {
		return want, nil
	}
	// Say why: each pod's phase and events, or the workload's events when no
	// pod was even created.
	var b strings.Builder
	running := 0
	for _, p := range pods {
		if p.Status.Phase == corev1.PodRunning {
			running++
		}
	}
	fmt.Fprintf(&b, "module pods not Running: %d of %d Running (%d created): %v\n", running, want, len(pods), err)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	describe := objects
	if len(pods) > 0 {
		describe = nil
		for _, p := range pods {
			if p.Status.Phase != corev1.PodRunning {
				describe = append(describe, "pod/"+p.Name)
			}
		}
	}
	for _, obj := range describe {
		fmt.Fprintf(&b, "\n$ kubectl describe %s\n", obj)
		if err := q.kubectlTo(dctx, &b, "describe", obj); err != nil {
			fmt.Fprintf(&b, "(%v)\n", err)
		}
	}
	fmt.Fprintf(&b, "\nmodule-controller log (last lines of %s):\n%s", q.controller.LogPath(), q.controller.LogTail(15))
	return 0, errors.New(b.String())
}

// poll calls check until it reports done, fails, ctx ends or the step
// timeout passes.
func (q *quickstart) poll(ctx context.Context, check func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, q.opts.timeout)
	defer cancel()
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		done, err := check(ctx)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("timed out after %s", q.opts.timeout)
			}
			return ctx.Err()
		case <-q.controller.Done():
			return fmt.Errorf("module-controller stopped: %w", q.controller.ExitError())
		case <-t.C:
		}
		if q.bases != nil && q.bases.Exited() {
			return fmt.Errorf("base-sim stopped: %w", q.bases.ExitError())
		}
	}
}

// kubectlOutput runs kubectl against the cluster and returns its stdout.
func (q *quickstart) kubectlOutput(ctx context.Context, args ...string) (string, error) {
	var b strings.Builder
	err := q.kubectlTo(ctx, &b, args...)
	return b.String(), err
}

// kubectlTo runs kubectl against the cluster with stdout to w.
func (q *quickstart) kubectlTo(ctx context.Context, w interface{ Write([]byte) (int, error) }, args ...string) error {
	var stderr strings.Builder
	cmd := exec.CommandContext(ctx, q.kubectl, append([]string{"--kubeconfig=" + q.cluster.Kubeconfig}, args...)...)
	cmd.Stdout, cmd.Stderr = w, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// cleanup stops everything run started, newest first, and removes its files;
// after a failure it keeps the logs for a look.
func (q *quickstart) cleanup(failed bool) error {
	if q.dir == "" {
		return nil
	}
	began := time.Now()
	fmt.Println("stopping base-sim, module-controller and the control plane")
	var errs []error
	if q.bases != nil {
		if err := q.bases.Stop(stopGrace); err != nil && !q.bases.Exited() {
			errs = append(errs, fmt.Errorf("stopping base-sim: %w", err))
		}
	}
	if q.controller != nil {
		select {
		case <-q.controller.Done(): // already reported
		default:
			if err := q.controller.Shutdown(stopGrace); err != nil {
				errs = append(errs, fmt.Errorf("module-controller did not stop cleanly: %w", err))
			}
		}
	}
	if q.cluster != nil {
		if err := q.cluster.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stopping the control plane: %w", err))
		}
	}
	if q.kubeconfig != "" && q.kubeconfig == q.opts.kubeconfigOut {
		if err := os.Remove(q.kubeconfig); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if failed {
		fmt.Printf("stopped in %s; logs kept in %s (remove it when done)\n", time.Since(began).Round(100*time.Millisecond), q.dir)
		return errors.Join(errs...)
	}
	if err := os.RemoveAll(q.dir); err != nil {
		errs = append(errs, err)
	}
	fmt.Printf("stopped in %s; removed %s\n", time.Since(began).Round(100*time.Millisecond), q.dir)
	return errors.Join(errs...)
}

// copyFile writes src to dst (creating dst's directory), readable by the user only.
func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o600)
}

// rel shortens path relative to the working directory when it lies below it.
func rel(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	r, err := filepath.Rel(wd, path)
	if err != nil || strings.HasPrefix(r, "..") {
		return path
	}
	return r
}

func prefixed(dir string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = filepath.Join(dir, n)
	}
	return out
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
