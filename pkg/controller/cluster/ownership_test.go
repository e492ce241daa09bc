package cluster

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
)

const testNamespace = "module-controller"

var leasesGVR = coordinationv1.SchemeGroupVersion.WithResource("leases")

// apiServer is a fake clientset whose Leases behave like the API server's:
// every write gets a new resourceVersion, an update or delete with a stale
// one fails with a conflict, and writes of a chosen holder can be made fail.
type apiServer struct {
	*fake.Clientset
	mu     sync.Mutex
	rv     int64
	writes atomic.Int64
	// failHolder makes every Lease write by this holder fail.
	failHolder atomic.Value
}

func newAPIServer() *apiServer {
	s := &apiServer{Clientset: fake.NewClientset()}
	s.failHolder.Store("")
	s.PrependReactor("create", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		l := a.(k8stesting.CreateAction).GetObject().(*coordinationv1.Lease).DeepCopy()
		if err := s.injected(l); err != nil {
			return true, nil, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.rv++
		l.ResourceVersion = strconv.FormatInt(s.rv, 10)
		if err := s.Tracker().Create(leasesGVR, l, l.Namespace); err != nil {
			return true, nil, err
		}
		return true, l, nil
	})
	s.PrependReactor("update", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		l := a.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease).DeepCopy()
		if err := s.injected(l); err != nil {
			return true, nil, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		old, err := s.Tracker().Get(leasesGVR, l.Namespace, l.Name)
		if err != nil {
			return true, nil, err
		}
		if old.(*coordinationv1.Lease).ResourceVersion != l.ResourceVersion {
			return true, nil, apierrors.NewConflict(leasesGVR.GroupResource(), l.Name, fmt.Errorf("stale resourceVersion %s", l.ResourceVersion))
		}
		s.rv++
		l.ResourceVersion = strconv.FormatInt(s.rv, 10)
		if err := s.Tracker().Update(leasesGVR, l, l.Namespace); err != nil {
			return true, nil, err
		}
		return true, l, nil
	})
	s.PrependReactor("delete", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		d := a.(k8stesting.DeleteActionImpl)
		s.mu.Lock()
		defer s.mu.Unlock()
		old, err := s.Tracker().Get(leasesGVR, d.Namespace, d.Name)
		if err != nil {
			return true, nil, err
		}
		if p := d.DeleteOptions.Preconditions; p != nil && p.ResourceVersion != nil && *p.ResourceVersion != old.(*coordinationv1.Lease).ResourceVersion {
			return true, nil, apierrors.NewConflict(leasesGVR.GroupResource(), d.Name, fmt.Errorf("stale resourceVersion"))
		}
		s.writes.Add(1)
		return true, nil, s.Tracker().Delete(leasesGVR, d.Namespace, d.Name)
	})
	return s
}

func (s *apiServer) injected(l *coordinationv1.Lease) error {
	s.writes.Add(1)
	if f := s.failHolder.Load().(string); f != "" && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == f {
		return apierrors.NewServiceUnavailable("injected failure")
	}
	return nil
}

// replicaCluster is a set of Ownerships sharing one fake API server and
// one fake clock; rounds are run by the test, one replica at a time.
type replicaCluster struct {
	t         *testing.T
	connected map[string]*atomic.Bool
	api       *apiServer
	clock     *clocktesting.FakeClock
	byID      map[string]*Ownership
	stalled   map[string]bool
}

func newReplicaCluster(t *testing.T, ids ...string) *replicaCluster {
	c := &replicaCluster{t: t, api: newAPIServer(), clock: clocktesting.NewFakeClock(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)),
		byID: map[string]*Ownership{}, stalled: map[string]bool{}, connected: map[string]*atomic.Bool{}}
	for _, id := range ids {
		c.add(id)
	}
	return c
}

func (c *replicaCluster) add(id string) *Ownership {
	up := &atomic.Bool{}
	up.Store(true)
	c.connected[id] = up
	o, err := New(Config{
		Connected: up.Load,
		Client:    c.api, Namespace: testNamespace, Identity: id, Env: "test",
		LeaseDuration: 6 * time.Second, RenewDeadline: 4 * time.Second, RenewInterval: 2 * time.Second, RetryPeriod: time.Second,
		Clock: c.clock,
	})
	require.NoError(c.t, err)
	c.byID[id] = o
	return o
}

