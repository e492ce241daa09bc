package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Defaults of the settings. Environment and timing defaults follow the
// Koupleless reference controller where it has one, except Env: a stock base
// (runtime 1.3.3 and later) publishes under "default", so that is ours.
// The API client limits are high because one process writes the status,
// Events and leases of every base it serves: at 200 QPS, 100 pods created at
// once took 2.7 s to all run, at 1000 QPS under 1 s (TestHundredBasesAndPods);
// the API server's priority and fairness still protects other clients.
const (
	DefaultEnv                = "default"
	DefaultMQTTPort           = 1883
	DefaultMQTTClientPrefix   = "koupleless"
	DefaultEmbeddedBroker     = "127.0.0.1:1883"
	DefaultMetricsAddress     = ":9090"
	DefaultHealthAddress      = ":8081"
	DefaultMessageMaxAge      = 10 * time.Second
	DefaultUnreachableAfter   = 25 * time.Second
	DefaultRemoveAfter        = 60 * time.Second
	DefaultHealthInterval     = 10 * time.Second
	DefaultNodeLeaseDuration  = 40 * time.Second
	DefaultLeaseRenewInterval = 20 * time.Second
	DefaultMaxPods            = 110
	DefaultInstallTimeout     = 30 * time.Second
	DefaultQueryInterval      = 15 * time.Second
	DefaultKubeAPIQPS         = 1000
	DefaultKubeAPIBurst       = 2000
	DefaultLogLevel           = "info"
	DefaultLogFormat          = "text"
	DefaultPodWorkers         = 16
	DefaultNodeStatusInterval = 5 * time.Minute
	DefaultCommandTimeout     = 10 * time.Second
	DefaultPeerReplicaSync    = true
	DefaultMaxBases           = 10000
	DefaultBaseMessageRate    = 20
	DefaultBaseMessageBurst   = 200
	DefaultMaxClockSkew       = 10 * time.Second
	// DefaultKubeletPort is the port of the virtual nodes' kubelet API, a
	// kubelet's own.
	DefaultKubeletPort = 10250
)

// HTTP tunnel (issue 16): bases without a broker post heartbeats to the
// controller and are called back at the address they announce.
const (
	// DefaultHTTPTunnelListen is the 2.2 controller's port
	// (HTTP_TUNNEL_LISTEN_PORT=7777).
	DefaultHTTPTunnelListen = ":7777"
	// DefaultHTTPTunnelInstallTimeout bounds one installBiz or uninstallBiz
	// call: the arklet answers an install once the module started.
	DefaultHTTPTunnelInstallTimeout = 5 * time.Minute
	// DefaultHTTPTunnelMaxInFlight bounds the install and uninstall calls
	// running at once per base.
	DefaultHTTPTunnelMaxInFlight = 4
)

// Cluster mode (issue 15): several replicas share the bases through Leases.
// A crashed replica's bases are served again about DefaultClusterLeaseDuration
// plus one DefaultClusterRetryPeriod after its last renewal; each base adds
// 60 s / DefaultClusterRenewInterval Lease writes a minute.
const (
	DefaultNamespace            = "module-controller"
	DefaultClusterLeaseDuration = 20 * time.Second
	DefaultClusterRenewDeadline = 15 * time.Second
	DefaultClusterRenewInterval = 10 * time.Second
	DefaultClusterRetryPeriod   = 2 * time.Second
)

// Embedded broker security (issue 13).
const (
	// DefaultEmbeddedBrokerMaxPacketSize is pkg/broker.DefaultMaxPacketSize:
	// 2 MiB, above the controller's 1 MiB decode cap.
	DefaultEmbeddedBrokerMaxPacketSize = 2 << 20
	// MQTTSecretName is the Secret the shipped manifests read MQTT_USERNAME
	// and MQTT_PASSWORD from (keys username and password).
	MQTTSecretName = "module-controller-mqtt"
)

