// Command bench is what `make bench` runs: it measures module-controller at
// scale on the real local control plane (e2e/framework) with N simulated bases
// (pkg/basesim, in this process) over a real MQTT broker, next to an ideal
// baseline (an in-process instant provider driving the same Nodes and
// DaemonSet through the API). It prints progress, a Markdown table at the end,
// and writes <out>/latest.md and latest.json. It is a benchmark, not a test:
// nothing asserts a time. Every process it starts is stopped by PID and its
// temp dir removed.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/moduleops/module-controller/e2e/framework"
	"github.com/moduleops/module-controller/pkg/basesim"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// Label and taint keys of virtual nodes (provider/keys.go), spelled here so
// the ideal provider builds the same Nodes without importing the provider.
const (
	labelEnv         = "virtual-kubelet.koupleless.io/env"
	labelStack       = "base.koupleless.io/stack"
	labelBaseName    = "base.koupleless.io/name"
	labelBaseVersion = "base.koupleless.io/version"
	taintVirtualNode = "schedule.koupleless.io/virtual-node"
)

type options struct {
	n          int
	broker     string
	idle       time.Duration
	out        string
	timeout    time.Duration
	pprofAddr  bool
	skipIdeal  bool
	heartbeat  time.Duration
	controller string
	replicas   int
	keep       bool
}

// result is everything the run measured; it becomes latest.json.
type result struct {
	N                int                `json:"n"`
	Broker           string             `json:"broker"`
	Machine          map[string]string  `json:"machine"`
	Phases           map[string]float64 `json:"phases_seconds"`
	Percentiles      map[string]string  `json:"percentiles"`
	Idle             map[string]float64 `json:"idle"`
	IdleRequests     map[string]float64 `json:"idle_api_requests_per_base_per_minute"`
	RolloutRequests  map[string]float64 `json:"registration_rollout_api_requests"`
	RolloutConflicts map[string]float64 `json:"registration_rollout_api_conflicts"`
	PodWatches       float64            `json:"open_pod_watches_after_rollout"`
	Churn            map[string]int     `json:"churn_counts"`
	Replicas         int                `json:"replicas"`
	Notes            []string           `json:"notes"`
	ControllerPeakKB int64              `json:"controller_peak_rss_kib"`
}

func main() {
	root, err := framework.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: run it from the repository (make bench):", err)
		os.Exit(1)
	}
	var o options
	flag.IntVar(&o.n, "n", 100, "number of simulated bases (100, 300, 1000)")
	flag.StringVar(&o.broker, "broker", "embedded", "MQTT broker: embedded (the controller's) or mosquitto")
	flag.DurationVar(&o.idle, "idle", 60*time.Second, "steady-state window")
	flag.StringVar(&o.out, "out", filepath.Join(root, "bench", "results"), "directory for latest.md and latest.json")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "deadline of each phase")
	flag.BoolVar(&o.skipIdeal, "skip-ideal", false, "skip the ideal baseline")
	flag.BoolVar(&o.pprofAddr, "pprof", false, "start the controller with --pprof-address on a free port and save CPU and heap profiles of registration, rollout and idle in the temp dir (kept)")
	flag.DurationVar(&o.heartbeat, "heartbeat", basesim.DefaultHeartbeatInterval, "base heartbeat interval")
	flag.StringVar(&o.controller, "controller-bin", filepath.Join(root, "bin", "module-controller"), "module-controller binary (make build)")
	flag.IntVar(&o.replicas, "replicas", 1, "controller replicas; more than 1 runs them in cluster mode and needs -broker mosquitto (CPU and RSS are summed over the replicas)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temp dir with every process's log")
	flag.Parse()
	if o.replicas < 1 || (o.replicas > 1 && o.broker != "mosquitto") {
		fmt.Fprintln(os.Stderr, "bench: -replicas must be at least 1, and more than 1 needs -broker mosquitto")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := &bench{opts: o, began: time.Now(), res: result{
		N: o.n, Broker: o.broker, Replicas: o.replicas, Phases: map[string]float64{}, Percentiles: map[string]string{},
		Idle: map[string]float64{}, IdleRequests: map[string]float64{}, RolloutRequests: map[string]float64{}, RolloutConflicts: map[string]float64{}, Churn: map[string]int{},
	}}
	err = b.run(ctx)
	if cerr := b.cleanup(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "\nbench failed: %v\n", err)
		os.Exit(1)
	}
}

type bench struct {
	opts       options
	began      time.Time
	dir        string
	cluster    *framework.Cluster
	controller *framework.Controller
	extra      []*framework.Controller // replicas 2… in cluster mode
	broker     *framework.Broker
	fleet      *basesim.Fleet
	client     kubernetes.Interface
	res        result
	rows       [][2]string
}

