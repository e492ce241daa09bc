package framework

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// DefaultStartTimeout bounds Start; a warm start takes about 10 s on 2 cores.
const DefaultStartTimeout = 2 * time.Minute

// ServiceClusterIPRange is the service CIDR of the test cluster.
const ServiceClusterIPRange = "10.0.0.0/24"

// Options configures Start. The zero value is a fresh cluster in a temp dir
// using the binaries from DefaultBinDir.
type Options struct {
	// BinDir holds etcd, kube-apiserver, kube-scheduler and
	// kube-controller-manager. Default: DefaultBinDir().
	BinDir string
	// Dir receives data, certificates, kubeconfigs and one log file per
	// component. Default: a new temp dir that Stop removes. A given Dir is kept.
	Dir string
	// StartTimeout bounds the whole start, until every component is healthy.
	// Default: DefaultStartTimeout.
	StartTimeout time.Duration
	// StopGrace is the time between SIGTERM and SIGKILL. Default: DefaultStopGrace.
	StopGrace time.Duration
	// ExtraArgs are appended to a component's flags, keyed by binary name
	// (e.g. "kube-apiserver": {"--feature-gates=..."}).
	ExtraArgs map[string][]string
	// OnProcessStart, if set, is called with each component's name and PID as
	// soon as it is started (tests use it to check nothing outlives Stop).
	OnProcessStart func(name string, pid int)
}

// Cluster is a running control plane. Every field is set when Start returns.
type Cluster struct {
	// Dir holds the cluster's data, certificates, kubeconfigs and logs.
	Dir string
	// Kubeconfig is the path of a self-contained admin kubeconfig
	// (client certificate in group system:masters).
	Kubeconfig string
	// CAFile is the PEM CA that signed the apiserver's serving certificate
	// and every client certificate.
	CAFile string
	// KubeletClientCAFile is the PEM CA of the apiserver's kubelet client
	// certificate (--kubelet-client-certificate: user KubeletClientUser in
	// group system:masters, as kubeadm issues it), the --kubelet-client-ca
	// of a controller; fake kubelets verify it too.
	KubeletClientCAFile string
	// Config and Client talk to the apiserver as admin.
	Config *rest.Config
	Client kubernetes.Interface

	caPEM     []byte
	procs     []*process
	removeDir bool
	stopGrace time.Duration
	stopOnce  sync.Once
	stopErr   error
}

// pki is everything Start generates before launching processes.
type pki struct {
	ca                   *certAuthority
	caFile, caKeyFile    string
	frontProxyCA         *certAuthority
	frontProxyCAFile     string
	kubeletClientCA      *certAuthority
	saKeyFile, saPubFile string
}

// KubeletClientUser is the user of the apiserver's kubelet client certificate.
const KubeletClientUser = "kube-apiserver-kubelet-client"

// Start launches etcd, kube-apiserver (client-certificate authentication,
// Node+RBAC authorization, service-account tokens), kube-scheduler and
// kube-controller-manager on free loopback ports and waits until the
// apiserver is ready, the scheduler and controller manager are healthy and
// the default ServiceAccount exists. On error everything started is stopped.
// ctx bounds the start only; the processes run until Stop.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = DefaultStopGrace
	}
	if opts.BinDir == "" {
		if opts.BinDir, err = DefaultBinDir(); err != nil {
			return nil, err
		}
	}
	if err := checkBinaries(opts.BinDir, ControlPlaneBinaries...); err != nil {
		return nil, err
	}
	c := &Cluster{Dir: opts.Dir, stopGrace: opts.StopGrace}
	if c.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "module-controller-cluster-"); err != nil {
			return nil, err
		}
		c.removeDir = true
	} else if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	// The free ports are released before the components bind them (the
	// apiserver binds a second or two after it starts), so another process
	// may take one in between; then start again on other ports.
	for attempt := 1; ; attempt++ {
		err = c.launch(ctx, opts)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, errPortInUse) || attempt == maxStartAttempts {
			return nil, errors.Join(err, c.Stop())
		}
		if err := c.stopProcesses(); err != nil {
			return nil, errors.Join(err, c.Stop())
		}
		c.procs = nil
	}
}

