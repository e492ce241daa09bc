//go:build e2e

package chaos

import (
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/moduleops/module-controller/pkg/basesim"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// snapshot is what the API server and the bases say at one moment, against
// what should run: every live base has a Ready node and runs the DaemonSet's
// and the peer Deployment's module, the non-peer Deployment runs its replicas
// on distinct live bases, every such pod is Running on a Ready node and its
// biz is ACTIVATED on that base, and nothing else is left over.
type snapshot struct {
	problems []string // why it is not converged; empty when it is
	lost     int      // module placements that should run and do not
	running  int      // module pods Running with their biz ACTIVATED
	orphans  []string // bizs ACTIVATED on a live base with no pod for them
	// podKeys are the biz keys of the live module pods on each base.
	podKeys map[string]map[string]bool
}

func (s *snapshot) problem(format string, args ...any) {
	s.problems = append(s.problems, fmt.Sprintf(format, args...))
}

// activeKeys returns the biz keys ACTIVATED on b.
func activeKeys(b *basesim.Base) map[string]bool {
	out := map[string]bool{}
	for _, z := range b.Bizs() {
		if z.State == protocol.BizActivated {
			out[z.Key()] = true
		}
	}
	return out
}

func podReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podKey returns the biz key a module pod runs.
func podKey(p *corev1.Pod) string {
	c := p.Spec.Containers[0]
	for _, e := range c.Env {
		if e.Name == envBizVersion {
			return protocol.BizKey(c.Name, e.Value)
		}
	}
	return protocol.BizKey(c.Name, "")
}

// observe takes a snapshot. An API error is a problem, not a failure: the
// apiserver may be the fault.
func (w *world) observe() snapshot {
	ctx := w.t.Context()
	s := snapshot{podKeys: map[string]map[string]bool{}}
	nodes, err := w.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: labelEnv + "=" + w.env})
	if err != nil {
		s.problem("list nodes: %v", err)
		s.lost = -1
		return s
	}
	pods, err := w.client.CoreV1().Pods(w.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		s.problem("list pods: %v", err)
		s.lost = -1
		return s
	}

	byID := map[string]*simBase{}
	readyNode := map[string]bool{} // node name → Ready
	for _, b := range w.live() {
		byID[w.nodeName(b.Identity())] = b
	}
	for i := range nodes.Items {
		n := &nodes.Items[i]
		if byID[n.Name] == nil {
			s.problem("node %s should not exist", n.Name)
			continue
		}
		readyNode[n.Name] = nodeReady(n)
	}
	active := map[string]map[string]bool{}
	for name, b := range byID {
		active[name] = activeKeys(b.Base)
		ready, ok := readyNode[name]
		switch {
		case !ok:
			s.problem("node %s missing", name)
		case !ready:
			s.problem("node %s not Ready", name)
		}
	}

	// good[biz] counts, per node, the pods of the current version that run.
	good := map[string]map[string]int{}
	for _, biz := range workloads {
		good[biz] = map[string]int{}
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		biz := p.Labels[labelBizName]
		if _, ours := good[biz]; !ours || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		key := podKey(p)
		if p.DeletionTimestamp != nil {
			s.problem("pod %s (%s) terminating on %q", p.Name, key, p.Spec.NodeName)
			continue
		}
		node := p.Spec.NodeName
		if node != "" {
			if s.podKeys[node] == nil {
				s.podKeys[node] = map[string]bool{}
			}
			s.podKeys[node][key] = true
		}
		switch {
		case node == "":
			s.problem("pod %s (%s) Pending: %s", p.Name, key, podWhy(p))
		case byID[node] == nil:
			s.problem("pod %s (%s) on node %s that should not exist", p.Name, key, node)
		case !podReady(p):
			s.problem("pod %s (%s) on %s not Running: %s", p.Name, key, node, podWhy(p))
		case !active[node][key]:
			s.problem("pod %s Running on %s but %s is not ACTIVATED on the base", p.Name, node, key)
		case key != protocol.BizKey(biz, w.versions[biz]):
			s.problem("pod %s on %s runs %s, not version %s", p.Name, node, key, w.versions[biz])
		default:
			good[biz][node]++
			s.running++
		}
	}
	for _, biz := range []string{bizDaemonSet, bizPeer} {
		for name := range byID {
			switch n := good[biz][name]; {
			case n == 0:
				s.lost++
			case n > 1:
				s.problem("%d %s pods run on %s", n, biz, name)
			}
		}
	}
	spread := 0
	for name, n := range good[bizNonPeer] {
		spread++
		if n > 1 {
			s.problem("%d %s pods run on %s", n, bizNonPeer, name)
		}
	}
	if missing := w.set.nonPeerReplicas - spread; missing > 0 {
		s.lost += missing
	} else if missing < 0 {
		s.problem("%d %s pods run, want %d", spread, bizNonPeer, w.set.nonPeerReplicas)
	}
	if s.lost > 0 {
		s.problem("%d module placements that should run do not", s.lost)
	}
	if d, err := w.client.AppsV1().Deployments(w.ns).Get(ctx, "chaos-peer", metav1.GetOptions{}); err != nil {
		s.problem("get peer deployment: %v", err)
	} else if d.Spec.Replicas == nil {
		s.problem("peer deployment has no replicas set, want %d (live bases)", len(byID))
	} else if int(*d.Spec.Replicas) != len(byID) {
		s.problem("peer deployment has %d replicas, want %d (live bases)", *d.Spec.Replicas, len(byID))
	}
	for name, keys := range active {
		for key := range keys {
			if !s.podKeys[name][key] {
				s.orphans = append(s.orphans, name+"/"+key)
			}
		}
	}
	sort.Strings(s.problems)
	sort.Strings(s.orphans)
	return s
}