// Options are every setting of module-controller.
type Options struct {
	// Env is the tunnel environment, lower-cased like the base does.
	Env string
	// ClientID makes this replica's MQTT client id unique and is its
	// identity in cluster mode (the holder of its Leases); $CLIENT_ID, else
	// $POD_NAME, else random (cluster mode requires one).
	ClientID string

	// ClusterMode shares the bases of the env among the replicas through
	// Leases in Namespace; off, this replica serves every base.
	ClusterMode bool
	// Namespace is the controller's namespace, which holds the cluster Leases.
	Namespace string
	// ClusterLeaseDuration, ClusterRenewDeadline, ClusterRenewInterval and
	// ClusterRetryPeriod time the Leases of cluster mode.
	ClusterLeaseDuration, ClusterRenewDeadline, ClusterRenewInterval, ClusterRetryPeriod time.Duration

	// MQTTBroker is the external broker host; empty serves the embedded broker.
	MQTTBroker string
	// MQTTPort is the external broker port.
	MQTTPort int
	// MQTTUsername and MQTTPassword authenticate to the broker.
	MQTTUsername, MQTTPassword string
	// MQTTClientPrefix starts the MQTT client id (<prefix>@@@<client id>).
	MQTTClientPrefix string
	// MQTTCAPath is a PEM CA bundle; setting it turns TLS on.
	MQTTCAPath string
	// MQTTClientCertPath and MQTTClientKeyPath are an optional client certificate.
	MQTTClientCertPath, MQTTClientKeyPath string
	// EmbeddedBrokerAddress is where the embedded broker listens.
	EmbeddedBrokerAddress string
	// MessageMaxAge drops base messages published longer ago than this.
	MessageMaxAge time.Duration
	// MQTTMaxMessageBytes caps base payloads by topic suffix (e.g. "base/heart");
	// suffixes not set keep the tunnel's defaults.
	MQTTMaxMessageBytes map[string]int

	// EmbeddedBrokerPasswordFile is a mosquitto_passwd file of base users for
	// the embedded broker; each may use only the topics of the identity that
	// is its user name.
	EmbeddedBrokerPasswordFile string
	// EmbeddedBrokerMaxPacketSize is the largest MQTT packet the embedded
	// broker reads, in bytes.
	EmbeddedBrokerMaxPacketSize int
	// EmbeddedBrokerTLSCertPath and EmbeddedBrokerTLSKeyPath, when set, make
	// the embedded broker's listener TLS only.
	EmbeddedBrokerTLSCertPath, EmbeddedBrokerTLSKeyPath string
	// EmbeddedBrokerClientCAPath, when set, makes the embedded broker require
	// client certificates signed by this CA (mTLS).
	EmbeddedBrokerClientCAPath string

	// Kubeconfig is the kubeconfig path; empty means $KUBECONFIG, ~/.kube/config or in-cluster.
	Kubeconfig string
	// KubeAPIQPS and KubeAPIBurst limit the API client.
	KubeAPIQPS   float64
	KubeAPIBurst int

	// UnreachableAfter, RemoveAfter and HealthInterval drive node liveness.
	UnreachableAfter, RemoveAfter, HealthInterval time.Duration
	// NodeLeaseDuration and LeaseRenewInterval configure each node's Lease.
	NodeLeaseDuration, LeaseRenewInterval time.Duration
	// MaxPods is each virtual node's pod capacity.
	MaxPods int
	// EnvTaint adds the schedule.koupleless.io/node-env=<env>:NoExecute taint.
	EnvTaint bool
	// InstallTimeout is how long an install may go unanswered before a retry.
	InstallTimeout time.Duration
	// QueryInterval is how often each base is asked for its biz list.
	QueryInterval time.Duration
	// UninstallOrphans uninstalls bizs no pod asks for that this controller installed.
	UninstallOrphans bool

	// PeerReplicaSync keeps Deployments labelled
	// virtual-kubelet.koupleless.io/strategy=peer at one replica per matching
	// virtual node, Ready or not.
	PeerReplicaSync bool

	// MetricsAddress serves /metrics; HealthAddress serves /healthz and /readyz.
	MetricsAddress, HealthAddress string
	// PprofAddress, if set, serves net/http/pprof under /debug/pprof/ (off by
	// default; for profiling, bind it to loopback).
	PprofAddress string
	// LogLevel is one of trace, debug, info, warn, error.
	LogLevel string
	// LogFormat is text or json.
	LogFormat string
	// PodWorkers is the number of workers of each queue of the pod
	// controller, which all virtual nodes share.
	PodWorkers int
	// NodeStatusInterval is how often an unchanged node status is rewritten.
	NodeStatusInterval time.Duration
	// CommandTimeout bounds the publish of one command to a base.
	CommandTimeout time.Duration
	// Version prints the version and exits.
	Version bool

	// MaxBases caps the bases this replica serves.
	MaxBases int
	// BaseMessageRate and BaseMessageBurst bound the messages accepted per
	// base (token bucket).
	BaseMessageRate  float64
	BaseMessageBurst int
	// MaxClockSkew is how far ahead of the controller's clock a base's
	// timestamps may be.
	MaxClockSkew time.Duration
	// AllowLoopbackBaseIP accepts bases whose localIP is a loopback address
	// (development: a base on the controller's own machine).
	AllowLoopbackBaseIP bool

	// KubeletPort serves the virtual nodes' kubelet API (`kubectl logs` on
	// module pods) and is advertised as each node's kubelet port; 0 turns
	// it off.
	KubeletPort int
	// KubeletAddress is the address the API server dials for this
	// replica's virtual nodes (their Hostname address); $POD_IP when empty.
	KubeletAddress string
	// KubeletBindAddress is the host the kubelet API listens on; empty is
	// every interface.
	KubeletBindAddress string
	// KubeletTLSCertPath and KubeletTLSKeyPath are the PEM serving
	// certificate; empty: self-signed at start for KubeletAddress.
	KubeletTLSCertPath, KubeletTLSKeyPath string
	// KubeletClientCAPath is the PEM CA of the API server's kubelet client
	// certificate; set, callers must present a certificate it signed,
	// otherwise a bearer token (TokenReview).
	KubeletClientCAPath string
	// BaseContainer is the container of a base's Pod whose logs a module
	// pod shows; empty: the first.
	BaseContainer string
	// MQTTTunnel serves bases over MQTT (the embedded or an external
	// broker); off, only the HTTP tunnel runs.
	MQTTTunnel bool
	// HTTPTunnel serves bases over the arklet's HTTP tunnel.
	HTTPTunnel bool
	// HTTPTunnelListen is the HTTP tunnel's listen address; a bare port
	// (the 2.2 controller's HTTP_TUNNEL_LISTEN_PORT) means every interface.
	HTTPTunnelListen string
	// HTTPTunnelInstallTimeout bounds one install or uninstall call.
	HTTPTunnelInstallTimeout time.Duration
	// HTTPTunnelMaxInFlight bounds the install and uninstall calls per base.
	HTTPTunnelMaxInFlight int
	// HTTPTunnelToken, if set, is the bearer token every request must carry.
	HTTPTunnelToken string
	// HTTPTunnelTLSCertPath and HTTPTunnelTLSKeyPath make the HTTP tunnel
	// HTTPS only.
	HTTPTunnelTLSCertPath, HTTPTunnelTLSKeyPath string
	// HTTPTunnelClientCAPath requires client certificates it signed (mTLS).
	HTTPTunnelClientCAPath string
	// HTTPTunnelAllowForeignIP accepts heartbeats whose localIP is not the
	// address they came from (bases behind NAT).
	HTTPTunnelAllowForeignIP bool

	// envErrors are environment values that could not be parsed.
	envErrors []error
}

