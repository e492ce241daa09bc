package mqtt

import (
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moduleops/module-controller/pkg/fieldcheck"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// Defaults applied by New to zero fields of Config.
const (
	// DefaultClientIDPrefix is the client-ID prefix the reference controller uses.
	DefaultClientIDPrefix = "koupleless"
	// DefaultMaxMessageAge is how old a base's status message may be before it is dropped,
	// the reference controller's window (docs/protocol.md, "Timestamps and freshness").
	DefaultMaxMessageAge = protocol.DefaultMaxAge
	// DefaultKeepAlive is the MQTT keep-alive interval. A dead broker connection is noticed
	// within about 1.5 times this.
	DefaultKeepAlive = 30 * time.Second
	// DefaultConnectTimeout bounds one connection attempt (TCP, TLS and CONNACK) and one
	// subscribe round trip.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultMaxReconnectInterval caps the back-off between reconnection attempts.
	DefaultMaxReconnectInterval = 10 * time.Second
	// DefaultMaxHeartbeatBytes caps a heartbeat or baseline query payload. The real ones
	// are about 230 and 120 bytes, and every field that a node can use has a cap well
	// under 256 bytes (provider.Validation), so 16 KiB is tens of times what a base sends.
	DefaultMaxHeartbeatBytes = 16 << 10
	// DefaultMaxStatusBytes caps a health reply or a biz list (simpleBiz, legacy biz):
	// about 300 bytes per plugin and 200 bytes per biz plus state messages, so 256 KiB
	// holds hundreds of plugins and bizs.
	DefaultMaxStatusBytes = 256 << 10
	// DefaultMaxOperationBytes caps an install or uninstall reply, whose bizInfos carry
	// the biz's full classPath (about 110 bytes per jar) or a stack trace.
	DefaultMaxOperationBytes = 512 << 10
	// DefaultMaxBatchBytes caps a batch-install reply: one install reply per baseline
	// biz, so the whole protocol.MaxPayloadSize.
	DefaultMaxBatchBytes = protocol.MaxPayloadSize
	// DefaultEventBuffer is the capacity of the Events channel: about ten seconds of
	// heartbeats, health and inventory replies from a thousand bases.
	DefaultEventBuffer = 4096
)

// clientIDSeparator joins ClientIDPrefix and ClientID, as the reference controller and the
// Java base do ("<prefix>@@@<id>").
const clientIDSeparator = "@@@"

// Broker URL schemes accepted in Config.BrokerURL.
var (
	plainSchemes = []string{"tcp", "mqtt"}
	tlsSchemes   = []string{"ssl", "tls", "mqtts"}
)

// Config configures a Tunnel. Zero fields take the Default… values; New validates.
type Config struct {
	// BrokerURL is the broker to connect to: tcp://host:port (or mqtt://) for plain MQTT,
	// ssl://host:port (or tls://, mqtts://) for MQTT over TLS. The port is required. The
	// reference's MQTT_BROKER/MQTT_PORT settings map onto it as tcp://MQTT_BROKER:MQTT_PORT,
	// or ssl://… when a CA file is configured.
	BrokerURL string
	// Username is the MQTT user name; empty for anonymous access.
	Username string
	// Password is the MQTT password; it requires Username.
	Password string
	// ClientIDPrefix is the first part of the MQTT client ID; DefaultClientIDPrefix if empty.
	ClientIDPrefix string
	// ClientID is the second part of the MQTT client ID, which is
	// ClientIDPrefix + "@@@" + ClientID. Empty picks a random ID per Tunnel, so every
	// replica gets its own session: two clients with one ID make the broker disconnect
	// each other in turn.
	ClientID string
	// Env is the environment whose bases this tunnel serves (topics koupleless_<env>/…).
	// It is normalized as bases do (protocol.NormalizeEnv); empty means protocol.DefaultEnv,
	// the env of a stock base.
	Env string
	// TLS holds the certificate files for ssl:// brokers.
	TLS TLSConfig
	// MaxMessageAge drops heartbeats, baseline queries, health replies and inventories whose
	// publishTimestamp is this old or older by Now; DefaultMaxMessageAge if zero. Replies to
	// our own commands (bizOperation, batchInstallBizResponse) are never dropped for age.
	MaxMessageAge time.Duration
	// Now is the clock the age check reads; time.Now if nil.
	Now func() time.Time
	// KeepAlive is the MQTT keep-alive interval; DefaultKeepAlive if zero.
	KeepAlive time.Duration
	// ConnectTimeout bounds one connection attempt and one subscribe round trip;
	// DefaultConnectTimeout if zero.
	ConnectTimeout time.Duration
	// MaxReconnectInterval caps the back-off between reconnection attempts;
	// DefaultMaxReconnectInterval if zero.
	MaxReconnectInterval time.Duration
	// EventBuffer is the capacity of the Events channel; DefaultEventBuffer if zero.
	EventBuffer int
	// MaxMessageBytes caps the payload of each base topic, by suffix (protocol.Suffix…).
	// A longer payload is dropped before it is decoded, counted as too_large. Suffixes
	// not set take DefaultMaxMessageBytes; no cap may exceed protocol.MaxPayloadSize.
	MaxMessageBytes map[string]int
	// Registerer, if set, receives the tunnel's metrics, all prefixed module_controller_mqtt_:
	// messages_received_total{suffix}, messages_dropped_total{reason},
	// commands_published_total{command,result}, connected, connection_failures_total and
	// events_backpressure_total. Metrics are kept even without one.
	Registerer prometheus.Registerer
}

// TLSConfig names the PEM files used to talk TLS to the broker. The broker's certificate
// is always verified, against the host name of Config.BrokerURL.
type TLSConfig struct {
	// CAFile holds the CA certificates that sign the broker's certificate. Empty uses the
	// system roots. Setting it requires a TLS broker URL.
	CAFile string
	// ClientCertFile is the client certificate, for brokers that require one; it requires
	// ClientKeyFile.
	ClientCertFile string
	// ClientKeyFile is the client certificate's private key (PKCS#1, PKCS#8 or EC).
	ClientKeyFile string
}

// enabled reports whether any TLS file is configured.
func (c TLSConfig) enabled() bool {
	return c.CAFile != "" || c.ClientCertFile != "" || c.ClientKeyFile != ""
}

// withDefaults returns c with every zero field defaulted and Env normalized.
func (c Config) withDefaults() Config {
	fieldcheck.FillZero(&c, DefaultConfig())
	fieldcheck.Default(&c.ClientID, strings.ToLower(rand.Text()))
	c.Env = protocol.NormalizeEnv(c.Env)
	if c.Now == nil {
		c.Now = time.Now
	}
	caps := DefaultMaxMessageBytes()
	for k, v := range c.MaxMessageBytes {
		caps[k] = v
	}
	c.MaxMessageBytes = caps
	return c
}

// DefaultMaxMessageBytes returns the default payload cap of every base topic, by suffix.
func DefaultMaxMessageBytes() map[string]int {
	return map[string]int{
		protocol.SuffixHeartbeat:            DefaultMaxHeartbeatBytes,
		protocol.SuffixQueryBaseline:        DefaultMaxHeartbeatBytes,
		protocol.SuffixHealth:               DefaultMaxStatusBytes,
		protocol.SuffixSimpleBiz:            DefaultMaxStatusBytes,
		protocol.SuffixLegacyBiz:            DefaultMaxStatusBytes,
		protocol.SuffixBizOperation:         DefaultMaxOperationBytes,
		protocol.SuffixBatchInstallResponse: DefaultMaxBatchBytes,
	}
}

// DefaultConfig returns the defaults of the settings of Config; the command
// line's flags default to them. BrokerURL has none, and MaxMessageBytes
// stays empty: every suffix not in it takes DefaultMaxMessageBytes.
func DefaultConfig() Config {
	return Config{
		ClientIDPrefix:       DefaultClientIDPrefix,
		Env:                  protocol.DefaultEnv,
		MaxMessageAge:        DefaultMaxMessageAge,
		KeepAlive:            DefaultKeepAlive,
		ConnectTimeout:       DefaultConnectTimeout,
		MaxReconnectInterval: DefaultMaxReconnectInterval,
		EventBuffer:          DefaultEventBuffer,
	}
}

// Validate reports every problem with c, joined into one error; each is a
// fieldcheck.Error naming its field. New validates c after defaults. It checks that the
// TLS files exist; New reads them.
func (c Config) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fieldcheck.Errorf(field, format, args...))
	}

	secure, err := parseBrokerURL(c.BrokerURL)
	if err != nil {
		add("BrokerURL", "%v", err)
	}
	if err == nil && !secure && c.TLS.enabled() {
		add("BrokerURL", "%q is not TLS (want one of %v), but {TLS.CAFile} or a client certificate is set", c.BrokerURL, tlsSchemes)
	}
	errs = append(errs, fieldcheck.TLSFiles(
		fieldcheck.File{Field: "TLS.ClientCertFile", Path: c.TLS.ClientCertFile},
		fieldcheck.File{Field: "TLS.ClientKeyFile", Path: c.TLS.ClientKeyFile},
		fieldcheck.File{Field: "TLS.CAFile", Path: c.TLS.CAFile}, false)...)
	if c.Password != "" && c.Username == "" {
		add("Password", "set without {Username}")
	}
	if strings.Contains(c.ClientIDPrefix, clientIDSeparator) {
		add("ClientIDPrefix", "%q must not contain %q", c.ClientIDPrefix, clientIDSeparator)
	}
	if err := protocol.ValidateEnv(c.Env); err != nil {
		add("Env", "%v", err)
	}
	for _, d := range []fieldcheck.Duration{
		{Field: "MaxMessageAge", Value: c.MaxMessageAge},
		{Field: "KeepAlive", Value: c.KeepAlive},
		{Field: "ConnectTimeout", Value: c.ConnectTimeout},
		{Field: "MaxReconnectInterval", Value: c.MaxReconnectInterval},
	} {
		if d.Value <= 0 {
			add(d.Field, "%s must be positive", d.Value)
		}
	}
	if c.KeepAlive > 0 && c.KeepAlive < time.Second {
		add("KeepAlive", "%s is below the MQTT resolution of one second", c.KeepAlive)
	}
	if c.EventBuffer < 1 {
		add("EventBuffer", "%d must be positive", c.EventBuffer)
	}
	for _, suffix := range slices.Sorted(maps.Keys(c.MaxMessageBytes)) {
		n := c.MaxMessageBytes[suffix]
		if _, ok := handlers[suffix]; !ok {
			add("MaxMessageBytes", "%q is not a base topic suffix (want one of %v)", suffix, baseSuffixes())
		} else if n < 1 || n > protocol.MaxPayloadSize {
			add("MaxMessageBytes", "%s=%d is not in 1-%d", suffix, n, protocol.MaxPayloadSize)
		}
	}
	return errors.Join(errs...)
}