// hear makes every replica hear of the bases (as their heartbeats would).
func (c *replicaCluster) hear(bases []string) {
	for _, o := range c.byID {
		for _, b := range bases {
			o.Owns(b)
		}
	}
}

// step advances the clock by d and runs one round of every replica that is
// not stalled.
func (c *replicaCluster) step(d time.Duration) {
	c.clock.Step(d)
	for _, id := range sortedKeys(c.byID) {
		if !c.stalled[id] {
			c.byID[id].round(c.t.Context())
		}
	}
}

// owners returns, per base, the replicas whose Owns says yes now (without
// recording the base as heard of).
func (c *replicaCluster) owners(bases []string) map[string][]string {
	out := map[string][]string{}
	now := c.clock.Now()
	for _, id := range sortedKeys(c.byID) {
		o := c.byID[id]
		o.mu.Lock()
		for _, b := range bases {
			if o.held[b] != nil && o.memberFreshLocked(now) {
				out[b] = append(out[b], id)
			}
		}
		o.mu.Unlock()
	}
	return out
}

// requireAtMostOneOwner fails if two replicas act on one base at once.
func (c *replicaCluster) requireAtMostOneOwner(bases []string) {
	c.t.Helper()
	for b, ids := range c.owners(bases) {
		require.LessOrEqual(c.t, len(ids), 1, "base %s acted on by %v at %s", b, ids, c.clock.Now())
	}
}

func (c *replicaCluster) counts(bases []string) map[string]int {
	n := map[string]int{}
	for _, ids := range c.owners(bases) {
		for _, id := range ids {
			n[id]++
		}
	}
	return n
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func baseNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("base-%03d", i)
	}
	return out
}

// TestSpreadAndFailover: three replicas share 30 bases ten each; when one
// stops for good the other two take its bases within the lease duration
// plus one round, and no other base changes owner; at no instant do two
// replicas act on one base.
func TestSpreadAndFailover(t *testing.T) {
	bases := baseNames(30)
	c := newReplicaCluster(t, "mc-0", "mc-1", "mc-2")
	c.hear(bases)
	for range 4 {
		c.step(time.Second)
		c.requireAtMostOneOwner(bases)
	}
	require.Equal(t, map[string]int{"mc-0": 10, "mc-1": 10, "mc-2": 10}, c.counts(bases))
	before := c.owners(bases)

	// mc-2 dies (kill -9): it runs no more rounds and releases nothing.
	c.stalled["mc-2"] = true
	killedAt := c.clock.Now()
	var failover time.Duration
	for c.clock.Now().Sub(killedAt) < 20*time.Second {
		c.step(100 * time.Millisecond)
		c.hear(bases)
		c.requireAtMostOneOwner(bases)
		if n := c.counts(bases); failover == 0 && n["mc-0"]+n["mc-1"] == 30 {
			failover = c.clock.Now().Sub(killedAt)
		}
	}
	require.NotZero(t, failover, "the dead replica's bases were not taken over")
	require.LessOrEqual(t, failover, 6*time.Second+time.Second, "failover took longer than lease duration + one retry period")
	t.Logf("failover: %s (lease duration 6s, retry period 1s)", failover)
	after := c.owners(bases)
	for _, b := range bases {
		if before[b][0] != "mc-2" {
			require.Equal(t, before[b], after[b], "base %s moved though its owner is alive", b)
		}
	}
	n := c.counts(bases)
	require.Equal(t, 15, n["mc-0"])
	require.Equal(t, 15, n["mc-1"])
}

// TestJoinMovesOnlyWhatMust: a replica joining takes its share from the
// others through released Leases (no expiry wait), one owner at a time.
func TestJoinMovesOnlyWhatMust(t *testing.T) {
	bases := baseNames(30)
	c := newReplicaCluster(t, "mc-0", "mc-1")
	c.hear(bases)
	for range 3 {
		c.step(time.Second)
	}
	require.Equal(t, map[string]int{"mc-0": 15, "mc-1": 15}, c.counts(bases))
	before := c.owners(bases)
	c.add("mc-2")
	c.hear(bases)
	for range 3 {
		c.step(time.Second)
		c.requireAtMostOneOwner(bases)
	}
	require.Equal(t, map[string]int{"mc-0": 10, "mc-1": 10, "mc-2": 10}, c.counts(bases))
	after := c.owners(bases)
	moved, toNew := 0, 0
	for _, b := range bases {
		if before[b][0] != after[b][0] {
			moved++
			if after[b][0] == "mc-2" {
				toNew++
			}
		}
	}
	require.Equal(t, 10, toNew)
	t.Logf("join of a third replica: %d of 30 bases moved, %d of them to the new replica", moved, toNew)
	require.LessOrEqual(t, moved, 13, "too many bases moved between the old replicas")
}

