package cluster

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

func testutilCounter(c prometheus.Counter) float64 { return testutil.ToFloat64(c) }

func TestOwnerIsStableAndMovesOnlyWhatMust(t *testing.T) {
	bases := make([]string, 3000)
	for i := range bases {
		bases[i] = fmt.Sprintf("10.0.%d.%d", i/250, i%250)
	}
	three := []string{"mc-a", "mc-b", "mc-c"}
	four := append([]string{"mc-d"}, three...)
	n := map[string]int{}
	for _, b := range bases {
		o3, o4 := Owner(b, three), Owner(b, four)
		n[o3]++
		if o3 != o4 {
			require.Equal(t, "mc-d", o4, "base %s moved between old replicas", b)
		}
		require.Equal(t, o3, Owner(b, []string{"mc-c", "mc-a", "mc-b"}), "order of replicas matters")
	}
	for _, r := range three {
		require.InDelta(t, 1000, n[r], 100, "rendezvous hashing spreads unevenly: %v", n)
	}
	require.Empty(t, Owner("x", nil))
}

func TestAssignBoundsLoadAndAgrees(t *testing.T) {
	for _, tc := range []struct{ bases, replicas int }{{30, 3}, {31, 3}, {1000, 3}, {10, 2}, {5, 7}, {0, 3}} {
		bases := make([]string, tc.bases)
		for i := range bases {
			bases[i] = fmt.Sprintf("base-%d-%d", tc.bases, i)
		}
		replicas := make([]string, tc.replicas)
		for i := range replicas {
			replicas[i] = fmt.Sprintf("module-controller-7d9f-%d", i)
		}
		a := Assign(bases, replicas)
		require.Len(t, a, tc.bases)
		load := map[string]int{}
		for _, r := range a {
			load[r]++
		}
		capacity := (tc.bases + tc.replicas - 1) / tc.replicas
		for _, n := range load {
			require.LessOrEqual(t, n, capacity)
		}
		// Any replica computes the same, whatever the order it lists things in.
		rb, rr := append([]string(nil), bases...), append([]string(nil), replicas...)
		for i, j := 0, len(rb)-1; i < j; i, j = i+1, j-1 {
			rb[i], rb[j] = rb[j], rb[i]
		}
		for i, j := 0, len(rr)-1; i < j; i, j = i+1, j-1 {
			rr[i], rr[j] = rr[j], rr[i]
		}
		require.Equal(t, a, Assign(rb, rr))
	}
}

// TestAssignMovement reports how many bases move beyond those that must
// when a replica leaves or joins, at 1000 bases.
func TestAssignMovement(t *testing.T) {
	bases := make([]string, 1000)
	for i := range bases {
		bases[i] = fmt.Sprintf("base-%04d", i)
	}
	three := []string{"mc-0", "mc-1", "mc-2"}
	a3 := Assign(bases, three)
	a2 := Assign(bases, three[:2])
	must, extra := 0, 0
	for _, b := range bases {
		switch {
		case a3[b] == "mc-2":
			must++
		case a3[b] != a2[b]:
			extra++
		}
	}
	t.Logf("leave 3→2 at 1000 bases: %d must move, %d more moved", must, extra)
	require.LessOrEqual(t, extra, must/4)
	a4 := Assign(bases, append(three, "mc-3"))
	must, extra = 0, 0
	for _, b := range bases {
		switch {
		case a4[b] == "mc-3":
			must++
		case a3[b] != a4[b]:
			extra++
		}
	}
	t.Logf("join 3→4 at 1000 bases: %d must move, %d more moved", must, extra)
	require.LessOrEqual(t, extra, must/4)
}

func TestLeaseName(t *testing.T) {
	require.Equal(t, "vnode.10.0.0.1.default", LeaseName("", "vnode.10.0.0.1.default"))
	require.Equal(t, "module-controller-replica-mc-0", LeaseName("module-controller-replica-", "mc-0"))
	odd := LeaseName("module-controller-sync-", "Dev_1")
	require.NotEqual(t, "module-controller-sync-Dev_1", odd, "an invalid name is hashed")
	require.Equal(t, odd, LeaseName("module-controller-sync-", "Dev_1"), "the same input maps to the same name")
	require.Len(t, LeaseName("", strings.Repeat("a", 300)), 20)
}
