//go:build e2e

// Package chaos is the fault-injection suite of ModuleController: on the real
// local control plane, with simulated bases over a real broker and a
// DaemonSet, a peer Deployment and a non-peer Deployment rolled out, it
// injects one fault after the other (broker outage, controller crash,
// apiserver restart, base restart, base partition, base gone, hostile flood,
// bad heartbeat), waits for convergence after each and counts, from the
// bases' own command logs and the API server, what the fault cost: module
// placements lost, installs repeated, modules uninstalled or nodes deleted
// that should have stayed, and controller exits nobody injected.
//
// TestChaosShort (embedded broker: broker outage, controller crash, bad
// heartbeat) runs with every e2e test; TestChaos is the full suite on both
// brokers, run by `make chaos`, which writes the table to results/latest.md.
package chaos

import (
	"flag"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moduleops/module-controller/e2e/framework"
)

// settings are the suite's sizes and durations.
type settings struct {
	bases           int
	nonPeerReplicas int
	brokerOutage    time.Duration
	apiserverDown   time.Duration
	partition       time.Duration
	flood           time.Duration
	floodRate       int
	observe         time.Duration // how long the bad heartbeat is watched
	restartDowntime time.Duration
	converge        time.Duration
	faults          []string
	brokers         []framework.BrokerKind
}

// The controller runs with its default liveness timings: a base is NotReady
// after 25 s without a heartbeat and removed after 60 s.
const (
	unreachableAfter = 25 * time.Second
	removeAfter      = 60 * time.Second
)

// Fault names, the order they run in, for -chaos.faults.
var allFaults = []string{"broker-outage", "controller-crash", "apiserver-restart", "base-restart", "base-partition", "base-gone", "hostile-flood", "bad-heartbeat"}

var (
	full         = flag.Bool("chaos.full", false, "run TestChaos, the full suite (make chaos)")
	flagBrokers  = flag.String("chaos.brokers", "embedded,mosquitto", "brokers of the full suite, comma separated")
	flagFaults   = flag.String("chaos.faults", strings.Join(allFaults, ","), "faults of the full suite, comma separated, in this order: "+strings.Join(allFaults, ","))
	flagBases    = flag.Int("chaos.bases", 20, "simulated bases of the full suite")
	flagNonPeer  = flag.Int("chaos.nonpeer-replicas", 8, "replicas of the non-peer Deployment in the full suite")
	flagOutage   = flag.Duration("chaos.broker-outage", 90*time.Second, "broker outage of the full suite")
	flagAPIDown  = flag.Duration("chaos.apiserver-outage", 30*time.Second, "how long kube-apiserver is stopped")
	flagPartDown = flag.Duration("chaos.partition", 30*time.Second, "how long 5 bases are partitioned")
	flagFlood    = flag.Duration("chaos.flood", 60*time.Second, "how long the hostile flood lasts")
	flagRate     = flag.Int("chaos.flood-rate", 1000, "hostile messages per second")
	flagObserve  = flag.Duration("chaos.observe", removeAfter+20*time.Second, "how long the controller is watched after the bad heartbeat")
	flagConverge = flag.Duration("chaos.converge", 5*time.Minute, "how long to wait for convergence after each fault")
	flagResults  = flag.String("chaos.results", "results/latest.md", "where the full suite writes its table (relative to e2e/chaos)")
	flagLogs     = flag.String("chaos.logs", "", "if set, copy the controller's logs into this directory when a world ends")
)

// TestChaosShort is the CI guard of the suite: on the embedded broker, a
// broker outage longer than the unreachable window, a controller crash in
// the middle of a rollout, 30 s of hostile messages at 1,000/s during
// another rollout and one bad heartbeat must each converge with every count
// at zero.
func TestChaosShort(t *testing.T) {
	set := settings{
		bases:           10,
		nonPeerReplicas: 4,
		brokerOutage:    unreachableAfter + 15*time.Second,
		observe:         removeAfter + 20*time.Second,
		restartDowntime: 3 * time.Second,
		flood:           30 * time.Second,
		floodRate:       1000,
		converge:        3 * time.Minute,
		faults:          []string{"broker-outage", "controller-crash", "hostile-flood", "bad-heartbeat"},
	}
	w := newWorld(t, framework.Embedded, set)
	w.run()
	t.Logf("results:\n%s", table(w.rows))
	for _, r := range w.rows {
		if r.bad() {
			t.Errorf("%s on the %s broker: converged=%v, lost %d, duplicate installs %d, wrong uninstalls %d, wrong pod deletions %d, wrong node deletions %d, unexpected restarts %d; %s",
				r.fault, r.broker, r.converged, r.lost, r.duplicates, r.wrongUninstalls, r.wrongPodDeletes, r.wrongNodeDeletes, r.restarts, strings.Join(r.notes, "; "))
		}
	}
}

// TestChaos is the full suite (make chaos): every fault on every broker of
// -chaos.brokers, the table written to -chaos.results.
func TestChaos(t *testing.T) {
	if !*full {
		t.Skip("the full chaos suite runs with -chaos.full (make chaos)")
	}
	set := settings{
		bases:           *flagBases,
		nonPeerReplicas: *flagNonPeer,
		brokerOutage:    *flagOutage,
		apiserverDown:   *flagAPIDown,
		partition:       *flagPartDown,
		flood:           *flagFlood,
		floodRate:       *flagRate,
		observe:         *flagObserve,
		restartDowntime: 3 * time.Second,
		converge:        *flagConverge,
		faults:          strings.Split(*flagFaults, ","),
	}
	for _, f := range set.faults {
		if !slices.Contains(allFaults, f) {
			t.Fatalf("-chaos.faults: unknown fault %q (have %s)", f, strings.Join(allFaults, ","))
		}
	}
	for _, k := range strings.Split(*flagBrokers, ",") {
		kind := framework.BrokerKind(k)
		if !slices.Contains(framework.BrokerKinds, kind) {
			t.Fatalf("-chaos.brokers: unknown broker %q", k)
		}
		set.brokers = append(set.brokers, kind)
	}
	began := time.Now()
	var rows []row
	var env environment
	for _, kind := range set.brokers {
		t.Run(string(kind), func(t *testing.T) {
			w := newWorld(t, kind, set)
			if env.controller == "" {
				env = describeEnvironment(t, w)
			}
			w.run()
			rows = append(rows, w.rows...)
		})
	}
	t.Logf("results:\n%s", table(rows))
	writeResults(t, *flagResults, set, env, rows, time.Since(began))
	for _, r := range rows {
		if r.bad() {
			t.Errorf("%s on the %s broker: not every count is zero (see the table)", r.fault, r.broker)
		}
	}
}

// run injects the configured faults in order.
func (w *world) run() {
	for _, f := range w.set.faults {
		if w.t.Context().Err() != nil {
			return
		}
		switch f {
		case "broker-outage":
			w.brokerOutage(w.set.brokerOutage)
		case "controller-crash":
			w.controllerCrash()
		case "apiserver-restart":
			w.apiserverRestart(w.set.apiserverDown)
		case "base-restart":
			w.baseRestart(5)
		case "base-partition":
			w.basePartition(5, w.set.partition)
		case "base-gone":
			w.baseGone(2)
		case "hostile-flood":
			w.hostileFlood(w.set.floodRate, w.set.flood)
		case "bad-heartbeat":
			w.badHeartbeat(w.set.observe)
		}
	}
}