func (b *bench) step(format string, args ...any) {
	fmt.Printf("[%6.1fs] %s\n", time.Since(b.began).Seconds(), fmt.Sprintf(format, args...))
}

func (b *bench) row(k, v string) {
	b.rows = append(b.rows, [2]string{k, v})
	b.step("RESULT %s: %s", k, v)
}

func (b *bench) cleanup() error {
	var errs []error
	if b.fleet != nil {
		b.fleet.Stop()
	}
	for _, c := range b.extra {
		errs = append(errs, c.Stop())
	}
	if b.controller != nil {
		errs = append(errs, b.controller.Stop())
	}
	if b.broker != nil {
		errs = append(errs, b.broker.Stop())
	}
	if b.cluster != nil {
		errs = append(errs, b.cluster.Stop())
	}
	switch {
	case b.dir == "":
	case b.opts.keep:
		fmt.Printf("logs kept in %s\n", b.dir)
	case b.opts.pprofAddr: // keep the profiles, drop the rest
		entries, _ := os.ReadDir(b.dir)
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".pprof") {
				errs = append(errs, os.RemoveAll(filepath.Join(b.dir, e.Name())))
			}
		}
		fmt.Printf("profiles kept in %s\n", b.dir)
	default:
		errs = append(errs, os.RemoveAll(b.dir))
	}
	return errors.Join(errs...)
}

func (b *bench) run(ctx context.Context) error {
	o := b.opts
	var err error
	if b.dir, err = os.MkdirTemp("", "module-controller-bench-"); err != nil {
		return err
	}
	b.machine()
	b.step("starting the control plane")
	b.cluster, err = framework.Start(ctx, framework.Options{Dir: filepath.Join(b.dir, "cluster")})
	if err != nil {
		return err
	}
	b.client = b.cluster.Client
	b.res.Machine["kubernetes"] = b.kubeVersion(ctx)
	if !o.skipIdeal {
		if err := b.ideal(ctx); err != nil {
			return fmt.Errorf("ideal: %w", err)
		}
	}
	return b.real(ctx)
}

func (b *bench) machine() {
	m := map[string]string{"cpus": strconv.Itoa(runtime.NumCPU()), "go": runtime.Version(), "os": runtime.GOOS + "/" + runtime.GOARCH}
	if h, err := os.Hostname(); err == nil {
		m["host"] = h
	}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "model name") {
				_, v, _ := strings.Cut(l, ":")
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		m["memory"] = strings.TrimSpace(strings.SplitN(string(data), "\n", 2)[0])
	}
	b.res.Machine = m
	b.res.Notes = append(b.res.Notes, "load at start: "+uptime())
}

func uptime() string {
	out, err := exec.Command("uptime").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func (b *bench) kubeVersion(_ context.Context) string {
	v, err := b.client.Discovery().ServerVersion()
	if err != nil {
		return "unknown"
	}
	return v.GitVersion
}

// --- shared pieces ---

func daemonSet(ns, env, version string) *appsv1.DaemonSet {
	labels := map[string]string{"module-controller.koupleless.io/component": "module", "module.koupleless.io/name": "biz1", "module.koupleless.io/version": version}
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "biz1-peer", Namespace: ns, Labels: map[string]string{"module-controller.koupleless.io/component": "module-daemonset"}},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"module.koupleless.io/name": "biz1"}},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType, RollingUpdate: &appsv1.RollingUpdateDaemonSet{
				MaxUnavailable: ptr.To(intOrPercent("10%")), MaxSurge: ptr.To(intOrPercent("0")),
			}},
			Template: moduleTemplate(env, "biz1", version, labels, false),
		},
	}
}

func moduleTemplate(env, biz, version string, labels map[string]string, antiAffinity bool) corev1.PodTemplateSpec {
	aff := &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
			{Key: labelStack, Operator: corev1.NodeSelectorOpIn, Values: []string{"java"}},
			{Key: labelBaseName, Operator: corev1.NodeSelectorOpIn, Values: []string{"base"}},
			{Key: labelBaseVersion, Operator: corev1.NodeSelectorOpIn, Values: []string{"1.0.0"}},
			{Key: labelEnv, Operator: corev1.NodeSelectorOpIn, Values: []string{env}},
		}}},
	}}}
	if antiAffinity {
		aff.PodAntiAffinity = &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"module.koupleless.io/name": biz}},
			TopologyKey:   corev1.LabelHostname,
		}}}
	}
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: biz, Image: "https://modules.example.test/" + biz + "-" + version + "-ark-biz.jar",
				Env: []corev1.EnvVar{{Name: "BIZ_VERSION", Value: version}},
			}},
			Affinity:    aff,
			Tolerations: []corev1.Toleration{{Key: taintVirtualNode, Operator: corev1.TolerationOpEqual, Value: "True", Effect: corev1.TaintEffectNoExecute}},
		},
	}
}

