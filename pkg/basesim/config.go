package basesim

import (
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"net/url"
	"time"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// Defaults applied by New to zero Config fields.
const (
	// DefaultBroker is the broker a base connects to when Config.Broker is empty.
	DefaultBroker = "tcp://127.0.0.1:1883"
	// DefaultClientIDPrefix is the client id prefix (koupleless.arklet.mqtt.client.prefix).
	DefaultClientIDPrefix = "koupleless"
	// DefaultName is the base application name reported in metadata and as the master biz.
	DefaultName = "base"
	// DefaultVersion is the base version reported in metadata and as the master biz version.
	DefaultVersion = "1.0.0"
	// DefaultClusterName is the cluster name of the stock metadata hook.
	DefaultClusterName = "default"
	// DefaultHeartbeatInterval is the Java base's fixed heartbeat rate (docs/protocol.md, "Heartbeat").
	DefaultHeartbeatInterval = 10 * time.Second
	// DefaultKeepAlive is the Java paho client's keep-alive.
	DefaultKeepAlive = 60 * time.Second
	// DefaultConnectTimeout bounds one connection attempt, CONNACK included. The Java client
	// waits 30 s; a broker that accepts the TCP connection while it shuts down would then
	// keep a base offline for 30 s, longer than the controller's unreachable threshold.
	DefaultConnectTimeout = 5 * time.Second
	// DefaultMaxReconnectInterval caps the reconnect back-off. The Java client caps it at
	// 128 s; a shorter cap keeps tests that restart the broker fast.
	DefaultMaxReconnectInterval = 10 * time.Second
	// DefaultPublishTimeout bounds the wait for a PUBACK.
	DefaultPublishTimeout = 10 * time.Second
	// DefaultMaxMetaspace is the JVM's -XX:MaxMetaspaceSize the simulated base reports.
	DefaultMaxMetaspace int64 = 512 << 20
	// DefaultRestartDowntime is how long a simulated JVM restart keeps the base away.
	DefaultRestartDowntime = 200 * time.Millisecond
	// DefaultReceivedLimit is how many received commands Received keeps per base.
	DefaultReceivedLimit = 256
	// DefaultHTTPListen is where a base of the HTTP tunnel serves its arklet HTTP server:
	// a free loopback port (a real base uses 1238).
	DefaultHTTPListen = "127.0.0.1:0"
	// DefaultHTTPHeartbeatInterval is the Java base's heartbeat period over HTTP.
	DefaultHTTPHeartbeatInterval = 12 * time.Second
)

// Transports of Config.Tunnel.
const (
	// TunnelMQTT is the arklet's MQTT tunnel (the default).
	TunnelMQTT = "mqtt"
	// TunnelHTTP is the arklet's HTTP tunnel: heartbeats posted to Config.HTTPEndpoint,
	// commands served by the base's own HTTP server, answered synchronously.
	TunnelHTTP = "http"
)

// Activation says what a base does when it installs a biz whose name already has an
// ACTIVATED version (docs/protocol.md, "A second version of an active biz"). The zero
// value is ActivateNew.
type Activation int

const (
	// ActivateNew is the JVM property activate.new.module=true, which the Koupleless
	// operations guide assumes and the default of this simulator: the new version ends
	// ACTIVATED ("switch from old biz: <old>") and the old one DEACTIVATED (reason SWITCHED,
	// "switch to new biz <new>").
	ActivateNew Activation = iota
	// KeepOld is SOFAArk's own default: the new version ends DEACTIVATED ("start but is
	// deactivated") and the old one stays ACTIVATED.
	KeepOld
	// ActivateAll is sofa.ark.activate.multi.biz.version.enable=true: both versions end
	// ACTIVATED.
	ActivateAll
)

// String returns the name of the mode.
func (a Activation) String() string {
	switch a {
	case ActivateNew:
		return "activate-new"
	case KeepOld:
		return "keep-old"
	case ActivateAll:
		return "activate-all"
	default:
		return fmt.Sprintf("Activation(%d)", int(a))
	}
}

// Config configures one simulated base. Only Identity is required (and HTTPEndpoint for
// the HTTP tunnel).
type Config struct {
	// Tunnel is TunnelMQTT (if empty) or TunnelHTTP.
	Tunnel string
	// HTTPEndpoint is the controller's base URL the HTTP tunnel posts heartbeats to
	// (koupleless.arklet.http.heartbeat.endpoint), e.g. http://127.0.0.1:7777.
	HTTPEndpoint string
	// HTTPListen is the address of the base's arklet HTTP server; DefaultHTTPListen if
	// empty. Its real port is what heartbeats announce.
	HTTPListen string
	// HTTPToken, if set, is sent as a bearer token with every heartbeat (as a proxy in
	// front of a stock base would add it).
	HTTPToken string
	// HTTPTLS, if set, is the client TLS configuration for an https:// HTTPEndpoint.
	HTTPTLS *tls.Config

	// Broker is the broker URL: tcp://host:port, or ssl://host:port for TLS. A tcp:// URL
	// is switched to ssl:// when TLS is set, as the Java base does when a CA is configured.
	// Defaults to DefaultBroker.
	Broker string
	// Username and Password are sent on every connect (the Java base always sends both).
	Username string
	Password string
	// TLS, when set, makes the base connect over TLS with it (cmd/base-sim builds it with
	// tunnel/mqtt's TLSConfig.ClientTLS, the controller's own verification);
	// it must verify the server (InsecureSkipVerify is rejected).
	TLS *tls.Config
	// ClientIDPrefix is the first part of the client id "<prefix>@@@<identity>".
	// Defaults to DefaultClientIDPrefix.
	ClientIDPrefix string

	// Env is the environment; it is normalized (lower-cased) like the base does.
	// Defaults to protocol.DefaultEnv, what a stock base uses.
	Env string
	// Identity is the base ID: an IPv4 address like a stock base, or any dot-separated
	// DNS labels (protocol.ValidateBaseID). Required.
	Identity string
	// Name, Version and ClusterName are the metadata hook's values. Name and Version also
	// describe the master biz in health replies. Default DefaultName, DefaultVersion,
	// DefaultClusterName.
	Name        string
	Version     string
	ClusterName string
	// LocalIP is the heartbeat's localIP. Over HTTP it defaults to the host of HTTPListen
	// (the address the controller calls back); otherwise to Identity if that is an IP
	// address, else to an address in 10.0.0.0/8 derived from a hash of Identity.
	LocalIP string
	// LocalHostName is the heartbeat's localHostName. Defaults to Identity.
	LocalHostName string

	// HeartbeatInterval is the heartbeat period. Defaults to DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// HeartbeatStopsOnError reproduces the Java heartbeat task's failure mode
	// (docs/protocol.md, "The heartbeat task dies"):
	// the first heartbeat whose publish fails (for instance while reconnecting) stops all
	// later heartbeats until the next Restart. Off by default.
	HeartbeatStopsOnError bool

	// InstallDelay is how long an install stays RESOLVED before it starts (download and
	// main method). Initial value of the SetInstallDelay knob.
	InstallDelay time.Duration
	// UninstallDelay is how long an uninstall stays DEACTIVATED (KILLING) before the biz is
	// removed. Initial value of the SetUninstallDelay knob.
	UninstallDelay time.Duration
	// FailInstall, if set, is asked before every install; a non-nil error makes the install
	// fail with that message. Initial value of the SetFailInstall knob.
	FailInstall func(protocol.BizModel) error
	// FailInstallOf lists biz names, name:version keys or biz URLs whose installs fail.
	// Initial value of the FailInstallOf knob.
	FailInstallOf []string
	// FailureRate is the probability in [0, 1] that any install fails. Initial value of
	// the SetFailureRate knob.
	FailureRate float64
	// UnreachableURLs are biz URLs whose download fails: a single install of one fails,
	// and a baseline containing one fails as a whole (docs/protocol.md, "Batch install
	// result"). Initial value of the SetUnreachableURLs knob.
	UnreachableURLs []string
	// Activation is what an install next to an ACTIVATED version does (see the type).
	// Initial value of the SetActivation knob.
	Activation Activation
	// StaticBizs are bizs baked into the base: installed ACTIVATED whenever the simulated
	// JVM starts (Start and Restart), without any command.
	StaticBizs []protocol.BizModel
	// MaxMetaspace is the "java max metaspace" figure in health replies, in bytes;
	// protocol.MetaspaceUndefined (-1) reports no limit. Defaults to DefaultMaxMetaspace.
	MaxMetaspace int64

	// Now is the clock for publishTimestamp, state change times and messages. Defaults to
	// time.Now.
	Now func() time.Time
	// RestartDowntime is how long Restart keeps the base disconnected, like the seconds a
	// JVM takes to restart. It also lets the broker finish with the old connection before
	// a client with the same id connects: mochi, for one, can otherwise drop the new
	// session while it cleans up the old one. Zero means DefaultRestartDowntime; a
	// negative value reconnects at once.
	RestartDowntime time.Duration
	// KeepAlive, ConnectTimeout, MaxReconnectInterval and PublishTimeout tune the MQTT
	// client; zero means DefaultKeepAlive, DefaultConnectTimeout,
	// DefaultMaxReconnectInterval and DefaultPublishTimeout.
	KeepAlive            time.Duration
	ConnectTimeout       time.Duration
	MaxReconnectInterval time.Duration
	PublishTimeout       time.Duration
	// ReceivedLimit is how many received commands Received keeps (oldest dropped first);
	// ReceivedCount counts every command regardless. 0 means DefaultReceivedLimit, a
	// negative value keeps none.
	ReceivedLimit int
}

// withDefaults returns c with every zero field defaulted and the env normalized.
func (c Config) withDefaults() Config {
	if c.Broker == "" {
		c.Broker = DefaultBroker
	}
	if c.ClientIDPrefix == "" {
		c.ClientIDPrefix = DefaultClientIDPrefix
	}
	if c.Env == "" {
		c.Env = protocol.DefaultEnv
	}
	c.Env = protocol.NormalizeEnv(c.Env)
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.Version == "" {
		c.Version = DefaultVersion
	}
	if c.ClusterName == "" {
		c.ClusterName = DefaultClusterName
	}
	if c.LocalHostName == "" {
		c.LocalHostName = c.Identity
	}
	if c.Tunnel == "" {
		c.Tunnel = TunnelMQTT
	}
	if c.HTTPListen == "" {
		c.HTTPListen = DefaultHTTPListen
	}
	if c.Tunnel == TunnelHTTP && c.LocalIP == "" {
		// The controller calls the address a heartbeat announces, and by default only if
		// the heartbeat came from it: announce the address the server listens on.
		if host, _, err := net.SplitHostPort(c.HTTPListen); err == nil {
			if a, err := netip.ParseAddr(host); err == nil && !a.IsUnspecified() {
				c.LocalIP = a.String()
			}
		}
	}
	if c.LocalIP == "" {
		c.LocalIP = defaultLocalIP(c.Identity)
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
		if c.Tunnel == TunnelHTTP {
			c.HeartbeatInterval = DefaultHTTPHeartbeatInterval
		}
	}
	if c.MaxMetaspace == 0 {
		c.MaxMetaspace = DefaultMaxMetaspace
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.MaxReconnectInterval == 0 {
		c.MaxReconnectInterval = DefaultMaxReconnectInterval
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.RestartDowntime == 0 {
		c.RestartDowntime = DefaultRestartDowntime
	}
	if c.ReceivedLimit == 0 {
		c.ReceivedLimit = DefaultReceivedLimit
	}
	if c.TLS != nil {
		if u, err := url.Parse(c.Broker); err == nil && u.Scheme == "tcp" {
			u.Scheme = "ssl"
			c.Broker = u.String()
		}
	}
	return c
}

// Validate reports every problem with c, after applying the defaults New applies, in one
// error.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if err := protocol.ValidateBaseID(c.Identity); err != nil {
		errs = append(errs, fmt.Errorf("identity: %w", err))
	}
	if err := protocol.ValidateEnv(c.Env); err != nil {
		errs = append(errs, fmt.Errorf("env: %w", err))
	}
	switch c.Tunnel {
	case TunnelMQTT:
	case TunnelHTTP:
		if u, err := url.Parse(c.HTTPEndpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("http endpoint %q: want http://host:port or https://host:port", c.HTTPEndpoint))
		}
		if _, _, err := net.SplitHostPort(c.HTTPListen); err != nil {
			errs = append(errs, fmt.Errorf("http listen %q: %w", c.HTTPListen, err))
		}
		if c.HTTPTLS != nil && c.HTTPTLS.InsecureSkipVerify {
			errs = append(errs, errors.New("http tls: InsecureSkipVerify is not allowed"))
		}
	default:
		errs = append(errs, fmt.Errorf("tunnel %q: want %s or %s", c.Tunnel, TunnelMQTT, TunnelHTTP))
	}
	if u, err := url.Parse(c.Broker); err != nil {
		errs = append(errs, fmt.Errorf("broker %q: %w", c.Broker, err))
	} else if u.Host == "" {
		errs = append(errs, fmt.Errorf("broker %q: no host", c.Broker))
	}
	if c.TLS != nil && c.TLS.InsecureSkipVerify {
		errs = append(errs, errors.New("tls: InsecureSkipVerify is not allowed"))
	}
	if c.HeartbeatInterval < 0 {
		errs = append(errs, fmt.Errorf("heartbeat interval %s is negative", c.HeartbeatInterval))
	}
	if c.InstallDelay < 0 || c.UninstallDelay < 0 {
		errs = append(errs, errors.New("install and uninstall delays must not be negative"))
	}
	if c.FailureRate < 0 || c.FailureRate > 1 {
		errs = append(errs, fmt.Errorf("failure rate %v is not within [0, 1]", c.FailureRate))
	}
	switch c.Activation {
	case ActivateNew, KeepOld, ActivateAll:
	default:
		errs = append(errs, fmt.Errorf("unknown activation mode %d", int(c.Activation)))
	}
	for _, m := range c.StaticBizs {
		if m.BizName == "" || m.BizVersion == "" {
			errs = append(errs, fmt.Errorf("static biz %q: name and version are required", m.Key()))
		}
	}
	return errors.Join(errs...)
}

// defaultLocalIP returns id if it is an IP address, else a stable address in 10.0.0.0/8.
func defaultLocalIP(id string) string {
	if a, err := netip.ParseAddr(id); err == nil {
		return a.String()
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(id)) // hash.Hash.Write never fails
	s := h.Sum32()
	return netip.AddrFrom4([4]byte{10, byte(s >> 16), byte(s >> 8), byte(s%254) + 1}).String()
}
