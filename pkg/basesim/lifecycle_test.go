package basesim

import (
	"crypto/tls"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/broker"
	"github.com/moduleops/module-controller/pkg/broker/brokertest"
	"github.com/moduleops/module-controller/pkg/certtest"
	"github.com/moduleops/module-controller/pkg/protocol"
)

func brokerConfig() broker.Config { return broker.Config{} }

func TestNewValidates(t *testing.T) {
	_, err := New(Config{})
	require.ErrorIs(t, err, protocol.ErrInvalidBaseID)
	_, err = New(Config{Identity: "a/b", FailureRate: 2, Broker: "tcp://"})
	require.ErrorIs(t, err, protocol.ErrInvalidBaseID)
	require.ErrorContains(t, err, "failure rate")
	require.ErrorContains(t, err, "no host")
	_, err = New(Config{Identity: "x", TLS: &tls.Config{InsecureSkipVerify: true}}) //nolint:gosec // checks that it is refused
	require.ErrorContains(t, err, "InsecureSkipVerify")

	b, err := New(Config{Identity: "sim-1", Env: "DEV", TLS: &tls.Config{}})
	require.NoError(t, err)
	require.Equal(t, "dev", b.Env())
	require.Equal(t, "koupleless_dev/sim-1/base/heart", b.Topic(protocol.SuffixHeartbeat))
	require.Equal(t, "ssl://127.0.0.1:1883", b.Config().Broker, "TLS switches tcp:// to ssl://")
	require.True(t, netip.MustParseAddr(b.Config().LocalIP).Is4())
	require.Equal(t, "sim-1", b.Config().LocalHostName)

	b, err = New(Config{Identity: "10.1.2.3"})
	require.NoError(t, err)
	require.Equal(t, "10.1.2.3", b.Config().LocalIP)
	require.Equal(t, protocol.DefaultEnv, b.Env())
	require.ErrorIs(t, b.Restart(t.Context()), ErrNotStarted)
	require.ErrorIs(t, b.SendRaw(protocol.SuffixHeartbeat, nil), ErrNotStarted)
	require.Empty(t, b.Bizs())
	b.Stop()
	require.ErrorIs(t, b.Start(t.Context()), ErrStopped)
}

func TestStartFailsWithoutBroker(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	b, err := New(Config{Identity: "lonely", Broker: "tcp://" + addr, ConnectTimeout: time.Second})
	require.NoError(t, err)
	require.Error(t, b.Start(t.Context()))
	require.False(t, b.Connected())
}

func TestHeartbeatCadence(t *testing.T) {
	url := startBroker(t, brokerConfig())
	ctrl := newController(t, url, protocol.DefaultEnv)
	const interval = 50 * time.Millisecond
	b := startBase(t, Config{Broker: url, HeartbeatInterval: interval})
	id := b.Identity()

	ctrl.await(id, protocol.SuffixHeartbeat, 5)
	msgs := ctrl.on(id, protocol.SuffixHeartbeat)
	first := decodeEnvelope[protocol.BaseStatus](t, msgs[0].payload).PublishedAt()
	sixth := decodeEnvelope[protocol.BaseStatus](t, msgs[5].payload).PublishedAt()
	span := sixth.Sub(first)
	require.GreaterOrEqual(t, span, 4*interval, "heartbeats come at the configured rate, not faster")
	require.Less(t, span, 40*interval)
	require.GreaterOrEqual(t, b.PublishedCount(protocol.SuffixHeartbeat), 6)

	// A dead heartbeat task: no more heartbeats, but health is still answered.
	b.StopHeartbeats()
	n := ctrl.count(id, protocol.SuffixHeartbeat) + 2 // allow for publishes already begun
	ctrl.send(id, protocol.CommandHealth, []byte("{}"))
	ctrl.await(id, protocol.SuffixHealth, 0)
	require.Never(t, func() bool { return ctrl.count(id, protocol.SuffixHeartbeat) > n }, 300*time.Millisecond, 10*time.Millisecond)

	// A restart brings them back.
	require.NoError(t, b.Restart(t.Context()))
	ctrl.await(id, protocol.SuffixHeartbeat, n+2)
}