func podWhy(p *corev1.Pod) string {
	var parts []string
	parts = append(parts, string(p.Status.Phase))
	if p.Status.Reason != "" {
		parts = append(parts, p.Status.Reason)
	}
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			parts = append(parts, c.Message)
		}
	}
	return strings.Join(parts, " ")
}

// waitConverged polls until the snapshot has no problem or timeout passes,
// and returns the last snapshot, with the problems of the poll before it
// when it converged (what held convergence up last).
func (w *world) waitConverged(timeout time.Duration) (snapshot, []string) {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last []string
	for {
		s := w.observe()
		if len(s.problems) == 0 || time.Now().After(deadline) || w.t.Context().Err() != nil {
			return s, last
		}
		last = s.problems
		select {
		case <-tick.C:
		case <-w.t.Context().Done():
		}
	}
}

// slowConvergence is when a row notes what held convergence up.
const slowConvergence = 30 * time.Second

// window counts what happens between the start of a fault and convergence.
type window struct {
	fault     string
	began     time.Time
	active    map[string]map[string]bool // base ID → bizs ACTIVATED at the start
	uids      map[string]types.UID       // node name → UID at the start
	restarts  int                        // unexpected controller exits before
	restarted map[string]bool            // bases the fault restarted (they lost their bizs)
	versions  map[string]string
	dropped   map[string]float64 // the controller's drop counters at the start
	orphans   map[string]bool    // orphaned bizs at the start (an earlier fault's)
}

// begin opens a window: the bases' command logs start from zero.
func (w *world) begin(fault string) *window {
	win := &window{fault: fault, began: time.Now(), active: map[string]map[string]bool{}, uids: map[string]types.UID{},
		restarted: map[string]bool{}, versions: map[string]string{}}
	for _, b := range w.live() {
		b.ResetReceived()
		win.active[b.Identity()] = activeKeys(b.Base)
	}
	nodes, err := w.client.CoreV1().Nodes().List(w.t.Context(), metav1.ListOptions{LabelSelector: labelEnv + "=" + w.env})
	if err == nil {
		for _, n := range nodes.Items {
			win.uids[n.Name] = n.UID
		}
	}
	win.restarts, _ = w.ctrl.unexpectedExits()
	for k, v := range w.versions {
		win.versions[k] = v
	}
	win.dropped = droppedMessages(w.ctrl.metrics())
	win.orphans = map[string]bool{}
	for _, o := range w.observe().orphans {
		win.orphans[o] = true
	}
	w.t.Logf("%s: fault begins", fault)
	return win
}