// setting ties one flag to its environment variable.
type setting struct {
	flag, env string
}

// settings lists the environment fallback of each flag. Names of the
// reference controller are kept where it had one.
var settings = []setting{
	{"env", "ENV"},
	{"client-id", "CLIENT_ID"},
	{"cluster-mode", "CLUSTER_MODE"},
	{"namespace", "NAMESPACE"},
	{"cluster-lease-duration", "CLUSTER_LEASE_DURATION"},
	{"cluster-renew-deadline", "CLUSTER_RENEW_DEADLINE"},
	{"cluster-renew-interval", "CLUSTER_RENEW_INTERVAL"},
	{"cluster-retry-period", "CLUSTER_RETRY_PERIOD"},
	{"mqtt-broker", "MQTT_BROKER"},
	{"mqtt-port", "MQTT_PORT"},
	{"mqtt-username", "MQTT_USERNAME"},
	{"mqtt-password", "MQTT_PASSWORD"},
	{"mqtt-client-prefix", "MQTT_CLIENT_PREFIX"},
	{"mqtt-ca-path", "MQTT_CA_PATH"},
	{"mqtt-client-crt-path", "MQTT_CLIENT_CRT_PATH"},
	{"mqtt-client-key-path", "MQTT_CLIENT_KEY_PATH"},
	{"embedded-broker-address", "EMBEDDED_BROKER_ADDRESS"},
	{"message-max-age", "MESSAGE_MAX_AGE"},
	{"embedded-broker-password-file", "EMBEDDED_BROKER_PASSWORD_FILE"},
	{"embedded-broker-max-packet-size", "EMBEDDED_BROKER_MAX_PACKET_SIZE"},
	{"embedded-broker-tls-crt-path", "EMBEDDED_BROKER_TLS_CRT_PATH"},
	{"embedded-broker-tls-key-path", "EMBEDDED_BROKER_TLS_KEY_PATH"},
	{"embedded-broker-client-ca-path", "EMBEDDED_BROKER_CLIENT_CA_PATH"},
	{"kubeconfig", "KUBECONFIG"},
	{"kube-api-qps", "KUBE_API_QPS"},
	{"kube-api-burst", "KUBE_API_BURST"},
	{"unreachable-after", "UNREACHABLE_AFTER"},
	{"remove-after", "REMOVE_AFTER"},
	{"health-interval", "HEALTH_INTERVAL"},
	{"node-lease-duration", "NODE_LEASE_DURATION"},
	{"lease-renew-interval", "LEASE_RENEW_INTERVAL"},
	{"max-pods", "MAX_PODS"},
	{"env-taint", "ENV_TAINT"},
	{"install-timeout", "INSTALL_TIMEOUT"},
	{"query-interval", "QUERY_INTERVAL"},
	{"uninstall-orphans", "UNINSTALL_ORPHANS"},
	{"peer-replica-sync", "PEER_REPLICA_SYNC"},
	{"metrics-address", "METRICS_ADDRESS"},
	{"health-address", "HEALTH_ADDRESS"},
	{"pprof-address", "PPROF_ADDRESS"},
	{"log-level", "LOG_LEVEL"},
	{"log-format", "LOG_FORMAT"},
	{"pod-workers", "VNODE_WORKER_NUM"},
	{"node-status-interval", "NODE_STATUS_INTERVAL"},
	{"command-timeout", "COMMAND_TIMEOUT"},
	{"max-bases", "MAX_BASES"},
	{"base-message-rate", "BASE_MESSAGE_RATE"},
	{"base-message-burst", "BASE_MESSAGE_BURST"},
	{"max-clock-skew", "MAX_CLOCK_SKEW"},
	{"allow-loopback-base-ip", "ALLOW_LOOPBACK_BASE_IP"},
	{"kubelet-port", "KUBELET_PORT"},
	{"kubelet-address", "KUBELET_ADDRESS"},
	{"kubelet-bind-address", "KUBELET_BIND_ADDRESS"},
	{"kubelet-tls-cert", "KUBELET_TLS_CERT"},
	{"kubelet-tls-key", "KUBELET_TLS_KEY"},
	{"kubelet-client-ca", "KUBELET_CLIENT_CA"},
	{"base-container", "BASE_CONTAINER"},
	{"mqtt-tunnel", "MQTT_TUNNEL"},
	{"http-tunnel", "HTTP_TUNNEL"},
	{"http-tunnel-listen", "HTTP_TUNNEL_LISTEN_PORT"},
	{"http-tunnel-install-timeout", "HTTP_TUNNEL_INSTALL_TIMEOUT"},
	{"http-tunnel-max-in-flight", "HTTP_TUNNEL_MAX_IN_FLIGHT"},
	{"http-tunnel-token", "HTTP_TUNNEL_TOKEN"},
	{"http-tunnel-tls-crt-path", "HTTP_TUNNEL_TLS_CRT_PATH"},
	{"http-tunnel-tls-key-path", "HTTP_TUNNEL_TLS_KEY_PATH"},
	{"http-tunnel-client-ca-path", "HTTP_TUNNEL_CLIENT_CA_PATH"},
	{"http-tunnel-allow-foreign-ip", "HTTP_TUNNEL_ALLOW_FOREIGN_IP"},
}