func TestRestartLosesBizsAndQueriesBaselineAgain(t *testing.T) {
	url := startBroker(t, brokerConfig())
	ctrl := newController(t, url, protocol.DefaultEnv)
	b := startBase(t, Config{Broker: url, StaticBizs: []protocol.BizModel{bizModel("baked", "1")}})
	id := b.Identity()
	ctrl.await(id, protocol.SuffixQueryBaseline, 0)
	ctrl.sendJSON(id, protocol.CommandInstallBiz, bizModel("biz1", "1"))
	ctrl.await(id, protocol.SuffixBizOperation, 0)
	require.Len(t, b.Bizs(), 2)

	// An install in flight when the JVM dies is never answered.
	b.SetInstallDelay(time.Hour)
	ctrl.sendJSON(id, protocol.CommandInstallBiz, bizModel("biz2", "1"))
	require.Eventually(t, func() bool { return len(b.Bizs()) == 3 }, waitFor, tick)

	require.NoError(t, b.Restart(t.Context()))
	require.Equal(t, []string{"baked:1=ACTIVATED"}, states(b.Bizs()), "only bizs baked into the base survive")
	ctrl.await(id, protocol.SuffixQueryBaseline, 1)
	require.True(t, b.Connected())

	// The new process answers commands; the log spans both lives.
	b.SetInstallDelay(0)
	ctrl.sendJSON(id, protocol.CommandInstallBiz, bizModel("biz1", "1"))
	op := decodeEnvelope[bizOp](t, ctrl.await(id, protocol.SuffixBizOperation, 1)).Data
	require.Equal(t, protocol.OutcomeSucceeded, op.Outcome(), "biz1 was lost, so this is no repeat")
	require.Equal(t, "biz1:1", op.Key())
	require.Equal(t, 2, b.ReceivedCount(protocol.CommandInstallBiz, "biz1:1"))
	require.Never(t, func() bool { return ctrl.count(id, protocol.SuffixBizOperation) > 2 }, 200*time.Millisecond, 10*time.Millisecond)
	require.Equal(t, 2, ctrl.count(id, protocol.SuffixQueryBaseline))
}

func TestBrokerRestart(t *testing.T) {
	for _, dies := range []bool{false, true} {
		t.Run(map[bool]string{false: "heartbeats resume", true: "heartbeat task dies"}[dies], func(t *testing.T) {
			rb := brokertest.Start(t, broker.Config{})
			const interval = 20 * time.Millisecond
			b := startBase(t, Config{
				Broker: rb.URL(), HeartbeatInterval: interval, HeartbeatStopsOnError: dies,
				MaxReconnectInterval: 100 * time.Millisecond,
				// A reconnect attempt racing the broker's shutdown can be accepted and never
				// answered; do not wait long for its CONNACK.
				ConnectTimeout: time.Second,
			})
			require.Eventually(t, func() bool { return b.PublishedCount(protocol.SuffixHeartbeat) >= 2 }, waitFor, tick)

			rb.Stop()
			require.Eventually(t, func() bool { return !b.Connected() }, waitFor, tick)
			// Let at least one heartbeat fail while the broker is away.
			before := b.PublishedCount(protocol.SuffixHeartbeat)
			require.Never(t, func() bool { return b.PublishedCount(protocol.SuffixHeartbeat) > before }, 3*interval, interval/2)
			rb.StartAgain()
			ctrl := newController(t, rb.URL(), protocol.DefaultEnv)
			require.Eventually(t, b.Connected, waitFor, tick)

			// Subscriptions are renewed on reconnect: commands are answered again.
			require.Eventually(t, func() bool {
				ctrl.send(b.Identity(), protocol.CommandHealth, []byte("{}"))
				return ctrl.count(b.Identity(), protocol.SuffixHealth) > 0
			}, waitFor, 50*time.Millisecond)
			require.Zero(t, ctrl.count(b.Identity(), protocol.SuffixQueryBaseline), "queryBaseline only on a process's first connect")
			if dies {
				// The publish that failed may still sit in the client's QoS 1
				// store and be delivered once after the reconnect; no other
				// heartbeat may follow it.
				require.Never(t, func() bool { return ctrl.count(b.Identity(), protocol.SuffixHeartbeat) > 1 }, 10*interval, interval)
			} else {
				ctrl.await(b.Identity(), protocol.SuffixHeartbeat, 2)
			}
		})
	}
}

