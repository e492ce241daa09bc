package broker

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
	"golang.org/x/time/rate"

	"github.com/moduleops/module-controller/pkg/fieldcheck"
)

// DefaultAddress is where the broker listens when Config.Address is empty:
// loopback only, so nothing is exposed unless the operator asks for it.
const DefaultAddress = "127.0.0.1:1883"

// DefaultMaxPacketSize bounds every MQTT packet a client may send, checked
// on the fixed header before the packet is read or allocated. The largest
// message of the protocol's real vectors is about 3 KiB (a batch install
// reply for two modules), but install and batch replies carry each biz's
// class path and reach hundreds of KiB for real bases, so the controller
// decodes payloads up to 1 MiB (pkg/protocol.MaxPayloadSize). The broker's
// limit sits above that, so a payload over the controller's cap still
// reaches it and is counted as too large, and anything bigger is cut off at
// the header. deploy/mosquitto/mosquitto.conf sets the same max_packet_size.
const DefaultMaxPacketSize = 2 << 20

// ErrClosed is returned by Run when the broker was closed before or while running.
var ErrClosed = errors.New("broker closed")

// ErrAnonymousNotLoopback is returned by New and Config.Validate for a
// broker without credentials on an address other machines can reach.
var ErrAnonymousNotLoopback = errors.New("an MQTT broker without credentials may listen on loopback only")

// Config configures a Broker.
type Config struct {
	// Address is the host:port to listen on; port 0 picks a free port
	// (read it back with Broker.Addr). Defaults to DefaultAddress.
	Address string
	// Username and Password are one user's credentials, checked in constant
	// time (the controller's own user).
	Username string
	Password string
	// PasswordFile, if set, is a file in mosquitto_passwd format with more
	// users (the bases). It is re-read when it changes; a missing file has
	// no users.
	PasswordFile string
	// With neither Username nor PasswordFile, every client may connect
	// anonymously, which New allows on a loopback Address only.

	// ACL, if set, limits what each client may publish and subscribe to;
	// nil lets every connected client use every topic.
	ACL *ACL
	// MaxPacketSize is the largest packet, in bytes, a client may send; a
	// larger one disconnects the client before it is read. 0 means
	// DefaultMaxPacketSize.
	MaxPacketSize uint32
	// TLS, when set, makes the listener speak MQTT over TLS only.
	TLS *tls.Config
	// LocalAddress, if set, adds a plain listener on a loopback host:port
	// (port 0 picks one; see Broker.LocalAddr) with the same authentication
	// and ACL, for a client in the same process or pod that cannot verify
	// the TLS certificate's host name, such as module-controller's tunnel.
	LocalAddress string
	// Registerer, if set, receives the broker's metrics:
	// module_controller_broker_refused_total{reason} (reason credentials,
	// acl_publish or acl_subscribe) and module_controller_broker_clients.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the defaults of the settings of Config; the command
// line's flags default to them.
func DefaultConfig() Config {
	return Config{Address: DefaultAddress, MaxPacketSize: DefaultMaxPacketSize}
}

// Validate reports every problem with the configuration, each a
// fieldcheck.Error naming its field.
func (c Config) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fieldcheck.Errorf(field, format, args...))
	}
	addr := c.Address
	if addr == "" {
		addr = DefaultAddress
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		add("Address", "%q: %v", c.Address, err)
	} else if c.Username == "" && c.PasswordFile == "" && !IsLoopback(host) {
		add("Address", "%q: %w", addr, ErrAnonymousNotLoopback)
	}
	if c.Username == "" && c.Password != "" {
		add("Password", "set without {Username}")
	}
	if c.Username != "" && c.Password == "" {
		add("Password", "is needed for {Username} %q", c.Username)
	}
	// MQTT's own limit is 268,435,455 bytes (a remaining length of 4 bytes).
	if c.MaxPacketSize != 0 && (c.MaxPacketSize < 1024 || c.MaxPacketSize > 268435455) {
		add("MaxPacketSize", "%d must be at least 1024 and at most 268435455", c.MaxPacketSize)
	}
	if c.LocalAddress != "" {
		if host, _, err := net.SplitHostPort(c.LocalAddress); err != nil {
			add("LocalAddress", "%q: %v", c.LocalAddress, err)
		} else if !IsLoopback(host) {
			add("LocalAddress", "%q is not a loopback address", c.LocalAddress)
		}
	}
	if c.TLS != nil && len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil {
		add("TLS", "has no server certificate")
	}
	return errors.Join(errs...)
}

// IsLoopback reports whether a listen host reaches this machine only:
// "localhost" or a loopback IP. An empty host (every interface) is not.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Broker is an MQTT 3.1.1/5 broker listening on one address.
type Broker struct {
	server *mqtt.Server
	addr   string
	// localAddr is the plain loopback listener's address, if any.
	localAddr string
	log       *logHandler

	anonymous, acl bool          // for the start log line
	users          *passwordFile // nil without a password file

	closeOnce sync.Once
	closed    chan struct{}
	// gate orders Close after every client establishment (see
	// closeSafely.Serve); shared with the listeners.
	gate *gate
}

