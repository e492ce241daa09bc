// Command module-controller runs the ModuleController: it turns Koupleless
// bases into virtual nodes and module pods into biz installs.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"
	"github.com/virtual-kubelet/virtual-kubelet/log"
	logruslogger "github.com/virtual-kubelet/virtual-kubelet/log/logrus"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/moduleops/module-controller/pkg/broker"
	"github.com/moduleops/module-controller/pkg/config"
	"github.com/moduleops/module-controller/pkg/controller"
	"github.com/moduleops/module-controller/pkg/version"
	"github.com/moduleops/module-controller/tunnel/mqtt"
)

// shutdownTimeout bounds the HTTP servers' graceful shutdown.
const shutdownTimeout = 5 * time.Second

func main() {
	var opts config.Options
	fs := pflag.NewFlagSet("module-controller", pflag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "module-controller turns Koupleless bases into virtual nodes and module pods into biz installs.\n\nUsage:\n  module-controller [flags]\n\nEvery flag falls back to the environment variable named in [$...].\n\nFlags:\n%s", fs.FlagUsages())
	}
	opts.AddFlags(fs)
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return
		}
		os.Exit(2)
	}
	if opts.Version {
		fmt.Printf("module-controller %s (commit %s)\n", version.Version, version.Commit)
		return
	}
	opts.ApplyEnv(fs, os.LookupEnv)
	opts.Normalize()
	if err := opts.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "module-controller: invalid settings:\n%v\n", err)
		os.Exit(2)
	}

	logger := logrus.New()
	level, _ := logrus.ParseLevel(opts.LogLevel)
	logger.SetLevel(level)
	logger.SetFormatter(&logrus.JSONFormatter{})
	log.L = logruslogger.FromLogrus(logrus.NewEntry(logger))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts); err != nil {
		log.G(ctx).WithError(err).Error("module-controller failed")
		os.Exit(1)
	}
}

// run wires the broker, tunnel, controller and HTTP endpoints and runs them
// until ctx is done or one of them fails.
func run(ctx context.Context, opts config.Options) error {
	restConfig, err := kubeConfig(opts.Kubeconfig)
	if err != nil {
		return err
	}
	restConfig.QPS = float32(opts.KubeAPIQPS)
	restConfig.Burst = opts.KubeAPIBurst
	restConfig.UserAgent = "module-controller/" + version.Version
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return fmt.Errorf("creating the Kubernetes client: %w", err)
	}

	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	g, ctx := errgroup.WithContext(ctx)
	brokerURL := opts.BrokerURL()
	if opts.MQTTBroker == "" {
		b, err := broker.New(broker.Config{Address: opts.EmbeddedBrokerAddress, Username: opts.MQTTUsername, Password: opts.MQTTPassword})
		if err != nil {
			return fmt.Errorf("starting the embedded broker: %w", err)
		}
		brokerURL = "tcp://" + b.Addr()
		g.Go(func() error { return b.Run(ctx) })
		log.G(ctx).WithField("address", b.Addr()).Info("serving the embedded MQTT broker")
	}

	tun, err := mqtt.New(mqtt.Config{
		BrokerURL:      brokerURL,
		Username:       opts.MQTTUsername,
		Password:       opts.MQTTPassword,
		ClientIDPrefix: opts.MQTTClientPrefix,
		ClientID:       opts.ClientID,
		Env:            opts.Env,
		TLS: mqtt.TLSConfig{
			CAFile:         opts.MQTTCAPath,
			ClientCertFile: opts.MQTTClientCertPath,
			ClientKeyFile:  opts.MQTTClientKeyPath,
		},
		MaxMessageAge: opts.MessageMaxAge,
		Registerer:    registry,
	})
	if err != nil {
		return err
	}
	ctrl, err := controller.New(controller.Config{
		Client:             client,
		Tunnel:             tun,
		Env:                opts.Env,
		Version:            version.Version,
		MaxPods:            opts.MaxPods,
		EnvTaint:           opts.EnvTaint,
		UnreachableAfter:   opts.UnreachableAfter,
		RemoveAfter:        opts.RemoveAfter,
		HealthInterval:     opts.HealthInterval,
		NodeLeaseDuration:  opts.NodeLeaseDuration,
		LeaseRenewInterval: opts.LeaseRenewInterval,
		InstallTimeout:     opts.InstallTimeout,
		QueryInterval:      opts.QueryInterval,
		UninstallOrphans:   opts.UninstallOrphans,
		Registerer:         registry,
	})
	if err != nil {
		return err
	}

	g.Go(func() error { return tun.Run(ctx) })
	g.Go(func() error { return ctrl.Run(ctx) })
	g.Go(func() error {
		return serve(ctx, opts.MetricsAddress, promhttp.HandlerFor(registry, promhttp.HandlerOpts{Registry: registry}), "/metrics")
	})
	g.Go(func() error {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
		mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
			if problem := readiness(tun, ctrl); problem != "" {
				http.Error(w, problem, http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok\n"))
		})
		return serve(ctx, opts.HealthAddress, mux, "")
	})
	log.G(ctx).WithField("env", opts.Env).WithField("broker", brokerURL).WithField("version", version.Version).Info("module-controller starting")
	return g.Wait()
}

// readiness returns why the process is not ready, or "" when it is.
func readiness(tun *mqtt.Tunnel, ctrl *controller.Controller) string {
	if !tun.Connected() {
		return "not connected to the MQTT broker\n"
	}
	select {
	case <-ctrl.Ready():
		return ""
	default:
		return "controller caches are not synced yet\n"
	}
}

// serve runs an HTTP server on addr until ctx is done. An empty addr or "0"
// disables it.
func serve(ctx context.Context, addr string, h http.Handler, path string) error {
	if addr == "" || addr == "0" {
		return nil
	}
	if path != "" {
		mux := http.NewServeMux()
		mux.Handle(path, h)
		h = mux
	}
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving %s: %w", addr, err)
	}
	return nil
}

// kubeConfig loads the client configuration from path, $KUBECONFIG or
// ~/.kube/config, and falls back to the in-cluster configuration.
func kubeConfig(path string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err == nil {
		return cfg, nil
	}
	if path == "" && clientcmd.IsEmptyConfig(err) {
		if in, inErr := rest.InClusterConfig(); inErr == nil {
			return in, nil
		}
	}
	return nil, fmt.Errorf("loading the Kubernetes client configuration: %w", err)
}