// clientID returns the MQTT client ID of the tunnel.
func (c Config) clientID() string {
	return c.ClientIDPrefix + clientIDSeparator + c.ClientID
}

// parseBrokerURL checks u and reports whether it asks for TLS. Error messages show the
// URL with any password redacted.
func parseBrokerURL(u string) (secure bool, err error) {
	if u == "" {
		return false, errors.New("broker url is empty")
	}
	p, err := url.Parse(u)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the raw URL, which may hold a password
		}
		return false, fmt.Errorf("broker url: %w", err)
	}
	shown := p.Redacted()
	switch scheme := strings.ToLower(p.Scheme); {
	case slices.Contains(plainSchemes, scheme):
	case slices.Contains(tlsSchemes, scheme):
		secure = true
	default:
		return false, fmt.Errorf("broker url %q: scheme must be one of %v or %v", shown, plainSchemes, tlsSchemes)
	}
	if p.User != nil {
		return false, fmt.Errorf("broker url %q: credentials belong in Username and Password, not in the url", shown)
	}
	if _, port, err := net.SplitHostPort(p.Host); err != nil || p.Hostname() == "" || port == "" {
		return false, fmt.Errorf("broker url %q: want scheme://host:port", shown)
	}
	if (p.Path != "" && p.Path != "/") || p.RawQuery != "" || p.Fragment != "" {
		return false, fmt.Errorf("broker url %q: want scheme://host:port without path or query", shown)
	}
	return secure, nil
}
