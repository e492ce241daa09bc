package framework

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/moduleops/module-controller/pkg/broker"
)

// BrokerKind selects the MQTT broker implementation.
type BrokerKind string

const (
	// Embedded is pkg/broker (mochi-mqtt) running inside the test process,
	// the broker module-controller serves by default.
	Embedded BrokerKind = "embedded"
	// Mosquitto is Debian's mosquitto binary run as a child process, the
	// kind of external broker production bases usually talk to.
	Mosquitto BrokerKind = "mosquitto"
)

// BrokerKinds lists every kind, for tests that run against each.
var BrokerKinds = []BrokerKind{Embedded, Mosquitto}

// MosquittoPath is where Debian's mosquitto package installs the broker; it is
// used when `mosquitto` is not on PATH (/usr/sbin often is not for non-root).
const MosquittoPath = "/usr/sbin/mosquitto"

// ErrMosquittoMissing is returned when the mosquitto binaries are not installed.
var ErrMosquittoMissing = errors.New("mosquitto not installed: run `apt-get install -y mosquitto`")

// brokerStartTimeout bounds waiting for a broker to accept connections.
const brokerStartTimeout = 30 * time.Second

// BrokerOption configures StartBroker and LaunchBroker.
type BrokerOption func(*brokerOptions)

type brokerOptions struct {
	username, password string
	tls                bool
	users              [][2]string // further username/password pairs (mosquitto only)
	aclFile            string      // mosquitto acl_file (mosquitto only)
}

// WithAuth makes the broker accept only this username and password.
func WithAuth(username, password string) BrokerOption {
	return func(o *brokerOptions) { o.username, o.password = username, password }
}

// WithUser adds one more accepted username and password to those of
// WithAuth, which it requires. Mosquitto only.
func WithUser(username, password string) BrokerOption {
	return func(o *brokerOptions) { o.users = append(o.users, [2]string{username, password}) }
}

// WithACLFile makes the broker enforce a mosquitto ACL file (acl_file), such
// as the one deploy/mosquitto ships. Mosquitto only.
func WithACLFile(path string) BrokerOption {
	return func(o *brokerOptions) { o.aclFile = path }
}

// WithTLS makes the broker speak MQTT over TLS only, with a server
// certificate for 127.0.0.1 signed by a fresh CA (Broker.CAFile).
func WithTLS() BrokerOption {
	return func(o *brokerOptions) { o.tls = true }
}

// Broker is a running MQTT broker on a free loopback port.
type Broker struct {
	Kind BrokerKind
	// URL is what an MQTT client dials: tcp://127.0.0.1:<port>, or
	// ssl://127.0.0.1:<port> with TLS.
	URL string
	// Address is host:port.
	Address string
	// CAFile is the PEM CA that signed the server certificate (TLS only).
	CAFile string
	// TLSConfig is a client configuration trusting CAFile (TLS only).
	TLSConfig *tls.Config
	// Username and Password are the accepted credentials (WithAuth only).
	Username string
	Password string

	mu      sync.Mutex
	backend brokerBackend
}

// brokerBackend is one broker implementation that can be stopped and started
// again on the same address.
type brokerBackend interface {
	start(ctx context.Context) error
	stop() error
	pid() int
	logTail(lines int) string
}

