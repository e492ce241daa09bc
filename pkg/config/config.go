package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/moduleops/module-controller/pkg/broker"
	"github.com/moduleops/module-controller/pkg/controller"
	"github.com/moduleops/module-controller/pkg/controller/cluster"
	"github.com/moduleops/module-controller/pkg/controller/kubeletapi"
	"github.com/moduleops/module-controller/pkg/fieldcheck"
	httptunnel "github.com/moduleops/module-controller/tunnel/http"
	"github.com/moduleops/module-controller/tunnel/mqtt"
)

// MQTTSecretName is the Secret the shipped manifests read MQTT_USERNAME and
// MQTT_PASSWORD from (keys username and password).
const MQTTSecretName = "module-controller-mqtt"

// Options are every setting of module-controller: the Configs of the
// components, whose own defaults and validation apply, and the settings of
// the process that composes them. NewOptions fills in the defaults.
type Options struct {
	// Controller is the virtual nodes' and module pods' controller. Its Env
	// is the env of every component.
	Controller controller.Config
	// MQTT is the MQTT tunnel; its BrokerURL is set by Complete.
	MQTT mqtt.Config
	// HTTP is the HTTP tunnel.
	HTTP httptunnel.Config
	// Broker is the embedded MQTT broker.
	Broker broker.Config
	// Cluster is the Lease ownership of cluster mode.
	Cluster cluster.Config
	// Kubelet is the virtual nodes' kubelet API; its ListenAddress is set
	// by Complete.
	Kubelet kubeletapi.Config

	// ClusterMode shares the bases of the env among the replicas through
	// Leases in Cluster.Namespace; off, this replica serves every base.
	ClusterMode bool
	// MQTTTunnel serves bases over MQTT; HTTPTunnel over the HTTP tunnel.
	MQTTTunnel, HTTPTunnel bool
	// MQTTBroker is the external broker host (or URL); empty serves the
	// embedded broker. MQTTPort is its port.
	MQTTBroker string
	MQTTPort   int
	// EmbeddedBrokerTLSCertPath and EmbeddedBrokerTLSKeyPath, when set, make
	// the embedded broker's listener TLS only; EmbeddedBrokerClientCAPath
	// then requires client certificates it signed (mTLS).
	EmbeddedBrokerTLSCertPath, EmbeddedBrokerTLSKeyPath, EmbeddedBrokerClientCAPath string
	// PeerReplicaSync runs the peer replica sync (pkg/controller/peersync).
	PeerReplicaSync bool

	// Kubeconfig is the kubeconfig path; empty means ~/.kube/config or in-cluster.
	Kubeconfig string
	// KubeAPIQPS and KubeAPIBurst limit the API client.
	KubeAPIQPS   float64
	KubeAPIBurst int
	// KubeAPIMaxInFlight bounds the API requests open at once, watches aside.
	KubeAPIMaxInFlight int

	// KubeletPort serves the kubelet API; 0 turns it off. KubeletBindAddress
	// is the host it listens on (empty: every interface).
	KubeletPort        int
	KubeletBindAddress string

	// MetricsAddress serves /metrics; HealthAddress /healthz and /readyz;
	// PprofAddress, if set, net/http/pprof.
	MetricsAddress, HealthAddress, PprofAddress string
	// LogLevel is one of trace, debug, info, warn, error; LogFormat text or json.
	LogLevel, LogFormat string
	// Version prints the version and exits.
	Version bool

	// envErrors are environment values that could not be parsed.
	envErrors []error
}

// NewOptions returns the default settings: each component's DefaultConfig
// and the process defaults.
func NewOptions() *Options {
	return &Options{
		Controller: controller.DefaultConfig(),
		MQTT:       mqtt.DefaultConfig(),
		HTTP:       httptunnel.DefaultConfig(),
		Broker:     broker.DefaultConfig(),
		Cluster:    cluster.DefaultConfig(),
		Kubelet:    kubeletapi.Config{},

		MQTTTunnel:      true,
		MQTTPort:        1883,
		PeerReplicaSync: true,
		// One process writes the status, Events and leases of every base it
		// serves: at 200 QPS, 100 pods created at once took 2.7 s to all run,
		// at 1000 QPS under 1 s (TestHundredBasesAndPods); the API server's
		// priority and fairness still protects other clients.
		KubeAPIQPS:   1000,
		KubeAPIBurst: 2000,
		// Under the API server's 100 concurrent HTTP/2 streams per
		// connection, so that every request shares one TLS connection
		// (controller.APIRequestLimit).
		KubeAPIMaxInFlight: 80,
		KubeletPort:        10250, // a kubelet's own
		MetricsAddress:     ":9090",
		HealthAddress:      ":8081",
		LogLevel:           "info",
		LogFormat:          "text",
	}
}

