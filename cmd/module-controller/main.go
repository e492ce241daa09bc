// Command module-controller runs the ModuleController: it turns Koupleless
// bases into virtual nodes and module pods into biz installs.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/go-logr/logr"
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
	"k8s.io/klog/v2"

	"github.com/moduleops/module-controller/pkg/broker"
	"github.com/moduleops/module-controller/pkg/config"
	"github.com/moduleops/module-controller/pkg/controller"
	"github.com/moduleops/module-controller/pkg/controller/cluster"
	"github.com/moduleops/module-controller/pkg/controller/kubeletapi"
	"github.com/moduleops/module-controller/pkg/controller/peersync"
	"github.com/moduleops/module-controller/pkg/version"
	"github.com/moduleops/module-controller/tunnel"
	httptunnel "github.com/moduleops/module-controller/tunnel/http"
	"github.com/moduleops/module-controller/tunnel/mqtt"
)

// shutdownTimeout bounds the HTTP servers' graceful shutdown.
const shutdownTimeout = 5 * time.Second

func main() {
	opts := config.NewOptions()
	fs := pflag.NewFlagSet("module-controller", pflag.ContinueOnError)
	fs.Usage = func() {} // printed below: to stdout for --help, a hint on stderr for a bad flag
	opts.AddFlags(fs)
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Print(usageHeader)
			config.PrintUsage(os.Stdout, fs, config.Groups(), usageColumns)
			return
		}
		fmt.Fprintf(os.Stderr, "module-controller: %v\n", err)
		fmt.Fprintln(os.Stderr, "Run 'module-controller --help' for every setting.")
		os.Exit(2)
	}
	if opts.Version {
		fmt.Printf("module-controller %s (commit %s)\n", version.Version, version.Commit)
		return
	}
	opts.ApplyEnv(fs, os.LookupEnv)
	opts.Complete()
	if err := opts.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "module-controller: invalid settings:\n%v\n", err)
		os.Exit(2)
	}

	logger := newLogger(opts.LogLevel, opts.LogFormat)
	log.L = logruslogger.FromLogrus(logrus.NewEntry(logger))
	klog.SetLogger(logr.New(klogSink{entry: logrus.NewEntry(logger)}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	go func() {
		// The first signal starts a clean shutdown; a second one kills.
		<-ctx.Done()
		stop()
	}()
	if err := run(ctx, *opts); err != nil {
		log.G(ctx).WithError(err).Error("module-controller failed")
		os.Exit(1)
	}
	log.G(ctx).Info("module-controller stopped")
}

// usageHeader starts --help.
const usageHeader = `module-controller turns Koupleless bases into virtual nodes and module pods into biz installs.

Usage:
  module-controller [flags]

Each flag falls back to the environment variable shown as [$NAME]; a flag given on the
command line wins. docs/configuration.md describes every setting.

`

// usageColumns is the width --help wraps its descriptions to.
const usageColumns = 110

// newLogger returns the process logger; level and format are validated.
func newLogger(level, format string) *logrus.Logger {
	l := logrus.New()
	lvl, _ := logrus.ParseLevel(level)
	l.SetLevel(lvl)
	if format == "json" {
		l.SetFormatter(&logrus.JSONFormatter{})
	} else {
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	}
	return l
}

// run wires the broker, tunnel, controller and HTTP endpoints and runs them
// until ctx is done or one of them fails.
func run(ctx context.Context, opts config.Options) error {
	home, _ := os.UserHomeDir() // no home: only the in-cluster configuration is left
	restConfig, err := kubeConfig(opts.Kubeconfig, home)
	if err != nil {
		return err
	}
	restConfig.QPS = float32(opts.KubeAPIQPS)
	restConfig.Burst = opts.KubeAPIBurst
	restConfig.UserAgent = "module-controller/" + version.Version
	// One limit for every client below: they share the connection.
	restConfig.Wrap(controller.NewAPIRequestLimit(opts.KubeAPIMaxInFlight).Wrap)
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return fmt.Errorf("creating the Kubernetes client: %w", err)
	}

	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	g, ctx := errgroup.WithContext(ctx)
	// Shutdown goes in order: the controller stops taking work and waits for
	// its workers, then the tunnel disconnects (letting in-flight publishes
	// finish for a bounded quiesce), then the embedded broker closes. Node
	// leases are left to expire: a restarted or other replica adopts the
	// nodes, and their module pods keep running meanwhile.
	tunnelCtx, stopTunnel := context.WithCancel(context.WithoutCancel(ctx))
	defer stopTunnel()
	brokerCtx, stopBroker := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBroker()
	// Everything is built before anything runs, so a bad setting found by a
	// constructor leaves no goroutine behind.
	brokerURL := opts.MQTT.BrokerURL
	var embedded *broker.Broker
	if opts.EmbeddedBroker() {
		brokerCfg, err := embeddedBrokerConfig(opts)
		if err != nil {
			return fmt.Errorf("starting the embedded broker: %w", err)
		}
		brokerCfg.Registerer = registry
		embedded, err = broker.New(brokerCfg)
		if err != nil {
			return fmt.Errorf("starting the embedded broker: %w", err)
		}
		defer embedded.Close() // releases the address if a constructor below fails
		brokerURL = "tcp://" + embedded.Addr()
		if embedded.LocalAddr() != "" {
			brokerURL = "tcp://" + embedded.LocalAddr() // the TLS listener is for the bases
		}
	}

	tun, err := buildTunnel(opts, brokerURL, registry)
	if err != nil {
		return err
	}
	if !opts.MQTTTunnel {
		brokerURL = ""
	}
	// Cluster mode: the bases are shared with the other replicas through
	// Leases; off, this replica serves every base (Ownership nil).
	var own *cluster.Ownership
	var ownership controller.Ownership
	if opts.ClusterMode {
		clusterCfg := opts.Cluster
		clusterCfg.Client, clusterCfg.Connected, clusterCfg.Registerer = client, tun.Connected, registry
		own, err = cluster.New(clusterCfg)
		if err != nil {
			return err
		}
		ownership = own
	}
	// The controller's own client refuses, in cluster mode, every write to
	// the node of a base this replica does not own at that moment; the
	// Leases are written with the plain one.
	ctrlClient := client
	if own != nil {
		guarded := rest.CopyConfig(restConfig)
		guarded.Wrap(controller.GuardWrites(opts.Controller.Env, own))
		if ctrlClient, err = kubernetes.NewForConfig(guarded); err != nil {
			return fmt.Errorf("creating the Kubernetes client: %w", err)
		}
	}
	// The kubelet API of the virtual nodes: this replica advertises its
	// own address on the nodes it writes.
	var kubeletPort int32
	if opts.KubeletEnabled() {
		kubeletPort = int32(opts.KubeletPort)
	} else if opts.KubeletPort > 0 {
		log.G(ctx).Warn("kubelet API off: no --kubelet-address or $POD_IP for the API server to dial; kubectl logs on module pods will not work")
	}
	ctrlCfg := opts.Controller
	ctrlCfg.KubeletPort, ctrlCfg.Client, ctrlCfg.Tunnel, ctrlCfg.Version = kubeletPort, ctrlClient, tun, version.Version
	ctrlCfg.Ownership, ctrlCfg.Registerer = ownership, registry
	ctrl, err := controller.New(ctrlCfg)
	if err != nil {
		return err
	}

	var kubelet *kubeletapi.Server // nil: the kubelet API is off
	if kubeletPort > 0 {
		kubeletCfg := opts.Kubelet
		kubeletCfg.Client, kubeletCfg.Hosts = client, kubeletHosts(opts.Controller.KubeletAddress)
		kubeletCfg.BasePods, kubeletCfg.Registerer = ctrl.PodsWithIP, registry
		kubelet, err = kubeletapi.New(kubeletCfg)
		if err != nil {
			return err
		}
	}

	var ps *peersync.Controller // nil: the peer replica sync is off
	var peerSyncReady <-chan struct{}
	var leader *cluster.Leader // nil: not in cluster mode, the cluster-wide loops run here
	if opts.PeerReplicaSync {
		ps, err = peersync.New(peersync.Config{Client: client, Registerer: registry})
		if err != nil {
			return err
		}
		peerSyncReady = ps.Ready()
		if opts.ClusterMode {
			// Only the leader syncs; the others are ready without it.
			peerSyncReady = nil
			leader, err = cluster.NewLeader(cluster.LeaderConfig{
				Client:        client,
				Namespace:     opts.Cluster.Namespace,
				Name:          cluster.LeaseName("module-controller-sync-", opts.Cluster.Env),
				Identity:      opts.Cluster.Identity,
				LeaseDuration: opts.Cluster.LeaseDuration,
				RenewDeadline: opts.Cluster.RenewDeadline,
				RetryPeriod:   opts.Cluster.RetryPeriod,
				Registerer:    registry,
			})
			if err != nil {
				return err
			}
		}
	}

	if embedded != nil {
		g.Go(func() error { return embedded.Run(brokerCtx) })
		log.G(ctx).WithField("address", embedded.Addr()).Info("serving the embedded MQTT broker")
	}
	g.Go(func() error {
		defer stopBroker()
		return tun.Run(tunnelCtx)
	})
	// In cluster mode the Leases are released once the controller stopped
	// acting on its bases (and before the tunnel closes), so the other
	// replicas take them over at once.
	ownCtx, stopOwnership := context.WithCancel(context.WithoutCancel(ctx))
	defer stopOwnership()
	ownershipDone := make(chan struct{})
	if own != nil {
		g.Go(func() error {
			defer close(ownershipDone)
			return own.Run(ownCtx)
		})
	} else {
		close(ownershipDone)
	}
	g.Go(func() error {
		defer stopTunnel()
		err := ctrl.Run(ctx)
		stopOwnership()
		<-ownershipDone
		log.G(ctx).Info("controller stopped; disconnecting from the broker")
		return err
	})
	if kubelet != nil {
		g.Go(func() error { return kubelet.Run(ctx) })
	}
	switch {
	case leader != nil:
		g.Go(func() error { return leader.Run(ctx, ps.Run) })
	case ps != nil:
		g.Go(func() error { return ps.Run(ctx) })
	}
	g.Go(func() error {
		return serve(ctx, opts.MetricsAddress, promhttp.HandlerFor(registry, promhttp.HandlerOpts{Registry: registry}), "/metrics")
	})
	g.Go(func() error {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
		mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
			if problem := readiness(tun, ctrl, peerSyncReady); problem != "" {
				http.Error(w, problem, http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok\n"))
		})
		return serve(ctx, opts.HealthAddress, mux, "")
	})
	if opts.PprofAddress != "" {
		g.Go(func() error {
			mux := http.NewServeMux()
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			return serve(ctx, opts.PprofAddress, mux, "")
		})
	}
	log.G(ctx).WithField("env", opts.Controller.Env).WithField("broker", brokerURL).WithField("version", version.Version).
		WithField("clusterMode", opts.ClusterMode).WithField("replica", opts.MQTT.ClientID).Info("module-controller starting")
	return g.Wait()
}