// AddFlags registers every setting on fs with its default. Each help text
// names the environment variable used when the flag is not given.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Env, "env", DefaultEnv, "tunnel environment: bases publish under koupleless_<env>/; lower-cased like the base does")
	fs.StringVar(&o.ClientID, "client-id", "", "unique id of this replica: part of its MQTT client id and, in cluster mode, the holder of its Leases ($POD_NAME when empty, else random)")
	fs.BoolVar(&o.ClusterMode, "cluster-mode", false, "share the bases of the env with the other replicas through Leases in --namespace (needs an external broker all replicas use)")
	fs.StringVar(&o.Namespace, "namespace", DefaultNamespace, "the controller's namespace, holding the Leases of cluster mode")
	fs.DurationVar(&o.ClusterLeaseDuration, "cluster-lease-duration", DefaultClusterLeaseDuration, "cluster mode: how long a base's or replica's Lease not renewed keeps the other replicas away (the failover time)")
	fs.DurationVar(&o.ClusterRenewDeadline, "cluster-renew-deadline", DefaultClusterRenewDeadline, "cluster mode: a replica stops acting on its bases this long after the start of its last successful renewal of its member Lease; shorter than --cluster-lease-duration")
	fs.DurationVar(&o.ClusterRenewInterval, "cluster-renew-interval", DefaultClusterRenewInterval, "cluster mode: how often the replica's member Lease is renewed (one API write each time; base Leases are written only on handover); shorter than --cluster-renew-deadline")
	fs.DurationVar(&o.ClusterRetryPeriod, "cluster-retry-period", DefaultClusterRetryPeriod, "cluster mode: how often the Leases are read and taken or released; at most --cluster-renew-interval")
	fs.StringVar(&o.MQTTBroker, "mqtt-broker", "", "external MQTT broker host; empty serves the embedded broker")
	fs.IntVar(&o.MQTTPort, "mqtt-port", DefaultMQTTPort, "external MQTT broker port")
	fs.StringVar(&o.MQTTUsername, "mqtt-username", "", "MQTT user name")
	fs.StringVar(&o.MQTTPassword, "mqtt-password", "", "MQTT password (prefer the environment variable)")
	fs.StringVar(&o.MQTTClientPrefix, "mqtt-client-prefix", DefaultMQTTClientPrefix, "MQTT client id prefix (<prefix>@@@<client-id>)")
	fs.StringVar(&o.MQTTCAPath, "mqtt-ca-path", "", "PEM CA file that signed the broker certificate; turns TLS on")
	fs.StringVar(&o.MQTTClientCertPath, "mqtt-client-crt-path", "", "PEM client certificate for brokers that require one")
	fs.StringVar(&o.MQTTClientKeyPath, "mqtt-client-key-path", "", "PEM key of the client certificate")
	fs.StringVar(&o.EmbeddedBrokerAddress, "embedded-broker-address", DefaultEmbeddedBroker, "listen address of the embedded broker (used when --mqtt-broker is empty)")
	fs.StringVar(&o.EmbeddedBrokerPasswordFile, "embedded-broker-password-file", "", "mosquitto_passwd file of base users for the embedded broker, re-read when it changes; a base's user name is its identity and it may use only that identity's topics")
	fs.IntVar(&o.EmbeddedBrokerMaxPacketSize, "embedded-broker-max-packet-size", DefaultEmbeddedBrokerMaxPacketSize, "largest MQTT packet in bytes the embedded broker reads; a client sending a larger one is disconnected")
	fs.StringVar(&o.EmbeddedBrokerTLSCertPath, "embedded-broker-tls-crt-path", "", "PEM server certificate of the embedded broker; makes its listener TLS only")
	fs.StringVar(&o.EmbeddedBrokerTLSKeyPath, "embedded-broker-tls-key-path", "", "PEM key of the embedded broker's server certificate")
	fs.StringVar(&o.EmbeddedBrokerClientCAPath, "embedded-broker-client-ca-path", "", "PEM CA; the embedded broker then requires client certificates it signed (mTLS)")
	fs.DurationVar(&o.MessageMaxAge, "message-max-age", DefaultMessageMaxAge, "drop base messages published longer ago than this (base and controller clocks must agree)")
	fs.StringToIntVar(&o.MQTTMaxMessageBytes, "mqtt-max-message-bytes", nil, "drop base payloads over this many bytes before decoding, by topic suffix, e.g. base/heart=16384,base/health=262144; unset: heart and queryBaseline 16 KiB, health, simpleBiz and biz 256 KiB, bizOperation 512 KiB, batchInstallBizResponse 1 MiB")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig file (or several, joined like $PATH); empty uses ~/.kube/config, then the in-cluster config")
	fs.Float64Var(&o.KubeAPIQPS, "kube-api-qps", DefaultKubeAPIQPS, "queries per second to the Kubernetes API")
	fs.IntVar(&o.KubeAPIBurst, "kube-api-burst", DefaultKubeAPIBurst, "burst of queries to the Kubernetes API")
	fs.DurationVar(&o.UnreachableAfter, "unreachable-after", DefaultUnreachableAfter, "mark a base's node NotReady after this long without heartbeat or health reply")
	fs.DurationVar(&o.RemoveAfter, "remove-after", DefaultRemoveAfter, "delete a base's node after this long without heartbeat or health reply")
	fs.DurationVar(&o.HealthInterval, "health-interval", DefaultHealthInterval, "how often each base is asked for its health")
	fs.DurationVar(&o.NodeLeaseDuration, "node-lease-duration", DefaultNodeLeaseDuration, "duration of each virtual node's Lease")
	fs.DurationVar(&o.LeaseRenewInterval, "lease-renew-interval", DefaultLeaseRenewInterval, "how often each virtual node's Lease is renewed")
	fs.IntVar(&o.MaxPods, "max-pods", DefaultMaxPods, "pod capacity of each virtual node")
	fs.BoolVar(&o.EnvTaint, "env-taint", false, "also taint nodes schedule.koupleless.io/node-env=<env>:NoExecute, as the reference controller did")
	fs.DurationVar(&o.InstallTimeout, "install-timeout", DefaultInstallTimeout, "query the base and retry an install or uninstall unanswered for this long")
	fs.DurationVar(&o.QueryInterval, "query-interval", DefaultQueryInterval, "how often each base is asked for its full biz list")
	fs.BoolVar(&o.UninstallOrphans, "uninstall-orphans", false, "uninstall bizs that no pod asks for, if this controller installed them (never bizs baked into the base)")
	fs.BoolVar(&o.PeerReplicaSync, "peer-replica-sync", DefaultPeerReplicaSync, "set the replicas of Deployments labelled virtual-kubelet.koupleless.io/strategy=peer to the number of virtual nodes their pod template fits")
	fs.StringVar(&o.MetricsAddress, "metrics-address", DefaultMetricsAddress, "address serving Prometheus /metrics")
	fs.StringVar(&o.HealthAddress, "health-address", DefaultHealthAddress, "address serving /healthz and /readyz")
	fs.StringVar(&o.PprofAddress, "pprof-address", "", "address serving Go pprof profiles under /debug/pprof/ (empty: off; unauthenticated, so bind it to loopback)")
	fs.StringVar(&o.LogLevel, "log-level", DefaultLogLevel, "log level: trace, debug, info, warn or error")
	fs.BoolVar(&o.Version, "version", false, "print the version and exit")
	fs.StringVar(&o.LogFormat, "log-format", DefaultLogFormat, "log format: text or json")
	fs.IntVar(&o.MaxBases, "max-bases", DefaultMaxBases, "most bases this replica serves; heartbeats of further new bases are rejected and counted")
	fs.Float64Var(&o.BaseMessageRate, "base-message-rate", DefaultBaseMessageRate, "messages per second accepted from one base; the excess is dropped and counted")
	fs.IntVar(&o.BaseMessageBurst, "base-message-burst", DefaultBaseMessageBurst, "burst of messages accepted from one base above --base-message-rate")
	fs.DurationVar(&o.MaxClockSkew, "max-clock-skew", DefaultMaxClockSkew, "how far ahead of this clock a base's timestamps may be: later messages are dropped (a forged or replayed message, or a clock to fix)")
	fs.BoolVar(&o.AllowLoopbackBaseIP, "allow-loopback-base-ip", false, "accept bases whose heartbeat's localIP is a loopback address (development only: it becomes the node address and every pod IP)")
	fs.BoolVar(&o.MQTTTunnel, "mqtt-tunnel", true, "serve bases over MQTT (the embedded broker, or --mqtt-broker); false runs the HTTP tunnel alone")
	fs.BoolVar(&o.HTTPTunnel, "http-tunnel", false, "serve bases over the arklet's HTTP tunnel too: heartbeats posted to --http-tunnel-listen, commands called at the address each heartbeat announces (docs/http-tunnel.md)")
	fs.StringVar(&o.HTTPTunnelListen, "http-tunnel-listen", DefaultHTTPTunnelListen, "listen address of the HTTP tunnel; a bare port (the 2.2 controller's HTTP_TUNNEL_LISTEN_PORT) listens on every interface")
	fs.DurationVar(&o.HTTPTunnelInstallTimeout, "http-tunnel-install-timeout", DefaultHTTPTunnelInstallTimeout, "give up one installBiz or uninstallBiz call over HTTP after this long (the base answers an install only when the module has started)")
	fs.IntVar(&o.HTTPTunnelMaxInFlight, "http-tunnel-max-in-flight", DefaultHTTPTunnelMaxInFlight, "install and uninstall calls running at once per base over HTTP; more are retried later")
	fs.StringVar(&o.HTTPTunnelToken, "http-tunnel-token", "", "bearer token every HTTP tunnel request must carry (a stock base sends none: use it behind a proxy that adds it; prefer the environment variable)")
	fs.StringVar(&o.HTTPTunnelTLSCertPath, "http-tunnel-tls-crt-path", "", "PEM server certificate; makes the HTTP tunnel HTTPS only")
	fs.StringVar(&o.HTTPTunnelTLSKeyPath, "http-tunnel-tls-key-path", "", "PEM key of the HTTP tunnel's server certificate")
	fs.StringVar(&o.HTTPTunnelClientCAPath, "http-tunnel-client-ca-path", "", "PEM CA; the HTTP tunnel then requires client certificates it signed (mTLS)")
	fs.BoolVar(&o.HTTPTunnelAllowForeignIP, "http-tunnel-allow-foreign-ip", false, "accept HTTP heartbeats whose localIP is not the address they come from (bases behind NAT); off, a heartbeat can only direct commands to its own sender")
	fs.IntVar(&o.PodWorkers, "pod-workers", DefaultPodWorkers, "workers of each queue of the pod controller that all virtual nodes share (pods to bases, status to the API server, deletions)")
	fs.DurationVar(&o.NodeStatusInterval, "node-status-interval", DefaultNodeStatusInterval, "rewrite an unchanged node status this often (changes are written at once)")
	fs.DurationVar(&o.CommandTimeout, "command-timeout", DefaultCommandTimeout, "give up publishing one command to a base after this long")
	fs.IntVar(&o.KubeletPort, "kubelet-port", DefaultKubeletPort, "port of the virtual nodes' kubelet API (kubectl logs on module pods), advertised as each node's kubelet port; 0 turns it off")
	fs.StringVar(&o.KubeletAddress, "kubelet-address", "", "IP or DNS name the API server dials for this replica's virtual nodes, written as their Hostname address ($POD_IP when empty)")
	fs.StringVar(&o.KubeletBindAddress, "kubelet-bind-address", "", "host the kubelet API listens on (empty: every interface)")
	fs.StringVar(&o.KubeletTLSCertPath, "kubelet-tls-cert", "", "PEM serving certificate of the kubelet API, re-read when it changes (e.g. a cert-manager Secret); empty: self-signed at start")
	fs.StringVar(&o.KubeletTLSKeyPath, "kubelet-tls-key", "", "PEM key of --kubelet-tls-cert")
	fs.StringVar(&o.KubeletClientCAPath, "kubelet-client-ca", "", "PEM CA of the API server's --kubelet-client-certificate: the kubelet API then requires a client certificate it signed; empty: bearer tokens checked by TokenReview. Either identity needs nodes/proxy (SubjectAccessReview)")
	fs.StringVar(&o.BaseContainer, "base-container", "", "container of a base's Pod whose logs kubectl logs shows for its module pods (empty: the Pod's first container)")
	for _, s := range settings {
		f := fs.Lookup(s.flag)
		f.Usage += " [$" + s.env + "]"
	}
}