// AddFlags registers every setting of the table on fs, each defaulting to
// its current value (NewOptions: the component defaults). Each help text
// names the environment variables read when the flag is not given.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	for _, g := range o.table() {
		for _, s := range g.settings {
			s.bind(fs)
		}
	}
}

// ApplyEnv fills every flag not given on the command line from its
// environment variables, read through lookup (os.LookupEnv in main): the
// first one set and non-empty wins.
func (o *Options) ApplyEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) {
	for _, g := range o.table() {
		for _, s := range g.settings {
			f := fs.Lookup(s.flag)
			if f == nil || s.given(fs) {
				continue
			}
			for _, name := range s.envs() {
				// Values are taken as they are: a password may end in a space.
				v, ok := lookup(name)
				if !ok || v == "" {
					continue
				}
				if err := f.Value.Set(v); err != nil {
					o.envErrors = append(o.envErrors, fmt.Errorf("$%s=%q: %w", name, v, err))
				}
				break
			}
		}
	}
}

// Complete normalizes the settings and derives what the components share:
// the env (lower-cased, as the base does) and the replica identity reach
// every component that needs them, a bare --http-tunnel-listen port becomes
// ":<port>", and the broker URL, kubelet listen address and the HTTP
// tunnel's and cluster's limits follow from the settings they depend on.
func (o *Options) Complete() {
	env := strings.ToLower(strings.TrimSpace(o.Controller.Env))
	o.Controller.Env, o.MQTT.Env, o.Cluster.Env, o.Kubelet.Env = env, env, env, env
	o.Cluster.Identity = o.MQTT.ClientID
	o.Broker.Username, o.Broker.Password = o.MQTT.Username, o.MQTT.Password
	o.HTTP.ListenAddress = strings.TrimSpace(o.HTTP.ListenAddress)
	if _, err := strconv.Atoi(o.HTTP.ListenAddress); err == nil {
		o.HTTP.ListenAddress = ":" + o.HTTP.ListenAddress
	}
	o.HTTP.MaxBases = o.Controller.MaxBases
	o.HTTP.AllowLoopback = o.Controller.AllowLoopbackBaseIP
	// A base silent this long is gone for the controller too.
	o.HTTP.BaseTTL = 2 * o.Controller.RemoveAfter
	// The owner of a silent base must remove its node before the base is
	// forgotten.
	o.Cluster.ForgetAfter = max(cluster.DefaultForgetAfter, 2*o.Controller.RemoveAfter)
	o.MQTT.BrokerURL = o.brokerURL()
	o.Kubelet.ListenAddress = net.JoinHostPort(o.KubeletBindAddress, strconv.Itoa(o.KubeletPort))
}

// EmbeddedBroker reports whether this process serves the MQTT broker.
func (o *Options) EmbeddedBroker() bool { return o.MQTTTunnel && o.MQTTBroker == "" }

// KubeletEnabled reports whether the kubelet API is served: a port, and an
// address for the API server to dial.
func (o *Options) KubeletEnabled() bool {
	return o.KubeletPort > 0 && o.Controller.KubeletAddress != ""
}

// brokerURL returns the external broker as a URL: tcp://host:port, or
// ssl://host:port when a CA is set; a --mqtt-broker given as a URL is kept.
// With the embedded broker it is empty: the process sets the address the
// broker bound.
func (o *Options) brokerURL() string {
	switch {
	case o.EmbeddedBroker():
		return ""
	case strings.Contains(o.MQTTBroker, "://"):
		return o.MQTTBroker
	}
	scheme := "tcp"
	if o.MQTT.TLS.CAFile != "" {
		scheme = "ssl"
	}
	return scheme + "://" + net.JoinHostPort(o.MQTTBroker, strconv.Itoa(o.MQTTPort))
}