// podTimes watches a namespace's pods and records when each was first seen
// bound and first seen Running (by name).
type podTimes struct {
	mu      sync.Mutex
	bound   map[string]time.Time
	running map[string]time.Time
	node    map[string]string
	version map[string]string
	stop    func()
}

func watchPods(ctx context.Context, c kubernetes.Interface, ns string) (*podTimes, error) {
	pt := &podTimes{bound: map[string]time.Time{}, running: map[string]time.Time{}, node: map[string]string{}, version: map[string]string{}}
	ctx, cancel := context.WithCancel(ctx)
	pt.stop = cancel
	watchObjects(ctx, c.CoreV1().RESTClient(), "pods", ns, "", &corev1.Pod{}, func(obj any, deleted bool) {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		if deleted {
			pt.mu.Lock()
			delete(pt.running, p.Name)
			pt.mu.Unlock()
			return
		}
		now := time.Now()
		pt.mu.Lock()
		if p.Spec.NodeName != "" {
			if _, ok := pt.bound[p.Name]; !ok {
				pt.bound[p.Name] = now
			}
			pt.node[p.Name] = p.Spec.NodeName
		}
		pt.version[p.Name] = p.Labels["module.koupleless.io/version"]
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			if _, ok := pt.running[p.Name]; !ok {
				pt.running[p.Name] = now
			}
		} else {
			delete(pt.running, p.Name)
		}
		pt.mu.Unlock()
	})
	return pt, nil
}

// runningCount counts Running pods whose version label is version ("" = any).
func (pt *podTimes) runningCount(version string) int {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	n := 0
	for name := range pt.running {
		if version == "" || pt.version[name] == version {
			n++
		}
	}
	return n
}

func (b *bench) waitFor(ctx context.Context, what string, check func() (int, bool)) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, b.opts.timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastPrint := time.Now()
	for {
		n, done := check()
		if done {
			return time.Since(start), nil
		}
		if time.Since(lastPrint) > 5*time.Second {
			b.step("  %s: %d/%d", what, n, b.opts.n)
			lastPrint = time.Now()
		}
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("%s: %d/%d after %s: %w", what, n, b.opts.n, time.Since(start).Round(time.Second), ctx.Err())
		case <-tick.C:
		}
	}
}

// --- ideal baseline ---

func (b *bench) ideal(ctx context.Context) error {
	const env, ns = "ideal", "bench-ideal"
	n := b.opts.n
	b.step("ideal: creating %d Ready nodes with an instant provider", n)
	if _, err := b.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	names := make([]string, n)
	err := parallel(n, 32, func(i int) error {
		name := fmt.Sprintf("vnode.ideal-%d.%s", i, env)
		names[i] = name
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
				labelEnv: env, labelStack: "java", labelBaseName: "base", labelBaseVersion: "1.0.0",
				corev1.LabelHostname: name, corev1.LabelOSStable: "linux", corev1.LabelArchStable: runtime.GOARCH,
				"virtual-kubelet.koupleless.io/component": "vnode", "type": "virtual-kubelet",
			}},
			Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: taintVirtualNode, Value: "True", Effect: corev1.TaintEffectNoExecute}}},
		}
		created, err := b.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		status := corev1.NodeStatus{
			Phase:       corev1.NodeRunning,
			Capacity:    corev1.ResourceList{corev1.ResourcePods: mustQty("110"), corev1.ResourceCPU: mustQty("8")},
			Allocatable: corev1.ResourceList{corev1.ResourcePods: mustQty("110"), corev1.ResourceCPU: mustQty("8")},
			Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "Ideal", LastHeartbeatTime: now, LastTransitionTime: now}},
			NodeInfo:    corev1.NodeSystemInfo{KubeletVersion: "ideal", OperatingSystem: "linux", Architecture: runtime.GOARCH},
		}
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			created.Status = status
			_, err := b.client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
			if apierrors.IsConflict(err) {
				if fresh, gerr := b.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{}); gerr == nil {
					created = fresh
				}
			}
			return err
		})
		if err != nil {
			return err
		}
		_, err = b.client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Create(ctx, lease(name), metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return err
	}
	lctx, stopLeases := context.WithCancel(ctx)
	defer stopLeases()
	go b.renewLeases(lctx, names)

	pt, err := watchPods(ctx, b.client, ns)
	if err != nil {
		return err
	}
	defer pt.stop()
	pctx, stopProvider := context.WithCancel(ctx)
	defer stopProvider()
	go b.instantProvider(pctx, ns)

	b.step("ideal: creating the DaemonSet")
	start := time.Now()
	if _, err := b.client.AppsV1().DaemonSets(ns).Create(ctx, daemonSet(ns, env, "0.0.1"), metav1.CreateOptions{}); err != nil {
		return err
	}
	d, err := b.waitFor(ctx, "ideal pods Running", func() (int, bool) { c := pt.runningCount(""); return c, c >= n })
	if err != nil {
		return err
	}
	_ = start
	b.res.Phases["ideal_rollout"] = d.Seconds()
	b.row("ideal DaemonSet rollout", fmtDur(d))

	b.step("ideal: removing the DaemonSet, namespace and nodes")
	stopProvider()
	fg := metav1.DeletePropagationForeground
	_ = b.client.AppsV1().DaemonSets(ns).Delete(ctx, "biz1-peer", metav1.DeleteOptions{PropagationPolicy: &fg})
	_ = b.client.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, metav1.ListOptions{})
	stopLeases()
	_ = parallel(n, 32, func(i int) error {
		_ = b.client.CoreV1().Nodes().Delete(ctx, names[i], metav1.DeleteOptions{})
		_ = b.client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Delete(ctx, names[i], metav1.DeleteOptions{})
		return nil
	})
	_ = b.client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	_, err = b.waitFor(ctx, "ideal pods gone", func() (int, bool) {
		l, err := b.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		return 0, err == nil && len(l.Items) == 0
	})
	return err
}

