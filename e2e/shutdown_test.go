//go:build e2e

package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// TestControllerShutdown: SIGTERM stops the controller promptly with exit
// status 0 and a clean log (controller first, then the tunnel, then the
// embedded broker), leaves the module running on its base and the pod
// Running, and a restarted controller adopts the node without touching the
// module.
func TestControllerShutdown(t *testing.T) {
	for _, kind := range brokerKinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind)
			const baseID = "10.6.0.1"
			b := e.startBase(baseID, nil)
			e.waitNode(baseID, "Ready", isReady)
			e.createPod(e.modulePod("mod", baseID, "biz1:0.0.1"))
			e.waitPod("mod", "Running and Ready", running)

			logPath := e.controller.LogPath()
			began := time.Now()
			require.NoError(t, e.controller.Shutdown(20*time.Second), "SIGTERM must end in exit status 0")
			took := time.Since(began)
			t.Logf("controller stopped %s after SIGTERM", took.Round(time.Millisecond))
			require.Less(t, took, 10*time.Second)

			data, err := os.ReadFile(logPath)
			require.NoError(t, err)
			logText := string(data)
			for _, bad := range []string{"level=error", "level=fatal", "level=panic", "panic:"} {
				require.NotContains(t, logText, bad)
			}
			order := []string{"shutting down workers", "controller stopped; disconnecting from the broker", "disconnected from mqtt broker", "module-controller stopped"}
			last := -1
			for _, msg := range order {
				i := strings.LastIndex(logText, msg)
				require.Greater(t, i, last, "log line %q missing or out of order", msg)
				last = i
			}

			// Shutdown is not an uninstall: the module and its pod stay.
			require.Equal(t, "ACTIVATED", bizState(b, "biz1", "0.0.1"))
			require.Zero(t, b.ReceivedCount(protocol.CommandUninstallBiz, "biz1:0.0.1"))
			p, err := e.client.CoreV1().Pods(e.namespace).Get(t.Context(), "mod", metav1.GetOptions{})
			require.NoError(t, err)
			require.Equal(t, corev1.PodRunning, p.Status.Phase)

			require.NoError(t, e.controller.Restart(t.Context()))
			e.waitNode(baseID, "Ready after restart", isReady)
			e.waitPod("mod", "Running and Ready after restart", running)
			require.Equal(t, "ACTIVATED", bizState(b, "biz1", "0.0.1"))
			require.Zero(t, b.ReceivedCount(protocol.CommandUninstallBiz, "biz1:0.0.1"))
		})
	}
}
