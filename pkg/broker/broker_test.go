package broker

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/broker/mqtttest"
	"github.com/moduleops/module-controller/pkg/certtest"
)

// start runs a broker for the test's lifetime and waits for Run to return on cleanup.
func start(t *testing.T, cfg Config) *Broker {
	t.Helper()
	b, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return b
}

func wait(t *testing.T, tok paho.Token) error {
	t.Helper()
	return mqtttest.Wait(t, tok)
}

func connect(t *testing.T, url string, user, pass string, tlsCfg *tls.Config) (paho.Client, error) {
	t.Helper()
	return mqtttest.Connect(t, mqtttest.Options(url, "broker-test-").SetUsername(user).SetPassword(pass).SetTLSConfig(tlsCfg))
}

// roundTrip subscribes and publishes one QoS 1 message on a random topic.
func roundTrip(t *testing.T, c paho.Client) {
	t.Helper()
	topic := "test/" + rand.Text()
	got := make(chan []byte, 1)
	require.NoError(t, wait(t, c.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) { got <- m.Payload() })))
	require.NoError(t, wait(t, c.Publish(topic, 1, false, []byte("hello"))))
	select {
	case p := <-got:
		require.Equal(t, "hello", string(p))
	case <-time.After(10 * time.Second):
		t.Fatal("message not delivered")
	}
}

func TestBrokerAnonymous(t *testing.T) {
	b := start(t, Config{Address: "127.0.0.1:0"})
	_, port, err := net.SplitHostPort(b.Addr())
	require.NoError(t, err)
	require.NotEqual(t, "0", port)
	c, err := connect(t, "tcp://"+b.Addr(), "", "", nil)
	require.NoError(t, err)
	roundTrip(t, c)
}

func TestBrokerCredentials(t *testing.T) {
	b := start(t, Config{Address: "127.0.0.1:0", Username: "base", Password: "s3cret"})
	tests := []struct {
		name, user, pass string
		ok               bool
	}{
		{"valid", "base", "s3cret", true},
		{"wrong password", "base", "nope", false},
		{"anonymous", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := connect(t, "tcp://"+b.Addr(), tc.user, tc.pass, nil)
			if !tc.ok {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			roundTrip(t, c)
		})
	}
}

func TestBrokerTLS(t *testing.T) {
	ca := certtest.NewCA(t, "test-ca")
	_, _, serverCert := ca.Server("broker")
	b := start(t, Config{Address: "127.0.0.1:0", TLS: &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12}})
	c, err := connect(t, "ssl://"+b.Addr(), "", "", &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12})
	require.NoError(t, err)
	roundTrip(t, c)

	_, err = connect(t, "ssl://"+b.Addr(), "", "", &tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12})
	require.Error(t, err, "a client that does not trust the CA must not connect")
}