// New validates cfg, creates the broker and binds its listener, so that a bad
// or busy address is reported here and Addr is known before Run starts.
// The caller must call Run, or Close if it never runs the broker.
func New(cfg Config) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid broker config: %w", err)
	}
	if cfg.Address == "" {
		cfg.Address = DefaultAddress
	}
	h := newLogHandler()
	opts := &mqtt.Options{
		Logger:       newSlogLogger(h),
		InlineClient: false,
		Capabilities: mqtt.NewDefaultServerCapabilities(),
	}
	opts.Capabilities.MaximumPacketSize = cfg.MaxPacketSize
	if opts.Capabilities.MaximumPacketSize == 0 {
		opts.Capabilities.MaximumPacketSize = DefaultMaxPacketSize
	}
	// The protocol needs no retained message; the Koupleless reference
	// controller retained its commands, which replayed installs to every
	// reconnecting base. Retained publishes are delivered but never stored.
	opts.Capabilities.RetainAvailable = 0
	s := mqtt.New(opts)
	hook := &authHook{log: h, acl: cfg.ACL, anonymous: cfg.Username == "" && cfg.PasswordFile == "",
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "module_controller", Name: "broker_refused_total",
			Help: "Connections (bad credentials) and publishes or subscriptions (denied by the ACL) the embedded broker refused.",
		}, []string{"reason"}),
		warnings: rate.NewLimiter(refusalLogRate, refusalLogBurst),
	}
	for _, reason := range []string{refusedCredentials, refusedPublish, refusedSubscribe} {
		hook.refused.WithLabelValues(reason)
	}
	if cfg.Registerer != nil {
		clients := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "module_controller", Name: "broker_clients",
			Help: "MQTT clients connected to the embedded broker.",
		}, func() float64 { return float64(atomic.LoadInt64(&s.Info.ClientsConnected)) })
		if err := errors.Join(cfg.Registerer.Register(hook.refused), cfg.Registerer.Register(clients)); err != nil {
			return nil, fmt.Errorf("register broker metrics: %w", err)
		}
	}
	if cfg.Username != "" {
		hook.username, hook.password = []byte(cfg.Username), []byte(cfg.Password)
	}
	if cfg.PasswordFile != "" {
		pf, err := newPasswordFile(cfg.PasswordFile)
		if err != nil {
			return nil, err
		}
		hook.users = pf
	}
	if err := s.AddHook(hook, nil); err != nil {
		return nil, fmt.Errorf("add auth hook: %w", err)
	}
	gate := &gate{conns: map[net.Conn]struct{}{}}
	l := closeSafely{listeners.NewTCP(listeners.Config{ID: "tcp", Address: cfg.Address, TLSConfig: cfg.TLS}), s, gate}
	if err := s.AddListener(l); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Address, err)
	}
	var localAddr string
	if cfg.LocalAddress != "" {
		local := closeSafely{listeners.NewTCP(listeners.Config{ID: "local", Address: cfg.LocalAddress}), s, gate}
		if err := s.AddListener(local); err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("listen on %s: %w", cfg.LocalAddress, err)
		}
		localAddr = local.Address()
	}
	return &Broker{server: s, addr: l.Address(), localAddr: localAddr, log: h, anonymous: hook.anonymous, acl: cfg.ACL != nil, users: hook.users, closed: make(chan struct{}), gate: gate}, nil
}

// Addr returns the address the broker is bound to, with the real port when
// Config.Address asked for port 0.
func (b *Broker) Addr() string { return b.addr }

// LocalAddr returns the address of the plain loopback listener of
// Config.LocalAddress, or "" without one.
func (b *Broker) LocalAddr() string { return b.localAddr }

// Run serves MQTT clients until ctx is cancelled, then disconnects them and
// releases the address. It returns nil on cancellation and ErrClosed if the
// broker was closed. Run may be called once.
func (b *Broker) Run(ctx context.Context) error {
	select {
	case <-b.closed:
		return ErrClosed
	default:
	}
	b.log.setContext(ctx)
	logger := vklog.G(ctx).WithField("addr", b.addr)
	if err := b.server.Serve(); err != nil {
		b.Close()
		return fmt.Errorf("serve mqtt: %w", err)
	}
	logger = logger.WithField("anonymous", b.anonymous).WithField("acl", b.acl)
	if b.users != nil {
		logger = logger.WithField("passwordFileUsers", b.users.len())
	}
	logger.Info("mqtt broker listening")
	select {
	case <-ctx.Done():
		b.Close()
		logger.Info("mqtt broker stopped")
		return nil
	case <-b.closed:
		return ErrClosed
	}
}

// Close disconnects all clients and releases the address. It is safe to call
// more than once and concurrently with Run.
func (b *Broker) Close() {
	b.closeOnce.Do(func() {
		// mochi's Close always returns nil; it closes the listener and clients.
		// Clients hear why they are disconnected before their
		// connections close.
		for _, cl := range b.server.Clients.GetAll() {
			if !cl.Closed() {
				_ = b.server.DisconnectClient(cl, packets.ErrServerShuttingDown)
			}
		}
		b.gate.shut()
		_ = b.server.Close()
		b.gate.sessions.Unlock()
		close(b.closed)
	})
}