// maxStartAttempts bounds retries after a component lost its port to another process.
const maxStartAttempts = 3

// errPortInUse marks a start that failed because a port was taken.
var errPortInUse = errors.New("port taken by another process")

// launch generates credentials, starts the components and waits until they
// are healthy. On error the caller stops what was started.
func (c *Cluster) launch(ctx context.Context, opts Options) (err error) {
	// A previous attempt's etcd data would name other peer URLs.
	if err := os.RemoveAll(filepath.Join(c.Dir, "etcd")); err != nil {
		return err
	}
	ports, err := freePorts(5)
	if err != nil {
		return err
	}
	etcdPort, peerPort, apiPort, schedPort, kcmPort := ports[0], ports[1], ports[2], ports[3], ports[4]
	server := "https://" + hostPort(apiPort)

	p, err := c.writePKI()
	if err != nil {
		return err
	}
	creds, err := c.writeComponentCredentials(p, server, schedPort, kcmPort)
	if err != nil {
		return err
	}

	etcdURL := "http://" + hostPort(etcdPort)
	peerURL := "http://" + hostPort(peerPort)
	components := []struct {
		name string
		args []string
	}{
		{"etcd", []string{
			"--name=default",
			"--data-dir=" + filepath.Join(c.Dir, "etcd"),
			"--listen-client-urls=" + etcdURL,
			"--advertise-client-urls=" + etcdURL,
			"--listen-peer-urls=" + peerURL,
			"--initial-advertise-peer-urls=" + peerURL,
			"--initial-cluster=default=" + peerURL,
			"--unsafe-no-fsync=true", // throwaway data; fsync only slows tests down
		}},
		{"kube-apiserver", []string{
			"--etcd-servers=" + etcdURL,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			// Nothing in the test bed runs pods that talk to the "kubernetes"
			// service, and 1.37 refuses a loopback address for its endpoints.
			"--endpoint-reconciler-type=none",
			"--secure-port=" + strconv.Itoa(apiPort),
			"--tls-cert-file=" + creds.apiserverCert,
			"--tls-private-key-file=" + creds.apiserverKey,
			"--client-ca-file=" + p.caFile,
			// A front proxy (aggregation layer) CA as kubeadm sets up: without it
			// the scheduler and controller manager log an error every few
			// seconds about a missing requestheader CA bundle.
			"--requestheader-client-ca-file=" + p.frontProxyCAFile,
			"--requestheader-allowed-names=front-proxy-client",
			"--requestheader-username-headers=X-Remote-User",
			"--requestheader-group-headers=X-Remote-Group",
			"--requestheader-extra-headers-prefix=X-Remote-Extra-",
			"--proxy-client-cert-file=" + creds.frontProxyCert,
			"--proxy-client-key-file=" + creds.frontProxyKey,
			// The apiserver's identity towards kubelets (logs, exec): the
			// controller's kubelet API and the fake kubelets verify it.
			"--kubelet-client-certificate=" + creds.kubeletClientCert,
			"--kubelet-client-key=" + creds.kubeletClientKey,
			"--authorization-mode=Node,RBAC",
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + p.saPubFile,
			"--service-account-signing-key-file=" + p.saKeyFile,
			"--service-cluster-ip-range=" + ServiceClusterIPRange,
			"--cert-dir=" + filepath.Join(c.Dir, "apiserver-certs"),
			"--allow-privileged=true",
			"--profiling=false",
		}},
		{"kube-scheduler", []string{
			"--config=" + creds.schedulerConfig,
			"--authentication-kubeconfig=" + creds.schedulerKubeconfig,
			"--authorization-kubeconfig=" + creds.schedulerKubeconfig,
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(schedPort),
			"--tls-cert-file=" + creds.schedulerCert,
			"--tls-private-key-file=" + creds.schedulerKey,
			"--profiling=false",
		}},
		{"kube-controller-manager", []string{
			"--kubeconfig=" + creds.kcmKubeconfig,
			"--authentication-kubeconfig=" + creds.kcmKubeconfig,
			"--authorization-kubeconfig=" + creds.kcmKubeconfig,
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(kcmPort),
			"--tls-cert-file=" + creds.kcmCert,
			"--tls-private-key-file=" + creds.kcmKey,
			"--leader-elect=false",
			"--controllers=*",
			"--use-service-account-credentials=true",
			"--service-account-private-key-file=" + p.saKeyFile,
			"--root-ca-file=" + p.caFile,
			"--cluster-signing-cert-file=" + p.caFile,
			"--cluster-signing-key-file=" + p.caKeyFile,
			"--service-cluster-ip-range=" + ServiceClusterIPRange,
			"--profiling=false",
		}},
	}
	start := func(names ...string) error {
		for _, comp := range components {
			if !slices.Contains(names, comp.name) {
				continue
			}
			args := append(comp.args, opts.ExtraArgs[comp.name]...)
			proc, err := startProcess(comp.name, filepath.Join(opts.BinDir, comp.name), args, filepath.Join(c.Dir, comp.name+".log"))
			if err != nil {
				return err
			}
			c.procs = append(c.procs, proc)
			if opts.OnProcessStart != nil {
				opts.OnProcessStart(comp.name, proc.pid())
			}
		}
		return nil
	}
	// etcd and the apiserver start together (the apiserver retries etcd). The
	// scheduler and controller manager come after /readyz: with delegated
	// authentication they exit if they cannot read the client CA at start-up.
	if err := start("etcd", "kube-apiserver"); err != nil {
		return err
	}

	c.Kubeconfig = creds.adminKubeconfig
	if c.Config, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig); err != nil {
		return fmt.Errorf("load admin kubeconfig: %w", err)
	}
	c.Config.QPS, c.Config.Burst = 100, 200
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return fmt.Errorf("admin client: %w", err)
	}

	if err := c.waitFor(ctx, "kube-apiserver /readyz", func(ctx context.Context) error {
		_, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	}); err != nil {
		return err
	}
	if err := start("kube-scheduler", "kube-controller-manager"); err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.caPEM)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}
	defer hc.CloseIdleConnections()
	for name, port := range map[string]int{"kube-scheduler": schedPort, "kube-controller-manager": kcmPort} {
		if err := c.waitFor(ctx, name+" /healthz", func(ctx context.Context) error {
			return healthz(ctx, hc, "https://"+hostPort(port)+"/healthz")
		}); err != nil {
			return err
		}
	}
	// Pods are admitted only with a ServiceAccount; its appearance proves the
	// controller manager's controllers run with working credentials.
	if err := c.waitFor(ctx, "default ServiceAccount", func(ctx context.Context) error {
		_, err := c.Client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return errors.New("not created yet")
		}
		return err
	}); err != nil {
		return err
	}
	return nil
}

