package httptunnel

import (
	"errors"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moduleops/module-controller/pkg/fieldcheck"
)

// Defaults applied by New to zero fields of Config.
const (
	// DefaultListenAddress is where the 2.2 controller listens (HTTP_TUNNEL_LISTEN_PORT 7777).
	DefaultListenAddress = ":7777"
	// DefaultInstallTimeout bounds one installBiz or uninstallBiz call. The arklet answers
	// an install only when the module has started: seconds to minutes for a large jar.
	DefaultInstallTimeout = 5 * time.Minute
	// DefaultQueryTimeout bounds one health or queryAllBiz call, which the arklet answers
	// from memory.
	DefaultQueryTimeout = 10 * time.Second
	// DefaultMaxInFlight is how many installBiz and uninstallBiz calls may run at once per
	// base; a further one is refused with ErrBusy (the caller retries with back-off).
	DefaultMaxInFlight = 4
	// DefaultMaxRequestBytes caps a heartbeat or baseline query body (real ones are about
	// 230 and 120 bytes; as the MQTT tunnel's heartbeat cap).
	DefaultMaxRequestBytes = 16 << 10
	// DefaultMaxResponseBytes caps an arklet answer: install answers carry the biz's whole
	// classPath, health answers every plugin (as the MQTT tunnel's operation cap).
	DefaultMaxResponseBytes = 512 << 10
	// DefaultClientRate and DefaultClientBurst bound the requests accepted from one client
	// address. A base sends one heartbeat every 12 s, but several bases may share an
	// address (behind NAT, or on the host network of one node): 50/s serves hundreds of
	// them while a flood from one address costs little parsing.
	DefaultClientRate  = 50.0
	DefaultClientBurst = 100
	// DefaultMaxBases caps the bases whose announced address is remembered (and the
	// client addresses whose rate is tracked); entries silent for BaseTTL go first.
	DefaultMaxBases = 10000
	// DefaultBaseTTL is how long an announced address is kept without a new heartbeat: a
	// base silent this long is gone for the controller too (its --remove-after).
	DefaultBaseTTL = 2 * time.Minute
	// DefaultEventBuffer is the capacity of the Events channel.
	DefaultEventBuffer = 4096
	// DefaultBaselineWait is how long a baseline query waits for the consumer's
	// SendBaseline before it is answered 503: under the base's 10 s read timeout.
	DefaultBaselineWait = 5 * time.Second
	// Server timeouts: a client gets this long to send its headers and its whole request,
	// and an idle keep-alive connection is closed after DefaultIdleTimeout.
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 10 * time.Second
	DefaultWriteTimeout      = 15 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
)

// Config configures a Tunnel. Zero fields take the Default… values; New validates.
type Config struct {
	// ListenAddress is the host:port the heartbeat server listens on; DefaultListenAddress
	// if empty. Port 0 picks a free port (Addr reports it).
	ListenAddress string
	// AuthToken, if set, is required of every request as "Authorization: Bearer <token>"
	// (compared in constant time). A stock base sends no header: set it only for bases
	// behind a proxy that adds it, or rely on ClientCAFile or the NetworkPolicy.
	AuthToken string
	// TLSCertFile and TLSKeyFile, if set, make the server HTTPS only.
	TLSCertFile, TLSKeyFile string
	// ClientCAFile, if set, requires and verifies client certificates signed by it (mTLS);
	// it needs TLSCertFile.
	ClientCAFile string

	// InstallTimeout bounds one installBiz or uninstallBiz call; DefaultInstallTimeout if zero.
	InstallTimeout time.Duration
	// QueryTimeout bounds one health or queryAllBiz call; DefaultQueryTimeout if zero.
	QueryTimeout time.Duration
	// MaxInFlight bounds the install and uninstall calls running at once per base;
	// DefaultMaxInFlight if zero. Health and queryAllBiz add at most one call each.
	MaxInFlight int
	// MaxRequestBytes caps a heartbeat or baseline query body; DefaultMaxRequestBytes if zero.
	MaxRequestBytes int64
	// MaxResponseBytes caps an arklet answer; DefaultMaxResponseBytes if zero.
	MaxResponseBytes int64
	// ClientRate and ClientBurst bound the requests accepted per client address per
	// second (token bucket); DefaultClientRate and DefaultClientBurst if zero.
	ClientRate  float64
	ClientBurst int
	// MaxBases caps the announced addresses (and tracked client addresses) kept;
	// DefaultMaxBases if zero.
	MaxBases int
	// BaseTTL is how long an announced address is kept without a heartbeat; DefaultBaseTTL
	// if zero.
	BaseTTL time.Duration
	// AllowLoopback accepts a loopback localIP (development: bases on the controller's own
	// machine), the --allow-loopback-base-ip setting.
	AllowLoopback bool
	// AllowForeignAddress accepts a heartbeat whose localIP is not the address it came
	// from (a base behind NAT or a proxy). Off, a heartbeat can only announce its own
	// sender as the address commands go to.
	AllowForeignAddress bool
	// EventBuffer is the capacity of the Events channel; DefaultEventBuffer if zero.
	EventBuffer int
	// BaselineWait bounds how long a baseline query waits for SendBaseline;
	// DefaultBaselineWait if zero.
	BaselineWait time.Duration
	// Now is the clock heartbeats and replies are stamped with; time.Now if nil.
	Now func() time.Time
	// Registerer, if set, receives the tunnel's metrics, all prefixed
	// module_controller_http_tunnel_: requests_total{path,code},
	// messages_dropped_total{reason}, commands_total{command,result}, calls_in_flight.
	Registerer prometheus.Registerer
}

