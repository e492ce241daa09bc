package httptunnel

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/basesim"
	"github.com/moduleops/module-controller/pkg/protocol"
	"github.com/moduleops/module-controller/tunnel"
)

// nextOf returns the next event of type T, skipping heartbeats.
func nextOf[T tunnel.Event](t *testing.T, tt *testTunnel) T {
	t.Helper()
	for {
		ev := tt.next(t)
		if v, ok := ev.(T); ok {
			return v
		}
		if _, ok := ev.(tunnel.BaseHeartbeat); !ok {
			t.Fatalf("unexpected event %T", ev)
		}
	}
}

// TestSimulatedBase runs pkg/basesim's HTTP tunnel against the real Tunnel: the
// registration heartbeat announces the sim's real port, commands are answered
// synchronously and become the events the MQTT tunnel emits, and a restarted base comes
// back empty on a new port.
func TestSimulatedBase(t *testing.T) {
	tt := start(t, Config{AllowLoopback: true, Now: time.Now})
	b, err := basesim.New(basesim.Config{
		Tunnel: basesim.TunnelHTTP, HTTPEndpoint: tt.base, Identity: "base-1",
		HeartbeatInterval: time.Hour, InstallDelay: 50 * time.Millisecond, RestartDowntime: -1,
	})
	require.NoError(t, err)
	require.NoError(t, b.Start(t.Context()))
	t.Cleanup(b.Stop)

	hb := nextOf[tunnel.BaseHeartbeat](t, tt)
	require.Equal(t, "base-1", hb.Base())
	require.Equal(t, "127.0.0.1", hb.Status.LocalIP)
	require.Equal(t, b.HTTPPort(), hb.Status.Port)
	require.NotZero(t, hb.Status.Port)
	require.Equal(t, 1, b.PublishedCount(protocol.SuffixHeartbeat))

	biz := protocol.BizModel{BizName: "biz1", BizVersion: "0.0.1", BizURL: "https://x/biz1.jar"}
	require.NoError(t, tt.InstallBiz(t.Context(), "base-1", biz))
	op := nextOf[tunnel.BizOperationResult](t, tt)
	require.Equal(t, protocol.OutcomeSucceeded, op.Operation.Outcome())
	require.Equal(t, protocol.BizActivated, op.Operation.InstalledState())
	require.Equal(t, 1, b.ReceivedCount(protocol.CommandInstallBiz, "biz1:0.0.1"))

	require.NoError(t, tt.QueryAllBiz(t.Context(), "base-1"))
	list := nextOf[tunnel.BizStatus](t, tt)
	require.Len(t, list.Bizs, 1)
	require.Equal(t, protocol.BizActivated, list.Bizs[0].BizState())

	require.NoError(t, tt.QueryHealth(t.Context(), "base-1"))
	h := nextOf[tunnel.BaseHealth](t, tt)
	require.Equal(t, protocol.CodeSuccess, h.Health.Code)
	require.Len(t, h.Health.Data.HealthData.BizListInfo, 2) // master and biz1

	b.FailInstallOf("biz2")
	require.NoError(t, tt.InstallBiz(t.Context(), "base-1", protocol.BizModel{BizName: "biz2", BizVersion: "1", BizURL: "https://x/biz2.jar"}))
	op = nextOf[tunnel.BizOperationResult](t, tt)
	require.Equal(t, protocol.OutcomeFailed, op.Operation.Outcome())

	require.NoError(t, tt.UninstallBiz(t.Context(), "base-1", biz))
	op = nextOf[tunnel.BizOperationResult](t, tt)
	require.Equal(t, protocol.CommandUninstallBiz, op.Operation.Command)
	require.Equal(t, protocol.OutcomeSucceeded, op.Operation.Outcome())

	require.NoError(t, tt.InstallBiz(t.Context(), "base-1", biz))
	require.Equal(t, protocol.OutcomeSucceeded, nextOf[tunnel.BizOperationResult](t, tt).Operation.Outcome())
	oldPort := b.HTTPPort()
	require.NoError(t, b.Restart(t.Context()))
	hb = nextOf[tunnel.BaseHeartbeat](t, tt)
	require.Equal(t, b.HTTPPort(), hb.Status.Port)
	require.NotEqual(t, oldPort, hb.Status.Port, "a new process, a new free port")
	require.NoError(t, tt.QueryAllBiz(t.Context(), "base-1"))
	require.Empty(t, nextOf[tunnel.BizStatus](t, tt).Bizs, "a restarted base comes back empty")
}

// TestSimulatedBaseSilenced checks that a silenced sim answers no command.
func TestSimulatedBaseSilenced(t *testing.T) {
	tt := start(t, Config{AllowLoopback: true, Now: time.Now})
	b, err := basesim.New(basesim.Config{Tunnel: basesim.TunnelHTTP, HTTPEndpoint: tt.base, Identity: "base-1", HeartbeatInterval: time.Hour})
	require.NoError(t, err)
	require.NoError(t, b.Start(t.Context()))
	t.Cleanup(b.Stop)
	nextOf[tunnel.BaseHeartbeat](t, tt)
	b.Silence(true)
	require.NoError(t, tt.QueryHealth(t.Context(), "base-1"))
	require.Eventually(t, func() bool { return tt.commandCount(protocol.CommandHealth, resultError) == 1 }, 5*time.Second, 5*time.Millisecond)
	tt.noEvent(t)
}
