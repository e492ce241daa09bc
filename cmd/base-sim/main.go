// Command base-sim runs simulated Koupleless Java bases (pkg/basesim) against an MQTT
// broker until it receives SIGINT or SIGTERM: one process can stand in for a fleet of
// bases in end-to-end runs and benchmarks of module-controller.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"
	"github.com/virtual-kubelet/virtual-kubelet/log"
	logruslogger "github.com/virtual-kubelet/virtual-kubelet/log/logrus"

	"github.com/moduleops/module-controller/pkg/basesim"
	"github.com/moduleops/module-controller/pkg/config"
	"github.com/moduleops/module-controller/pkg/protocol"
	"github.com/moduleops/module-controller/tunnel/mqtt"
)

// Environment variables read as flag defaults.
const (
	envUsername = "MQTT_USERNAME"
	envPassword = "MQTT_PASSWORD"
	// envHTTPToken is the bearer token of the HTTP tunnel.
	envHTTPToken = "HTTP_TUNNEL_TOKEN"
)

// options are the command-line settings.
type options struct {
	count             int
	env               string
	broker            string
	identityPrefix    string
	firstIP           string
	clientPrefix      string
	name              string
	version           string
	clusterName       string
	heartbeatInterval time.Duration
	installDelay      time.Duration
	failureRate       float64
	activateNewModule bool
	username          string
	password          string
	caFile            string
	clientCert        string
	clientKey         string
	logLevel          string
	tunnel            string
	httpEndpoint      string
	httpListen        string
	httpToken         string
}

// applyEnv fills the credentials not given as flags from the environment (flag > env >
// empty). It runs after parsing so that --help never prints a secret as a default.
func (o *options) applyEnv(fs *pflag.FlagSet, getenv func(string) string) {
	if !fs.Changed("username") {
		o.username = getenv(envUsername)
	}
	if !fs.Changed("password") {
		o.password = getenv(envPassword)
	}
	if !fs.Changed("http-token") {
		o.httpToken = getenv(envHTTPToken)
	}
}

