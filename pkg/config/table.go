package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/moduleops/module-controller/tunnel/mqtt"
)

// group is a titled part of the table, shown as one section of --help and
// of docs/configuration.md.
type group struct {
	title    string
	settings []setting
}

// table is every setting of module-controller, in the order --help and
// docs/configuration.md show them: its flag, environment variables, the
// field it sets (whose current value, a component default, is the flag's
// default) and its meaning. Adding a setting is one row here and its field
// in a component Config. The reference controller's variable names are kept
// where it had one; old names stay readable as fallbacks.
func (o *Options) table() []group {
	return []group{
		{"MQTT broker and tunnel", []setting{
			{flag: "env", env: "ENV", ptr: &o.Controller.Env, feeds: []any{&o.MQTT.Env, &o.Cluster.Env, &o.Kubelet.Env},
				usage: "tunnel environment: bases publish under koupleless_<env>/; lower-cased like the base does"},
			{flag: "mqtt-broker", env: "MQTT_BROKER", ptr: &o.MQTTBroker, feeds: []any{&o.MQTT.BrokerURL},
				usage: "external MQTT broker host (or tcp://, ssl:// URL); empty serves the embedded broker"},
			{flag: "mqtt-port", env: "MQTT_PORT", ptr: &o.MQTTPort, usage: "external MQTT broker port"},
			{flag: "mqtt-username", env: "MQTT_USERNAME", ptr: &o.MQTT.Username, feeds: []any{&o.Broker.Username},
				usage: "MQTT user name"},
			{flag: "mqtt-password", env: "MQTT_PASSWORD", ptr: &o.MQTT.Password, feeds: []any{&o.Broker.Password},
				usage: "MQTT password (prefer the environment variable)"},
			{flag: "mqtt-ca-path", env: "MQTT_CA_PATH", ptr: &o.MQTT.TLS.CAFile,
				usage: "PEM CA file that signed the broker certificate; turns TLS on"},
			{flag: "mqtt-client-crt-path", env: "MQTT_CLIENT_CRT_PATH", ptr: &o.MQTT.TLS.ClientCertFile,
				usage: "PEM client certificate for brokers that require one"},
			{flag: "mqtt-client-key-path", env: "MQTT_CLIENT_KEY_PATH", ptr: &o.MQTT.TLS.ClientKeyFile,
				usage: "PEM key of the client certificate"},
			{flag: "mqtt-client-prefix", env: "MQTT_CLIENT_PREFIX", ptr: &o.MQTT.ClientIDPrefix,
				usage: "MQTT client id prefix (<prefix>@@@<client-id>)"},
			{flag: "client-id", env: "CLIENT_ID", fallbacks: []string{"POD_NAME"}, ptr: &o.MQTT.ClientID, feeds: []any{&o.Cluster.Identity},
				usage: "unique id of this replica: part of its MQTT client id and, in cluster mode, the holder of its Leases ($POD_NAME when empty, else random)"},
			{flag: "embedded-broker-address", env: "EMBEDDED_BROKER_ADDRESS", ptr: &o.Broker.Address,
				usage: "listen address of the embedded broker (used when --mqtt-broker is empty)"},
			{flag: "max-message-age", env: "MAX_MESSAGE_AGE", fallbacks: []string{"MESSAGE_MAX_AGE"}, oldFlags: []string{"message-max-age"},
				ptr: &o.MQTT.MaxMessageAge, usage: "drop base messages published longer ago than this (base and controller clocks must agree)"},
			{flag: "mqtt-max-message-bytes", env: "MQTT_MAX_MESSAGE_BYTES", ptr: &o.MQTT.MaxMessageBytes,
				usage: "drop base payloads over this many bytes before decoding, by topic suffix, e.g. base/heart=16384; suffixes not given keep their default: " +
					caps(mqtt.DefaultMaxMessageBytes())},
			{flag: "mqtt-keep-alive", env: "MQTT_KEEP_ALIVE", ptr: &o.MQTT.KeepAlive,
				usage: "MQTT keep-alive interval: a dead broker connection (e.g. a half-open TCP link) is noticed within about 1.5 times this, which starts tunnel disruption mode and, in cluster mode, the handover of a cut-off replica's bases"},
			{flag: "command-timeout", env: "COMMAND_TIMEOUT", ptr: &o.Controller.CommandTimeout,
				usage: "give up publishing one command to a base after this long"},
		}},
		{"HTTP tunnel", []setting{
			{flag: "http-tunnel", env: "HTTP_TUNNEL", ptr: &o.HTTPTunnel,
				usage: "serve bases over the arklet's HTTP tunnel too: heartbeats posted to --http-tunnel-listen, commands called at the address each heartbeat announces (docs/http-tunnel.md)"},
			{flag: "http-tunnel-listen", env: "HTTP_TUNNEL_LISTEN_PORT", ptr: &o.HTTP.ListenAddress,
				usage: "listen address of the HTTP tunnel; a bare port (the 2.2 controller's HTTP_TUNNEL_LISTEN_PORT) listens on every interface"},
			{flag: "http-tunnel-install-timeout", env: "HTTP_TUNNEL_INSTALL_TIMEOUT", ptr: &o.HTTP.InstallTimeout,
				usage: "give up one installBiz or uninstallBiz call over HTTP after this long (the base answers an install only when the module has started)"},
			{flag: "http-tunnel-max-in-flight", env: "HTTP_TUNNEL_MAX_IN_FLIGHT", ptr: &o.HTTP.MaxInFlight,
				usage: "install and uninstall calls running at once per base over HTTP; more are retried later"},
			{flag: "http-tunnel-token", env: "HTTP_TUNNEL_TOKEN", ptr: &o.HTTP.AuthToken,
				usage: "bearer token every HTTP tunnel request must carry (a stock base sends none: use it behind a proxy that adds it; prefer the environment variable)"},
			{flag: "http-tunnel-tls-crt-path", env: "HTTP_TUNNEL_TLS_CRT_PATH", ptr: &o.HTTP.TLSCertFile,
				usage: "PEM server certificate; makes the HTTP tunnel HTTPS only"},
			{flag: "http-tunnel-tls-key-path", env: "HTTP_TUNNEL_TLS_KEY_PATH", ptr: &o.HTTP.TLSKeyFile,
				usage: "PEM key of the HTTP tunnel's server certificate"},
			{flag: "http-tunnel-client-ca-path", env: "HTTP_TUNNEL_CLIENT_CA_PATH", ptr: &o.HTTP.ClientCAFile,
				usage: "PEM CA; the HTTP tunnel then requires client certificates it signed (mTLS)"},
			{flag: "http-tunnel-allow-foreign-ip", env: "HTTP_TUNNEL_ALLOW_FOREIGN_IP", ptr: &o.HTTP.AllowForeignAddress,
				usage: "accept HTTP heartbeats whose localIP is not the address they come from (bases behind NAT); off, a heartbeat can only direct commands to its own sender"},
			{flag: "mqtt-tunnel", env: "MQTT_TUNNEL", ptr: &o.MQTTTunnel,
				usage: "serve bases over MQTT (the embedded broker, or --mqtt-broker); false runs the HTTP tunnel alone"},
		}},
		{"Embedded MQTT broker security", []setting{
			{flag: "embedded-broker-password-file", env: "EMBEDDED_BROKER_PASSWORD_FILE", ptr: &o.Broker.PasswordFile,
				usage: "mosquitto_passwd file of base users for the embedded broker, re-read when it changes; a base's user name is its identity and it may use only that identity's topics"},
			{flag: "embedded-broker-max-packet-size", env: "EMBEDDED_BROKER_MAX_PACKET_SIZE", ptr: &o.Broker.MaxPacketSize,
				usage: "largest MQTT packet in bytes the embedded broker reads; a client sending a larger one is disconnected"},
			{flag: "embedded-broker-tls-crt-path", env: "EMBEDDED_BROKER_TLS_CRT_PATH", ptr: &o.EmbeddedBrokerTLSCertPath,
				usage: "PEM server certificate of the embedded broker; makes its listener TLS only"},
			{flag: "embedded-broker-tls-key-path", env: "EMBEDDED_BROKER_TLS_KEY_PATH", ptr: &o.EmbeddedBrokerTLSKeyPath,
				usage: "PEM key of the embedded broker's server certificate"},
			{flag: "embedded-broker-client-ca-path", env: "EMBEDDED_BROKER_CLIENT_CA_PATH", ptr: &o.EmbeddedBrokerClientCAPath,
				usage: "PEM CA; the embedded broker then requires client certificates it signed (mTLS)"},
		}},
		{"Kubernetes API", []setting{
			{flag: "kubeconfig", env: "KUBECONFIG", ptr: &o.Kubeconfig,
				usage: "kubeconfig file (or several, joined like $PATH); empty uses ~/.kube/config, then the in-cluster config"},
			{flag: "kube-api-qps", env: "KUBE_API_QPS", ptr: &o.KubeAPIQPS, usage: "queries per second to the Kubernetes API"},
			{flag: "kube-api-burst", env: "KUBE_API_BURST", ptr: &o.KubeAPIBurst, usage: "burst of queries to the Kubernetes API"},
			{flag: "kube-api-max-in-flight", env: "KUBE_API_MAX_IN_FLIGHT", ptr: &o.KubeAPIMaxInFlight,
				usage: "Kubernetes API requests open at once, watches aside; above the API server's HTTP/2 streams per connection (100 by default) each further request opens a new TLS connection"},
		}},
		{"Cluster mode (several replicas)", []setting{
			{flag: "cluster-mode", env: "CLUSTER_MODE", ptr: &o.ClusterMode,
				usage: "share the bases of the env with the other replicas through Leases in --namespace (needs an external broker all replicas use)"},
			{flag: "namespace", env: "NAMESPACE", ptr: &o.Cluster.Namespace,
				usage: "the controller's namespace, holding the Leases of cluster mode"},
			{flag: "cluster-lease-duration", env: "CLUSTER_LEASE_DURATION", ptr: &o.Cluster.LeaseDuration,
				usage: "cluster mode: how long a base's or replica's Lease not renewed keeps the other replicas away (the failover time)"},
			{flag: "cluster-renew-deadline", env: "CLUSTER_RENEW_DEADLINE", ptr: &o.Cluster.RenewDeadline,
				usage: "cluster mode: a replica stops acting on its bases this long after the start of its last successful renewal of its member Lease; shorter than --cluster-lease-duration"},
			{flag: "cluster-renew-interval", env: "CLUSTER_RENEW_INTERVAL", ptr: &o.Cluster.RenewInterval,
				usage: "cluster mode: how often the replica's member Lease is renewed (one API write each time; base Leases are written only on handover); shorter than --cluster-renew-deadline"},
			{flag: "cluster-retry-period", env: "CLUSTER_RETRY_PERIOD", ptr: &o.Cluster.RetryPeriod,
				usage: "cluster mode: how often the Leases are read and taken or released; at most --cluster-renew-interval"},
		}},
		{"Virtual nodes", []setting{
			{flag: "unreachable-after", env: "UNREACHABLE_AFTER", ptr: &o.Controller.UnreachableAfter,
				usage: "mark a base's node NotReady after this long without heartbeat or health reply"},
			{flag: "remove-after", env: "REMOVE_AFTER", ptr: &o.Controller.RemoveAfter, feeds: []any{&o.HTTP.BaseTTL, &o.Cluster.ForgetAfter},
				usage: "delete a base's node after this long without heartbeat or health reply"},
			{flag: "health-interval", env: "HEALTH_INTERVAL", ptr: &o.Controller.HealthInterval,
				usage: "how often each base is asked for its health"},
			{flag: "node-lease-duration", env: "NODE_LEASE_DURATION", ptr: &o.Controller.NodeLeaseDuration,
				usage: "duration of each virtual node's Lease"},
			{flag: "lease-renew-interval", env: "LEASE_RENEW_INTERVAL", ptr: &o.Controller.LeaseRenewInterval,
				usage: "how often each virtual node's Lease is renewed"},
			{flag: "node-status-interval", env: "NODE_STATUS_INTERVAL", ptr: &o.Controller.NodeStatusInterval,
				usage: "rewrite an unchanged node status this often (changes are written at once)"},
			{flag: "max-pods", env: "MAX_PODS", ptr: &o.Controller.MaxPods, usage: "pod capacity of each virtual node"},
			{flag: "env-taint", env: "ENV_TAINT", ptr: &o.Controller.EnvTaint,
				usage: "also taint nodes schedule.koupleless.io/node-env=<env>:NoExecute, as the reference controller did"},
		}},
		{"Module pods", []setting{
			{flag: "install-timeout", env: "INSTALL_TIMEOUT", ptr: &o.Controller.InstallTimeout,
				usage: "query the base and retry an install or uninstall unanswered for this long"},
			{flag: "query-interval", env: "QUERY_INTERVAL", ptr: &o.Controller.QueryInterval,
				usage: "how often each base is asked for its full biz list"},
			{flag: "uninstall-orphans", env: "UNINSTALL_ORPHANS", ptr: &o.Controller.UninstallOrphans,
				usage: "uninstall bizs that no pod asks for, if this controller installed them (never bizs baked into the base)"},
			{flag: "pod-workers", env: "POD_WORKERS", fallbacks: []string{"VNODE_WORKER_NUM"}, ptr: &o.Controller.PodWorkers,
				usage: "workers of each queue of the pod controller that all virtual nodes share (pods to bases, status to the API server, deletions)"},
			{flag: "peer-replica-sync", env: "PEER_REPLICA_SYNC", ptr: &o.PeerReplicaSync,
				usage: "set the replicas of Deployments labelled virtual-kubelet.koupleless.io/strategy=peer to the number of virtual nodes their pod template fits"},
		}},
		{"Kubelet API (kubectl logs)", []setting{
			{flag: "kubelet-port", env: "KUBELET_PORT", ptr: &o.KubeletPort, feeds: []any{&o.Kubelet.ListenAddress},
				usage: "port of the virtual nodes' kubelet API (kubectl logs on module pods), advertised as each node's kubelet port; 0 turns it off"},
			{flag: "kubelet-address", env: "KUBELET_ADDRESS", fallbacks: []string{"POD_IP"}, ptr: &o.Controller.KubeletAddress,
				usage: "IP or DNS name the API server dials for this replica's virtual nodes, written as their Hostname address ($POD_IP when empty)"},
			{flag: "kubelet-bind-address", env: "KUBELET_BIND_ADDRESS", ptr: &o.KubeletBindAddress,
				usage: "host the kubelet API listens on (empty: every interface)"},
			{flag: "kubelet-tls-cert", env: "KUBELET_TLS_CERT", ptr: &o.Kubelet.CertFile,
				usage: "PEM serving certificate of the kubelet API, re-read when it changes (e.g. a cert-manager Secret); empty: self-signed at start"},
			{flag: "kubelet-tls-key", env: "KUBELET_TLS_KEY", ptr: &o.Kubelet.KeyFile, usage: "PEM key of --kubelet-tls-cert"},
			{flag: "kubelet-client-ca", env: "KUBELET_CLIENT_CA", ptr: &o.Kubelet.ClientCAFile,
				usage: "PEM CA of the API server's --kubelet-client-certificate: the kubelet API then requires a client certificate it signed; empty: bearer tokens checked by TokenReview. Either identity needs nodes/proxy (SubjectAccessReview)"},
			{flag: "base-container", env: "BASE_CONTAINER", ptr: &o.Kubelet.BaseContainer,
				usage: "container of a base's Pod whose logs kubectl logs shows for its module pods (empty: the Pod's first container)"},
		}},
		{"Limits", []setting{
			{flag: "max-bases", env: "MAX_BASES", ptr: &o.Controller.MaxBases, feeds: []any{&o.HTTP.MaxBases},
				usage: "most bases this replica serves; heartbeats of further new bases are rejected and counted"},
			{flag: "base-message-rate", env: "BASE_MESSAGE_RATE", ptr: &o.Controller.BaseMessageRate,
				usage: "messages per second accepted from one base; the excess is dropped and counted"},
			{flag: "base-message-burst", env: "BASE_MESSAGE_BURST", ptr: &o.Controller.BaseMessageBurst,
				usage: "burst of messages accepted from one base above --base-message-rate"},
			{flag: "max-clock-skew", env: "MAX_CLOCK_SKEW", ptr: &o.Controller.MaxClockSkew,
				usage: "how far ahead of this clock a base's timestamps may be: later messages are dropped (a forged or replayed message, or a clock to fix)"},
			{flag: "allow-loopback-base-ip", env: "ALLOW_LOOPBACK_BASE_IP", ptr: &o.Controller.AllowLoopbackBaseIP, feeds: []any{&o.HTTP.AllowLoopback},
				usage: "accept bases whose heartbeat's localIP is a loopback address (development only: it becomes the node address and every pod IP)"},
		}},
		{"Serving and logging", []setting{
			{flag: "metrics-address", env: "METRICS_ADDRESS", ptr: &o.MetricsAddress, usage: "address serving Prometheus /metrics"},
			{flag: "health-address", env: "HEALTH_ADDRESS", ptr: &o.HealthAddress, usage: "address serving /healthz and /readyz"},
			{flag: "pprof-address", env: "PPROF_ADDRESS", ptr: &o.PprofAddress,
				usage: "address serving Go pprof profiles under /debug/pprof/ (empty: off; unauthenticated, so bind it to loopback)"},
			{flag: "log-level", env: "LOG_LEVEL", ptr: &o.LogLevel, usage: "log level: trace, debug, info, warn or error"},
			{flag: "log-format", env: "LOG_FORMAT", ptr: &o.LogFormat, usage: "log format: text or json"},
			{flag: "version", ptr: &o.Version, usage: "print the version and exit"},
		}},
	}
}

// caps renders payload caps by topic suffix, sorted: "a=1, b=2".
func caps(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
