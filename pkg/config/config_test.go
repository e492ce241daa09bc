package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"
)

func parse(t *testing.T, args []string, env map[string]string) *Options {
	t.Helper()
	var o Options
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.AddFlags(fs)
	require.NoError(t, fs.Parse(args))
	o.ApplyEnv(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	o.Normalize()
	return &o
}

func TestDefaultsAreValid(t *testing.T) {
	o := parse(t, nil, nil)
	require.NoError(t, o.Validate())
	require.Equal(t, "default", o.Env, "a stock base publishes under env default")
	require.Equal(t, 25*time.Second, o.UnreachableAfter)
	require.Equal(t, "tcp://:1883", o.BrokerURL())
}

func TestEnvironmentFallbackAndFlagPrecedence(t *testing.T) {
	o := parse(t, []string{"--mqtt-port=8883"}, map[string]string{
		"ENV": "DEV", "MQTT_BROKER": "broker.example", "MQTT_PORT": "1884", "MQTT_USERNAME": "u", "REMOVE_AFTER": "2m",
	})
	require.NoError(t, o.Validate())
	require.Equal(t, "dev", o.Env, "env is lower-cased like the base does")
	require.Equal(t, 8883, o.MQTTPort, "a flag wins over its environment variable")
	require.Equal(t, "u", o.MQTTUsername)
	require.Equal(t, 2*time.Minute, o.RemoveAfter)
	require.Equal(t, "tcp://broker.example:8883", o.BrokerURL())
}

func TestValidateListsEveryProblem(t *testing.T) {
	o := parse(t, []string{"--unreachable-after=2m", "--max-pods=0", "--log-level=loud", "--mqtt-client-crt-path=/nonexistent"},
		map[string]string{"MQTT_PORT": "not-a-number"})
	err := o.Validate()
	require.Error(t, err)
	for _, want := range []string{"$MQTT_PORT", "--unreachable-after", "--max-pods", "--log-level", "go together", "needs TLS", "/nonexistent"} {
		require.ErrorContains(t, err, want)
	}
}

func TestTLSBrokerURL(t *testing.T) {
	o := parse(t, []string{"--mqtt-broker=b.example", "--mqtt-ca-path=" + t.TempDir()}, nil)
	require.Equal(t, "ssl://b.example:1883", o.BrokerURL())
}

func TestNewSettings(t *testing.T) {
	o := parse(t, nil, map[string]string{"LOG_FORMAT": "json", "VNODE_WORKER_NUM": "8", "NODE_STATUS_INTERVAL": "1m", "COMMAND_TIMEOUT": "3s"})
	require.NoError(t, o.Validate())
	require.Equal(t, "json", o.LogFormat)
	require.Equal(t, 8, o.PodWorkers)
	require.Equal(t, time.Minute, o.NodeStatusInterval)
	require.Equal(t, 3*time.Second, o.CommandTimeout)

	o = parse(t, []string{"--log-format=xml", "--pod-workers=0", "--command-timeout=0s", "--node-status-interval=-1s"}, nil)
	err := o.Validate()
	for _, want := range []string{"--log-format", "--pod-workers", "--command-timeout", "--node-status-interval"} {
		require.ErrorContains(t, err, want)
	}
}

func TestKubeconfigFromEnvMayBeAList(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	require.NoError(t, os.WriteFile(a, nil, 0o600))
	require.NoError(t, os.WriteFile(b, nil, 0o600))
	o := parse(t, nil, map[string]string{"KUBECONFIG": a + string(filepath.ListSeparator) + b})
	require.NoError(t, o.Validate())
	require.Equal(t, a+string(filepath.ListSeparator)+b, o.Kubeconfig)

	o = parse(t, []string{"--kubeconfig=" + filepath.Join(dir, "missing")}, nil)
	require.ErrorContains(t, o.Validate(), "--kubeconfig")
}

func TestPeerReplicaSync(t *testing.T) {
	require.True(t, parse(t, nil, nil).PeerReplicaSync, "on by default")
	require.False(t, parse(t, nil, map[string]string{"PEER_REPLICA_SYNC": "false"}).PeerReplicaSync)
	require.True(t, parse(t, []string{"--peer-replica-sync=true"}, map[string]string{"PEER_REPLICA_SYNC": "false"}).PeerReplicaSync, "the flag wins")
	o := parse(t, nil, map[string]string{"PEER_REPLICA_SYNC": "sometimes"})
	require.ErrorContains(t, o.Validate(), "$PEER_REPLICA_SYNC")
}

func TestMQTTMaxMessageBytes(t *testing.T) {
	o := parse(t, nil, nil)
	require.Empty(t, o.MQTTMaxMessageBytes, "unset: the tunnel's defaults apply")

	o = parse(t, []string{"--mqtt-max-message-bytes=base/heart=4096,base/health=65536"}, nil)
	require.NoError(t, o.Validate())
	require.Equal(t, map[string]int{"base/heart": 4096, "base/health": 65536}, o.MQTTMaxMessageBytes)

	o = parse(t, []string{"--mqtt-max-message-bytes=base/heart=0"}, nil)
	require.ErrorContains(t, o.Validate(), "--mqtt-max-message-bytes base/heart=0")
}

func TestEmbeddedBrokerClosedByDefault(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		wants []string // substrings of the error; none: valid
	}{
		{name: "default: loopback without credentials"},
		{name: "IPv6 loopback", args: []string{"--embedded-broker-address=[::1]:1883"}},
		{name: "every interface without credentials", env: map[string]string{"EMBEDDED_BROKER_ADDRESS": ":1883"},
			wants: []string{"other hosts can reach", "Secret " + MQTTSecretName, "kubectl -n module-controller create secret generic " + MQTTSecretName, "127.0.0.1:1883"}},
		{name: "every interface with credentials", env: map[string]string{"EMBEDDED_BROKER_ADDRESS": ":1883", "MQTT_USERNAME": "c", "MQTT_PASSWORD": "p"}},
		{name: "user without password", args: []string{"--mqtt-username=c"}, wants: []string{"needs a password"}},
		{name: "external broker without credentials", args: []string{"--mqtt-broker=b.example", "--embedded-broker-address=:1883"}},
		{name: "password file without the controller's user", args: []string{"--embedded-broker-password-file=/etc/passwd"},
			wants: []string{"needs the controller's own user"}},
		{name: "tiny packets", args: []string{"--embedded-broker-max-packet-size=10"}, wants: []string{"at least 1024"}},
		{name: "packets over MQTT's limit", args: []string{"--embedded-broker-max-packet-size=5000000000"}, wants: []string{"at most 268435455"}},
		{name: "tls cert without key", args: []string{"--embedded-broker-tls-crt-path=/nonexistent"}, wants: []string{"go together", "/nonexistent"}},
		{name: "client ca without tls", args: []string{"--embedded-broker-client-ca-path=" + t.TempDir()}, wants: []string{"needs TLS"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := parse(t, tc.args, tc.env).Validate()
			if len(tc.wants) == 0 {
				require.NoError(t, err)
				return
			}
			for _, want := range tc.wants {
				require.ErrorContains(t, err, want)
			}
		})
	}
}