// withDefaults returns c with every zero field defaulted.
func (c Config) withDefaults() Config {
	fieldcheck.FillZero(&c, DefaultConfig())
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// DefaultConfig returns the defaults of the settings of Config; the command
// line's flags default to them.
func DefaultConfig() Config {
	return Config{
		ListenAddress:    DefaultListenAddress,
		InstallTimeout:   DefaultInstallTimeout,
		QueryTimeout:     DefaultQueryTimeout,
		MaxInFlight:      DefaultMaxInFlight,
		MaxRequestBytes:  DefaultMaxRequestBytes,
		MaxResponseBytes: DefaultMaxResponseBytes,
		ClientRate:       DefaultClientRate,
		ClientBurst:      DefaultClientBurst,
		MaxBases:         DefaultMaxBases,
		BaseTTL:          DefaultBaseTTL,
		EventBuffer:      DefaultEventBuffer,
		BaselineWait:     DefaultBaselineWait,
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
	if _, _, err := net.SplitHostPort(c.ListenAddress); err != nil {
		add("ListenAddress", "%q: %v", c.ListenAddress, err)
	}
	errs = append(errs, fieldcheck.TLSFiles(
		fieldcheck.File{Field: "TLSCertFile", Path: c.TLSCertFile},
		fieldcheck.File{Field: "TLSKeyFile", Path: c.TLSKeyFile},
		fieldcheck.File{Field: "ClientCAFile", Path: c.ClientCAFile}, true)...)
	for _, d := range []fieldcheck.Duration{
		{Field: "InstallTimeout", Value: c.InstallTimeout}, {Field: "QueryTimeout", Value: c.QueryTimeout},
		{Field: "BaseTTL", Value: c.BaseTTL}, {Field: "BaselineWait", Value: c.BaselineWait},
	} {
		if d.Value <= 0 {
			add(d.Field, "%s must be positive", d.Value)
		}
	}
	if c.MaxInFlight < 1 {
		add("MaxInFlight", "%d must be positive", c.MaxInFlight)
	}
	if c.MaxRequestBytes < 1 || c.MaxResponseBytes < 1 {
		add("MaxRequestBytes", "%d and {MaxResponseBytes} %d must be positive", c.MaxRequestBytes, c.MaxResponseBytes)
	}
	if c.ClientRate <= 0 || c.ClientBurst < 1 {
		add("ClientRate", "%g and {ClientBurst} %d must be positive", c.ClientRate, c.ClientBurst)
	}
	if c.MaxBases < 1 {
		add("MaxBases", "%d must be positive", c.MaxBases)
	}
	if c.EventBuffer < 1 {
		add("EventBuffer", "%d must be positive", c.EventBuffer)
	}
	return errors.Join(errs...)
}