// ApplyEnv fills every flag not given on the command line from its
// environment variable, read through lookup (os.LookupEnv in main).
func (o *Options) ApplyEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) {
	for _, s := range settings {
		f := fs.Lookup(s.flag)
		if f == nil || f.Changed {
			continue
		}
		v, ok := lookup(s.env)
		if !ok || v == "" {
			continue
		}
		if err := f.Value.Set(v); err != nil {
			o.envErrors = append(o.envErrors, fmt.Errorf("$%s=%q: %w", s.env, v, err))
		}
	}
	// The pod name (downward API) identifies a replica unless told otherwise.
	if o.ClientID == "" {
		if v, ok := lookup("POD_NAME"); ok {
			o.ClientID = strings.TrimSpace(v)
		}
	}
	// The pod IP (downward API) is where the API server reaches this
	// replica's kubelet API.
	if o.KubeletAddress == "" {
		if v, ok := lookup("POD_IP"); ok {
			o.KubeletAddress = strings.TrimSpace(v)
		}
	}
}

// Normalize lower-cases the env, as the base does, and turns a bare
// --http-tunnel-listen port into ":<port>".
func (o *Options) Normalize() {
	o.Env = strings.ToLower(strings.TrimSpace(o.Env))
	o.HTTPTunnelListen = strings.TrimSpace(o.HTTPTunnelListen)
	if _, err := strconv.Atoi(o.HTTPTunnelListen); err == nil {
		o.HTTPTunnelListen = ":" + o.HTTPTunnelListen
	}
}