// kubeletHosts are the names of the self-signed kubelet API certificate:
// the advertised address and the machine's host name (the pod name).
func kubeletHosts(address string) []string {
	hosts := []string{address}
	if h, err := os.Hostname(); err == nil && h != address {
		hosts = append(hosts, h)
	}
	return hosts
}

// buildTunnel builds the transports the settings ask for: MQTT, HTTP or both,
// the latter combined by a tunnel.Mux so the controller sees one tunnel.
func buildTunnel(opts config.Options, brokerURL string, registry *prometheus.Registry) (tunnel.Tunnel, error) {
	var transports []tunnel.Transport
	if opts.MQTTTunnel {
		cfg := opts.MQTT
		cfg.BrokerURL, cfg.Registerer = brokerURL, registry
		t, err := mqtt.New(cfg)
		if err != nil {
			return nil, err
		}
		transports = append(transports, tunnel.Transport{Name: "mqtt", Tunnel: t})
	}
	if opts.HTTPTunnel {
		cfg := opts.HTTP
		cfg.Registerer = registry
		t, err := httptunnel.New(cfg)
		if err != nil {
			return nil, err
		}
		transports = append(transports, tunnel.Transport{Name: "http", Tunnel: t})
	}
	if len(transports) == 1 {
		return transports[0].Tunnel, nil
	}
	ignored := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "module_controller", Subsystem: "tunnel", Name: "ignored_events_total",
		Help: "Events dropped because another transport serves their base, by the transport they came on.",
	}, []string{"transport"})
	if err := registry.Register(ignored); err != nil {
		return nil, err
	}
	return tunnel.NewMux(tunnel.MuxConfig{
		Transports:  transports,
		SilentAfter: opts.Controller.UnreachableAfter,
		OnIgnored: func(baseID, served, other string) {
			ignored.WithLabelValues(other).Inc()
			log.L.WithField("base", baseID).WithField("servedBy", served).WithField("transport", other).
				Debug("ignored a base event: another transport serves this base")
		},
	})
}