// componentCredentials are the files each component is started with.
type componentCredentials struct {
	apiserverCert, apiserverKey         string
	frontProxyCert, frontProxyKey       string
	kubeletClientCert, kubeletClientKey string
	adminKubeconfig                     string
	schedulerKubeconfig, kcmKubeconfig  string
	schedulerConfig                     string
	schedulerCert, schedulerKey         string
	kcmCert, kcmKey                     string
}

func (c *Cluster) writePKI() (pki, error) {
	var p pki
	var err error
	if p.ca, err = newCertAuthority("module-controller-e2e-ca"); err != nil {
		return p, err
	}
	c.caPEM = p.ca.certPEM
	p.caFile, p.caKeyFile = filepath.Join(c.Dir, "ca.crt"), filepath.Join(c.Dir, "ca.key")
	c.CAFile = p.caFile
	if err := os.WriteFile(p.caFile, p.ca.certPEM, 0o600); err != nil {
		return p, err
	}
	if err := os.WriteFile(p.caKeyFile, p.ca.keyPEM, 0o600); err != nil {
		return p, err
	}
	if p.frontProxyCA, err = newCertAuthority("module-controller-e2e-front-proxy-ca"); err != nil {
		return p, err
	}
	p.frontProxyCAFile = filepath.Join(c.Dir, "front-proxy-ca.crt")
	if err := os.WriteFile(p.frontProxyCAFile, p.frontProxyCA.certPEM, 0o600); err != nil {
		return p, err
	}
	if p.kubeletClientCA, err = newCertAuthority("module-controller-e2e-kubelet-client-ca"); err != nil {
		return p, err
	}
	c.KubeletClientCAFile = filepath.Join(c.Dir, "kubelet-client-ca.crt")
	if err := os.WriteFile(c.KubeletClientCAFile, p.kubeletClientCA.certPEM, 0o600); err != nil {
		return p, err
	}
	p.saKeyFile, p.saPubFile, err = writeServiceAccountKeys(c.Dir)
	return p, err
}