func lease(name string) *coordinationv1.Lease {
	now := metav1.NewMicroTime(time.Now())
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: corev1.NamespaceNodeLease},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To(name), LeaseDurationSeconds: ptr.To[int32](40), RenewTime: &now},
	}
}

// renewLeases renews the ideal nodes' leases every 10 s, as a kubelet does.
func (b *bench) renewLeases(ctx context.Context, names []string) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_ = parallel(len(names), 8, func(i int) error {
			l, err := b.client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, names[i], metav1.GetOptions{})
			if err != nil {
				return nil
			}
			now := metav1.NewMicroTime(time.Now())
			l.Spec.RenewTime = &now
			_, _ = b.client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Update(ctx, l, metav1.UpdateOptions{})
			return nil
		})
	}
}

// instantProvider marks every bound, not yet Running pod in ns Running and
// Ready, straight through the API, with a small worker pool.
func (b *bench) instantProvider(ctx context.Context, ns string) {
	queue := make(chan *corev1.Pod, 4*b.opts.n)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for p := range queue {
				now := metav1.Now()
				p.Status.Phase = corev1.PodRunning
				p.Status.StartTime = &now
				p.Status.Conditions = []corev1.PodCondition{
					{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
					{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
					{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
					{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
				}
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{
					Name: p.Spec.Containers[0].Name, Image: p.Spec.Containers[0].Image, Ready: true, Started: ptr.To(true),
					State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
				}}
				_, _ = b.client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
			}
		})
	}
	defer func() { close(queue); wg.Wait() }()
	var mu sync.Mutex // the informer's handler runs on one goroutine; mu guards against sends after ctx
	watchObjects(ctx, b.client.CoreV1().RESTClient(), "pods", ns, "", &corev1.Pod{}, func(obj any, deleted bool) {
		p, isPod := obj.(*corev1.Pod)
		if !isPod || deleted || p.Spec.NodeName == "" || p.Status.Phase == corev1.PodRunning || p.DeletionTimestamp != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() == nil {
			select {
			case queue <- p.DeepCopy():
			case <-ctx.Done():
			}
		}
	})
	<-ctx.Done()
	mu.Lock()
	defer mu.Unlock()
}

// --- the controller ---

