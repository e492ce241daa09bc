package kubeletapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/virtual-kubelet/virtual-kubelet/log"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/moduleops/module-controller/pkg/fieldcheck"
)

// Defaults and bounds of the server.
const (
	// DefaultMaxStreams bounds the log streams served at once; each holds a
	// connection to the API server.
	DefaultMaxStreams = 64
	// maxHeaderBytes bounds the request line and headers read per request.
	maxHeaderBytes = 16 << 10
	// readHeaderTimeout bounds the wait for a request's headers. There is
	// no overall read or write timeout: a followed log streams for as long
	// as the caller reads it.
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 90 * time.Second
	shutdownTimeout   = 5 * time.Second
	// lookupTimeout bounds the API reads that find a module pod's base Pod.
	lookupTimeout = 15 * time.Second
)

// PodsWithIP returns the pods bound to a node that show ip (the controller's
// shared pod cache answers it).
type PodsWithIP func(ctx context.Context, ip string) ([]*corev1.Pod, error)

// Config configures the Server.
type Config struct {
	// Client reads pods, nodes and log streams and makes the TokenReviews
	// and SubjectAccessReviews.
	Client kubernetes.Interface
	// Env is the tunnel environment: only module pods on this env's virtual
	// nodes are served.
	Env string
	// ListenAddress is host:port to listen on; port 0 picks a free one.
	ListenAddress string
	// CertFile and KeyFile are the PEM serving certificate and key, re-read
	// when they change (a mounted Secret renewed by cert-manager). Empty: a
	// self-signed certificate for Hosts is made at start.
	CertFile, KeyFile string
	// Hosts are the IPs and DNS names of the self-signed certificate.
	Hosts []string
	// ClientCAFile, if set, is the PEM CA that signed the API server's
	// kubelet client certificate: callers must present a certificate it
	// signed. Unset, callers authenticate with a bearer token (TokenReview).
	ClientCAFile string
	// BaseContainer is the container of the base Pod whose logs are
	// streamed; empty: the Pod's first container.
	BaseContainer string
	// BasePods finds the pods with a base's IP; nil lists them from the
	// API server with a status.podIP field selector.
	BasePods PodsWithIP
	// MaxStreams bounds the log streams served at once; 0: DefaultMaxStreams.
	MaxStreams int
	// Registerer receives the server's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// Server is the kubelet API of this replica's virtual nodes.
type Server struct {
	cfg      Config
	listener net.Listener
	srv      *http.Server
	handler  http.Handler
	auth     *authenticator
	streams  chan struct{}
	metrics  *metrics
}

// Validate reports every problem of the settings in c, each a
// fieldcheck.Error naming its field.
func (c Config) Validate() error {
	var errs []error
	if c.Env == "" {
		errs = append(errs, fieldcheck.Errorf("Env", "is needed"))
	}
	if _, _, err := net.SplitHostPort(c.ListenAddress); err != nil {
		errs = append(errs, fieldcheck.Errorf("ListenAddress", "%q: %v", c.ListenAddress, err))
	}
	// Without a certificate a self-signed one is made; the client CA
	// works with either.
	errs = append(errs, fieldcheck.TLSFiles(
		fieldcheck.File{Field: "CertFile", Path: c.CertFile}, fieldcheck.File{Field: "KeyFile", Path: c.KeyFile},
		fieldcheck.File{Field: "ClientCAFile", Path: c.ClientCAFile}, false)...)
	if c.MaxStreams < 0 {
		errs = append(errs, fieldcheck.Errorf("MaxStreams", "%d must not be negative", c.MaxStreams))
	}
	return errors.Join(errs...)
}

// New checks cfg, loads or makes the certificates and binds the listener.
// Nothing is served until Run.
func New(cfg Config) (*Server, error) {
	if cfg.Client == nil {
		return nil, errors.New("kubelet API needs a Kubernetes client")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kubelet API: %w", err)
	}
	if cfg.MaxStreams == 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CertFile != "" {
		certs, err := newCertFiles(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, err
		}
		tlsConfig.GetCertificate = certs.get
	} else {
		cert, err := selfSigned(cfg.Hosts, time.Now())
		if err != nil {
			return nil, err
		}
		tlsConfig.Certificates = []tls.Certificate{cert}
	}
	if cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("kubelet API client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kubelet API client CA %s holds no PEM certificate", cfg.ClientCAFile)
		}
		tlsConfig.ClientCAs = pool
		tlsConfig.ClientAuth = tls.RequireAndVerifyClientCert
	}
	s := &Server{
		cfg:     cfg,
		streams: make(chan struct{}, cfg.MaxStreams),
		metrics: newMetrics(cfg.Registerer),
	}
	s.auth = newAuthenticator(cfg.Client, cfg.ClientCAFile != "", s.metrics)
	s.handler = s.routes()
	ln, err := net.Listen("tcp", cfg.ListenAddress)
	if err != nil {
		return nil, fmt.Errorf("kubelet API: %w", err)
	}
	s.listener = ln
	s.srv = &http.Server{
		Handler:           s.handler,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
	}
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// Handler is the server's handler behind TLS, for tests.
func (s *Server) Handler() http.Handler { return s.handler }

// Run serves until ctx is done, then stops taking requests and closes the
// streams being served.
func (s *Server) Run(ctx context.Context) error {
	s.srv.BaseContext = func(net.Listener) context.Context { return ctx }
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		_ = s.srv.Shutdown(sctx)
	}()
	log.G(ctx).WithField("address", s.Addr()).WithField("clientCertificates", s.cfg.ClientCAFile != "").Info("serving the kubelet API of the virtual nodes")
	if err := s.srv.ServeTLS(s.listener, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving the kubelet API: %w", err)
	}
	return nil
}
