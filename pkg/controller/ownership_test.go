package controller

import (
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/moduleops/module-controller/pkg/api"
	"github.com/moduleops/module-controller/pkg/protocol"
	"github.com/moduleops/module-controller/tunnel/tunneltest"
)

// switchOwnership is an OwnershipChanges the test flips base by base.
type switchOwnership struct {
	mu      sync.Mutex
	owned   map[string]bool
	changed []string
	signal  chan struct{}
	asked   map[string]int // Owns calls by base
}

func newSwitchOwnership(owned ...string) *switchOwnership {
	s := &switchOwnership{owned: map[string]bool{}, signal: make(chan struct{}, 1), asked: map[string]int{}}
	for _, id := range owned {
		s.owned[id] = true
	}
	return s
}

func (s *switchOwnership) Owns(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked[id]++
	return s.owned[id]
}

func (s *switchOwnership) askedAbout(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asked[id]
}

func (s *switchOwnership) set(id string, owned bool) {
	s.mu.Lock()
	s.owned[id] = owned
	s.changed = append(s.changed, id)
	s.mu.Unlock()
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

func (s *switchOwnership) Changes() <-chan struct{} { return s.signal }

func (s *switchOwnership) TakeChanged() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.changed
	s.changed = nil
	return out
}

// TestHandoverKeepsNodeAndReadoptsFromIt: a base lost to another replica is
// no longer served (no command, its node left in place); gained back, it is
// adopted from its node and its biz list queried, with nothing installed or
// uninstalled.
func TestHandoverKeepsNodeAndReadoptsFromIt(t *testing.T) {
	own := newSwitchOwnership("base-1")
	f := newFixture(t, func(c *Config) { c.Ownership = own })
	f.heartbeat("base-1", "activated")
	f.node("vnode.base-1.default", isReady(corev1.ConditionTrue, api.ReasonBaseReady))
	require.Eventually(t, func() bool { return testutil.ToFloat64(f.ctrl.metrics.bases) == 1 }, waitFor, 10*time.Millisecond)

	own.set("base-1", false)
	require.Eventually(t, func() bool { return testutil.ToFloat64(f.ctrl.metrics.bases) == 0 }, waitFor, 10*time.Millisecond)
	sent := len(f.tunnel.Commands())
	f.heartbeat("base-1", "activated") // seen by every replica, served by its owner only
	for range 10 {
		f.clock.Step(DefaultCheckInterval)
	}
	f.heartbeat("base-1", "activated")
	_, err := f.client.CoreV1().Nodes().Get(t.Context(), "vnode.base-1.default", metav1.GetOptions{})
	require.NoError(t, err, "a handed-over base's node must stay for its new owner")
	require.Len(t, f.tunnel.Commands(), sent, "a replica sent commands to a base it does not own")

	own.set("base-1", true)
	require.Eventually(t, func() bool { return testutil.ToFloat64(f.ctrl.metrics.bases) == 1 }, waitFor, 10*time.Millisecond)
	f.tunnel.WaitForCommands(t, waitFor, 2, tunneltest.Named("base-1", protocol.CommandQueryAllBiz))
	require.Empty(t, f.tunnel.CommandsFor("base-1", protocol.CommandInstallBiz))
	require.Empty(t, f.tunnel.CommandsFor("base-1", protocol.CommandUninstallBiz))
}

// TestOwnedTunnelRefusesUnownedBases: whichever goroutine sends it, a
// command to a base not owned at that moment does not go out.
func TestOwnedTunnelRefusesUnownedBases(t *testing.T) {
	inner := tunneltest.New()
	tun := ownedTunnel{Tunnel: inner, owns: ownsOnly("base-2")}
	biz := protocol.BizModel{BizName: "biz", BizVersion: "1.0.0"}
	require.ErrorIs(t, tun.InstallBiz(t.Context(), "base-1", biz), ErrNotOwner)
	require.ErrorIs(t, tun.UninstallBiz(t.Context(), "base-1", biz), ErrNotOwner)
	require.ErrorIs(t, tun.QueryAllBiz(t.Context(), "base-1"), ErrNotOwner)
	require.ErrorIs(t, tun.QueryHealth(t.Context(), "base-1"), ErrNotOwner)
	require.ErrorIs(t, tun.SendBaseline(t.Context(), "base-1", nil), ErrNotOwner)
	require.Empty(t, inner.Commands())
	require.NoError(t, tun.InstallBiz(t.Context(), "base-2", biz))
	require.Len(t, inner.Commands(), 1)
}

// TestGainedBaseWithoutNodeIsServedFromItsLastHeartbeat: a base first heard
// of while another replica (or none) owned it gets its node as soon as this
// replica gains it, without waiting for its next heartbeat.
func TestGainedBaseWithoutNodeIsServedFromItsLastHeartbeat(t *testing.T) {
	own := newSwitchOwnership()
	f := newFixture(t, func(c *Config) { c.Ownership = own })
	f.heartbeat("base-1", "activated")
	f.heartbeat("base-2", "activated")
	// Events are handled in order: once base-2's was, base-1's was too.
	require.Eventually(t, func() bool { return own.askedAbout("base-2") > 0 }, waitFor, 10*time.Millisecond)
	require.Empty(t, f.tunnel.Commands())
	_, err := f.client.CoreV1().Nodes().Get(t.Context(), "vnode.base-1.default", metav1.GetOptions{})
	require.Error(t, err, "a base not owned got a node")

	own.set("base-1", true)
	f.node("vnode.base-1.default", isReady(corev1.ConditionTrue, api.ReasonBaseReady))

	// A heartbeat too old to vouch for the base: served on its next one.
	f.clock.Step(DefaultUnreachableAfter)
	own.set("base-2", true)
	require.Never(t, func() bool {
		_, err := f.client.CoreV1().Nodes().Get(t.Context(), "vnode.base-2.default", metav1.GetOptions{})
		return err == nil
	}, 300*time.Millisecond, 10*time.Millisecond, "served from a stale heartbeat")
	f.heartbeat("base-2", "activated")
	f.node("vnode.base-2.default", isReady(corev1.ConditionTrue, api.ReasonBaseReady))
}