func (b *bench) real(ctx context.Context) error {
	const env, ns = "bench", "bench"
	n := b.opts.n
	opts := framework.ControllerOptions{Kubeconfig: b.cluster.Kubeconfig, Env: env, Args: []string{"--log-level=info"}}
	if b.opts.broker == "mosquitto" {
		dir := filepath.Join(b.dir, "mosquitto")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		var err error
		if b.broker, err = framework.LaunchBroker(ctx, dir, framework.Mosquitto); err != nil {
			return err
		}
		opts.BrokerURL = b.broker.URL
	}
	var pprofAddr string
	if b.opts.pprofAddr {
		pprofAddr = "127.0.0.1:" + strconv.Itoa(freePort())
		opts.Args = append(opts.Args, "--pprof-address="+pprofAddr)
	}
	if _, err := b.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	replicaOpts := func(i int) framework.ControllerOptions {
		o := opts
		if b.opts.replicas > 1 {
			o.Args = append(append([]string{}, opts.Args...), "--cluster-mode", "--namespace="+ns, "--client-id=bench-"+strconv.Itoa(i))
		}
		return o
	}
	var err error
	b.controller, err = framework.LaunchController(ctx, b.opts.controller, b.dir, replicaOpts(0))
	if err != nil {
		return err
	}
	pids := []int{b.controller.PID()}
	for i := 1; i < b.opts.replicas; i++ {
		dir := filepath.Join(b.dir, "replica-"+strconv.Itoa(i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		c, err := framework.LaunchController(ctx, b.opts.controller, dir, replicaOpts(i))
		if err != nil {
			return err
		}
		b.extra = append(b.extra, c)
		pids = append(pids, c.PID())
	}
	b.step("module-controller ready (pids %v), broker %s", pids, b.controller.BrokerURL())

	// 1. Registration.
	nodeReady := map[string]time.Time{}
	var nmu sync.Mutex
	nctx, stopNodes := context.WithCancel(ctx)
	defer stopNodes()
	watchObjects(nctx, b.client.CoreV1().RESTClient(), "nodes", "", labelEnv+"="+env, &corev1.Node{}, func(obj any, deleted bool) {
		if nd, ok := obj.(*corev1.Node); ok && !deleted && ready(nd) {
			nmu.Lock()
			if _, seen := nodeReady[nd.Name]; !seen {
				nodeReady[nd.Name] = time.Now()
			}
			nmu.Unlock()
		}
	})
	prof := b.startProfile(pprofAddr, "registration", 8)
	phasesStart, err := b.apiRequests(ctx)
	if err != nil {
		return err
	}
	b.step("registration: starting %d bases at once", n)
	start := time.Now()
	b.fleet, err = basesim.StartFleet(ctx, basesim.FleetConfig{
		Base: basesim.Config{Broker: b.controller.BrokerURL(), Env: env, HeartbeatInterval: b.opts.heartbeat}, Count: n, IdentityPrefix: "b", Concurrency: n,
	})
	if err != nil {
		return err
	}
	d, err := b.waitFor(ctx, "vnodes Ready", func() (int, bool) { nmu.Lock(); defer nmu.Unlock(); return len(nodeReady), len(nodeReady) >= n })
	if err != nil {
		return err
	}
	prof()
	var per []time.Duration
	nmu.Lock()
	for _, t := range nodeReady {
		per = append(per, t.Sub(start))
	}
	nmu.Unlock()
	b.res.Phases["registration"] = d.Seconds()
	b.row("registration: all vnodes Ready", fmtDur(d))
	b.pct("registration per node (fleet start → Ready)", per)

	// 2. Rollout.
	pt, err := watchPods(ctx, b.client, ns)
	if err != nil {
		return err
	}
	defer pt.stop()
	prof = b.startProfile(pprofAddr, "rollout", 60)
	b.step("rollout: DaemonSet biz1 0.0.1 over %d bases", n)
	if _, err := b.client.AppsV1().DaemonSets(ns).Create(ctx, daemonSet(ns, env, "0.0.1"), metav1.CreateOptions{}); err != nil {
		return err
	}
	d, err = b.waitFor(ctx, "pods Running", func() (int, bool) { c := pt.runningCount("0.0.1"); return c, c >= n })
	if err != nil {
		return err
	}
	prof()
	b.res.Phases["rollout"] = d.Seconds()
	ratio := ""
	if id, ok := b.res.Phases["ideal_rollout"]; ok && id > 0 {
		b.res.Phases["rollout_ratio_to_ideal"] = d.Seconds() / id
		ratio = fmt.Sprintf(" (%.2f× ideal)", d.Seconds()/id)
	}
	b.row("DaemonSet rollout: all pods Running", fmtDur(d)+ratio)
	if err := b.rolloutRequests(ctx, phasesStart); err != nil {
		return err
	}
	toInstall, toRunning := b.podLatencies(pt, "0.0.1")
	b.pct("bound → installBiz at the base", toInstall)
	b.pct("ACTIVATED at the base → pod Running", toRunning)

	// 4. Steady state, once the rollout's trailing writes (Events that
	// the controllers' event broadcasters still flush) have settled.
	b.settle(ctx)
	b.step("steady state: %s idle with heartbeats flowing", b.opts.idle)
	idleStart := time.Now()
	before, err := b.apiRequests(ctx)
	if err != nil {
		return err
	}
	cpu0 := sumOver(pids, cpuSeconds)
	// The profile covers most of the window; its own cost is small.
	prof = b.startProfile(pprofAddr, "idle", max(1, int(b.opts.idle.Seconds())-5))
	time.Sleep(b.opts.idle) // a measurement window, not a wait for a condition
	cpu1 := sumOver(pids, cpuSeconds)
	prof()
	after, err := b.apiRequests(ctx)
	if err != nil {
		return err
	}
	cpu := cpu1 - cpu0
	b.res.Idle["controller_cpu_seconds"] = cpu
	b.res.Idle["controller_cpu_percent_of_core"] = 100 * cpu / b.opts.idle.Seconds()
	b.row("idle: controller CPU", fmt.Sprintf("%.2f s in %s (%.1f %% of one core)", cpu, b.opts.idle, 100*cpu/b.opts.idle.Seconds()))
	minutes := b.opts.idle.Minutes()
	var writes float64
	var keys []string
	for k, v := range after {
		dv := v - before[k]
		if dv <= 0 || strings.HasPrefix(k, "409 ") { // conflicts are counted in their verb too
			continue
		}
		per := dv / float64(n) / minutes
		b.res.IdleRequests[k] = per
		keys = append(keys, k)
		verb, _, _ := strings.Cut(k, " ")
		if verb != "GET" && verb != "LIST" && verb != "WATCH" {
			writes += per
		}
	}
	sort.Slice(keys, func(i, j int) bool { return b.res.IdleRequests[keys[i]] > b.res.IdleRequests[keys[j]] })
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, b.res.IdleRequests[k]))
	}
	b.row("idle: API writes per base per minute (all clients)", fmt.Sprintf("%.2f", writes))
	b.row("idle: API requests per base per minute by verb/resource", strings.Join(parts, "; "))
	b.row("idle: Events written, by source and reason", b.eventsSince(ctx, idleStart))

	// 5. Churn.
	if err := b.churn(ctx, ns, pt); err != nil {
		return err
	}
	// 6. Deployment at scale.
	if err := b.deployment(ctx, ns, env); err != nil {
		return err
	}
	hwm := sumOver(pids, vmHWM)
	b.res.ControllerPeakKB = hwm
	b.row("controller peak RSS (VmHWM)", fmt.Sprintf("%d MiB", hwm/1024))
	b.res.Notes = append(b.res.Notes, "load at end: "+uptime())
	return b.write()
}