// Validate returns every problem of the settings at once.
func (o *Options) Validate() error {
	errs := append([]error(nil), o.envErrors...)
	if o.Env == "" || strings.ContainsAny(o.Env, "/+#") {
		errs = append(errs, fmt.Errorf("--env %q must be non-empty and free of '/', '+' and '#'", o.Env))
	}
	switch {
	case !o.MQTTTunnel:
		// No broker, embedded or external: nothing of it to check.
	case o.MQTTBroker != "":
		if strings.Contains(o.MQTTBroker, "://") {
			if u, err := url.Parse(o.MQTTBroker); err != nil || u.Host == "" {
				errs = append(errs, fmt.Errorf("--mqtt-broker %q is not a host name or URL", o.MQTTBroker))
			}
		}
		if o.MQTTPort < 1 || o.MQTTPort > 65535 {
			errs = append(errs, fmt.Errorf("--mqtt-port %d is not a port", o.MQTTPort))
		}
	default:
		errs = append(errs, o.validateEmbeddedBroker()...)
	}
	errs = append(errs, o.validateHTTPTunnel()...)
	if o.MaxBases < 1 {
		errs = append(errs, fmt.Errorf("--max-bases %d must be positive", o.MaxBases))
	}
	if o.BaseMessageRate <= 0 || o.BaseMessageBurst < 1 {
		errs = append(errs, fmt.Errorf("--base-message-rate %g and --base-message-burst %d must be positive", o.BaseMessageRate, o.BaseMessageBurst))
	}
	if o.MaxClockSkew < 0 {
		errs = append(errs, fmt.Errorf("--max-clock-skew %s must not be negative", o.MaxClockSkew))
	}
	if (o.MQTTClientCertPath == "") != (o.MQTTClientKeyPath == "") {
		errs = append(errs, errors.New("--mqtt-client-crt-path and --mqtt-client-key-path go together"))
	}
	if o.MQTTClientCertPath != "" && o.MQTTCAPath == "" {
		errs = append(errs, errors.New("a client certificate needs TLS: set --mqtt-ca-path"))
	}
	for name, path := range map[string]string{"--mqtt-ca-path": o.MQTTCAPath, "--mqtt-client-crt-path": o.MQTTClientCertPath, "--mqtt-client-key-path": o.MQTTClientKeyPath} {
		if path == "" {
			continue
		}
		if _, err := os.Stat(path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	// Like $KUBECONFIG for kubectl, --kubeconfig may list several files.
	for _, path := range filepath.SplitList(o.Kubeconfig) {
		if _, err := os.Stat(path); err != nil {
			errs = append(errs, fmt.Errorf("--kubeconfig: %w", err))
		}
	}
	positive := map[string]time.Duration{
		"--message-max-age": o.MessageMaxAge, "--unreachable-after": o.UnreachableAfter, "--remove-after": o.RemoveAfter,
		"--health-interval": o.HealthInterval, "--install-timeout": o.InstallTimeout, "--query-interval": o.QueryInterval, "--node-lease-duration": o.NodeLeaseDuration, "--lease-renew-interval": o.LeaseRenewInterval,
		"--node-status-interval": o.NodeStatusInterval, "--command-timeout": o.CommandTimeout,
	}
	for name, d := range positive {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s %s must be positive", name, d))
		}
	}
	if o.UnreachableAfter >= o.RemoveAfter {
		errs = append(errs, fmt.Errorf("--unreachable-after %s must be shorter than --remove-after %s", o.UnreachableAfter, o.RemoveAfter))
	}
	errs = append(errs, o.validateCluster()...)
	errs = append(errs, o.validateKubelet()...)
	if o.LeaseRenewInterval >= o.NodeLeaseDuration {
		errs = append(errs, fmt.Errorf("--lease-renew-interval %s must be shorter than --node-lease-duration %s", o.LeaseRenewInterval, o.NodeLeaseDuration))
	}
	if o.NodeLeaseDuration%time.Second != 0 {
		errs = append(errs, fmt.Errorf("--node-lease-duration %s must be whole seconds", o.NodeLeaseDuration))
	}
	for suffix, n := range o.MQTTMaxMessageBytes {
		if n < 1 {
			errs = append(errs, fmt.Errorf("--mqtt-max-message-bytes %s=%d must be positive", suffix, n))
		}
	}
	if o.MaxPods < 1 {
		errs = append(errs, fmt.Errorf("--max-pods %d must be positive", o.MaxPods))
	}
	if o.KubeAPIQPS <= 0 || o.KubeAPIBurst < 1 {
		errs = append(errs, fmt.Errorf("--kube-api-qps %v and --kube-api-burst %d must be positive", o.KubeAPIQPS, o.KubeAPIBurst))
	}
	if o.PodWorkers < 1 {
		errs = append(errs, fmt.Errorf("--pod-workers %d must be positive", o.PodWorkers))
	}
	if o.LogFormat != "text" && o.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("--log-format %q is not one of text, json", o.LogFormat))
	}
	switch o.LogLevel {
	case "trace", "debug", "info", "warn", "warning", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level %q is not one of trace, debug, info, warn, error", o.LogLevel))
	}
	return errors.Join(errs...)
}