// readiness returns why the process is not ready, or "" when it is.
// peerSyncReady is nil when the peer replica sync is off.
func readiness(tun tunnel.Tunnel, ctrl *controller.Controller, peerSyncReady <-chan struct{}) string {
	if !tun.Connected() {
		return "tunnel not connected (MQTT broker or HTTP listener)\n"
	}
	select {
	case <-ctrl.Ready():
	default:
		return "controller caches are not synced yet\n"
	}
	if peerSyncReady != nil {
		select {
		case <-peerSyncReady:
		default:
			return "peer replica sync caches are not synced yet\n"
		}
	}
	return ""
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

// kubeConfig loads the client configuration from path (a kubeconfig file, or
// a list of them joined like $PATH and merged like kubectl does; --kubeconfig
// and $KUBECONFIG both end up here), else <home>/.kube/config, else the
// in-cluster configuration of a pod's ServiceAccount.
func kubeConfig(path, home string) (*rest.Config, error) {
	rules := &clientcmd.ClientConfigLoadingRules{}
	switch {
	case path != "":
		rules.Precedence = filepath.SplitList(path)
	case home != "":
		rules.Precedence = []string{filepath.Join(home, clientcmd.RecommendedHomeDir, clientcmd.RecommendedFileName)}
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err == nil {
		return cfg, nil
	}
	if path == "" && clientcmd.IsEmptyConfig(err) {
		in, inErr := rest.InClusterConfig()
		if inErr == nil {
			return in, nil
		}
		return nil, fmt.Errorf("no kubeconfig (--kubeconfig, $KUBECONFIG or ~/.kube/config) and not in a cluster: %w", inErr)
	}
	return nil, fmt.Errorf("loading the Kubernetes client configuration: %w", err)
}
