package broker

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

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
	select {
	case <-tok.Done():
		return tok.Error()
	case <-t.Context().Done():
		return t.Context().Err()
	case <-time.After(10 * time.Second):
		return errors.New("mqtt operation timed out")
	}
}

func connect(t *testing.T, url string, user, pass string, tlsCfg *tls.Config) (paho.Client, error) {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(t.Name() + rand.Text()[:8]).
		SetUsername(user).SetPassword(pass).SetTLSConfig(tlsCfg).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	c := paho.NewClient(opts)
	if err := wait(t, c.Connect()); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
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
	_, err = connect(t, "tcp://"+b.Addr(), "", "", nil)
	require.NoError(t, err)
	cancel()
	require.NoError(t, <-done)
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
		{"tls without cert", Config{TLS: &tls.Config{MinVersion: tls.VersionTLS12}}, false},
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

func TestNewAddressInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	_, err = New(Config{Address: l.Addr().String()})
	require.Error(t, err)
}