func TestClusterMode(t *testing.T) {
	// Off by default; the pod name is the identity unless CLIENT_ID says otherwise.
	o := parse(t, nil, map[string]string{"POD_NAME": "module-controller-7d9f-abcde"})
	require.False(t, o.ClusterMode)
	require.Equal(t, "module-controller-7d9f-abcde", o.ClientID)
	o = parse(t, nil, map[string]string{"POD_NAME": "pod", "CLIENT_ID": "mc-1"})
	require.Equal(t, "mc-1", o.ClientID, "CLIENT_ID wins over POD_NAME")
	o = parse(t, []string{"--client-id=mc-2"}, map[string]string{"POD_NAME": "pod", "CLIENT_ID": "mc-1"})
	require.Equal(t, "mc-2", o.ClientID, "the flag wins over both")

	o = parse(t, nil, map[string]string{"CLUSTER_MODE": "true", "MQTT_BROKER": "mosquitto", "POD_NAME": "pod-a", "NAMESPACE": "mc"})
	require.NoError(t, o.Validate())
	require.True(t, o.ClusterMode)
	require.Equal(t, "mc", o.Namespace)
	require.Equal(t, 20*time.Second, o.ClusterLeaseDuration)

	err := parse(t, []string{"--cluster-mode", "--cluster-renew-deadline=30s", "--cluster-lease-duration=1500ms"}, nil).Validate()
	for _, want := range []string{"external broker", "unique identity", "whole seconds", "--cluster-renew-deadline 30s < --cluster-lease-duration"} {
		require.ErrorContains(t, err, want)
	}
}