// Validate returns every problem of the settings at once (after Complete):
// the components' own checks of the components that run, and the rules of
// their composition. Each names the flag and environment variable at fault.
func (o *Options) Validate() error {
	errs := append([]error(nil), o.envErrors...)
	o.check(&errs, o, o.validateProcess())
	o.check(&errs, &o.Controller, o.Controller.Validate())
	if o.MQTTTunnel {
		tunnel := o.MQTT
		if o.EmbeddedBroker() {
			// The tunnel reaches the embedded broker over loopback, at the
			// address it binds; the broker checks its own address.
			tunnel.BrokerURL, tunnel.TLS = "tcp://127.0.0.1:1883", mqtt.TLSConfig{}
		}
		o.check(&errs, &o.MQTT, tunnel.Validate())
	}
	if o.EmbeddedBroker() {
		// validateProcess asks for the controller's own user where other
		// hosts reach the broker, which covers the broker's own rule.
		var brokerErrs []error
		for _, e := range fieldcheck.Errors(o.Broker.Validate()) {
			if !errors.Is(e, broker.ErrAnonymousNotLoopback) {
				brokerErrs = append(brokerErrs, e)
			}
		}
		o.check(&errs, &o.Broker, errors.Join(brokerErrs...))
	}
	if o.HTTPTunnel {
		o.check(&errs, &o.HTTP, o.HTTP.Validate())
	}
	if o.ClusterMode {
		o.check(&errs, &o.Cluster, o.Cluster.Validate())
	}
	if o.KubeletEnabled() {
		o.check(&errs, &o.Kubelet, o.Kubelet.Validate())
	}
	return errors.Join(dedupe(errs)...)
}

// validateProcess checks the settings of the process and the rules that
// tie components together.
func (o *Options) validateProcess() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fieldcheck.Errorf(field, format, args...))
	}
	if !o.MQTTTunnel && !o.HTTPTunnel {
		add("MQTTTunnel", "false needs {HTTPTunnel}: bases need a transport")
	}
	if o.MQTTTunnel && o.MQTTBroker != "" && !strings.Contains(o.MQTTBroker, "://") && (o.MQTTPort < 1 || o.MQTTPort > 65535) {
		add("MQTTPort", "%d is not a port", o.MQTTPort)
	}
	if o.EmbeddedBroker() {
		if o.MQTT.TLS != (mqtt.TLSConfig{}) {
			add("MQTT.TLS.CAFile", "and the MQTT client certificate are for an external broker ({MQTTBroker}): the controller reaches its embedded broker over loopback")
		}
		if host, _, err := net.SplitHostPort(o.Broker.Address); err == nil && o.MQTT.Username == "" && !broker.IsLoopback(host) {
			add("Broker.Address", "%q is reachable from other hosts: the embedded broker then needs credentials. "+
				"Set MQTT_USERNAME and MQTT_PASSWORD (the shipped manifests read them from Secret %s in the controller's namespace, keys username and password: "+
				"kubectl -n module-controller create secret generic %s --from-literal=username=module-controller --from-literal=password=\"$(head -c 32 /dev/urandom | base64)\"), "+
				"or listen on loopback only (--embedded-broker-address=127.0.0.1:1883); see the \"Security model\" of docs/operations.md",
				o.Broker.Address, MQTTSecretName, MQTTSecretName)
		} else if o.Broker.PasswordFile != "" && o.MQTT.Username == "" {
			add("Broker.PasswordFile", "needs the controller's own user: set {MQTT.Username} and {MQTT.Password}")
		}
		errs = append(errs, fieldcheck.TLSFiles(
			fieldcheck.File{Field: "EmbeddedBrokerTLSCertPath", Path: o.EmbeddedBrokerTLSCertPath},
			fieldcheck.File{Field: "EmbeddedBrokerTLSKeyPath", Path: o.EmbeddedBrokerTLSKeyPath},
			fieldcheck.File{Field: "EmbeddedBrokerClientCAPath", Path: o.EmbeddedBrokerClientCAPath}, true)...)
	}
	if o.ClusterMode {
		if !o.MQTTTunnel || o.MQTTBroker == "" {
			add("ClusterMode", "needs an external broker (--mqtt-broker) that every replica uses: each embedded broker would see only the bases connected to it")
		}
		if o.HTTPTunnel {
			add("ClusterMode", "does not support {HTTPTunnel}: each heartbeat reaches one replica, so the replicas cannot share the bases")
		}
	}
	// Like $KUBECONFIG for kubectl, --kubeconfig may list several files.
	for _, path := range filepath.SplitList(o.Kubeconfig) {
		if _, err := os.Stat(path); err != nil {
			add("Kubeconfig", "%v", err)
		}
	}
	if o.KubeAPIQPS <= 0 || o.KubeAPIBurst < 1 {
		add("KubeAPIQPS", "%v and {KubeAPIBurst} %d must be positive", o.KubeAPIQPS, o.KubeAPIBurst)
	}
	if o.KubeAPIMaxInFlight < 1 {
		add("KubeAPIMaxInFlight", "%d must be positive", o.KubeAPIMaxInFlight)
	}
	if o.KubeletPort < 0 || o.KubeletPort > 65535 {
		add("KubeletPort", "%d is not a port (0 turns the kubelet API off)", o.KubeletPort)
	}
	if o.LogFormat != "text" && o.LogFormat != "json" {
		add("LogFormat", "%q is not one of text, json", o.LogFormat)
	}
	switch o.LogLevel {
	case "trace", "debug", "info", "warn", "warning", "error":
	default:
		add("LogLevel", "%q is not one of trace, debug, info, warn, error", o.LogLevel)
	}
	return errors.Join(errs...)
}