// closeSafely is a TCP listener whose Close disconnects its clients without
// mochi's Clients.GetByListener, which takes the clients' read lock twice:
// a client connecting or leaving at that moment (a writer waiting between
// the two) deadlocks the broker's Close for good. It was seen in CI, a
// shutdown hanging for ten minutes. GetAll takes the lock once.
type closeSafely struct {
	*listeners.TCP
	server *mqtt.Server
	gate   *gate
}

// gate orders mochi's Server.Close after every client session: Close writes
// server state that an establishing client reads, with nothing ordering the
// two (the race detector flagged it in CI, at the start and at the end of a
// session). Each session holds sessions for reading from before mochi sees
// the connection until it ends; shut refuses new connections, closes the
// open ones so their sessions end, and then holds sessions for writing.
type gate struct {
	sessions sync.RWMutex
	mu       sync.Mutex
	closing  bool
	conns    map[net.Conn]struct{}
}

// enter registers a new connection's session; false when closing.
func (g *gate) enter(c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return false
	}
	g.sessions.RLock()
	g.conns[c] = struct{}{}
	return true
}

// leave ends a session entered with enter.
func (g *gate) leave(c net.Conn) {
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
	g.sessions.RUnlock()
}

// shut refuses new connections, closes the open ones and waits for their
// sessions to end; it returns holding sessions for writing.
func (g *gate) shut() {
	g.mu.Lock()
	g.closing = true
	for c := range g.conns {
		_ = c.Close()
	}
	g.mu.Unlock()
	g.sessions.Lock()
}

// Serve accepts connections and runs each client's session inside the gate.
func (l closeSafely) Serve(establish listeners.EstablishFn) {
	l.TCP.Serve(func(id string, c net.Conn) error {
		if !l.gate.enter(c) {
			_ = c.Close()
			return ErrClosed
		}
		defer l.gate.leave(c)
		return establish(id, c)
	})
}

// Close stops the listener and disconnects the clients it accepted.
func (l closeSafely) Close(listeners.CloseFn) {
	l.TCP.Close(func(id string) {
		for _, cl := range l.server.Clients.GetAll() {
			if cl.Net.Listener == id && !cl.Closed() {
				_ = l.server.DisconnectClient(cl, packets.ErrServerShuttingDown)
			}
		}
	})
}

// Refusal reasons, the label values of module_controller_broker_refused_total.
const (
	refusedCredentials = "credentials"
	refusedPublish     = "acl_publish"
	refusedSubscribe   = "acl_subscribe"
)

// A client refused again and again (a misconfigured base, a hostile one)
// must not flood the log: refusals are logged at this rate, all counted.
const (
	refusalLogRate  = rate.Limit(1)
	refusalLogBurst = 20
)

// authHook authenticates clients against the configured user and password
// file (or admits everyone when anonymous) and checks every publish and
// subscription against the ACL.
type authHook struct {
	mqtt.HookBase
	log                *logHandler
	anonymous          bool
	username, password []byte
	users              *passwordFile
	acl                *ACL
	refused            *prometheus.CounterVec
	warnings           *rate.Limiter
}

func (h *authHook) ID() string { return "auth" }

func (h *authHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck}, []byte{b})
}

func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	if h.anonymous {
		return true
	}
	if h.username != nil {
		userOK := subtle.ConstantTimeCompare(pk.Connect.Username, h.username) == 1
		passOK := subtle.ConstantTimeCompare(pk.Connect.Password, h.password) == 1
		if userOK && passOK {
			return true
		}
	}
	if h.users != nil {
		ok, changed, err := h.users.verify(string(pk.Connect.Username), pk.Connect.Password)
		logger := h.log.logger()
		if err != nil && changed {
			logger.WithError(err).Error("cannot read the mqtt password file; keeping the users read before")
		} else if changed {
			logger.WithField("users", h.users.len()).Info("mqtt password file reloaded")
		}
		if ok {
			return true
		}
	}
	h.refused.WithLabelValues(refusedCredentials).Inc()
	if h.warnings.Allow() {
		h.log.logger().WithField("user", string(pk.Connect.Username)).WithField("clientID", cl.ID).
			WithField("remote", cl.Net.Remote).Warn("mqtt client refused: bad credentials")
	}
	return false
}

func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if h.acl == nil {
		return true
	}
	if h.acl.Allowed(string(cl.Properties.Username), cl.ID, topic, write) {
		return true
	}
	access, reason := "read", refusedSubscribe
	if write {
		access, reason = "write", refusedPublish
	}
	h.refused.WithLabelValues(reason).Inc()
	if h.warnings.Allow() {
		h.log.logger().WithField("user", string(cl.Properties.Username)).WithField("clientID", cl.ID).
			WithField("topic", topic).WithField("access", access).Warn("mqtt access denied by the acl")
	}
	return false
}