func TestKubeletSettings(t *testing.T) {
	o := parse(t, nil, nil)
	require.NoError(t, o.Validate())
	require.Equal(t, 10250, o.KubeletPort)
	require.False(t, o.KubeletEnabled(), "no address to advertise outside a pod: off")

	o = parse(t, nil, map[string]string{"POD_IP": "10.244.3.9", "BASE_CONTAINER": "base"})
	require.NoError(t, o.Validate())
	require.True(t, o.KubeletEnabled())
	require.Equal(t, "10.244.3.9", o.KubeletAddress, "the pod IP from the downward API")
	require.Equal(t, "base", o.BaseContainer)

	o = parse(t, []string{"--kubelet-address=10.0.0.1"}, map[string]string{"POD_IP": "10.244.3.9", "KUBELET_PORT": "0"})
	require.NoError(t, o.Validate())
	require.Equal(t, "10.0.0.1", o.KubeletAddress, "the flag wins over $POD_IP")
	require.False(t, o.KubeletEnabled(), "port 0 turns it off")

	o = parse(t, []string{"--kubelet-address=https://x:1", "--kubelet-port=70000"}, nil)
	require.ErrorContains(t, o.Validate(), "--kubelet-port 70000")
	o = parse(t, []string{"--kubelet-address=https://x:1", "--kubelet-tls-cert=/nonexistent"}, nil)
	err := o.Validate()
	for _, want := range []string{"without port or scheme", "go together", "/nonexistent"} {
		require.ErrorContains(t, err, want)
	}
}

func TestHTTPTunnelSettings(t *testing.T) {
	o := parse(t, []string{"--http-tunnel"}, map[string]string{"HTTP_TUNNEL_LISTEN_PORT": "7778"})
	require.NoError(t, o.Validate())
	require.True(t, o.MQTTTunnel, "MQTT stays on beside HTTP")
	require.Equal(t, ":7778", o.HTTPTunnelListen, "the 2.2 controller's bare port")
	require.Equal(t, DefaultHTTPTunnelInstallTimeout, o.HTTPTunnelInstallTimeout)

	// HTTP alone: no broker settings are checked, not even the embedded broker's.
	o = parse(t, []string{"--http-tunnel", "--mqtt-tunnel=false", "--embedded-broker-address=0.0.0.0:1883", "--http-tunnel-listen=127.0.0.1:0"}, nil)
	require.NoError(t, o.Validate())

	o = parse(t, []string{"--mqtt-tunnel=false"}, nil)
	require.ErrorContains(t, o.Validate(), "needs --http-tunnel")

	o = parse(t, []string{"--http-tunnel", "--http-tunnel-listen=nope", "--http-tunnel-max-in-flight=0", "--http-tunnel-install-timeout=0s",
		"--http-tunnel-tls-key-path=/nonexistent", "--http-tunnel-client-ca-path=/nonexistent", "--cluster-mode", "--mqtt-broker=b", "--client-id=a"}, nil)
	err := o.Validate()
	for _, want := range []string{"--http-tunnel-listen", "--http-tunnel-max-in-flight", "--http-tunnel-install-timeout", "go together", "needs TLS", "/nonexistent", "--cluster-mode"} {
		require.ErrorContains(t, err, want)
	}
}