func TestBrokerRunStopsOnCancel(t *testing.T) {
	b, err := New(Config{Address: "127.0.0.1:0"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	c, err := connect(t, "tcp://"+b.Addr(), "", "", nil)
	require.NoError(t, err)
	cancel()
	require.NoError(t, <-done)
	require.Eventually(t, func() bool { return !c.IsConnectionOpen() }, 10*time.Second, 10*time.Millisecond,
		"closing the broker disconnects its clients")
	_, err = net.DialTimeout("tcp", b.Addr(), time.Second)
	require.Error(t, err, "address must be released after Run returns")
	require.ErrorIs(t, b.Run(t.Context()), ErrClosed)
}

func TestBrokerCloseWithoutRun(t *testing.T) {
	b, err := New(Config{Address: "127.0.0.1:0"})
	require.NoError(t, err)
	b.Close()
	b.Close()
	// The port is free again: a new broker can bind it.
	b2, err := New(Config{Address: b.Addr()})
	require.NoError(t, err)
	b2.Close()
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero", Config{}, true},
		{"bad address", Config{Address: "nope"}, false},
		{"password without user", Config{Password: "x"}, false},
		{"user without password", Config{Username: "u"}, false},
		{"packet size too small", Config{MaxPacketSize: 100}, false},
		{"tls without cert", Config{TLS: &tls.Config{MinVersion: tls.VersionTLS12}}, false},
		{"anonymous on every interface", Config{Address: ":1883"}, false},
		{"anonymous on a host name", Config{Address: "broker.example:1883"}, false},
		{"anonymous on localhost", Config{Address: "localhost:1883"}, true},
		{"anonymous on IPv6 loopback", Config{Address: "[::1]:1883"}, true},
		{"credentials on every interface", Config{Address: ":1883", Username: "u", Password: "p"}, true},
		{"password file on every interface", Config{Address: ":1883", PasswordFile: "/nonexistent"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
}

func TestNewRefusesAnonymousOnEveryInterface(t *testing.T) {
	_, err := New(Config{Address: ":0"})
	require.ErrorIs(t, err, ErrAnonymousNotLoopback)
}

func TestNewAddressInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	_, err = New(Config{Address: l.Addr().String()})
	require.Error(t, err)
}

// kouplelessACL is the shape of the ACL module-controller gives the broker.
const kouplelessACL = `
pattern write koupleless_e/%u/base/heart
pattern read koupleless_e/%u/+
user ctl
topic readwrite koupleless_e/#
`

func TestBrokerACL(t *testing.T) {
	acl, err := ParseACL(kouplelessACL)
	require.NoError(t, err)
	pwFile := filepath.Join(t.TempDir(), "passwd")
	require.NoError(t, os.WriteFile(pwFile, []byte(mosquittoLine+"\n"), 0o600))
	reg := prometheus.NewPedanticRegistry()
	b := start(t, Config{Address: "127.0.0.1:0", Username: "ctl", Password: "ctlpw", PasswordFile: pwFile, ACL: acl, Registerer: reg})
	url := "tcp://" + b.Addr()

	_, err = connect(t, url, "", "", nil)
	require.Error(t, err, "anonymous client")
	_, err = connect(t, url, "base1", "wrong", nil)
	require.Error(t, err, "wrong password")
	_, err = connect(t, url, "ctl", "s3cret", nil)
	require.Error(t, err, "the controller's user with a base's password")

	ctl, err := connect(t, url, "ctl", "ctlpw", nil)
	require.NoError(t, err)
	heartbeats := make(chan string, 10)
	require.NoError(t, wait(t, ctl.Subscribe("koupleless_e/+/base/heart", 1, func(_ paho.Client, m paho.Message) { heartbeats <- m.Topic() })))

	base, err := connect(t, url, "base1", "s3cret", nil)
	require.NoError(t, err)
	commands := make(chan string, 10)
	require.NoError(t, wait(t, base.Subscribe("koupleless_e/base1/+", 1, func(_ paho.Client, m paho.Message) { commands <- m.Topic() })))
	require.NoError(t, wait(t, base.Publish("koupleless_e/base1/base/heart", 1, false, []byte("{}"))))
	require.Equal(t, "koupleless_e/base1/base/heart", receive(t, heartbeats))
	require.NoError(t, wait(t, ctl.Publish("koupleless_e/base1/installBiz", 1, false, []byte("{}"))))
	require.Equal(t, "koupleless_e/base1/installBiz", receive(t, commands))

	// A subscription wider than the base's own commands is refused.
	tok := base.Subscribe("koupleless_e/+/installBiz", 1, func(paho.Client, paho.Message) {})
	require.NoError(t, wait(t, tok))
	require.Equal(t, []byte{0x80}, subackCodes(tok), "subscription outside the base's topics is refused")

	// A QoS 1 heartbeat as another identity is refused: an MQTT 3.1.1 client is disconnected.
	spoofer, err := connect(t, url, "base1", "s3cret", nil)
	require.NoError(t, err)
	require.Error(t, wait(t, spoofer.Publish("koupleless_e/base2/base/heart", 1, false, []byte("{}"))))
	require.Eventually(t, func() bool { return !spoofer.IsConnectionOpen() }, 10*time.Second, 10*time.Millisecond)

	// Nor may a base command a base.
	other, err := connect(t, url, "base1", "s3cret", nil)
	require.NoError(t, err)
	_ = wait(t, other.Publish("koupleless_e/base1/installBiz", 1, false, []byte("{}")))
	require.Eventually(t, func() bool { return !other.IsConnectionOpen() }, 10*time.Second, 10*time.Millisecond)

	// The controller's own messages still flow, and nothing refused got through.
	require.NoError(t, wait(t, base.Publish("koupleless_e/base1/base/heart", 1, false, []byte("{}"))))
	require.Equal(t, "koupleless_e/base1/base/heart", receive(t, heartbeats))
	require.Empty(t, heartbeats)
	require.NoError(t, wait(t, ctl.Publish("koupleless_e/base1/health", 1, false, []byte("{}"))))
	require.Equal(t, "koupleless_e/base1/health", receive(t, commands))
	require.Empty(t, commands)

	// Every refusal is counted: three refused connections (paho tries each
	// twice, MQTT 3.1.1 then 3.1), one subscription, two publishes.
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP module_controller_broker_refused_total Connections (bad credentials) and publishes or subscriptions (denied by the ACL) the embedded broker refused.
# TYPE module_controller_broker_refused_total counter
module_controller_broker_refused_total{reason="acl_publish"} 2
module_controller_broker_refused_total{reason="acl_subscribe"} 1
module_controller_broker_refused_total{reason="credentials"} 6
`), "module_controller_broker_refused_total"))
	clients, err := testutil.GatherAndCount(reg, "module_controller_broker_clients")
	require.NoError(t, err)
	require.Equal(t, 1, clients)
}

func subackCodes(tok paho.Token) []byte {
	st, ok := tok.(*paho.SubscribeToken)
	if !ok {
		return nil
	}
	var codes []byte
	for _, c := range st.Result() {
		codes = append(codes, c)
	}
	return codes
}

func receive(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("message not delivered")
		return ""
	}
}

func TestBrokerMaxPacketSize(t *testing.T) {
	b := start(t, Config{Address: "127.0.0.1:0", MaxPacketSize: 4096})
	c, err := connect(t, "tcp://"+b.Addr(), "", "", nil)
	require.NoError(t, err)
	roundTrip(t, c)
	_ = wait(t, c.Publish("test/big", 1, false, make([]byte, 5000)))
	require.Eventually(t, func() bool { return !c.IsConnectionOpen() }, 10*time.Second, 10*time.Millisecond,
		"a client sending a packet over the limit is disconnected")

	// Just under the limit passes.
	c2, err := connect(t, "tcp://"+b.Addr(), "", "", nil)
	require.NoError(t, err)
	got := make(chan string, 1)
	require.NoError(t, wait(t, c2.Subscribe("test/ok", 1, func(_ paho.Client, m paho.Message) { got <- m.Topic() })))
	require.NoError(t, wait(t, c2.Publish("test/ok", 1, false, make([]byte, 4000))))
	require.Equal(t, "test/ok", receive(t, got))
}

func TestBrokerDefaultMaxPacketSize(t *testing.T) {
	b := start(t, Config{Address: "127.0.0.1:0"})
	c, err := connect(t, "tcp://"+b.Addr(), "", "", nil)
	require.NoError(t, err)
	_ = wait(t, c.Publish("test/big", 1, false, make([]byte, DefaultMaxPacketSize)))
	require.Eventually(t, func() bool { return !c.IsConnectionOpen() }, 10*time.Second, 10*time.Millisecond)
}

func TestBrokerRetainNotStored(t *testing.T) {
	b := start(t, Config{Address: "127.0.0.1:0"})
	c, err := connect(t, "tcp://"+b.Addr(), "", "", nil)
	require.NoError(t, err)
	require.NoError(t, wait(t, c.Publish("koupleless_e/base1/installBiz", 1, true, []byte("{}"))))
	// A subscriber arriving later gets nothing retained; a fresh publish
	// after subscribing is delivered first, so nothing came before it.
	got := make(chan string, 2)
	require.NoError(t, wait(t, c.Subscribe("koupleless_e/base1/+", 1, func(_ paho.Client, m paho.Message) { got <- m.Topic() })))
	require.NoError(t, wait(t, c.Publish("koupleless_e/base1/health", 1, false, []byte("{}"))))
	require.Equal(t, "koupleless_e/base1/health", receive(t, got))
}

func TestBrokerTLSWithLocalListener(t *testing.T) {
	ca := certtest.NewCA(t, "test-ca")
	_, _, serverCert := ca.Server("broker")
	b := start(t, Config{Address: "127.0.0.1:0", LocalAddress: "127.0.0.1:0", Username: "ctl", Password: "pw",
		TLS: &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12}})
	require.NotEmpty(t, b.LocalAddr())
	require.NotEqual(t, b.Addr(), b.LocalAddr())
	_, err := connect(t, "tcp://"+b.Addr(), "ctl", "pw", nil)
	require.Error(t, err, "the main listener is TLS only")
	c, err := connect(t, "tcp://"+b.LocalAddr(), "ctl", "pw", nil)
	require.NoError(t, err)
	roundTrip(t, c)
	_, err = connect(t, "tcp://"+b.LocalAddr(), "", "", nil)
	require.Error(t, err, "the local listener authenticates too")

	_, err = New(Config{Address: "127.0.0.1:0", LocalAddress: ":0", Username: "u", Password: "p"})
	require.ErrorContains(t, err, "not a loopback address")
}

// A connection that never sends CONNECT must not hold up Close: Close waits
// for every client session, so it closes the connections it accepted.
func TestCloseEndsSessionsThatNeverConnected(t *testing.T) {
	b, err := New(Config{Address: "127.0.0.1:0"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", b.Addr())
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	}, 5*time.Second, 10*time.Millisecond)
	silent, err := net.Dial("tcp", b.Addr())
	require.NoError(t, err)
	defer func() { _ = silent.Close() }()
	// Its session has started once the gate holds it alone (the probes'
	// sessions end when they are closed).
	require.Eventually(t, func() bool {
		b.gate.mu.Lock()
		defer b.gate.mu.Unlock()
		return len(b.gate.conns) == 1
	}, 5*time.Second, 10*time.Millisecond)

	closed := make(chan struct{})
	go func() { b.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close is still waiting for a connection that never sent CONNECT")
	}
	require.ErrorIs(t, <-done, ErrClosed)
	// The broker closed its side: reading ends.
	require.NoError(t, silent.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = silent.Read(make([]byte, 1))
	require.Error(t, err)
	require.NotErrorIs(t, err, os.ErrDeadlineExceeded)
}
