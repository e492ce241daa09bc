//go:build e2e

package chaos

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/moduleops/module-controller/e2e/framework"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// The faults. Each opens a window before it injects, heals, and closes the
// window with the counts (finish). A fault that cannot even be injected fails
// the test: the table would lie.

// brokerOutage takes the broker away for d. Mosquitto is stopped by its PID
// and started again on the same port. The embedded broker lives inside the
// controller process, so it cannot stop while the controller runs (that is
// the controller crash); what fails in production is the path from the bases
// to it (its Service, a load balancer, the network), so every base's link to
// it is cut: connections drop and connects are refused, exactly what the
// bases see of a stopped broker, while the controller keeps its own
// in-process connection and sees every base go silent at once.
func (w *world) brokerOutage(d time.Duration) row {
	t, ctx := w.t, w.t.Context()
	win := w.begin("broker outage")
	var injected string
	if w.kind == framework.Mosquitto {
		pid := w.broker.PID()
		require.NoError(t, w.broker.Stop())
		injected = fmt.Sprintf("mosquitto (pid %d) stopped for %s, started again on the same port", pid, d)
		w.hold(d)
		require.NoError(t, w.broker.Start(ctx))
	} else {
		for _, b := range w.live() {
			b.link.Cut()
		}
		injected = fmt.Sprintf("all %d bases cut off the embedded broker for %s (connections closed, connects refused)", len(w.live()), d)
		w.hold(d)
		for _, b := range w.live() {
			require.NoError(t, b.link.Restore(ctx))
		}
	}
	return w.finish(win, injected, time.Now())
}

// controllerCrash updates the DaemonSet to a new version and kills the
// controller with SIGKILL by its PID once part of the bases run the new
// version; the supervisor starts it again at once, as the kubelet would.
func (w *world) controllerCrash() row {
	t := w.t
	win := w.begin("controller crash")
	live := len(w.live())
	next := w.bumpDaemonSet()
	want := max(1, live/4)
	updated := 0
	require.Eventuallyf(t, func() bool {
		updated = w.runningPods(bizDaemonSet, next)
		return updated >= want
	}, w.set.converge, 200*time.Millisecond, "the DaemonSet rollout to %s did not start: %d pods updated", next, updated)
	pid, err := w.ctrl.crash()
	require.NoError(t, err)
	injected := fmt.Sprintf("kill -9 controller (pid %d) with %d/%d DaemonSet pods Running at %s, started again at once", pid, updated, live, next)
	if updated == live {
		injected += " (the rollout had already finished)"
	}
	return w.finish(win, injected, time.Now())
}

// runningPods counts the Running pods of biz at version.
func (w *world) runningPods(biz, version string) int {
	pods, err := w.client.CoreV1().Pods(w.ns).List(w.t.Context(), metav1.ListOptions{LabelSelector: labelBizName + "=" + biz + "," + labelBizVer + "=" + version})
	if err != nil {
		return 0
	}
	n := 0
	for i := range pods.Items {
		if pods.Items[i].DeletionTimestamp == nil && podReady(&pods.Items[i]) {
			n++
		}
	}
	return n
}

// apiserverRestart stops kube-apiserver by its PID for d and starts it again
// with the same flags: same port, same etcd.
func (w *world) apiserverRestart(d time.Duration) row {
	t := w.t
	win := w.begin("apiserver restart")
	pid := w.cluster.PIDs()["kube-apiserver"]
	require.NoError(t, w.cluster.StopComponent("kube-apiserver"))
	w.hold(d)
	require.NoError(t, w.cluster.StartComponent(t.Context(), "kube-apiserver"))
	return w.finish(win, fmt.Sprintf("kube-apiserver (pid %d) stopped for %s, started again on the same port and etcd", pid, d), time.Now())
}

// pick returns n live bases spread over the fleet, skipping the first skip
// such picks (so that two faults pick different bases).
func (w *world) pick(n, skip int) []*simBase {
	live := w.live()
	stride := max(1, len(live)/(n*(skip+1)))
	var out []*simBase
	for i := skip; len(out) < n && i < len(live); i += stride {
		out = append(out, live[i])
	}
	return out
}

func ids(bases []*simBase) string {
	out := make([]string, 0, len(bases))
	for _, b := range bases {
		out = append(out, b.Identity())
	}
	return strings.Join(out, " ")
}

