package cluster

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/kubernetes/fake"
)

// TestLeaderRunsOnOneReplicaAndHandsOver: of two replicas only the leader
// runs the cluster-wide loop; when it stops, it releases the Lease and the
// other one leads without waiting for expiry.
func TestLeaderRunsOnOneReplicaAndHandsOver(t *testing.T) {
	client := fake.NewClientset()
	var running atomic.Int32
	var maxRunning atomic.Int32
	loop := func(ctx context.Context) error {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			if m := maxRunning.Load(); n > m {
				maxRunning.CompareAndSwap(m, n)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	start := func(id string) (*Leader, context.CancelFunc, chan error) {
		l, err := NewLeader(LeaderConfig{
			Client: client, Namespace: testNamespace, Name: "module-controller-sync-test", Identity: id,
			LeaseDuration: 10 * time.Second, RenewDeadline: 8 * time.Second, RetryPeriod: 100 * time.Millisecond,
			Registerer: prometheus.NewRegistry(),
		})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- l.Run(ctx, loop) }()
		return l, cancel, done
	}
	a, stopA, doneA := start("mc-0")
	select {
	case <-a.Leading():
	case <-time.After(5 * time.Second):
		t.Fatal("the only replica did not lead")
	}
	b, stopB, doneB := start("mc-1")
	defer stopB()
	require.Never(t, func() bool {
		select {
		case <-b.Leading():
			return true
		default:
			return false
		}
	}, 500*time.Millisecond, 20*time.Millisecond, "two leaders")

	stopA()
	require.NoError(t, <-doneA)
	began := time.Now()
	select {
	case <-b.Leading():
	case <-time.After(5 * time.Second):
		t.Fatal("the other replica did not lead after the leader stopped")
	}
	require.Less(t, time.Since(began), 5*time.Second, "waited for expiry (10 s) instead of the released Lease")
	require.LessOrEqual(t, maxRunning.Load(), int32(1), "the loop ran on two replicas at once")
	stopB()
	require.NoError(t, <-doneB)
}

func TestLeaderConfigValidation(t *testing.T) {
	_, err := NewLeader(LeaderConfig{})
	require.ErrorContains(t, err, "needs a client")
	_, err = NewLeader(LeaderConfig{Client: fake.NewClientset(), Namespace: "n", Name: "l", Identity: "i", LeaseDuration: time.Second, RenewDeadline: 2 * time.Second})
	require.ErrorContains(t, err, "renew deadline")
}
