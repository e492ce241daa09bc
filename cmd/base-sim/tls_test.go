package main

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/broker"
	"github.com/moduleops/module-controller/pkg/certtest"
)

// TestRunWithTLSAndAuth drives the CLI path an operator uses against a
// production-like broker: --ca-file turns the tcp:// URL into TLS, the user
// comes from --username and the password from $MQTT_PASSWORD.
func TestRunWithTLSAndAuth(t *testing.T) {
	ca := certtest.NewCA(t, "base-sim test ca")
	_, _, serverCert := ca.Server("broker")
	caFile := ca.CAFile
	b, err := broker.New(broker.Config{
		Address: "127.0.0.1:0", Username: "sim", Password: "secret",
		TLS: &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12},
	})
	require.NoError(t, err)
	go func() { _ = b.Run(t.Context()) }()
	t.Cleanup(b.Close)

	pool := ca.Pool()
	seen := watchHeartbeats(t, "ssl://"+b.Addr(), func(o *paho.ClientOptions) {
		o.SetTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}).SetUsername("sim").SetPassword("secret")
	})

	cli := func(password string, args ...string) options {
		var o options
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		o.addFlags(fs)
		require.NoError(t, fs.Parse(args))
		o.applyEnv(fs, func(k string) string {
			if k == envPassword {
				return password
			}
			return ""
		})
		return o
	}
	args := []string{"--broker=tcp://" + b.Addr(), "--ca-file=" + caFile, "--username=sim", "--heartbeat-interval=100ms"}

	// A wrong password fails the start with an error instead of hanging.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	require.Error(t, run(ctx, cli("wrong", append(args, "--identity-prefix=bad")...)))

	ctx, cancel = context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- run(ctx, cli("secret", append(args, "--count=2", "--identity-prefix=tls")...)) }()
	require.Eventually(t, func() bool { return seen() == 2 }, 10*time.Second, 10*time.Millisecond)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancellation")
	}
}