// baseRestart restarts n bases as JVM restarts: each loses every installed
// biz and must get them back from the baseline it asks for.
func (w *world) baseRestart(n int) row {
	t := w.t
	win := w.begin("base restart")
	bases := w.pick(n, 0)
	var wg sync.WaitGroup
	errs := make([]error, len(bases))
	for i, b := range bases {
		win.restarted[b.Identity()] = true
		wg.Go(func() { errs[i] = b.Restart(t.Context()) })
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	injected := fmt.Sprintf("%d bases restarted (down %s, every biz lost): %s", len(bases), w.set.restartDowntime, ids(bases))
	return w.finish(win, injected, time.Now())
}

// basePartition freezes the links of n bases for d: nothing moves either way,
// connections stay open, and what was sent arrives after the partition.
func (w *world) basePartition(n int, d time.Duration) row {
	win := w.begin("base partition")
	bases := w.pick(n, 1)
	for _, b := range bases {
		b.link.Freeze()
	}
	w.hold(d)
	for _, b := range bases {
		b.link.Thaw()
	}
	injected := fmt.Sprintf("%d bases partitioned (no byte either way) for %s: %s", len(bases), d, ids(bases))
	return w.finish(win, injected, time.Now())
}

// baseGone makes n bases disappear for good: their links are cut (the broker
// sees the connections drop, no DISCONNECT) and the bases stop. Their nodes
// should be removed and their pods rescheduled or gone.
func (w *world) baseGone(n int) row {
	win := w.begin("base gone")
	live := w.live()
	bases := live[len(live)-n:]
	for _, b := range bases {
		b.link.Cut()
		b.Stop()
		b.gone = true
	}
	injected := fmt.Sprintf("%d bases gone for good: %s", len(bases), ids(bases))
	return w.finish(win, injected, time.Now())
}

// hostileFlood publishes rate messages per second for d from a separate
// MQTT client straight to the broker: malformed, oversized, spoofed,
// wrong-type, stale and future-stamped messages on the bases' topics, and
// install and uninstall results for operations nobody asked for.
//
// A DaemonSet rollout runs meanwhile and must finish like any other. The
// controller must stay up with its RSS bounded, no node may appear for the
// made-up identities, and every kind of drop must be counted.
func (w *world) hostileFlood(rate int, d time.Duration) row {
	t := w.t
	win := w.begin("hostile flood")
	before := w.ctrl.metrics()
	next := w.bumpDaemonSet()
	rss := w.sampleRSS()
	c := paho.NewClient(paho.NewClientOptions().
		AddBroker(w.ctrl.BrokerURL()).
		SetClientID(framework.RandomName("chaos-flood-", 8)).
		SetCleanSession(true).
		SetAutoReconnect(true).
		SetConnectTimeout(10 * time.Second))
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(15*time.Second), "flood client connect timed out")
	require.NoError(t, tok.Error())
	defer c.Disconnect(250)

	live := w.live()
	var sent, failed, oversized int
	kinds := map[string]int{}
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	began := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	perTick := max(1, rate/100)
	var msgs []floodMessage
	regenerated := time.Time{}
	huge := make([]byte, protocol.MaxPayloadSize+1)
	for i := range huge {
		huge[i] = 'x'
	}
	var pending []paho.Token
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			continue
		case <-tick.C:
		}
		if time.Since(regenerated) > time.Second { // "now" stays fresh
			msgs, regenerated = w.floodMessages(live), time.Now()
		}
		for range perTick {
			var topic, kind string
			var payload []byte
			if sent%100 == 99 {
				b := live[sent%len(live)]
				topic, kind, payload = b.Topic(protocol.SuffixHeartbeat), "oversized", huge
				oversized++
			} else {
				m := msgs[sent%len(msgs)]
				topic, kind, payload = m.topic, m.kind, m.payload
			}
			kinds[kind]++
			pending = append(pending, c.Publish(topic, 1, false, payload))
			sent++
		}
		// Back-pressure: at most a second's worth of messages unacknowledged.
		for len(pending) > rate {
			if !pending[0].WaitTimeout(10*time.Second) || pending[0].Error() != nil {
				failed++
			}
			pending = pending[1:]
		}
	}
	for _, p := range pending {
		if !p.WaitTimeout(10*time.Second) || p.Error() != nil {
			failed++
		}
	}
	elapsed := time.Since(began)
	first, peak := rss()
	w.checkFloodCounted(before, w.ctrl.metrics())
	nodes, err := w.client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	require.NoError(t, err)
	for _, n := range nodes.Items {
		if strings.Contains(n.Name, unknownPrefix) {
			t.Errorf("hostile flood: node %s was created for a made-up identity", n.Name)
		}
	}
	if peak > maxFloodRSS {
		t.Errorf("hostile flood: controller RSS reached %d MiB (limit %d MiB)", peak>>20, maxFloodRSS>>20)
	}
	var mix []string
	for _, k := range floodKinds {
		mix = append(mix, fmt.Sprintf("%s %d", k, kinds[k]))
	}
	injected := fmt.Sprintf("%d messages in %s (%.0f/s; %d not acknowledged) from a separate client, during a DaemonSet rollout to %s: %s; controller RSS %d → peak %d MiB",
		sent, elapsed.Round(time.Second), float64(sent)/elapsed.Seconds(), failed, next, strings.Join(mix, ", "), first>>20, peak>>20)
	return w.finish(win, injected, time.Now())
}