// validateHTTPTunnel checks the settings of the HTTP tunnel.
func (o *Options) validateHTTPTunnel() []error {
	var errs []error
	if !o.MQTTTunnel && !o.HTTPTunnel {
		errs = append(errs, errors.New("--mqtt-tunnel=false needs --http-tunnel: bases need a transport"))
	}
	if !o.HTTPTunnel {
		return errs
	}
	if _, _, err := net.SplitHostPort(o.HTTPTunnelListen); err != nil {
		errs = append(errs, fmt.Errorf("--http-tunnel-listen %q: %w", o.HTTPTunnelListen, err))
	}
	if o.HTTPTunnelInstallTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--http-tunnel-install-timeout %s must be positive", o.HTTPTunnelInstallTimeout))
	}
	if o.HTTPTunnelMaxInFlight < 1 {
		errs = append(errs, fmt.Errorf("--http-tunnel-max-in-flight %d must be positive", o.HTTPTunnelMaxInFlight))
	}
	errs = append(errs, serverTLSFiles(
		tlsFile{"--http-tunnel-tls-crt-path", o.HTTPTunnelTLSCertPath}, tlsFile{"--http-tunnel-tls-key-path", o.HTTPTunnelTLSKeyPath},
		tlsFile{"--http-tunnel-client-ca-path", o.HTTPTunnelClientCAPath}, true)...)
	if o.ClusterMode {
		errs = append(errs, errors.New("--http-tunnel does not support --cluster-mode: each heartbeat reaches one replica, so the replicas cannot share the bases"))
	}
	return errs
}

// validateCluster checks the settings of cluster mode.
func (o *Options) validateCluster() []error {
	if !o.ClusterMode {
		return nil
	}
	var errs []error
	if o.MQTTBroker == "" {
		errs = append(errs, errors.New("--cluster-mode needs an external broker (--mqtt-broker) that every replica uses: each embedded broker would see only the bases connected to it"))
	}
	if o.ClientID == "" {
		errs = append(errs, errors.New("--cluster-mode needs a unique identity per replica: set --client-id, $CLIENT_ID or $POD_NAME"))
	}
	if o.Namespace == "" {
		errs = append(errs, errors.New("--cluster-mode needs --namespace"))
	}
	d, deadline, renew, retry := o.ClusterLeaseDuration, o.ClusterRenewDeadline, o.ClusterRenewInterval, o.ClusterRetryPeriod
	if d < time.Second || d%time.Second != 0 {
		errs = append(errs, fmt.Errorf("--cluster-lease-duration %s must be whole seconds", d))
	}
	if retry <= 0 || retry > renew || renew >= deadline || deadline >= d {
		errs = append(errs, fmt.Errorf("cluster Lease timing must satisfy 0 < --cluster-retry-period %s <= --cluster-renew-interval %s < --cluster-renew-deadline %s < --cluster-lease-duration %s",
			retry, renew, deadline, d))
	}
	return errs
}