func (b *bench) churn(ctx context.Context, ns string, pt *podTimes) error {
	n := b.opts.n
	k := max(1, n/10)
	b.step("churn: restarting %d bases (all their bizs lost) and rolling the DaemonSet to 0.0.2", k)
	start := time.Now()
	for i := range n {
		b.fleet.Base(i).ResetReceived()
	}
	if err := parallel(k, k, func(i int) error { return b.fleet.Base(i * 10 % n).Restart(ctx) }); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		ds, err := b.client.AppsV1().DaemonSets(ns).Get(ctx, "biz1-peer", metav1.GetOptions{})
		if err != nil {
			return err
		}
		ds.Spec.Template = daemonSet(ns, "bench", "0.0.2").Spec.Template
		if _, err = b.client.AppsV1().DaemonSets(ns).Update(ctx, ds, metav1.UpdateOptions{}); err == nil {
			break
		} else if !apierrors.IsConflict(err) || attempt > 10 {
			return err
		}
	}
	d, err := b.waitFor(ctx, "0.0.2 pods Running and ACTIVATED at their base", func() (int, bool) {
		c := 0
		for _, base := range b.fleet.Bases() {
			if z, ok := base.Biz("biz1", "0.0.2"); ok && z.State == protocol.BizActivated {
				c++
			}
		}
		return c, c >= n && pt.runningCount("0.0.2") >= n
	})
	lost, dup := 0, 0
	for _, base := range b.fleet.Bases() {
		switch c := base.ReceivedCount(protocol.CommandInstallBiz, "biz1:0.0.2"); {
		case c == 0:
			lost++
		case c > 1:
			dup++
		}
	}
	b.res.Churn["lost_installs"] = lost
	b.res.Churn["duplicate_installs"] = dup
	b.res.Phases["churn"] = d.Seconds()
	_ = start
	b.row("churn: 10 % bases restarted + DaemonSet rolled to 0.0.2 → converged", fmtDur(d))
	b.row("churn: lost / duplicate installBiz of 0.0.2", fmt.Sprintf("%d / %d", lost, dup))
	return err
}

