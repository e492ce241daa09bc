package cluster

import (
	"cmp"
	"hash/fnv"
	"slices"
	"strings"
)

// Owner returns the replica that should own baseID among replicas, by
// rendezvous (highest random weight) hashing: each replica scores the base
// and the highest score wins, ties to the smaller identity. Adding or
// removing a replica changes the owner only of the bases that replica wins
// or held. It returns "" if replicas is empty.
func Owner(baseID string, replicas []string) string {
	best, bestScore := "", uint64(0)
	for _, r := range replicas {
		s := score(r, baseID)
		if best == "" || s > bestScore || (s == bestScore && r < best) {
			best, bestScore = r, s
		}
	}
	return best
}

// score is the weight of replica for baseID: FNV-1a of both, separated by a
// byte neither contains, through a 64-bit finalizer (splitmix64) so that
// identities differing in one character still score independently.
func score(replica, baseID string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(replica))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(baseID))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Assign maps every base to one of replicas: the base's highest-ranked
// replica by rendezvous hashing that is not full yet, where each replica
// takes at most ceil(len(bases)/len(replicas)) bases (consistent hashing
// with bounded loads), so the spread is even however the names hash. Bases
// are placed in a fixed order (by their own hash), so every replica that
// sees the same bases and replicas computes the same assignment. Most bases
// sit on their first choice: a replica joining or leaving moves the bases it
// gains or held, and a few more whose first choice filled up or freed.
func Assign(bases, replicas []string) map[string]string {
	out := make(map[string]string, len(bases))
	if len(replicas) == 0 {
		return out
	}
	capacity := (len(bases) + len(replicas) - 1) / len(replicas)
	order := slices.Clone(bases)
	keys := make(map[string]uint64, len(order))
	for _, b := range order {
		keys[b] = score("", b)
	}
	slices.SortFunc(order, func(a, b string) int {
		if c := cmp.Compare(keys[a], keys[b]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	load := make(map[string]int, len(replicas))
	ranked := slices.Clone(replicas)
	for _, b := range order {
		slices.SortFunc(ranked, func(x, y string) int {
			if c := cmp.Compare(score(y, b), score(x, b)); c != 0 {
				return c
			}
			return strings.Compare(x, y)
		})
		for _, r := range ranked {
			if load[r] < capacity {
				out[b] = r
				load[r]++
				break
			}
		}
	}
	return out
}