// TestReleaseOnStop: a stopping replica stops acting on its bases at once
// and releases their Leases, which the others take in their next round,
// long before the Leases could expire.
func TestReleaseOnStop(t *testing.T) {
	bases := baseNames(12)
	c := newReplicaCluster(t, "mc-0", "mc-1")
	c.hear(bases)
	for range 3 {
		c.step(time.Second)
	}
	require.Equal(t, 6, c.counts(bases)["mc-1"])
	held := c.byID["mc-1"].Owned()
	c.byID["mc-1"].TakeChanged()
	c.byID["mc-1"].releaseAll(t.Context())
	c.stalled["mc-1"] = true
	require.Zero(t, c.counts(bases)["mc-1"], "a released base is still acted on")
	require.Equal(t, held, c.byID["mc-1"].TakeChanged(), "the controller is not told of every released base")
	c.step(time.Second)
	require.Equal(t, 12, c.counts(bases)["mc-0"], "the released Leases were not taken in the next round")
	// The member Lease is gone: mc-0 sees itself alone.
	require.Equal(t, []string{"mc-0"}, c.byID["mc-0"].Live())
}

// TestStalledReplicaStopsBeforeExpiry: a replica stopped (SIGSTOP, a long
// pause) stops acting on its bases at its renew deadline, before any other
// replica may take them; once resumed it finds them taken and acts on
// none.
func TestStalledReplicaStopsBeforeExpiry(t *testing.T) {
	bases := baseNames(20)
	c := newReplicaCluster(t, "mc-0", "mc-1")
	c.hear(bases)
	for range 3 {
		c.step(time.Second)
	}
	mine := c.byID["mc-1"].Owned()
	require.Len(t, mine, 10)
	c.stalled["mc-1"] = true
	stoppedActing, taken := time.Duration(0), time.Duration(0)
	start := c.clock.Now()
	for c.clock.Now().Sub(start) < 15*time.Second {
		c.step(50 * time.Millisecond)
		c.hear(bases)
		c.requireAtMostOneOwner(bases)
		n := c.counts(bases)
		if stoppedActing == 0 && n["mc-1"] == 0 {
			stoppedActing = c.clock.Now().Sub(start)
		}
		if taken == 0 && n["mc-0"] == 20 {
			taken = c.clock.Now().Sub(start)
		}
	}
	require.NotZero(t, stoppedActing)
	require.NotZero(t, taken)
	require.Less(t, stoppedActing, taken, "the stalled replica still acted when its bases were taken")
	t.Logf("stalled replica stopped acting after %s, its bases were taken after %s", stoppedActing, taken)
	for _, b := range mine {
		require.False(t, c.byID["mc-1"].Owns(b), "a stalled replica acts on %s", b)
	}

	// Resumed: its first round finds every base taken and gains nothing;
	// the two then share the bases again through released Leases.
	delete(c.stalled, "mc-1")
	// Its member Lease renewed again, it acts on none of its old bases
	// before the round has read their Leases.
	c.byID["mc-1"].renewMember(t.Context(), c.clock.Now())
	for _, b := range mine {
		require.False(t, c.byID["mc-1"].Owns(b), "a resumed replica acts on %s once its member Lease is renewed", b)
	}
	c.byID["mc-1"].round(t.Context())
	c.requireAtMostOneOwner(bases)
	for range 4 {
		c.step(time.Second)
		c.requireAtMostOneOwner(bases)
	}
	require.Equal(t, map[string]int{"mc-0": 10, "mc-1": 10}, c.counts(bases))
}