// LaunchBroker starts a broker of the given kind whose files (config,
// certificates, log) live in dir, and waits until it accepts connections.
// ctx bounds the start only; the broker runs until Stop.
func LaunchBroker(ctx context.Context, dir string, kind BrokerKind, opts ...BrokerOption) (*Broker, error) {
	var o brokerOptions
	for _, opt := range opts {
		opt(&o)
	}
	if kind != Mosquitto && (len(o.users) > 0 || o.aclFile != "") {
		return nil, fmt.Errorf("WithUser and WithACLFile need a %s broker", Mosquitto)
	}
	if len(o.users) > 0 && o.username == "" {
		return nil, errors.New("WithUser needs WithAuth")
	}
	b := &Broker{Kind: kind, Username: o.username, Password: o.password}
	scheme := "tcp"
	var serverTLS *keyPair
	if o.tls {
		scheme = "ssl"
		ca, err := newCertAuthority("module-controller-e2e-mqtt-ca")
		if err != nil {
			return nil, err
		}
		kp, err := ca.issue(certRequest{commonName: "mqtt-broker", hosts: []string{"127.0.0.1", "localhost"}})
		if err != nil {
			return nil, err
		}
		serverTLS = &kp
		b.CAFile = filepath.Join(dir, "mqtt-ca.crt")
		if err := os.WriteFile(b.CAFile, ca.certPEM, 0o600); err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca.cert)
		b.TLSConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	var serverCfg *tls.Config
	if serverTLS != nil {
		cert, err := tls.X509KeyPair(serverTLS.certPEM, serverTLS.keyPEM)
		if err != nil {
			return nil, err
		}
		serverCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}

	switch kind {
	case Embedded:
		// In process the listener binds port 0 itself: no race for the port.
		e := &embeddedBroker{cfg: broker.Config{Address: "127.0.0.1:0", Username: o.username, Password: o.password, TLS: serverCfg}}
		if err := e.start(ctx); err != nil {
			return nil, err
		}
		b.Address = e.cfg.Address
		b.backend = e
	case Mosquitto:
		// The free port is released before mosquitto binds it; if another
		// process takes it in between, try another one.
		for attempt := 1; ; attempt++ {
			ports, err := freePorts(1)
			if err != nil {
				return nil, err
			}
			b.Address = hostPort(ports[0])
			m, err := newMosquitto(dir, b.Address, o, serverTLS)
			if err != nil {
				return nil, err
			}
			err = m.start(ctx)
			if err == nil {
				b.backend = m
				break
			}
			if !errors.Is(err, errPortInUse) || attempt == maxStartAttempts {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("unknown broker kind %q", kind)
	}
	b.URL = scheme + "://" + b.Address
	return b, nil
}

// Stop stops the broker and waits until it has released its port. It is idempotent.
func (b *Broker) Stop() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.backend.stop()
}

// Restart stops the broker and starts it again on the same address, dropping
// every client connection and all session state, and waits until it accepts
// connections again. ctx bounds the wait.
func (b *Broker) Restart(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.backend.stop(); err != nil {
		return err
	}
	return b.backend.start(ctx)
}

// Start starts a stopped broker again on the same address, with no session
// state, and waits until it accepts connections; ctx bounds the wait. Stop
// then Start is an outage of any length.
func (b *Broker) Start(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.backend.start(ctx)
}

// PID is the broker process's ID (mosquitto), or 0 when the broker runs
// inside the test process or is stopped.
func (b *Broker) PID() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.backend.pid()
}

// LogTail returns the last lines of the broker's log (mosquitto only).
func (b *Broker) LogTail(lines int) string { return b.backend.logTail(lines) }

// embeddedBroker runs pkg/broker in this process.
type embeddedBroker struct {
	cfg    broker.Config
	cancel context.CancelFunc
	done   chan error
}

func (e *embeddedBroker) start(ctx context.Context) error {
	var (
		br  *broker.Broker
		err error
	)
	// After a restart the old listener is closed, but retry briefly in case
	// the kernel has not released the port yet.
	if err := retryUntil(ctx, func() error {
		br, err = broker.New(e.cfg)
		return err
	}); err != nil {
		return fmt.Errorf("start embedded broker: %w", err)
	}
	e.cfg.Address = br.Addr() // a restart binds the same port again
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancel, e.done = cancel, make(chan error, 1)
	go func() { e.done <- br.Run(runCtx) }()
	return nil
}

func (e *embeddedBroker) stop() error {
	if e.cancel == nil {
		return nil
	}
	e.cancel()
	err := <-e.done
	e.cancel, e.done = nil, nil
	return err
}

func (e *embeddedBroker) pid() int { return 0 }

func (e *embeddedBroker) logTail(int) string {
	return "(embedded broker logs go to the test process's logger)\n"
}

// mosquittoBroker runs Debian's mosquitto as a child process.
type mosquittoBroker struct {
	bin, config, logPath, address string
	proc                          *process
}

