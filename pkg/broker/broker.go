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

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
)

// DefaultAddress is where the broker listens when Config.Address is empty:
// loopback only, so nothing is exposed unless the operator asks for it.
const DefaultAddress = "127.0.0.1:1883"

// ErrClosed is returned by Run when the broker was closed before or while running.
var ErrClosed = errors.New("broker closed")

// Config configures a Broker.
type Config struct {
	// Address is the host:port to listen on; port 0 picks a free port
	// (read it back with Broker.Addr). Defaults to DefaultAddress.
	Address string
	// Username and Password, when Username is set, are the only credentials
	// accepted; when Username is empty every client may connect.
	Username string
	Password string
	// TLS, when set, makes the listener speak MQTT over TLS only.
	TLS *tls.Config
}

// Validate reports every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Address != "" {
		if _, _, err := net.SplitHostPort(c.Address); err != nil {
			errs = append(errs, fmt.Errorf("address %q: %w", c.Address, err))
		}
	}
	if c.Username == "" && c.Password != "" {
		errs = append(errs, errors.New("password set without username"))
	}
	if c.TLS != nil && len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil {
		errs = append(errs, errors.New("tls config has no server certificate"))
	}
	return errors.Join(errs...)
}

// Broker is an MQTT 3.1.1/5 broker listening on one address.
type Broker struct {
	server *mqtt.Server
	addr   string
	log    *logHandler

	closeOnce sync.Once
	closed    chan struct{}
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
	s := mqtt.New(&mqtt.Options{
		Logger:       newSlogLogger(h),
		InlineClient: false,
	})
	var err error
	if cfg.Username == "" {
		err = s.AddHook(new(auth.AllowHook), nil)
	} else {
		err = s.AddHook(&credentialsHook{username: []byte(cfg.Username), password: []byte(cfg.Password)}, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("add auth hook: %w", err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "tcp", Address: cfg.Address, TLSConfig: cfg.TLS})
	if err := s.AddListener(l); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Address, err)
	}
	return &Broker{server: s, addr: l.Address(), log: h, closed: make(chan struct{})}, nil
}

// Addr returns the address the broker is bound to, with the real port when
// Config.Address asked for port 0.
func (b *Broker) Addr() string { return b.addr }

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
		_ = b.server.Close()
		close(b.closed)
	})
}

// credentialsHook admits clients presenting exactly one username/password pair
// and lets admitted clients publish and subscribe anywhere.
type credentialsHook struct {
	mqtt.HookBase
	username []byte
	password []byte
}

func (h *credentialsHook) ID() string { return "credentials" }

func (h *credentialsHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck}, []byte{b})
}

func (h *credentialsHook) OnConnectAuthenticate(_ *mqtt.Client, pk packets.Packet) bool {
	userOK := subtle.ConstantTimeCompare(pk.Connect.Username, h.username) == 1
	passOK := subtle.ConstantTimeCompare(pk.Connect.Password, h.password) == 1
	return userOK && passOK
}

func (h *credentialsHook) OnACLCheck(*mqtt.Client, string, bool) bool { return true }