// TestRenewFailureStopsActing: a replica whose Lease writes fail stops
// acting on its bases at the renew deadline and counts the failures; the
// other takes them after expiry.
func TestRenewFailureStopsActing(t *testing.T) {
	bases := baseNames(10)
	c := newReplicaCluster(t, "mc-0", "mc-1")
	c.hear(bases)
	for range 3 {
		c.step(time.Second)
	}
	require.Equal(t, 5, c.counts(bases)["mc-1"])
	c.api.failHolder.Store("mc-1")
	lastOK := c.clock.Now()
	for c.clock.Now().Sub(lastOK) < 10*time.Second {
		c.step(250 * time.Millisecond)
		c.hear(bases)
		c.requireAtMostOneOwner(bases)
	}
	require.Zero(t, c.counts(bases)["mc-1"])
	require.Equal(t, 10, c.counts(bases)["mc-0"])
	o := c.byID["mc-1"]
	require.Positive(t, testutilCounter(o.metrics.renewFailures.WithLabelValues(LeaseReplica)))
	require.Equal(t, float64(5), testutilCounter(o.metrics.handovers.WithLabelValues("lost", CauseRenewFailed))+
		testutilCounter(o.metrics.handovers.WithLabelValues("lost", CauseTaken)))
}

// TestLeaseWritesPerBase measures the steady-state Lease writes: one per
// replica per renew interval, none per base: a base Lease is written only
// when it changes hands.
func TestLeaseWritesPerBase(t *testing.T) {
	bases := baseNames(30)
	c := newReplicaCluster(t, "mc-0", "mc-1", "mc-2")
	c.hear(bases)
	for range 5 {
		c.step(time.Second)
	}
	c.api.writes.Store(0)
	for range 30 {
		c.step(time.Second)
		c.hear(bases)
		c.requireAtMostOneOwner(bases)
	}
	t.Logf("Lease writes in 30 s: %d for 30 bases and 3 replicas at a 2s renew interval", c.api.writes.Load())
	require.InDelta(t, 3*15, c.api.writes.Load(), 3, "only the member Leases should be written, once per renew interval")
	require.Len(t, c.owners(bases), 30, "every base still has its owner")
}

// TestCutOffReplicaHandsOver: a replica cut off from the broker while the
// other is not hands its bases over after a lease duration, and takes its
// share back once connected; when both are cut off nothing moves.
func TestCutOffReplicaHandsOver(t *testing.T) {
	bases := baseNames(10)
	c := newReplicaCluster(t, "mc-0", "mc-1")
	c.hear(bases)
	for range 3 {
		c.step(time.Second)
	}
	before := c.owners(bases)
	require.Equal(t, map[string]int{"mc-0": 5, "mc-1": 5}, c.counts(bases))

	c.connected["mc-1"].Store(false)
	for range 5 {
		c.step(time.Second)
		c.hear(bases)
		c.requireAtMostOneOwner(bases)
	}
	require.Equal(t, 5, c.counts(bases)["mc-1"], "handed over before a lease duration")
	for range 4 {
		c.step(time.Second)
		c.hear(bases)
		c.requireAtMostOneOwner(bases)
	}
	require.Equal(t, map[string]int{"mc-0": 10}, c.counts(bases), "a cut-off replica kept its bases")

	c.connected["mc-1"].Store(true)
	for range 3 {
		c.step(time.Second)
		c.hear(bases)
		c.requireAtMostOneOwner(bases)
	}
	require.Equal(t, before, c.owners(bases))

	// A broker outage: both cut off. Nothing moves, however long it lasts.
	c.connected["mc-0"].Store(false)
	c.connected["mc-1"].Store(false)
	for range 20 {
		c.step(time.Second)
		c.hear(bases)
		c.requireAtMostOneOwner(bases)
		require.Equal(t, before, c.owners(bases), "bases moved while every replica is cut off")
	}
	// They come back 3 s apart: still nothing moves.
	c.connected["mc-0"].Store(true)
	for range 3 {
		c.step(time.Second)
		c.hear(bases)
		require.Equal(t, before, c.owners(bases), "bases moved as the replicas reconnected")
	}
	c.connected["mc-1"].Store(true)
	for range 10 {
		c.step(time.Second)
		c.hear(bases)
		require.Equal(t, before, c.owners(bases), "bases moved as the replicas reconnected")
	}
}