func (b *bench) deployment(ctx context.Context, ns, env string) error {
	replicas := int32(b.opts.n / 2)
	labels := map[string]string{"module-controller.koupleless.io/component": "module", "module.koupleless.io/name": "biz2", "module.koupleless.io/version": "0.0.1"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "biz2-nonpeer", Namespace: ns, Labels: map[string]string{"module-controller.koupleless.io/component": "module-deployment"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"module.koupleless.io/name": "biz2"}},
			Template: moduleTemplate(env, "biz2", "0.0.1", labels, true),
		},
	}
	b.step("deployment: %d replicas of biz2 with hostname anti-affinity", replicas)
	if _, err := b.client.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		return err
	}
	d, err := b.waitFor(ctx, "biz2 pods Running", func() (int, bool) {
		l, err := b.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "module.koupleless.io/name=biz2"})
		if err != nil {
			return 0, false
		}
		c := 0
		for _, p := range l.Items {
			if p.Status.Phase == corev1.PodRunning {
				c++
			}
		}
		return c, c >= int(replicas)
	})
	if err != nil {
		return err
	}
	dup := 0
	for _, base := range b.fleet.Bases() {
		if base.ReceivedCount(protocol.CommandInstallBiz, "biz2:0.0.1") > 1 {
			dup++
		}
	}
	b.res.Phases["deployment"] = d.Seconds()
	b.res.Churn["deployment_duplicate_installs"] = dup
	b.row(fmt.Sprintf("Deployment of %d replicas, anti-affinity: all Running", replicas), fmtDur(d))
	b.row("Deployment: bases with duplicate installBiz", strconv.Itoa(dup))
	return nil
}

// podLatencies returns, per pod of version, bound → installBiz at its base and
// ACTIVATED at its base → seen Running.
func (b *bench) podLatencies(pt *podTimes, version string) (toInstall, toRunning []time.Duration) {
	byNode := map[string]*basesim.Base{}
	for _, base := range b.fleet.Bases() {
		byNode["vnode."+base.Identity()+"."+base.Env()] = base
	}
	pt.mu.Lock()
	defer pt.mu.Unlock()
	for name, node := range pt.node {
		base := byNode[node]
		if base == nil || pt.version[name] != version {
			continue
		}
		for _, c := range base.Received() {
			if c.Name == protocol.CommandInstallBiz && len(c.Bizs) == 1 && c.Bizs[0].BizVersion == version {
				toInstall = append(toInstall, c.At.Sub(pt.bound[name]))
				break
			}
		}
		if z, ok := base.Biz("biz1", version); ok && len(z.Records) > 0 {
			if r, ok := pt.running[name]; ok {
				toRunning = append(toRunning, r.Sub(z.Records[len(z.Records)-1].ChangedAt()))
			}
		}
	}
	return toInstall, toRunning
}