// floodKinds are the kinds of hostile messages, in table order.
var floodKinds = []string{"malformed", "oversized", "spoofed", "wrong-type", "stale", "future", "unsolicited", "unknown"}

// unknownPrefix starts the made-up identities of the flood's "unknown"
// messages; no node name may contain it.
const unknownPrefix = "10.66."

// maxFloodRSS bounds the controller's resident memory during the flood: a
// few times what it uses serving the suite's bases.
const maxFloodRSS = 512 << 20

// sampleRSS samples the controller's VmRSS every 200 ms until the returned
// function is called, which returns the first and the highest sample.
func (w *world) sampleRSS() func() (int64, int64) {
	var mu sync.Mutex
	var first, peak int64
	read := func() {
		v := procField(fmt.Sprintf("/proc/%d/status", w.ctrl.c.PID()), "VmRSS")
		var kb int64
		if _, err := fmt.Sscanf(v, "%d kB", &kb); err != nil {
			return // between a crash and the restart
		}
		mu.Lock()
		defer mu.Unlock()
		if first == 0 {
			first = kb << 10
		}
		peak = max(peak, kb<<10)
	}
	read()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				read()
			}
		}
	}()
	return func() (int64, int64) {
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return first, peak
	}
}

// checkFloodCounted fails the test unless each kind of hostile message the
// flood sends shows in a drop counter between the two metric texts.
func (w *world) checkFloodCounted(before, after string) {
	delta := func(metric, reason string) float64 {
		return byReason(after, metric)[reason] - byReason(before, metric)[reason]
	}
	const tunnelDrops, controllerDrops = "module_controller_mqtt_messages_dropped_total", "module_controller_messages_dropped_total"
	for _, c := range []struct{ kind, metric, reason string }{
		{"malformed, wrong-type", tunnelDrops, "malformed"},
		{"oversized", tunnelDrops, "too_large"},
		{"spoofed", tunnelDrops, "base_id_mismatch"},
		{"stale", tunnelDrops, "stale"},
		{"future", controllerDrops, "future"},
		{"unknown", "module_controller_heartbeats_rejected_total", "label_value"},
	} {
		if delta(c.metric, c.reason) <= 0 {
			w.t.Errorf("hostile flood: %s messages were not counted in %s{reason=%q}", c.kind, c.metric, c.reason)
		}
	}
	unsolicited := func(m string) float64 {
		for line := range strings.Lines(m) {
			if v, ok := strings.CutPrefix(line, "module_controller_unsolicited_results_total "); ok {
				var f float64
				_, _ = fmt.Sscan(strings.TrimSpace(v), &f)
				return f
			}
		}
		return 0
	}
	if unsolicited(after)-unsolicited(before) <= 0 {
		w.t.Errorf("hostile flood: unsolicited results were not counted in module_controller_unsolicited_results_total")
	}
}

type floodMessage struct {
	kind, topic string
	payload     []byte
}

