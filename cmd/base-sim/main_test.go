package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/basesim"
	"github.com/moduleops/module-controller/pkg/broker"
	"github.com/moduleops/module-controller/pkg/protocol"
)

func parse(t *testing.T, args ...string) options {
	t.Helper()
	var o options
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.addFlags(fs)
	require.NoError(t, fs.Parse(args))
	return o
}

func TestCredentialsFromEnv(t *testing.T) {
	env := map[string]string{envUsername: "env-user", envPassword: "env-pass"}
	var o options
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.addFlags(fs)
	require.NoError(t, fs.Parse([]string{"--password=flag-pass"}))
	o.applyEnv(fs, func(k string) string { return env[k] })
	require.Equal(t, "env-user", o.username)
	require.Equal(t, "flag-pass", o.password, "a flag wins over the environment")
}

func TestFleetConfig(t *testing.T) {
	o := parse(t, "--count=3", "--env=DEV", "--first-ip=10.0.0.1", "--activate-new-module=false",
		"--failure-rate=0.25", "--install-delay=2s", "--heartbeat-interval=1s", "--username=u", "--password=p")
	cfg, err := o.fleetConfig()
	require.NoError(t, err)
	require.Equal(t, 3, cfg.Count)
	require.Equal(t, "10.0.0.3", cfg.Identity(2))
	require.Equal(t, basesim.KeepOld, cfg.Base.Activation)
	require.Equal(t, 0.25, cfg.Base.FailureRate)
	require.Equal(t, 2*time.Second, cfg.Base.InstallDelay)
	require.Equal(t, time.Second, cfg.Base.HeartbeatInterval)
	require.Equal(t, "DEV", cfg.Base.Env)
	require.Equal(t, "u", cfg.Base.Username)

	o = parse(t)
	cfg, err = o.fleetConfig()
	require.NoError(t, err)
	require.Equal(t, basesim.ActivateNew, cfg.Base.Activation, "activate.new.module=true by default")
	require.Equal(t, protocol.DefaultEnv, cfg.Base.Env)
	require.Nil(t, cfg.Identity)

	o = parse(t, "--count=0", "--failure-rate=2", "--first-ip=nope", "--client-cert=c.pem")
	_, err = o.fleetConfig()
	require.ErrorContains(t, err, "--count")
	require.ErrorContains(t, err, "--failure-rate")
	require.ErrorContains(t, err, "--first-ip")
	require.ErrorContains(t, err, "--ca-file")

	// Unreadable TLS files are named, all of them at once.
	missing := filepath.Join(t.TempDir(), "missing.pem")
	o = parse(t, "--ca-file="+missing, "--client-cert="+missing, "--client-key="+missing)
	_, err = o.fleetConfig()
	require.ErrorContains(t, err, "tls ca file")
	require.ErrorContains(t, err, "tls client certificate")
}

func TestRunUntilCancelled(t *testing.T) {
	b, err := broker.New(broker.Config{Address: "127.0.0.1:0"})
	require.NoError(t, err)
	go func() { _ = b.Run(t.Context()) }()
	t.Cleanup(b.Close)

	// The bases are up once a client sees their heartbeats; cancelling stops them all.
	seen := watchHeartbeats(t, "tcp://"+b.Addr())
	o := parse(t, "--count=5", "--broker=tcp://"+b.Addr(), "--identity-prefix=cli", "--heartbeat-interval=100ms")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- run(ctx, o) }()
	require.Eventually(t, func() bool { return seen() == 5 }, 10*time.Second, 10*time.Millisecond)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancellation")
	}
}