func (o *options) addFlags(fs *pflag.FlagSet) {
	fs.IntVar(&o.count, "count", 1, "number of bases to simulate")
	fs.StringVar(&o.env, "env", protocol.DefaultEnv, "environment in the topics (koupleless_<env>/...), lower-cased like a real base")
	fs.StringVar(&o.broker, "broker", basesim.DefaultBroker, "MQTT broker URL (tcp://host:port; ssl:// is used when --ca-file is set)")
	fs.StringVar(&o.identityPrefix, "identity-prefix", "base", "bases are named <prefix>-<i>, i from 0 (lower-case DNS labels)")
	fs.StringVar(&o.firstIP, "first-ip", "", "if set, bases are named by IP like real ones: this address, then the next ones (overrides --identity-prefix)")
	fs.StringVar(&o.clientPrefix, "client-prefix", basesim.DefaultClientIDPrefix, "MQTT client id prefix (<prefix>@@@<identity>)")
	fs.StringVar(&o.name, "name", basesim.DefaultName, "base application name (metadata and master biz)")
	fs.StringVar(&o.version, "version", basesim.DefaultVersion, "base version (metadata and master biz)")
	fs.StringVar(&o.clusterName, "cluster-name", basesim.DefaultClusterName, "cluster name in the base metadata")
	fs.DurationVar(&o.heartbeatInterval, "heartbeat-interval", basesim.DefaultHeartbeatInterval, "heartbeat period")
	fs.DurationVar(&o.installDelay, "install-delay", 0, "how long each install stays RESOLVED before it starts")
	fs.Float64Var(&o.failureRate, "failure-rate", 0, "probability in [0, 1] that an install fails")
	fs.BoolVar(&o.activateNewModule, "activate-new-module", true, "JVM property activate.new.module: a new version of an active biz takes over (false: SOFAArk default, it starts DEACTIVATED)")
	fs.StringVar(&o.username, "username", "", "MQTT user name [$"+envUsername+"]")
	fs.StringVar(&o.password, "password", "", "MQTT password (prefer the environment variable) [$"+envPassword+"]")
	fs.StringVar(&o.caFile, "ca-file", "", "PEM CA that signed the broker certificate; enables TLS")
	fs.StringVar(&o.clientCert, "client-cert", "", "PEM client certificate for TLS (with --client-key)")
	fs.StringVar(&o.clientKey, "client-key", "", "PEM client key for TLS (with --client-cert)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.tunnel, "tunnel", basesim.TunnelMQTT, "transport of the bases: mqtt, or http (the arklet HTTP tunnel: heartbeats posted to --http-endpoint, commands served on --http-listen)")
	fs.StringVar(&o.httpEndpoint, "http-endpoint", "", "http tunnel: the controller's URL heartbeats are posted to (koupleless.arklet.http.heartbeat.endpoint), e.g. http://127.0.0.1:7777")
	fs.StringVar(&o.httpListen, "http-listen", basesim.DefaultHTTPListen, "http tunnel: address of each base's arklet HTTP server (port 0: a free port per base, announced in its heartbeats)")
	fs.StringVar(&o.httpToken, "http-token", "", "http tunnel: bearer token sent with every heartbeat [$"+envHTTPToken+"]")
}

// fleetConfig validates the options and turns them into a fleet configuration.
func (o *options) fleetConfig() (basesim.FleetConfig, error) {
	var errs []error
	if o.count < 1 {
		errs = append(errs, fmt.Errorf("--count %d: want at least 1", o.count))
	}
	if o.failureRate < 0 || o.failureRate > 1 {
		errs = append(errs, fmt.Errorf("--failure-rate %v: want a value in [0, 1]", o.failureRate))
	}
	if o.heartbeatInterval <= 0 {
		errs = append(errs, fmt.Errorf("--heartbeat-interval %s: want a positive duration", o.heartbeatInterval))
	}
	if o.installDelay < 0 {
		errs = append(errs, fmt.Errorf("--install-delay %s: want a non-negative duration", o.installDelay))
	}
	if (o.clientCert != "" || o.clientKey != "") && o.caFile == "" {
		errs = append(errs, errors.New("--client-cert and --client-key need --ca-file"))
	}
	activation := basesim.ActivateNew
	if !o.activateNewModule {
		activation = basesim.KeepOld
	}
	cfg := basesim.FleetConfig{
		Count:          o.count,
		IdentityPrefix: o.identityPrefix,
		Base: basesim.Config{
			Tunnel:            o.tunnel,
			HTTPEndpoint:      o.httpEndpoint,
			HTTPListen:        o.httpListen,
			HTTPToken:         o.httpToken,
			Broker:            o.broker,
			Username:          o.username,
			Password:          o.password,
			ClientIDPrefix:    o.clientPrefix,
			Env:               o.env,
			Name:              o.name,
			Version:           o.version,
			ClusterName:       o.clusterName,
			HeartbeatInterval: o.heartbeatInterval,
			InstallDelay:      o.installDelay,
			FailureRate:       o.failureRate,
			Activation:        activation,
			// Keep exact counts only: a long run must not grow a command log per base.
			ReceivedLimit: -1,
		},
	}
	if o.firstIP != "" {
		ip, err := netip.ParseAddr(o.firstIP)
		if err != nil {
			errs = append(errs, fmt.Errorf("--first-ip: %w", err))
		} else {
			cfg.Identity = basesim.IPIdentities(ip)
		}
	}
	if o.caFile != "" {
		files := mqtt.TLSConfig{CAFile: o.caFile, ClientCertFile: o.clientCert, ClientKeyFile: o.clientKey}
		tlsCfg, err := files.ClientTLS(o.broker)
		if err != nil {
			errs = append(errs, err)
		}
		cfg.Base.TLS = tlsCfg
	}
	return cfg, errors.Join(errs...)
}

// usageHeader starts --help.
const usageHeader = `base-sim runs simulated Koupleless bases that speak the arklet MQTT protocol, for demos,
manual tests and load tests of module-controller. It runs until Ctrl-C (SIGINT) or SIGTERM.

Usage:
  base-sim [flags]

Example: three bases against module-controller's embedded broker on this machine:
  base-sim --count 3 --broker tcp://127.0.0.1:1883

`

// groups orders the flags in --help and docs/configuration.md.
var groups = []config.Group{
	{Title: "Fleet", Flags: []string{"count", "identity-prefix", "first-ip", "env"}},
	{Title: "Base metadata", Flags: []string{"name", "version", "cluster-name"}},
	{Title: "Behaviour", Flags: []string{"heartbeat-interval", "install-delay", "failure-rate", "activate-new-module"}},
	{Title: "MQTT connection", Flags: []string{"broker", "client-prefix", "username", "password", "ca-file", "client-cert", "client-key"}},
	{Title: "HTTP tunnel", Flags: []string{"tunnel", "http-endpoint", "http-listen", "http-token"}},
	{Title: "Logging", Flags: []string{"log-level"}},
}

// envVars returns the environment variable a flag falls back to, if any.
func envVars(flag string) []string {
	switch flag {
	case "username":
		return []string{envUsername}
	case "password":
		return []string{envPassword}
	case "http-token":
		return []string{envHTTPToken}
	}
	return nil
}

func main() {
	var o options
	fs := pflag.NewFlagSet("base-sim", pflag.ContinueOnError)
	fs.Usage = func() {} // printed below: to stdout for --help, a hint on stderr for a bad flag
	o.addFlags(fs)
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Print(usageHeader)
			config.PrintUsage(os.Stdout, fs, groups, 110)
			return
		}
		fmt.Fprintf(os.Stderr, "base-sim: %v\n", err)
		fmt.Fprintln(os.Stderr, "Run 'base-sim --help' for every flag.")
		os.Exit(2)
	}
	o.applyEnv(fs, os.Getenv)

	l := logrus.New()
	level, err := logrus.ParseLevel(o.logLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "base-sim: invalid flags:\n--log-level %q: want debug, info, warn or error\n", o.logLevel)
		os.Exit(2)
	}
	l.SetLevel(level)
	log.L = logruslogger.FromLogrus(logrus.NewEntry(l))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	go func() {
		// The first signal stops the bases cleanly; a second one kills.
		<-ctx.Done()
		stop()
	}()
	if err := run(ctx, o); err != nil {
		var invalid invalidFlagsError
		if errors.As(err, &invalid) {
			fmt.Fprintf(os.Stderr, "base-sim: invalid flags:\n%v\n", invalid.err)
			os.Exit(2)
		}
		log.G(ctx).WithError(err).Fatal("base-sim failed")
	}
}

// invalidFlagsError reports every problem with the flags.
type invalidFlagsError struct{ err error }

func (e invalidFlagsError) Error() string { return "invalid flags: " + e.err.Error() }

func (e invalidFlagsError) Unwrap() error { return e.err }

// run starts the fleet and keeps it running until ctx is cancelled.
func run(ctx context.Context, o options) error {
	cfg, err := o.fleetConfig()
	if err != nil {
		return invalidFlagsError{err}
	}
	logger := log.G(ctx).WithField("broker", cfg.Base.Broker).WithField("count", cfg.Count)
	begin := time.Now()
	fleet, err := basesim.StartFleet(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil // interrupted while starting
		}
		return err
	}
	logger.WithField("took", time.Since(begin).String()).Info("simulated bases running")
	<-ctx.Done()
	logger.Info("stopping simulated bases")
	fleet.Stop()
	return nil
}