// row is one line of the results table.
type row struct {
	fault, broker, injected string
	converged               bool
	convergence             time.Duration // from the end of the fault to convergence
	lost                    int
	duplicates              int // installs beyond the one each missing module needs
	wrongUninstalls         int // uninstall commands for modules that should stay
	wrongPodDeletes         int // module pods of a live base deleted though their workload still wants them there
	wrongNodeDeletes        int // nodes deleted that should stay
	restarts                int // controller exits the suite did not inject
	orphans                 int // orphaned bizs at the end that were not at the start
	notes                   []string
}

// finish waits for convergence after the fault ended (healed) and counts.
func (w *world) finish(win *window, injected string, healed time.Time) row {
	s, last := w.waitConverged(w.set.converge)
	r := row{fault: win.fault, broker: string(w.kind), injected: injected, converged: len(s.problems) == 0}
	r.convergence = time.Since(healed)
	if r.converged && r.convergence > slowConvergence && len(last) > 0 {
		r.notes = append(r.notes, fmt.Sprintf("last unmet a second before convergence: %s", strings.Join(last[:min(len(last), 4)], "; ")))
	}
	if !r.converged {
		r.lost = s.lost
		shown := s.problems[:min(len(s.problems), 8)]
		r.notes = append(r.notes, fmt.Sprintf("not converged after %s: %s", w.set.converge, strings.Join(shown, "; ")))
		if r.lost < 0 { // the API server did not answer
			r.lost = 0
		}
	}
	keys := w.allKeys()
	var dupAt, uninstAt []string
	for _, b := range w.live() {
		id := b.Identity()
		final := s.podKeys[w.nodeName(id)]
		before := win.active[id]
		installs := 0
		for _, key := range keys {
			n := b.ReceivedCount(protocol.CommandInstallBiz, key) + b.ReceivedCount(basesim.CommandBaseline, key)
			installs += b.ReceivedCount(protocol.CommandInstallBiz, key)
			needed := 0
			if final[key] && (!before[key] || win.restarted[id]) {
				needed = 1
			}
			if extra := n - needed; extra > 0 {
				r.duplicates += extra
				dupAt = append(dupAt, fmt.Sprintf("%s %s x%d", id, key, extra))
			}
			name, _, _ := strings.Cut(key, ":")
			shouldStay := before[key] && key == protocol.BizKey(name, w.versions[name])
			if u := b.ReceivedCount(protocol.CommandUninstallBiz, key); shouldStay && u > 0 {
				r.wrongUninstalls += u
				uninstAt = append(uninstAt, fmt.Sprintf("%s %s x%d", id, key, u))
			}
		}
		// An install of a biz no workload runs can only be a mistake.
		if other := b.ReceivedCount(protocol.CommandInstallBiz, "") - installs; other > 0 {
			r.duplicates += other
			dupAt = append(dupAt, fmt.Sprintf("%s %d installs of other bizs", id, other))
		}
	}
	if len(dupAt) > 0 {
		r.notes = append(r.notes, fmt.Sprintf("duplicate installs (%d base/biz pairs): %s", len(dupAt), strings.Join(dupAt[:min(len(dupAt), 4)], ", ")))
	}
	if len(uninstAt) > 0 {
		r.notes = append(r.notes, fmt.Sprintf("uninstalls of modules that should stay (%d base/biz pairs): %s", len(uninstAt), strings.Join(uninstAt[:min(len(uninstAt), 4)], ", ")))
	}
	stay := map[string]bool{}
	for _, b := range w.live() {
		stay[w.nodeName(b.Identity())] = true
	}
	deleted := map[string]bool{}
	for _, d := range w.nodes.since(win.began) {
		if stay[d.name] && win.uids[d.name] != "" {
			deleted[d.name] = true
		}
	}
	if nodes, err := w.client.CoreV1().Nodes().List(w.t.Context(), metav1.ListOptions{LabelSelector: labelEnv + "=" + w.env}); err == nil {
		now := map[string]types.UID{}
		for _, n := range nodes.Items {
			now[n.Name] = n.UID
		}
		for name, uid := range win.uids {
			if stay[name] && now[name] != uid {
				deleted[name] = true
			}
		}
	}
	r.wrongNodeDeletes = len(deleted)
	var podsAt []string
	for _, d := range w.pods.since(win.began) {
		name, _, _ := strings.Cut(d.key, ":")
		if stay[d.node] && d.key == protocol.BizKey(name, w.versions[name]) {
			r.wrongPodDeletes++
			podsAt = append(podsAt, d.node+"/"+d.key)
		}
	}
	if len(podsAt) > 0 {
		r.notes = append(r.notes, fmt.Sprintf("module pods deleted that should stay (%d): %s", len(podsAt), strings.Join(podsAt[:min(len(podsAt), 4)], ", ")))
	}
	n, exits := w.ctrl.unexpectedExits()
	r.restarts = n - win.restarts
	for _, e := range exits[win.restarts:] {
		r.notes = append(r.notes, "controller exit: "+e)
	}
	var orphans []string
	for _, o := range s.orphans {
		if !win.orphans[o] {
			orphans = append(orphans, o)
		}
	}
	r.orphans = len(orphans)
	if r.orphans > 0 {
		r.notes = append(r.notes, fmt.Sprintf("new orphaned bizs (ACTIVATED, no pod): %s", strings.Join(orphans[:min(len(orphans), 6)], ", ")))
	}
	var drops []string
	total := 0.0
	for reason, v := range droppedMessages(w.ctrl.metrics()) {
		if d := v - win.dropped[reason]; d > 0 {
			total += d
			drops = append(drops, fmt.Sprintf("%s %.0f", reason, d))
		}
	}
	if total > 0 {
		sort.Strings(drops)
		r.notes = append(r.notes, fmt.Sprintf("controller dropped %.0f MQTT messages (module_controller_mqtt_messages_dropped_total: %s)", total, strings.Join(drops, ", ")))
	}
	w.t.Logf("%s: %s; converged=%v in %s, lost %d, duplicate installs %d, wrong uninstalls %d, wrong pod deletions %d, wrong node deletions %d, unexpected restarts %d, orphans %d",
		r.fault, injected, r.converged, r.convergence.Round(time.Second), r.lost, r.duplicates, r.wrongUninstalls, r.wrongPodDeletes, r.wrongNodeDeletes, r.restarts, r.orphans)
	for _, note := range r.notes {
		w.t.Logf("  note: %s", note)
	}
	w.rows = append(w.rows, r)
	return r
}

// droppedMessages returns module_controller_mqtt_messages_dropped_total by
// reason from a Prometheus text exposition.
func droppedMessages(metrics string) map[string]float64 {
	return byReason(metrics, "module_controller_mqtt_messages_dropped_total")
}

// byReason returns the counter metric by its reason label from a
// Prometheus text exposition.
func byReason(metrics, metric string) map[string]float64 {
	out := map[string]float64{}
	name := metric + "{"
	for line := range strings.Lines(metrics) {
		rest, ok := strings.CutPrefix(line, name)
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		reason := labels
		if _, r, ok := strings.Cut(labels, `reason="`); ok {
			reason, _, _ = strings.Cut(r, `"`)
		}
		var v float64
		if _, err := fmt.Sscan(strings.TrimSpace(value), &v); err == nil {
			out[reason] += v
		}
	}
	return out
}

// bad reports whether any count of the row is not zero.
func (r row) bad() bool {
	return !r.converged || r.lost != 0 || r.duplicates != 0 || r.wrongUninstalls != 0 || r.wrongPodDeletes != 0 || r.wrongNodeDeletes != 0 || r.restarts != 0
}