func newMosquitto(dir, address string, o brokerOptions, serverTLS *keyPair) (*mosquittoBroker, error) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = MosquittoPath
	}
	if err := checkBinaries(filepath.Dir(bin), filepath.Base(bin)); err != nil {
		return nil, ErrMosquittoMissing
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "listener %s %s\n", port, host)
	conf.WriteString("persistence false\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\nconnection_messages true\n")
	if os.Geteuid() == 0 {
		// Run as root, mosquitto drops to user "mosquitto", which cannot read
		// the test's private temp dir; stay the current user instead.
		u, err := user.Current()
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&conf, "user %s\n", u.Username)
	}
	if o.username != "" {
		pwFile := filepath.Join(dir, "mosquitto.passwd")
		pw, err := exec.LookPath("mosquitto_passwd")
		if err != nil {
			return nil, ErrMosquittoMissing
		}
		if out, err := exec.Command(pw, "-c", "-b", pwFile, o.username, o.password).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("mosquitto_passwd: %w: %s", err, out)
		}
		for _, u := range o.users {
			if out, err := exec.Command(pw, "-b", pwFile, u[0], u[1]).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("mosquitto_passwd: %w: %s", err, out)
			}
		}
		fmt.Fprintf(&conf, "allow_anonymous false\npassword_file %s\n", pwFile)
	} else {
		conf.WriteString("allow_anonymous true\n")
	}
	if o.aclFile != "" {
		fmt.Fprintf(&conf, "acl_file %s\n", o.aclFile)
	}
	if serverTLS != nil {
		certFile, keyFile, err := serverTLS.write(filepath.Join(dir, "mosquitto-server"))
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&conf, "cafile %s\ncertfile %s\nkeyfile %s\ntls_version tlsv1.2\n", filepath.Join(dir, "mqtt-ca.crt"), certFile, keyFile)
	}
	m := &mosquittoBroker{
		bin:     bin,
		config:  filepath.Join(dir, "mosquitto.conf"),
		logPath: filepath.Join(dir, "mosquitto.log"),
		address: address,
	}
	return m, os.WriteFile(m.config, []byte(conf.String()), 0o600)
}

func (m *mosquittoBroker) start(ctx context.Context) error {
	// The log is kept across restarts; this start's lines begin at offset.
	var offset int64
	if st, err := os.Stat(m.logPath); err == nil {
		offset = st.Size()
	}
	p, err := startProcess("mosquitto", m.bin, []string{"-c", m.config}, m.logPath)
	if err != nil {
		return err
	}
	m.proc = p
	err = retryUntil(ctx, func() error {
		if p.exited() {
			if p.lostPort() {
				return errStop{fmt.Errorf("%w: %w", errPortInUse, p.exitError())}
			}
			return errStop{p.exitError()}
		}
		// mosquitto logs "running" once every listener is open; a bare dial
		// could reach another process that took the port.
		if !logContainsAfter(m.logPath, offset, " running") {
			return errors.New("mosquitto not running yet")
		}
		conn, err := net.DialTimeout("tcp", m.address, time.Second)
		if err != nil {
			return err
		}
		return conn.Close()
	})
	if err != nil {
		_ = m.stop()
		return fmt.Errorf("start mosquitto: %w", err)
	}
	return nil
}

func (m *mosquittoBroker) stop() error {
	if m.proc == nil {
		return nil
	}
	err := m.proc.stop(DefaultStopGrace)
	m.proc = nil
	return err
}

func (m *mosquittoBroker) pid() int {
	if m.proc == nil {
		return 0
	}
	return m.proc.pid()
}

func (m *mosquittoBroker) logTail(lines int) string { return tailFile(m.logPath, lines) }

// logContainsAfter reports whether the file contains substr after offset.
func logContainsAfter(path string, offset int64, substr string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer func() { _ = f.Close() }()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return false
	}
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	return err == nil && strings.Contains(string(data), substr)
}

// errStop ends retryUntil early with the wrapped error.
type errStop struct{ error }

func (e errStop) Unwrap() error { return e.error }

// brokerPollInterval is short: mosquitto is up in a few milliseconds.
const brokerPollInterval = 50 * time.Millisecond

// retryUntil calls f every brokerPollInterval until it returns nil or an errStop,
// or brokerStartTimeout or ctx ends.
func retryUntil(ctx context.Context, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, brokerStartTimeout)
	defer cancel()
	t := time.NewTicker(brokerPollInterval)
	defer t.Stop()
	for {
		err := f()
		var stop errStop
		if err == nil || errors.As(err, &stop) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-t.C:
		}
	}
}
