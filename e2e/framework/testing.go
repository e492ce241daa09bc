package framework

import (
	"testing"
)

// failureLogLines is how much of each component log a failed test prints.
const failureLogLines = 40

// StartCluster starts a cluster for the test (see Start) in a directory under
// t.TempDir() unless opts.Dir is set, fails the test if it cannot, and stops it
// on cleanup, printing the tail of every component log first if the test failed.
func StartCluster(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	c, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("control plane logs (last %d lines each):\n%s", failureLogLines, c.LogTails(failureLogLines))
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stop control plane: %v", err)
		}
	})
	return c
}

// StartBroker starts a broker of the given kind for the test (see
// LaunchBroker), with its files under t.TempDir(), and stops it on cleanup,
// printing its log first if the test failed.
func StartBroker(t testing.TB, kind BrokerKind, opts ...BrokerOption) *Broker {
	t.Helper()
	b, err := LaunchBroker(t.Context(), t.TempDir(), kind, opts...)
	if err != nil {
		t.Fatalf("start %s broker: %v", kind, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s broker log (last %d lines):\n%s", kind, failureLogLines, b.LogTail(failureLogLines))
		}
		if err := b.Stop(); err != nil {
			t.Errorf("stop %s broker: %v", kind, err)
		}
	})
	return b
}