// floodMessages builds one of each hostile message for every live base, with
// "now" as of this call.
func (w *world) floodMessages(live []*simBase) []floodMessage {
	now := time.Now()
	enc := func(data any, at time.Time) []byte {
		b, err := protocol.Encode(data, at)
		require.NoError(w.t, err)
		return b
	}
	var out []floodMessage
	for i, b := range live {
		other := live[(i+1)%len(live)]
		hb := protocol.BaseStatus{
			BaseMetadata: protocol.BaseMetadata{Identity: b.Identity(), Name: "base", Version: "6.6.6", ClusterName: "default"},
			LocalIP:      b.Identity(), State: protocol.BaseStateActivated,
		}
		spoof := hb
		spoof.BaseMetadata.Identity = other.Identity()
		ds := w.versions[bizDaemonSet]
		out = append(out,
			floodMessage{"malformed", b.Topic(protocol.SuffixHeartbeat), []byte(`{"data":{"baseMetadata":{"identity":`)},
			floodMessage{"malformed", b.Topic(protocol.SuffixBizOperation), []byte("\x00\xff not json")},
			floodMessage{"spoofed", b.Topic(protocol.SuffixHeartbeat), enc(spoof, now)},
			floodMessage{"wrong-type", b.Topic(protocol.SuffixHeartbeat), fmt.Appendf(nil, `{"data":42,"publishTimestamp":%d}`, now.UnixMilli())},
			floodMessage{"wrong-type", b.Topic(protocol.SuffixSimpleBiz), fmt.Appendf(nil, `{"data":{"name":["x"]},"publishTimestamp":%d}`, now.UnixMilli())},
			floodMessage{"stale", b.Topic(protocol.SuffixHeartbeat), enc(hb, now.Add(-time.Hour))},
			floodMessage{"future", b.Topic(protocol.SuffixHeartbeat), enc(hb, now.Add(time.Hour))},
			floodMessage{"unsolicited", b.Topic(protocol.SuffixBizOperation), enc(protocol.BizOperation{
				Command: protocol.CommandUninstallBiz, BizName: bizDaemonSet, BizVersion: ds,
				Response: protocol.Output[protocol.ClientResponse]{Code: protocol.CodeSuccess, Data: protocol.ClientResponse{Code: protocol.CodeSuccess}},
			}, now)},
			floodMessage{"unsolicited", b.Topic(protocol.SuffixBizOperation), enc(protocol.BizOperation{
				Command: protocol.CommandInstallBiz, BizName: bizDaemonSet, BizVersion: "9.9.9",
				Response: protocol.Output[protocol.ClientResponse]{Code: protocol.CodeSuccess, Data: protocol.ClientResponse{
					Code: protocol.CodeSuccess, BizInfos: []protocol.BizInfo{{BizName: bizDaemonSet, BizVersion: "9.9.9", BizState: string(protocol.BizActivated)}},
				}},
			}, now.Add(time.Hour))},
			// A new identity whose heartbeat cannot become a node.
			floodMessage{"unknown", protocol.Topic(w.env, fmt.Sprintf("%s%d.%d", unknownPrefix, i, now.UnixNano()%250), protocol.SuffixHeartbeat), enc(protocol.BaseStatus{
				BaseMetadata: protocol.BaseMetadata{Identity: fmt.Sprintf("%s%d.%d", unknownPrefix, i, now.UnixNano()%250), Name: "evil base!", Version: "1.0.0", ClusterName: "default"},
				LocalIP:      "10.66.0.1", State: protocol.BaseStateActivated,
			}, now)},
		)
	}
	return out
}

// badHeartbeat publishes, from a separate client, one heartbeat of a new base
// whose fields make an invalid Node (a negative arklet port ends up in a label
// value the API server rejects), then watches for observe: the controller
// must stay up and keep serving every other base, and the bad base gets no
// node.
func (w *world) badHeartbeat(observe time.Duration) row {
	t := w.t
	win := w.begin("bad heartbeat")
	id := "10.77.9.9"
	c := paho.NewClient(paho.NewClientOptions().
		AddBroker(w.ctrl.BrokerURL()).
		SetClientID(framework.RandomName("chaos-bad-", 8)).
		SetCleanSession(true).
		SetConnectTimeout(10 * time.Second))
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(15*time.Second), "bad-heartbeat client connect timed out")
	require.NoError(t, tok.Error())
	defer c.Disconnect(250)
	payload, err := protocol.Encode(protocol.BaseStatus{
		BaseMetadata: protocol.BaseMetadata{Identity: id, Name: "base", Version: "1.0.0", ClusterName: "default"},
		LocalIP:      id, LocalHostName: id, Port: -1, State: protocol.BaseStateActivated,
	}, time.Now())
	require.NoError(t, err)
	pub := c.Publish(protocol.Topic(w.env, id, protocol.SuffixHeartbeat), 1, false, payload)
	require.True(t, pub.WaitTimeout(15*time.Second), "bad heartbeat publish timed out")
	require.NoError(t, pub.Error())
	w.hold(observe)
	injected := fmt.Sprintf("one heartbeat of base %s with port -1 (label value \"-1\" is invalid), watched %s", id, observe)
	r := w.finish(win, injected, time.Now())
	return r
}
