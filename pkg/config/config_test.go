package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/controller"
	"github.com/moduleops/module-controller/pkg/controller/cluster"
	httptunnel "github.com/moduleops/module-controller/tunnel/http"
	"github.com/moduleops/module-controller/tunnel/mqtt"
)

func parse(t *testing.T, args []string, env map[string]string) *Options {
	t.Helper()
	o := NewOptions()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.AddFlags(fs)
	require.NoError(t, fs.Parse(args))
	o.ApplyEnv(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	o.Complete()
	return o
}

func TestDefaultsAreValid(t *testing.T) {
	o := parse(t, nil, nil)
	require.NoError(t, o.Validate())
	require.Equal(t, "default", o.Controller.Env, "a stock base publishes under env default")
	require.Equal(t, controller.DefaultUnreachableAfter, o.Controller.UnreachableAfter)
	require.Empty(t, o.MQTT.BrokerURL, "the embedded broker: the process sets the address it binds")
}

func TestEnvironmentFallbackAndFlagPrecedence(t *testing.T) {
	o := parse(t, []string{"--mqtt-port=8883"}, map[string]string{
		"ENV": "DEV", "MQTT_BROKER": "broker.example", "MQTT_PORT": "1884", "MQTT_USERNAME": "u", "REMOVE_AFTER": "2m",
	})
	require.NoError(t, o.Validate())
	require.Equal(t, "dev", o.Controller.Env, "env is lower-cased like the base does")
	require.Equal(t, "dev", o.MQTT.Env, "and reaches every component")
	require.Equal(t, 8883, o.MQTTPort, "a flag wins over its environment variable")
	require.Equal(t, "u", o.MQTT.Username)
	require.Equal(t, 2*time.Minute, o.Controller.RemoveAfter)
	require.Equal(t, 4*time.Minute, o.HTTP.BaseTTL, "derived from --remove-after")
	require.Equal(t, "tcp://broker.example:8883", o.MQTT.BrokerURL)
}

func TestValidateListsEveryProblem(t *testing.T) {
	o := parse(t, []string{"--mqtt-broker=b.example", "--unreachable-after=2m", "--max-pods=0", "--log-level=loud", "--mqtt-client-crt-path=/nonexistent"},
		map[string]string{"MQTT_PORT": "not-a-number"})
	err := o.Validate()
	require.Error(t, err)
	for _, want := range []string{"$MQTT_PORT", "--unreachable-after 2m0s must be shorter than --remove-after 1m0s",
		"--max-pods 0 must be positive", "--log-level", "go together", "is not TLS", "/nonexistent"} {
		require.ErrorContains(t, err, want)
	}
}

func TestTLSBrokerURL(t *testing.T) {
	o := parse(t, []string{"--mqtt-broker=b.example", "--mqtt-ca-path=" + t.TempDir()}, nil)
	require.Equal(t, "ssl://b.example:1883", o.MQTT.BrokerURL)
}

func TestNewSettings(t *testing.T) {
	o := parse(t, nil, map[string]string{"LOG_FORMAT": "json", "VNODE_WORKER_NUM": "8", "NODE_STATUS_INTERVAL": "1m", "COMMAND_TIMEOUT": "3s"})
	require.NoError(t, o.Validate())
	require.Equal(t, "json", o.LogFormat)
	require.Equal(t, 8, o.Controller.PodWorkers, "the reference controller's VNODE_WORKER_NUM is read when POD_WORKERS is unset")
	require.Equal(t, time.Minute, o.Controller.NodeStatusInterval)
	require.Equal(t, 3*time.Second, o.Controller.CommandTimeout)
	require.Equal(t, 4, parse(t, nil, map[string]string{"POD_WORKERS": "4", "VNODE_WORKER_NUM": "8"}).Controller.PodWorkers, "the new name wins")

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
	require.Empty(t, o.MQTT.MaxMessageBytes, "unset: the tunnel's defaults apply")

	o = parse(t, []string{"--mqtt-max-message-bytes=base/heart=4096,base/health=65536"}, nil)
	require.NoError(t, o.Validate())
	require.Equal(t, map[string]int{"base/heart": 4096, "base/health": 65536}, o.MQTT.MaxMessageBytes)

	o = parse(t, []string{"--mqtt-max-message-bytes=base/heart=0"}, nil)
	require.ErrorContains(t, o.Validate(), "--mqtt-max-message-bytes base/heart=0 is not in")
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
			wants: []string{"--embedded-broker-address \":1883\" is reachable from other hosts", "[$EMBEDDED_BROKER_ADDRESS]", "Secret " + MQTTSecretName, "kubectl -n module-controller create secret generic " + MQTTSecretName, "127.0.0.1:1883"}},
		{name: "every interface with credentials", env: map[string]string{"EMBEDDED_BROKER_ADDRESS": ":1883", "MQTT_USERNAME": "c", "MQTT_PASSWORD": "p"}},
		{name: "user without password", args: []string{"--mqtt-username=c"}, wants: []string{"--mqtt-password is needed for --mqtt-username"}},
		{name: "external broker without credentials", args: []string{"--mqtt-broker=b.example", "--embedded-broker-address=:1883"}},
		{name: "password file without the controller's user", args: []string{"--embedded-broker-password-file=/etc/passwd"},
			wants: []string{"needs the controller's own user"}},
		{name: "tiny packets", args: []string{"--embedded-broker-max-packet-size=10"}, wants: []string{"at least 1024"}},
		{name: "packets over MQTT's limit", args: []string{"--embedded-broker-max-packet-size=300000000"}, wants: []string{"at most 268435455"}},
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
	require.Equal(t, "module-controller-7d9f-abcde", o.MQTT.ClientID)
	require.Equal(t, o.MQTT.ClientID, o.Cluster.Identity, "one identity for MQTT and the Leases")
	o = parse(t, nil, map[string]string{"POD_NAME": "pod", "CLIENT_ID": "mc-1"})
	require.Equal(t, "mc-1", o.MQTT.ClientID, "CLIENT_ID wins over POD_NAME")
	o = parse(t, []string{"--client-id=mc-2"}, map[string]string{"POD_NAME": "pod", "CLIENT_ID": "mc-1"})
	require.Equal(t, "mc-2", o.MQTT.ClientID, "the flag wins over both")

	o = parse(t, nil, map[string]string{"CLUSTER_MODE": "true", "MQTT_BROKER": "mosquitto", "POD_NAME": "pod-a", "NAMESPACE": "mc"})
	require.NoError(t, o.Validate())
	require.True(t, o.ClusterMode)
	require.Equal(t, "mc", o.Cluster.Namespace)
	require.Equal(t, cluster.DefaultLeaseDuration, o.Cluster.LeaseDuration)

	err := parse(t, []string{"--cluster-mode", "--cluster-renew-deadline=30s", "--cluster-lease-duration=1500ms"}, nil).Validate()
	for _, want := range []string{"external broker", "--client-id is needed", "whole seconds",
		"--cluster-renew-deadline 30s must be shorter than --cluster-lease-duration 1.5s"} {
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
	require.Equal(t, "10.244.3.9", o.Controller.KubeletAddress, "the pod IP from the downward API")
	require.Equal(t, "base", o.Kubelet.BaseContainer)
	require.Equal(t, ":10250", o.Kubelet.ListenAddress)

	o = parse(t, []string{"--kubelet-address=10.0.0.1"}, map[string]string{"POD_IP": "10.244.3.9", "KUBELET_PORT": "0"})
	require.NoError(t, o.Validate())
	require.Equal(t, "10.0.0.1", o.Controller.KubeletAddress, "the flag wins over $POD_IP")
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
	require.Equal(t, ":7778", o.HTTP.ListenAddress, "the 2.2 controller's bare port")
	require.Equal(t, httptunnel.DefaultInstallTimeout, o.HTTP.InstallTimeout)

	// HTTP alone: no broker settings are checked, not even the embedded broker's.
	o = parse(t, []string{"--http-tunnel", "--mqtt-tunnel=false", "--embedded-broker-address=0.0.0.0:1883", "--http-tunnel-listen=127.0.0.1:0"}, nil)
	require.NoError(t, o.Validate())

	o = parse(t, []string{"--mqtt-tunnel=false"}, nil)
	require.ErrorContains(t, o.Validate(), "--mqtt-tunnel false needs --http-tunnel")

	o = parse(t, []string{"--http-tunnel", "--http-tunnel-listen=nope", "--http-tunnel-max-in-flight=0", "--http-tunnel-install-timeout=0s",
		"--http-tunnel-tls-key-path=/nonexistent", "--http-tunnel-client-ca-path=/nonexistent", "--cluster-mode", "--mqtt-broker=b", "--client-id=a"}, nil)
	err := o.Validate()
	for _, want := range []string{"--http-tunnel-listen", "--http-tunnel-max-in-flight", "--http-tunnel-install-timeout", "go together", "needs TLS", "/nonexistent", "--cluster-mode"} {
		require.ErrorContains(t, err, want)
	}
}

func TestOldNamesStillWork(t *testing.T) {
	o := parse(t, []string{"--message-max-age=5s"}, nil)
	require.Equal(t, 5*time.Second, o.MQTT.MaxMessageAge, "the old flag name sets the same field")
	o = parse(t, nil, map[string]string{"MESSAGE_MAX_AGE": "7s"})
	require.Equal(t, 7*time.Second, o.MQTT.MaxMessageAge, "the old variable is read when MAX_MESSAGE_AGE is unset")
	o = parse(t, []string{"--message-max-age=5s"}, map[string]string{"MAX_MESSAGE_AGE": "7s"})
	require.Equal(t, 5*time.Second, o.MQTT.MaxMessageAge, "a flag given under its old name still wins over the environment")
}

// TestEveryProblemNamesItsFlag checks that each component's validation
// reaches the user named by flag and environment variable, never by the Go
// field behind it.
func TestEveryProblemNamesItsFlag(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.pem")
	cases := [][]string{
		{"--env=a/b", "--unreachable-after=2m", "--lease-renew-interval=1m", "--node-lease-duration=1500ms", "--max-bases=0",
			"--base-message-rate=0", "--base-message-burst=0", "--max-clock-skew=-1s", "--kubelet-address=https://x", "--pod-workers=0",
			"--health-interval=0s", "--query-interval=0s", "--install-timeout=0s", "--node-status-interval=0s", "--command-timeout=0s"},
		{"--mqtt-broker=b.example", "--mqtt-ca-path=" + missing, "--mqtt-client-crt-path=" + missing, "--mqtt-password=p",
			"--mqtt-client-prefix=a@@@b", "--max-message-age=0s", "--mqtt-max-message-bytes=base/nope=1"},
		{"--mqtt-broker=tcp://b.example", "--mqtt-username=u"},
		{"--embedded-broker-address=nope", "--embedded-broker-max-packet-size=1", "--mqtt-username=u",
			"--embedded-broker-tls-crt-path=" + missing, "--embedded-broker-client-ca-path=" + missing},
		{"--http-tunnel", "--http-tunnel-listen=nope", "--http-tunnel-max-in-flight=0", "--http-tunnel-install-timeout=0s",
			"--http-tunnel-tls-key-path=" + missing, "--http-tunnel-client-ca-path=" + missing, "--max-bases=0"},
		{"--cluster-mode", "--mqtt-broker=b", "--namespace=", "--cluster-lease-duration=1500ms", "--cluster-renew-deadline=30s",
			"--cluster-renew-interval=40s", "--cluster-retry-period=0s", "--remove-after=1s", "--unreachable-after=500ms"},
		{"--kubelet-address=10.0.0.1", "--kubelet-bind-address=a:b", "--kubelet-tls-cert=" + missing, "--kubelet-client-ca=" + missing},
		{"--mqtt-tunnel=false", "--kube-api-qps=0", "--kubelet-port=-1", "--log-format=xml", "--log-level=loud", "--kubeconfig=" + missing},
	}
	for _, args := range cases {
		err := parse(t, args, nil).Validate()
		require.Error(t, err, "%v", args)
		for _, line := range strings.Split(err.Error(), "\n") {
			require.Regexp(t, `^--[a-z-]+ .+`, line, "args %v", args)
			require.NotRegexp(t, `\b[A-Z][a-z]+[A-Z][A-Za-z]*\b`, line, "a Go field name leaked: args %v", args)
		}
	}
}

func TestMQTTKeepAlive(t *testing.T) {
	require.Equal(t, mqtt.DefaultKeepAlive, parse(t, nil, nil).MQTT.KeepAlive, "the flag defaults to the tunnel's default")
	o := parse(t, nil, map[string]string{"MQTT_KEEP_ALIVE": "10s"})
	require.NoError(t, o.Validate())
	require.Equal(t, 10*time.Second, o.MQTT.KeepAlive)
	require.ErrorContains(t, parse(t, []string{"--mqtt-keep-alive=500ms"}, nil).Validate(),
		"--mqtt-keep-alive 500ms is below the MQTT resolution of one second [$MQTT_KEEP_ALIVE]")
}

func TestEnvironmentValuesAreTakenAsTheyAre(t *testing.T) {
	o := parse(t, nil, map[string]string{"MQTT_PASSWORD": " secret ", "MQTT_USERNAME": "", "CLIENT_ID": "", "POD_NAME": "pod-a"})
	require.Equal(t, " secret ", o.MQTT.Password, "a password keeps its spaces")
	require.Empty(t, o.MQTT.Username, "an empty variable counts as unset")
	require.Equal(t, "pod-a", o.MQTT.ClientID, "an empty CLIENT_ID falls back to POD_NAME")
}