func (b *bench) pct(what string, d []time.Duration) {
	if len(d) == 0 {
		b.row(what, "no samples")
		return
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	at := func(q float64) time.Duration { return d[int(q*float64(len(d)-1))] }
	s := fmt.Sprintf("p50 %s, p99 %s, max %s (n=%d)", fmtDur(at(0.5)), fmtDur(at(0.99)), fmtDur(at(1)), len(d))
	b.res.Percentiles[what] = s
	b.row(what, s)
}

// rolloutRequests reports the API requests of all clients from the start of
// registration to the end of the rollout, by verb and resource, and the pod
// watches open once the rollout is done.
func (b *bench) rolloutRequests(ctx context.Context, before map[string]float64) error {
	after, err := b.apiRequests(ctx)
	if err != nil {
		return err
	}
	var keys []string
	for k, v := range after {
		if strings.HasPrefix(k, "409 ") {
			continue
		}
		if dv := v - before[k]; dv > 0 {
			b.res.RolloutRequests[k] = dv
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return b.res.RolloutRequests[keys[i]] > b.res.RolloutRequests[keys[j]] })
	var parts []string
	for i, k := range keys {
		if i == 12 {
			parts = append(parts, "…")
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.0f", k, b.res.RolloutRequests[k]))
	}
	b.row("registration + rollout: API requests by verb/resource (all clients)", strings.Join(parts, "; "))
	parts = parts[:0]
	for k, v := range after {
		if rest, ok := strings.CutPrefix(k, "409 "); ok {
			if dv := v - before[k]; dv > 0 {
				b.res.RolloutConflicts[rest] = dv
				parts = append(parts, fmt.Sprintf("%s %.0f", rest, dv))
			}
		}
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		parts = append(parts, "none")
	}
	b.row("registration + rollout: 409 conflicts by verb/resource (all clients)", strings.Join(parts, "; "))
	open, err := b.scrape(ctx, "apiserver_longrunning_requests")
	if err != nil {
		return err
	}
	b.res.PodWatches = open["WATCH pods"]
	b.row("open pod watches after the rollout (all clients)", fmt.Sprintf("%.0f", open["WATCH pods"]))
	return nil
}

// apiRequests scrapes apiserver_request_total, summed by "VERB resource";
// the 409 conflicts among them are also under "409 VERB resource".
func (b *bench) apiRequests(ctx context.Context) (map[string]float64, error) {
	return b.scrape(ctx, "apiserver_request_total")
}

// scrape reads one metric of the API server's /metrics, summed by "VERB
// resource".
func (b *bench) scrape(ctx context.Context, metric string) (map[string]float64, error) {
	raw, err := b.client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, l := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(l, metric+"{") {
			continue
		}
		i := strings.LastIndexByte(l, '}')
		v, err := strconv.ParseFloat(strings.TrimSpace(l[i+1:]), 64)
		if err != nil {
			continue
		}
		lbl := map[string]string{}
		for _, kv := range strings.Split(l[len(metric+"{"):i], ",") {
			k, val, _ := strings.Cut(kv, "=")
			lbl[k] = strings.Trim(val, `"`)
		}
		res := lbl["resource"]
		if lbl["subresource"] != "" {
			res += "/" + lbl["subresource"]
		}
		out[lbl["verb"]+" "+res] += v
		if lbl["code"] == "409" {
			out["409 "+lbl["verb"]+" "+res] += v
		}
	}
	return out, nil
}

// sumOver adds f over every replica's process.
func sumOver[T int64 | float64](pids []int, f func(int) T) T {
	var sum T
	for _, pid := range pids {
		sum += f(pid)
	}
	return sum
}

func cpuSeconds(pid int) float64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// fields after the command: state is f[0]; utime is field 14 → f[11], stime f[12].
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100 // USER_HZ
}

func vmHWM(pid int) int64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			v, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return v
		}
	}
	return 0
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	default:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
}

func (b *bench) write() error {
	var md strings.Builder
	fmt.Fprintf(&md, "# module-controller benchmark: N = %d bases, broker %s, %d controller replica(s)\n\n", b.opts.n, b.opts.broker, b.opts.replicas)
	keys := make([]string, 0, len(b.res.Machine))
	for k := range b.res.Machine {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&md, "- %s: %s\n", k, b.res.Machine[k])
	}
	for _, n := range b.res.Notes {
		fmt.Fprintf(&md, "- %s\n", n)
	}
	md.WriteString("\n| measurement | value |\n|---|---|\n")
	for _, r := range b.rows {
		fmt.Fprintf(&md, "| %s | %s |\n", r[0], r[1])
	}
	fmt.Println()
	fmt.Print(md.String())
	if err := os.MkdirAll(b.opts.out, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(b.res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(b.opts.out, "latest.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(b.opts.out, "latest.json"), append(js, '\n'), 0o644)
}

// settle waits (at most 2 minutes) until no Event was written for 10 s, so
// the steady-state window does not count the rollout's trailing Events.
func (b *bench) settle(ctx context.Context) {
	b.step("waiting for the rollout's Events to settle")
	deadline := time.Now().Add(2 * time.Minute)
	last, quietSince := -1, time.Now()
	for time.Now().Before(deadline) {
		evs, err := b.client.CoreV1().Events(metav1.NamespaceAll).List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err == nil {
			n := 0
			for _, e := range evs.Items {
				n += int(max(e.Count, 1))
			}
			if n != last {
				last, quietSince = n, time.Now()
			} else if time.Since(quietSince) >= 10*time.Second {
				return
			}
		}
		time.Sleep(time.Second) // polling the API server's Event count
	}
}

// eventsSince summarises the Events written (created or counted again) since
// t, by source component and reason.
func (b *bench) eventsSince(ctx context.Context, t time.Time) string {
	evs, err := b.client.CoreV1().Events(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "error: " + err.Error()
	}
	counts := map[string]int{}
	for _, e := range evs.Items {
		last := e.LastTimestamp.Time
		if e.Series != nil {
			last = e.Series.LastObservedTime.Time
		}
		if last.IsZero() {
			last = e.EventTime.Time
		}
		if last.Before(t) {
			continue
		}
		src := e.Source.Component
		if src == "" {
			src = e.ReportingController
		}
		counts[src+" "+e.Reason]++
	}
	if len(counts) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, counts[k]))
	}
	return strings.Join(parts, "; ")
}
