package mqtt

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/broker"
	"github.com/moduleops/module-controller/pkg/broker/brokertest"
	"github.com/moduleops/module-controller/pkg/certtest"
	"github.com/moduleops/module-controller/pkg/protocol"
	"github.com/moduleops/module-controller/tunnel"
)

func brokerConfig() broker.Config { return broker.Config{} }

func TestRunLifecycle(t *testing.T) {
	b := brokertest.Start(t, brokerConfig())
	tun, err := New(testConfig(b.Addr()))
	require.NoError(t, err)
	require.False(t, tun.Connected())

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- tun.Run(ctx) }()
	waitClosed(t, tun.Ready(), "tunnel ready")
	require.True(t, tun.Connected())
	require.Equal(t, 1.0, testutil.ToFloat64(tun.metrics.connected))
	require.ErrorIs(t, tun.Run(ctx), errRunTwice)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return after cancel")
	}
	require.False(t, tun.Connected())
	require.Equal(t, 0.0, testutil.ToFloat64(tun.metrics.connected))
	require.ErrorIs(t, tun.QueryHealth(t.Context(), testBaseID), ErrNotConnected)
}

// TestStopUnblocksFullEvents fills Events without a consumer and checks that stopping
// drops the waiting message instead of hanging.
func TestStopUnblocksFullEvents(t *testing.T) {
	b := brokertest.Start(t, brokerConfig())
	cfg := testConfig(b.Addr())
	cfg.EventBuffer = 1
	tun, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- tun.Run(ctx) }()
	waitClosed(t, tun.Ready(), "tunnel ready")

	base := connectBase(t, "tcp://"+b.Addr(), tun.Env(), testBaseID, nil)
	base.publish(protocol.SuffixHeartbeat, heartbeat(t, testBaseID, testNow)) // fills the buffer
	base.publish(protocol.SuffixHeartbeat, heartbeat(t, testBaseID, testNow)) // waits for room
	require.Eventually(t, func() bool { return testutil.ToFloat64(tun.metrics.backpressure) == 1 },
		waitTimeout, 10*time.Millisecond)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return with a handler waiting for room")
	}
	require.Equal(t, 1.0, dropped(tun, reasonStopped))
	require.Len(t, tun.Events(), 1, "the buffered event stays readable, the waiting one is gone")
	require.IsType(t, tunnel.BaseHeartbeat{}, <-tun.Events())
}

// TestReconnectRestoresSubscriptions restarts the broker on the same port: the new broker
// knows no subscriptions, so events can only flow again if the tunnel re-subscribed on its
// own when it reconnected.
func TestReconnectRestoresSubscriptions(t *testing.T) {
	b := brokertest.Start(t, brokerConfig())
	addr := b.Addr()
	tun := startTunnel(t, testConfig(addr))

	base := connectBase(t, "tcp://"+addr, tun.Env(), testBaseID, nil)
	base.publish(protocol.SuffixHeartbeat, heartbeat(t, testBaseID, testNow))
	require.Equal(t, testBaseID, nextEvent(t, tun).Base())

	b.Stop()
	require.Eventually(t, func() bool { return !tun.Connected() }, waitTimeout, 10*time.Millisecond)
	require.Equal(t, 0.0, testutil.ToFloat64(tun.metrics.connected))
	require.ErrorIs(t, tun.QueryHealth(t.Context(), testBaseID), ErrNotConnected)

	b.StartAgain()
	require.Eventually(t, tun.Connected, waitTimeout, 10*time.Millisecond)

	base = connectBase(t, "tcp://"+addr, tun.Env(), testBaseID, nil)
	base.subscribeCommands()
	base.publish(protocol.SuffixHeartbeat, heartbeat(t, testBaseID, testNow))
	ev := nextEvent(t, tun)
	require.IsType(t, tunnel.BaseHeartbeat{}, ev)
	require.Equal(t, testBaseID, ev.Base())

	require.NoError(t, tun.QueryHealth(t.Context(), testBaseID))
	require.Equal(t, protocol.Topic(tun.Env(), testBaseID, protocol.CommandHealth), base.next().Topic())
}

func TestCredentials(t *testing.T) {
	b := brokertest.Start(t, broker.Config{Username: "controller", Password: "s3cret"})

	cfg := testConfig(b.Addr())
	cfg.Username, cfg.Password = "controller", "wrong"
	bad := runTunnel(t, cfg)
	require.Eventually(t, func() bool { return testutil.ToFloat64(bad.metrics.connectFailures) >= 1 },
		waitTimeout, 10*time.Millisecond)
	require.False(t, bad.Connected())

	cfg = testConfig(b.Addr())
	cfg.Username, cfg.Password = "controller", "s3cret"
	startTunnel(t, cfg)
}

func TestTLS(t *testing.T) {
	ca := certtest.NewCA(t, "broker-ca")
	_, _, serverPair := ca.Server("broker")
	clientCert, clientKey, _ := ca.Client("controller")
	_, _, basePair := ca.Client("base")
	other := certtest.NewCA(t, "other-ca")

	// The broker requires a client certificate signed by its CA.
	b := brokertest.Start(t, broker.Config{TLS: &tls.Config{
		Certificates: []tls.Certificate{serverPair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool(),
		MinVersion:   tls.VersionTLS12,
	}})
	url := "ssl://" + b.Addr()

	t.Run("right CA and client certificate", func(t *testing.T) {
		cfg := testConfig(b.Addr())
		cfg.BrokerURL = url
		cfg.TLS = TLSConfig{CAFile: ca.CAFile, ClientCertFile: clientCert, ClientKeyFile: clientKey}
		tun := startTunnel(t, cfg)

		base := connectBase(t, url, tun.Env(), testBaseID, &tls.Config{
			RootCAs: ca.Pool(), Certificates: []tls.Certificate{basePair}, MinVersion: tls.VersionTLS12,
		})
		base.publish(protocol.SuffixHeartbeat, heartbeat(t, testBaseID, testNow))
		require.Equal(t, testBaseID, nextEvent(t, tun).Base())
	})

	failing := map[string]TLSConfig{
		"wrong CA":              {CAFile: other.CAFile, ClientCertFile: clientCert, ClientKeyFile: clientKey},
		"system roots":          {ClientCertFile: clientCert, ClientKeyFile: clientKey},
		"no client certificate": {CAFile: ca.CAFile},
	}
	for name, tc := range failing {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(b.Addr())
			cfg.BrokerURL = url
			cfg.TLS = tc
			tun := runTunnel(t, cfg)
			require.Eventually(t, func() bool { return testutil.ToFloat64(tun.metrics.connectFailures) >= 1 },
				waitTimeout, 10*time.Millisecond)
			require.False(t, tun.Connected())
			select {
			case <-tun.Ready():
				t.Fatal("tunnel became ready")
			default:
			}
		})
	}
}