// KubeletEnabled reports whether the kubelet API is served: a port, and an
// address for the API server to dial.
func (o *Options) KubeletEnabled() bool { return o.KubeletPort > 0 && o.KubeletAddress != "" }

// validateKubelet checks the settings of the kubelet API.
func (o *Options) validateKubelet() []error {
	if o.KubeletPort < 0 || o.KubeletPort > 65535 {
		return []error{fmt.Errorf("--kubelet-port %d is not a port (0 turns the kubelet API off)", o.KubeletPort)}
	}
	if o.KubeletPort == 0 {
		return nil
	}
	var errs []error
	// No address (run outside a pod without --kubelet-address) leaves the
	// kubelet API off, with a warning at start (KubeletEnabled).
	if o.KubeletAddress != "" && net.ParseIP(o.KubeletAddress) == nil && strings.ContainsAny(o.KubeletAddress, ":/ ") {
		errs = append(errs, fmt.Errorf("--kubelet-address %q must be an IP or a DNS name, without port or scheme", o.KubeletAddress))
	}
	// Without a certificate the kubelet API serves a self-signed one; the
	// client CA works with either.
	errs = append(errs, serverTLSFiles(
		tlsFile{"--kubelet-tls-cert", o.KubeletTLSCertPath}, tlsFile{"--kubelet-tls-key", o.KubeletTLSKeyPath},
		tlsFile{"--kubelet-client-ca", o.KubeletClientCAPath}, false)...)
	return errs
}

// tlsFile is a setting naming a PEM file.
type tlsFile struct{ flag, path string }

// serverTLSFiles checks the files of a TLS server: certificate and key are
// set together, every file set exists, and, when caNeedsCert, a client CA
// comes with the server's own certificate.
func serverTLSFiles(cert, key, ca tlsFile, caNeedsCert bool) []error {
	var errs []error
	if (cert.path == "") != (key.path == "") {
		errs = append(errs, fmt.Errorf("%s and %s go together", cert.flag, key.flag))
	}
	if caNeedsCert && ca.path != "" && cert.path == "" {
		errs = append(errs, fmt.Errorf("%s needs TLS: set %s", ca.flag, cert.flag))
	}
	for _, f := range []tlsFile{cert, key, ca} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.flag, err))
		}
	}
	return errs
}

// validateEmbeddedBroker checks the embedded broker's settings: it never
// serves anonymous clients on an address other hosts can reach.
func (o *Options) validateEmbeddedBroker() []error {
	var errs []error
	host, _, err := net.SplitHostPort(o.EmbeddedBrokerAddress)
	if err != nil {
		errs = append(errs, fmt.Errorf("--embedded-broker-address %q: %w", o.EmbeddedBrokerAddress, err))
	} else if o.MQTTUsername == "" && !isLoopback(host) {
		errs = append(errs, fmt.Errorf("the embedded broker would listen on %q, which other hosts can reach, without credentials: "+
			"set MQTT_USERNAME and MQTT_PASSWORD (the shipped manifests read them from Secret %s in the controller's namespace, keys username and password: "+
			"kubectl -n module-controller create secret generic %s --from-literal=username=module-controller --from-literal=password=\"$(head -c 32 /dev/urandom | base64)\"), "+
			"or listen on loopback only (--embedded-broker-address=127.0.0.1:1883); see the \"Security model\" of docs/operations.md",
			o.EmbeddedBrokerAddress, MQTTSecretName, MQTTSecretName))
	}
	if o.MQTTUsername != "" && o.MQTTPassword == "" {
		errs = append(errs, errors.New("the embedded broker needs a password for --mqtt-username (MQTT_PASSWORD)"))
	}
	if o.EmbeddedBrokerPasswordFile != "" && o.MQTTUsername == "" {
		errs = append(errs, errors.New("--embedded-broker-password-file needs the controller's own user: set --mqtt-username and --mqtt-password"))
	}
	// MQTT's own limit is 268,435,455 bytes (a remaining length of 4 bytes).
	if o.EmbeddedBrokerMaxPacketSize < 1024 || o.EmbeddedBrokerMaxPacketSize > 268435455 {
		errs = append(errs, fmt.Errorf("--embedded-broker-max-packet-size %d must be at least 1024 and at most 268435455", o.EmbeddedBrokerMaxPacketSize))
	}
	errs = append(errs, serverTLSFiles(
		tlsFile{"--embedded-broker-tls-crt-path", o.EmbeddedBrokerTLSCertPath}, tlsFile{"--embedded-broker-tls-key-path", o.EmbeddedBrokerTLSKeyPath},
		tlsFile{"--embedded-broker-client-ca-path", o.EmbeddedBrokerClientCAPath}, true)...)
	return errs
}

// isLoopback reports whether a listen host reaches this machine only (as
// pkg/broker.IsLoopback): "localhost" or a loopback IP; "" is every interface.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// BrokerURL returns the external broker as a URL: tcp://host:port, or
// ssl://host:port when TLS is on. A --mqtt-broker given as a URL is kept.
func (o *Options) BrokerURL() string {
	if strings.Contains(o.MQTTBroker, "://") {
		return o.MQTTBroker
	}
	scheme := "tcp"
	if o.MQTTCAPath != "" {
		scheme = "ssl"
	}
	return scheme + "://" + net.JoinHostPort(o.MQTTBroker, strconv.Itoa(o.MQTTPort))
}