func (c *Cluster) writeComponentCredentials(p pki, server string, schedPort, kcmPort int) (componentCredentials, error) {
	var cr componentCredentials
	kubernetesNames := []string{
		"127.0.0.1", "localhost", "10.0.0.1", "kubernetes", "kubernetes.default",
		"kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
	}
	loopback := []string{"127.0.0.1", "localhost"}
	issue := func(base string, req certRequest) (string, string, error) {
		kp, err := p.ca.issue(req)
		if err != nil {
			return "", "", err
		}
		return kp.write(filepath.Join(c.Dir, base))
	}
	kubeconfig := func(name string, req certRequest) (string, error) {
		kp, err := p.ca.issue(req)
		if err != nil {
			return "", err
		}
		path := filepath.Join(c.Dir, name+".kubeconfig")
		return path, certKubeconfig(path, server, p.ca.certPEM, req.commonName, kp)
	}
	var err error
	if cr.apiserverCert, cr.apiserverKey, err = issue("apiserver", certRequest{commonName: "kube-apiserver", hosts: kubernetesNames}); err != nil {
		return cr, err
	}
	fp, err := p.frontProxyCA.issue(certRequest{commonName: "front-proxy-client"})
	if err != nil {
		return cr, err
	}
	if cr.frontProxyCert, cr.frontProxyKey, err = fp.write(filepath.Join(c.Dir, "front-proxy-client")); err != nil {
		return cr, err
	}
	kc, err := p.kubeletClientCA.issue(certRequest{commonName: KubeletClientUser, organization: []string{"system:masters"}})
	if err != nil {
		return cr, err
	}
	if cr.kubeletClientCert, cr.kubeletClientKey, err = kc.write(filepath.Join(c.Dir, "apiserver-kubelet-client")); err != nil {
		return cr, err
	}
	if cr.schedulerCert, cr.schedulerKey, err = issue("scheduler-serving", certRequest{commonName: "kube-scheduler", hosts: loopback}); err != nil {
		return cr, err
	}
	if cr.kcmCert, cr.kcmKey, err = issue("controller-manager-serving", certRequest{commonName: "kube-controller-manager", hosts: loopback}); err != nil {
		return cr, err
	}
	if cr.adminKubeconfig, err = kubeconfig("admin", certRequest{commonName: "admin", organization: []string{"system:masters"}}); err != nil {
		return cr, err
	}
	if cr.schedulerKubeconfig, err = kubeconfig("scheduler", certRequest{commonName: "system:kube-scheduler"}); err != nil {
		return cr, err
	}
	if cr.kcmKubeconfig, err = kubeconfig("controller-manager", certRequest{commonName: "system:kube-controller-manager"}); err != nil {
		return cr, err
	}
	cr.schedulerConfig = filepath.Join(c.Dir, "scheduler-config.yaml")
	schedulerConfig := "apiVersion: kubescheduler.config.k8s.io/v1\n" +
		"kind: KubeSchedulerConfiguration\n" +
		"clientConnection:\n  kubeconfig: " + strconv.Quote(cr.schedulerKubeconfig) + "\n" +
		"leaderElection:\n  leaderElect: false\n"
	return cr, os.WriteFile(cr.schedulerConfig, []byte(schedulerConfig), 0o600)
}