func TestTLSAndCredentials(t *testing.T) {
	ca := certtest.NewCA(t, "test ca")
	_, _, serverCert := ca.Server("broker")
	url := startBroker(t, broker.Config{
		Username: "sim", Password: "secret",
		TLS: &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12},
	})

	tlsCfg := &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
	b := startBase(t, Config{Broker: url, TLS: tlsCfg, Username: "sim", Password: "secret"})
	require.True(t, b.Connected())
	require.Contains(t, b.Config().Broker, "ssl://")

	bad, err := New(Config{Identity: "intruder", Broker: url, TLS: tlsCfg, Username: "sim", Password: "wrong"})
	require.NoError(t, err)
	require.Error(t, bad.Start(t.Context()), "bad credentials fail the start")

	untrusted, err := New(Config{Identity: "untrusting", Broker: url, TLS: &tls.Config{MinVersion: tls.VersionTLS12}, Username: "sim", Password: "secret"})
	require.NoError(t, err)
	require.Error(t, untrusted.Start(t.Context()), "the server certificate is verified")
}

func TestIdleBaseHasNoGoroutineOfItsOwn(t *testing.T) {
	url := startBroker(t, brokerConfig())
	b := startBase(t, Config{Broker: url, HeartbeatInterval: time.Hour})
	require.True(t, b.Connected())
	require.Eventually(t, func() bool {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		return !strings.Contains(stacks, "pkg/basesim.(*process)") && !strings.Contains(stacks, "pkg/basesim.(*Base)")
	}, waitFor, tick)
}

func TestFleetOf200(t *testing.T) {
	url := startBroker(t, brokerConfig())
	ctrl := newController(t, url, protocol.DefaultEnv)
	prefix := randomID("fleet")
	before := runtime.NumGoroutine()
	f, err := StartFleet(t.Context(), FleetConfig{
		Base:           Config{Broker: url, HeartbeatInterval: 200 * time.Millisecond, ReceivedLimit: -1},
		Count:          200,
		IdentityPrefix: prefix,
	})
	require.NoError(t, err)
	t.Cleanup(f.Stop)
	require.Equal(t, 200, f.Len())
	require.Equal(t, prefix+"-0", f.Base(0).Identity())
	require.Equal(t, prefix+"-199", f.Bases()[199].Identity())

	require.Eventually(t, func() bool { return len(ctrl.distinctBases(protocol.SuffixHeartbeat)) == 200 }, waitFor, 20*time.Millisecond)
	require.Len(t, ctrl.distinctBases(protocol.SuffixQueryBaseline), 200)
	require.Eventually(t, func() bool {
		for _, b := range f.Bases() {
			if b.PublishedCount(protocol.SuffixHeartbeat) < 3 {
				return false
			}
		}
		return true
	}, waitFor, 20*time.Millisecond, "every base keeps beating")

	// A base costs its paho client's 10 goroutines plus the broker's 2 for the
	// connection, and nothing of its own but a heartbeat being published.
	require.Eventually(t, func() bool {
		perBase := float64(runtime.NumGoroutine()-before) / 200
		t.Logf("goroutines per base: %.2f", perBase)
		return perBase <= 12.1
	}, waitFor, 20*time.Millisecond)

	// Commands reach the right base.
	ctrl.sendJSON(f.Base(42).Identity(), protocol.CommandInstallBiz, bizModel("biz1", "1"))
	ctrl.await(f.Base(42).Identity(), protocol.SuffixBizOperation, 0)
	require.Len(t, f.Base(42).Bizs(), 1)
	require.Empty(t, f.Base(41).Bizs())

	f.Stop()
	for _, b := range f.Bases() {
		require.False(t, b.Connected())
	}
}

func TestFleetWithIPIdentities(t *testing.T) {
	url := startBroker(t, brokerConfig())
	ids := IPIdentities(netip.MustParseAddr("10.0.0.254"))
	require.Equal(t, []string{"10.0.0.254", "10.0.0.255", "10.0.1.0"}, []string{ids(0), ids(1), ids(2)})
	f, err := StartFleet(t.Context(), FleetConfig{Base: Config{Broker: url}, Count: 3, Identity: IPIdentities(netip.MustParseAddr("10.9.0.1"))})
	require.NoError(t, err)
	t.Cleanup(f.Stop)
	require.Equal(t, "10.9.0.3", f.Base(2).Identity())
	require.Equal(t, "10.9.0.3", f.Base(2).Config().LocalIP)

	_, err = StartFleet(t.Context(), FleetConfig{Base: Config{Broker: url}, Count: 2, Identity: func(int) string { return "same" }})
	require.ErrorContains(t, err, "duplicate identity")
	_, err = StartFleet(t.Context(), FleetConfig{Base: Config{Broker: url}, Count: 1, IdentityPrefix: "UPPER"})
	require.ErrorIs(t, err, protocol.ErrInvalidBaseID)
}