// check appends the parts of err, a component's validation, to errs, with
// each field named by the flag that sets it. component points to the
// component's Config inside o (or is o).
func (o *Options) check(errs *[]error, component any, err error) {
	for _, e := range fieldcheck.Errors(err) {
		var fe *fieldcheck.Error
		if !errors.As(e, &fe) {
			*errs = append(*errs, e)
			continue
		}
		flag := func(field string) string {
			if s := o.settingOf(component, field); s != nil {
				return "--" + s.flag
			}
			return ""
		}
		msg := fe.Render(flag, flag)
		if s := o.settingOf(component, fe.Field); s != nil && s.env != "" {
			msg += " [$" + s.env + "]"
		}
		*errs = append(*errs, errors.New(msg))
	}
}

// settingOf returns the setting that sets, or feeds, the field at path
// (dotted) of component, or nil.
func (o *Options) settingOf(component any, path string) *setting {
	v := reflect.ValueOf(component).Elem()
	for _, name := range strings.Split(path, ".") {
		if v.Kind() != reflect.Struct {
			return nil
		}
		if v = v.FieldByName(name); !v.IsValid() {
			return nil
		}
	}
	ptr := v.Addr().Interface()
	for _, g := range o.table() {
		for i, s := range g.settings {
			if s.ptr == ptr {
				return &g.settings[i]
			}
			for _, f := range s.feeds {
				if f == ptr {
					return &g.settings[i]
				}
			}
		}
	}
	return nil
}

// dedupe drops repeated errors (two components reporting one setting).
func dedupe(errs []error) []error {
	seen := map[string]bool{}
	var out []error
	for _, e := range errs {
		if !seen[e.Error()] {
			seen[e.Error()] = true
			out = append(out, e)
		}
	}
	return out
}

// setting is one row of the table: a flag, its environment variables, and
// the field it sets.
type setting struct {
	// flag is the flag name; env the environment variable; fallbacks more
	// variables read in order when env is unset (old names, the downward API).
	flag, env string
	fallbacks []string
	// oldFlags are deprecated flag names still accepted.
	oldFlags []string
	// ptr points to the field the flag sets: *string, *int, *bool,
	// *float64, *uint32, *time.Duration or *map[string]int.
	ptr any
	// feeds point to fields derived from this one (Complete), so that their
	// validation errors name this flag.
	feeds []any
	usage string
}

// given reports whether s was set on the command line, under its name or
// an old one.
func (s setting) given(fs *pflag.FlagSet) bool {
	for _, name := range append([]string{s.flag}, s.oldFlags...) {
		if f := fs.Lookup(name); f != nil && f.Changed {
			return true
		}
	}
	return false
}

// envs returns the environment variables of s, in the order they are read.
func (s setting) envs() []string {
	if s.env == "" {
		return nil
	}
	return append([]string{s.env}, s.fallbacks...)
}

// bind registers s on fs with the field's current value as its default.
func (s setting) bind(fs *pflag.FlagSet) {
	usage := s.usage
	if envs := s.envs(); len(envs) > 0 {
		usage += " [$" + strings.Join(envs, ", $") + "]"
	}
	names := append([]string{s.flag}, s.oldFlags...)
	for i, name := range names {
		switch p := s.ptr.(type) {
		case *string:
			fs.StringVar(p, name, *p, usage)
		case *int:
			fs.IntVar(p, name, *p, usage)
		case *bool:
			fs.BoolVar(p, name, *p, usage)
		case *float64:
			fs.Float64Var(p, name, *p, usage)
		case *uint32:
			fs.Uint32Var(p, name, *p, usage)
		case *time.Duration:
			fs.DurationVar(p, name, *p, usage)
		case *map[string]int:
			fs.StringToIntVar(p, name, *p, usage)
		default:
			panic(fmt.Sprintf("config: setting --%s has an unsupported type %T", s.flag, s.ptr))
		}
		if i > 0 {
			_ = fs.MarkDeprecated(name, "use --"+s.flag)
		}
	}
}