func healthz(ctx context.Context, hc *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// pollInterval is how often Start re-checks a condition.
const pollInterval = 200 * time.Millisecond

// waitFor polls check until it succeeds, a component exits, or ctx ends.
func (c *Cluster) waitFor(ctx context.Context, what string, check func(context.Context) error) error {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	var last error
	for {
		for _, p := range c.procs {
			if p.exited() {
				err := p.exitError()
				if p.lostPort() {
					err = fmt.Errorf("%w: %w", errPortInUse, err)
				}
				return fmt.Errorf("waiting for %s: %w", what, err)
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		last = check(cctx)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last error: %w)\n%s", what, ctx.Err(), last, c.LogTails(15))
		case <-t.C:
		}
	}
}

// Stop stops every component in reverse start order (SIGTERM, then SIGKILL
// after the grace period, to the whole process group), waits until each is
// reaped and removes the directory if Start created it. It is idempotent.
//
// The order matters: kube-apiserver takes up to a minute to drain while the
// scheduler and controller manager still hold watches (about 1 s once they are
// gone), and etcd waits for the apiserver's gRPC streams.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		errs := []error{c.stopProcesses()}
		if c.removeDir {
			errs = append(errs, os.RemoveAll(c.Dir))
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// stopProcesses stops the components in reverse start order.
func (c *Cluster) stopProcesses() error {
	var errs []error
	for _, p := range slices.Backward(c.procs) {
		errs = append(errs, p.stop(c.stopGrace))
	}
	return errors.Join(errs...)
}

// PIDs returns the process ID of each component by name.
func (c *Cluster) PIDs() map[string]int {
	m := make(map[string]int, len(c.procs))
	for _, p := range c.procs {
		m[p.name] = p.pid()
	}
	return m
}

// LogFiles returns the path of each component's log by name.
func (c *Cluster) LogFiles() map[string]string {
	m := make(map[string]string, len(c.procs))
	for _, p := range c.procs {
		m[p.name] = p.logPath
	}
	return m
}

// LogTails returns the last lines of every component's log, for failure reports.
func (c *Cluster) LogTails(lines int) string {
	var b strings.Builder
	names := make([]string, 0, len(c.procs))
	byName := map[string]*process{}
	for _, p := range c.procs {
		names = append(names, p.name)
		byName[p.name] = p
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "--- %s (%s) ---\n%s", n, byName[n].logPath, tailFile(byName[n].logPath, lines))
	}
	return b.String()
}

// StopComponent stops one component by its PID (SIGTERM, SIGKILL after the
// grace period) and keeps its flags, so that StartComponent can start it again
// on the same ports with the same etcd data. Tests use it to take the
// apiserver away. It must not run concurrently with other Cluster methods.
func (c *Cluster) StopComponent(name string) error {
	p, err := c.component(name)
	if err != nil {
		return err
	}
	return p.stop(c.stopGrace)
}

// StartComponent starts a component that StopComponent stopped (or that
// exited) again with the same flags, appending to the same log. For
// kube-apiserver it waits until /readyz answers; ctx bounds the wait. It must
// not run concurrently with other Cluster methods.
func (c *Cluster) StartComponent(ctx context.Context, name string) error {
	old, err := c.component(name)
	if err != nil {
		return err
	}
	if !old.exited() {
		return fmt.Errorf("%s (pid %d) is still running", name, old.pid())
	}
	p, err := startProcessEnv(old.name, old.bin, old.args, old.env, old.logPath)
	if err != nil {
		return err
	}
	for i := range c.procs {
		if c.procs[i] == old {
			c.procs[i] = p
		}
	}
	if name != "kube-apiserver" {
		return nil
	}
	return c.waitFor(ctx, "kube-apiserver /readyz", func(ctx context.Context) error {
		_, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	})
}

// component returns the process of the named component.
func (c *Cluster) component(name string) (*process, error) {
	for _, p := range c.procs {
		if p.name == name {
			return p, nil
		}
	}
	return nil, fmt.Errorf("no component %q (have %v)", name, ControlPlaneBinaries)
}
