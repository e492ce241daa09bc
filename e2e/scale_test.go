//go:build e2e

package e2e

import (
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/moduleops/module-controller/pkg/basesim"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// TestHundredBasesAndPods measures, and reports, the time from the first
// heartbeat of 100 bases started at once to all their nodes Ready, and from
// 100 pods created at once to every biz installed at its base and every pod
// Running. It asserts that everything converges, not how fast.
func TestHundredBasesAndPods(t *testing.T) {
	const n = 100
	e := newEnv(t, "mosquitto")
	start := time.Now()
	fleet, err := basesim.StartFleet(t.Context(), basesim.FleetConfig{
		Base:           basesim.Config{Broker: e.controller.BrokerURL(), Env: e.name, HeartbeatInterval: baseHeartbeat},
		Count:          n,
		IdentityPrefix: "scale",
	})
	require.NoError(t, err)
	t.Cleanup(fleet.Stop)
	selector := labels.SelectorFromSet(labels.Set{"virtual-kubelet.koupleless.io/env": e.name}).String()
	require.Eventually(t, func() bool {
		nodes, err := e.client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false
		}
		readyNodes := 0
		for i := range nodes.Items {
			if isReady(&nodes.Items[i]) {
				readyNodes++
			}
		}
		return readyNodes == n
	}, 2*waitLong, poll)
	t.Logf("%d bases: all nodes Ready %s after the fleet started", n, time.Since(start).Round(10*time.Millisecond))

	// Watch the pods to see when each one turns Running.
	var mu sync.Mutex
	runningSeen := map[string]time.Time{}
	w, err := e.client.CoreV1().Pods(e.namespace).Watch(t.Context(), metav1.ListOptions{})
	require.NoError(t, err)
	t.Cleanup(w.Stop)
	go func() {
		for ev := range w.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok && running(p) {
				mu.Lock()
				if _, seen := runningSeen[p.Name]; !seen {
					runningSeen[p.Name] = time.Now()
				}
				mu.Unlock()
			}
		}
	}()

	// One pod per base, created at once.
	created := make(map[string]time.Time, n)
	var wg sync.WaitGroup
	for i, b := range fleet.Bases() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := e.modulePod(fmt.Sprintf("m-%d", i), b.Identity(), "biz1:1.0.0")
			_, err := e.client.CoreV1().Pods(e.namespace).Create(t.Context(), p, metav1.CreateOptions{})
			mu.Lock()
			created[p.Name] = time.Now()
			mu.Unlock()
			require.NoError(t, err)
		}()
	}
	wg.Wait()
	podsStart := time.Now()
	require.Eventually(t, func() bool {
		pods, err := e.client.CoreV1().Pods(e.namespace).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return false
		}
		runningPods := 0
		for i := range pods.Items {
			if running(&pods.Items[i]) {
				runningPods++
			}
		}
		return runningPods == n
	}, 2*waitLong, poll)
	t.Logf("%d pods: all Running %s after they were created", n, time.Since(podsStart).Round(10*time.Millisecond))

	// Per pod: bound (created with nodeName) → installBiz at the base, and
	// ACTIVATED at the base → pod Running (the container's start time is the
	// activation time reported by the base).
	var toInstall, toRunning []time.Duration
	mu.Lock()
	defer mu.Unlock()
	for i, b := range fleet.Bases() {
		name := fmt.Sprintf("m-%d", i)
		for _, c := range b.Received() {
			if c.Name == protocol.CommandInstallBiz {
				toInstall = append(toInstall, c.At.Sub(created[name]))
			}
		}
		if z, ok := b.Biz("biz1", "1.0.0"); ok && len(z.Records) > 0 {
			activated := z.Records[len(z.Records)-1].ChangedAt()
			if seen, ok := runningSeen[name]; ok {
				toRunning = append(toRunning, seen.Sub(activated))
			}
		}
		require.Equal(t, 1, b.ReceivedCount(protocol.CommandInstallBiz, "biz1:1.0.0"), "base %s", b.Identity())
	}
	t.Logf("pod created → installBiz at the base: %s", percentiles(toInstall))
	t.Logf("biz ACTIVATED at the base → pod seen Running through a watch: %s", percentiles(toRunning))
}

// percentiles formats the median, 90th percentile and maximum.
func percentiles(d []time.Duration) string {
	if len(d) == 0 {
		return "no samples"
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	at := func(q float64) time.Duration { return d[int(q*float64(len(d)-1))].Round(time.Millisecond) }
	return fmt.Sprintf("n=%d p50=%s p90=%s max=%s", len(d), at(0.5), at(0.9), at(1))
}
