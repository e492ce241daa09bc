package mqtt

import (
	"context"
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/broker/brokertest"
	"github.com/moduleops/module-controller/pkg/protocol"
)

func TestCommandsArriveAtQoS1NotRetained(t *testing.T) {
	b := brokertest.Start(t, brokerConfig())
	tun := startTunnel(t, testConfig(b.Addr()))
	url := "tcp://" + b.Addr()
	base := connectBase(t, url, tun.Env(), testBaseID, nil)
	base.subscribeCommands()

	biz := protocol.BizModel{BizName: "biz1", BizVersion: "0.0.1-SNAPSHOT", BizURL: "https://example.test/biz1.jar"}
	bizJSON := `{"bizName":"biz1","bizVersion":"0.0.1-SNAPSHOT","bizUrl":"https://example.test/biz1.jar"}`
	ctx := t.Context()
	cases := []struct {
		name    string
		send    func() error
		suffix  string
		payload string
		label   string
	}{
		{"install", func() error { return tun.InstallBiz(ctx, testBaseID, biz) }, protocol.CommandInstallBiz, bizJSON, protocol.CommandInstallBiz},
		{"uninstall", func() error { return tun.UninstallBiz(ctx, testBaseID, biz) }, protocol.CommandUninstallBiz, bizJSON, protocol.CommandUninstallBiz},
		{"query all biz", func() error { return tun.QueryAllBiz(ctx, testBaseID) }, protocol.CommandQueryAllBiz, `{}`, protocol.CommandQueryAllBiz},
		{"health", func() error { return tun.QueryHealth(ctx, testBaseID) }, protocol.CommandHealth, `{}`, protocol.CommandHealth},
		{"empty baseline", func() error { return tun.SendBaseline(ctx, testBaseID, nil) }, protocol.SuffixBaseline, `[]`, baselineLabel},
		{"baseline", func() error { return tun.SendBaseline(ctx, testBaseID, []protocol.BizModel{biz}) },
			protocol.SuffixBaseline, `[` + bizJSON + `]`, baselineLabel},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.ToFloat64(tun.metrics.commands.WithLabelValues(tc.label, resultOK))
			require.NoError(t, tc.send())
			m := base.next()
			require.Equal(t, protocol.Topic(tun.Env(), testBaseID, tc.suffix), m.Topic())
			require.Equal(t, tc.payload, string(m.Payload()))
			require.Equal(t, byte(1), m.Qos(), "delivered QoS is min(publish, subscribe) QoS")
			require.False(t, m.Retained())
			require.Equal(t, before+1, testutil.ToFloat64(tun.metrics.commands.WithLabelValues(tc.label, resultOK)))
		})
	}

	// A base that (re)connects now must get nothing: no command was retained. Its own
	// marker, published on the same connection after the SUBACK, is processed by the
	// broker after any retained message would have been sent, so it must come first.
	late := connectBase(t, url, tun.Env(), testBaseID, nil)
	filter := protocol.Topic(tun.Env(), testBaseID, "#")
	require.NoError(t, wait(t, late.client.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { late.got <- m })))
	late.publish(protocol.CommandHealth, []byte("marker"))
	m := late.next()
	require.Equal(t, "marker", string(m.Payload()), "received a retained %s", m.Topic())
	require.False(t, m.Retained())
}

func TestCommandErrors(t *testing.T) {
	cfg := testConfig("127.0.0.1:1")
	tun, err := New(cfg)
	require.NoError(t, err)
	ctx := t.Context()

	err = tun.QueryHealth(ctx, testBaseID)
	require.ErrorIs(t, err, ErrNotConnected)
	require.Equal(t, 1.0, testutil.ToFloat64(tun.metrics.commands.WithLabelValues(protocol.CommandHealth, resultNotConnected)))

	for _, id := range []string{"", "a/b", "+", "#", "UPPER"} {
		err := tun.InstallBiz(ctx, id, protocol.BizModel{BizName: "a", BizVersion: "1"})
		require.ErrorIs(t, err, protocol.ErrInvalidBaseID, "base id %q", id)
	}
	require.Equal(t, 5.0, testutil.ToFloat64(tun.metrics.commands.WithLabelValues(protocol.CommandInstallBiz, resultInvalid)))
}

func TestCommandWithDoneContextIsNotSent(t *testing.T) {
	b := brokertest.Start(t, brokerConfig())
	tun := startTunnel(t, testConfig(b.Addr()))
	base := connectBase(t, "tcp://"+b.Addr(), tun.Env(), testBaseID, nil)
	base.subscribeCommands()

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, tun.QueryHealth(ctx, testBaseID), context.Canceled)
	require.Equal(t, 1.0, testutil.ToFloat64(tun.metrics.commands.WithLabelValues(protocol.CommandHealth, resultCanceled)))

	require.NoError(t, tun.QueryAllBiz(t.Context(), testBaseID))
	require.Equal(t, protocol.Topic(tun.Env(), testBaseID, protocol.CommandQueryAllBiz), base.next().Topic(),
		"the cancelled health command was published")
}
