package main

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/config"
	"github.com/moduleops/module-controller/tunnel"
	httptunnel "github.com/moduleops/module-controller/tunnel/http"
	"github.com/moduleops/module-controller/tunnel/mqtt"
)

func options(t *testing.T, args ...string) config.Options {
	t.Helper()
	o := config.NewOptions()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.AddFlags(fs)
	require.NoError(t, fs.Parse(args))
	o.Complete()
	require.NoError(t, o.Validate())
	return *o
}

func TestBuildTunnel(t *testing.T) {
	const broker = "tcp://127.0.0.1:1883"
	tun, err := buildTunnel(options(t), broker, prometheus.NewRegistry())
	require.NoError(t, err)
	require.IsType(t, &mqtt.Tunnel{}, tun, "MQTT alone by default")

	tun, err = buildTunnel(options(t, "--http-tunnel", "--mqtt-tunnel=false"), broker, prometheus.NewRegistry())
	require.NoError(t, err)
	require.IsType(t, &httptunnel.Tunnel{}, tun, "HTTP alone")

	reg := prometheus.NewRegistry()
	tun, err = buildTunnel(options(t, "--http-tunnel"), broker, reg)
	require.NoError(t, err)
	require.IsType(t, &tunnel.Mux{}, tun, "both, behind one Mux")
	families, err := reg.Gather()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	require.True(t, names["module_controller_mqtt_commands_published_total"])
	require.True(t, names["module_controller_http_tunnel_commands_total"])
}
