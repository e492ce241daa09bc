package mqtt

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/certtest"
	"github.com/moduleops/module-controller/pkg/protocol"
)

func TestConfigValidate(t *testing.T) {
	valid := Config{BrokerURL: "tcp://broker.example:1883"}
	dir := t.TempDir()
	pem := func(name string) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, nil, 0o600))
		return path
	}
	ca, cert, key := pem("ca.pem"), pem("c.pem"), pem("k.pem")
	cases := []struct {
		name   string
		mutate func(*Config)
		errs   []string // substrings, one per expected problem
	}{
		{"minimal", func(*Config) {}, nil},
		{"mqtt scheme", func(c *Config) { c.BrokerURL = "mqtt://10.0.0.1:1883" }, nil},
		{"tls with files", func(c *Config) {
			c.BrokerURL = "ssl://broker.example:8883"
			c.TLS = TLSConfig{CAFile: ca, ClientCertFile: cert, ClientKeyFile: key}
		}, nil},
		{"tls with system roots", func(c *Config) { c.BrokerURL = "mqtts://broker.example:8883" }, nil},
		{"upper-case env", func(c *Config) { c.Env = "DEV" }, nil},
		{"empty url", func(c *Config) { c.BrokerURL = "" }, []string{"broker url is empty"}},
		{"bad scheme", func(c *Config) { c.BrokerURL = "http://broker.example:1883" }, []string{"scheme must be one of"}},
		{"no port", func(c *Config) { c.BrokerURL = "tcp://broker.example" }, []string{"want scheme://host:port"}},
		{"no host", func(c *Config) { c.BrokerURL = "tcp://:1883" }, []string{"want scheme://host:port"}},
		{"path", func(c *Config) { c.BrokerURL = "tcp://broker.example:1883/x" }, []string{"without path"}},
		{"credentials in url", func(c *Config) { c.BrokerURL = "tcp://u:hunter2@broker.example:1883" }, []string{"credentials belong"}},
		{"tls files with tcp", func(c *Config) { c.TLS.CAFile = ca }, []string{"is not TLS"}},
		{"missing tls file", func(c *Config) {
			c.BrokerURL = "ssl://broker.example:8883"
			c.TLS.CAFile = filepath.Join(dir, "missing.pem")
		}, []string{"TLS.CAFile " + filepath.Join(dir, "missing.pem") + ": no such file"}},
		{"cert without key", func(c *Config) {
			c.BrokerURL = "ssl://broker.example:8883"
			c.TLS.ClientCertFile = cert
		}, []string{"TLS.ClientCertFile and TLS.ClientKeyFile go together"}},
		{"password without user", func(c *Config) { c.Password = "p" }, []string{"Password set without Username"}},
		{"prefix with separator", func(c *Config) { c.ClientIDPrefix = "a@@@b" }, []string{"must not contain"}},
		{"bad env", func(c *Config) { c.Env = "a/b" }, []string{"invalid env"}},
		{"negative durations", func(c *Config) {
			c.MaxMessageAge, c.KeepAlive, c.ConnectTimeout, c.MaxReconnectInterval = -1, -1, -1, -1
		}, []string{"MaxMessageAge -1ns", "KeepAlive -1ns", "ConnectTimeout -1ns", "MaxReconnectInterval -1ns"}},
		{"sub-second keep-alive", func(c *Config) { c.KeepAlive = time.Millisecond }, []string{"resolution"}},
		{"negative buffer", func(c *Config) { c.EventBuffer = -1 }, []string{"EventBuffer -1 must be positive"}},
		{"message caps", func(c *Config) {
			c.MaxMessageBytes = map[string]int{protocol.SuffixHeartbeat: 4096, protocol.SuffixHealth: protocol.MaxPayloadSize}
		}, nil},
		{"bad message caps", func(c *Config) {
			c.MaxMessageBytes = map[string]int{"base/nope": 1, protocol.SuffixHeartbeat: 0, protocol.SuffixHealth: protocol.MaxPayloadSize + 1}
		}, []string{`"base/nope" is not a base topic suffix`, "base/heart=0 is not", "base/health=1048577 is not"}},
		{"everything wrong at once", func(c *Config) {
			c.BrokerURL, c.Password, c.Env, c.EventBuffer = "", "p", "a b", -3
		}, []string{"broker url is empty", "Password", "invalid env", "EventBuffer"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := valid
			tc.mutate(&c)
			err := c.withDefaults().Validate()
			if len(tc.errs) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			var joined interface{ Unwrap() []error }
			require.True(t, errors.As(err, &joined))
			require.Len(t, joined.Unwrap(), len(tc.errs), "problems: %v", err)
			for _, want := range tc.errs {
				require.Contains(t, err.Error(), want)
			}
			require.NotContains(t, err.Error(), "hunter2")
			_, newErr := New(c)
			require.Error(t, newErr)
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{BrokerURL: "tcp://broker.example:1883"}.withDefaults()
	require.Equal(t, protocol.DefaultEnv, c.Env)
	require.Equal(t, DefaultMaxMessageAge, c.MaxMessageAge)
	require.Equal(t, DefaultEventBuffer, c.EventBuffer)
	require.True(t, strings.HasPrefix(c.clientID(), "koupleless@@@"), c.clientID())

	a, err := New(Config{BrokerURL: "tcp://broker.example:1883"})
	require.NoError(t, err)
	b, err := New(Config{BrokerURL: "tcp://broker.example:1883", Env: "DEV"})
	require.NoError(t, err)
	require.NotEqual(t, a.ClientID(), b.ClientID(), "replicas need distinct client IDs")
	require.Equal(t, "dev", b.Env())
	require.Equal(t, 4096, cap(a.Events()))

	c2, err := New(Config{BrokerURL: "tcp://broker.example:1883", ClientIDPrefix: "mc", ClientID: "replica-0"})
	require.NoError(t, err)
	require.Equal(t, "mc@@@replica-0", c2.ClientID())
}

func TestNewRejectsUnreadableTLSFiles(t *testing.T) {
	ca := certtest.NewCA(t, "ca")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	_, err := New(Config{BrokerURL: "ssl://127.0.0.1:8883", TLS: TLSConfig{CAFile: missing}})
	require.ErrorContains(t, err, "TLS.CAFile "+missing+": no such file")
	_, err = New(Config{BrokerURL: "ssl://127.0.0.1:8883", TLS: TLSConfig{CAFile: ca.CAFile, ClientCertFile: ca.CAFile, ClientKeyFile: ca.CAFile}})
	require.ErrorContains(t, err, "tls client certificate")
}
