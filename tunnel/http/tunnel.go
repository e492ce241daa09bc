package httptunnel

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	"golang.org/x/time/rate"

	"github.com/moduleops/module-controller/pkg/protocol"
	"github.com/moduleops/module-controller/tunnel"
)

// Errors returned (wrapped) by the commands.
var (
	// ErrUnknownBase means no valid heartbeat of the base announced an address within the
	// last Config.BaseTTL: there is nowhere to send the command.
	ErrUnknownBase = errors.New("http tunnel: no address announced by this base")
	// ErrBusy means Config.MaxInFlight installs and uninstalls already run for the base;
	// nothing was sent. Retry later.
	ErrBusy = errors.New("http tunnel: too many calls in flight to this base")
	// ErrNotRunning means Run has not started or has stopped.
	ErrNotRunning = errors.New("http tunnel not running")
	// ErrNoBaselineQuery is returned by SendBaseline when the base has no baseline query
	// waiting: over HTTP a baseline is only the answer to a base's own POST
	// /queryBaseline, which a stock base never sends (its bizs are reinstalled from its
	// queryAllBiz list instead).
	ErrNoBaselineQuery = errors.New("http tunnel: no baseline query of this base is waiting")
)

// errRunTwice is returned by a second call of Run.
var errRunTwice = errors.New("http tunnel: Run called more than once")

// shutdownTimeout bounds the graceful shutdown of the heartbeat server.
const shutdownTimeout = 5 * time.Second

// Tunnel implements tunnel.Tunnel over the arklet's HTTP tunnel. See the package
// documentation.
type Tunnel struct {
	cfg     Config
	metrics *metrics
	tls     *tls.Config // nil: plain HTTP
	client  *http.Client
	log     log.Logger // set by Run before serving

	started  atomic.Bool
	serving  atomic.Bool
	ready    chan struct{}
	stopping chan struct{} // closed when Run stops
	addr     atomic.Pointer[string]

	// callCtx is the parent of every command call; Run sets it and cancels it on stop.
	callCtx context.Context
	calls   sync.WaitGroup

	events chan tunnel.Event

	mu        sync.Mutex
	running   bool
	bases     map[string]*baseEntry
	clients   map[netip.Addr]*clientEntry
	baselines map[string]chan []protocol.BizModel
}

// baseEntry is what the tunnel knows of one base: the address its last valid heartbeat
// announced and the calls running to it.
type baseEntry struct {
	addr    netip.AddrPort
	seen    time.Time
	ops     int                 // install and uninstall calls in flight
	pending map[string]struct{} // keys of the calls in flight
}

// clientEntry is the rate bound of one client address.
type clientEntry struct {
	limiter *rate.Limiter
	seen    time.Time
}

var _ tunnel.Tunnel = (*Tunnel)(nil)

// New validates cfg, applies defaults, reads the TLS files and registers the metrics. It
// does not listen: Run does.
func New(cfg Config) (*Tunnel, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid http tunnel config: %w", err)
	}
	t := &Tunnel{
		cfg:       cfg,
		log:       log.L,
		ready:     make(chan struct{}),
		stopping:  make(chan struct{}),
		events:    make(chan tunnel.Event, cfg.EventBuffer),
		bases:     map[string]*baseEntry{},
		clients:   map[netip.Addr]*clientEntry{},
		baselines: map[string]chan []protocol.BizModel{},
	}
	if cfg.TLSCertFile != "" {
		tc, err := serverTLS(cfg)
		if err != nil {
			return nil, err
		}
		t.tls = tc
	}
	t.client = t.newClient()
	var err error
	if t.metrics, err = newMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	return t, nil
}

// serverTLS builds the server's TLS configuration: its certificate and, with a client CA,
// verified client certificates.
func serverTLS(cfg Config) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("http tunnel server certificate: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("http tunnel client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("http tunnel client CA %s: no PEM certificate", cfg.ClientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// Addr returns the address the server listens on once Ready is closed, else "".
func (t *Tunnel) Addr() string {
	if p := t.addr.Load(); p != nil {
		return *p
	}
	return ""
}

// Ready is closed once the server listens.
func (t *Tunnel) Ready() <-chan struct{} { return t.ready }

// Connected reports whether the server listens right now.
func (t *Tunnel) Connected() bool { return t.serving.Load() }

// Events returns the stream of heartbeats, baseline queries and command answers. Its
// capacity is Config.EventBuffer; when it is full, heartbeats wait (their client with
// them) and answers wait in their call's goroutine. It is never closed.
func (t *Tunnel) Events() <-chan tunnel.Event { return t.events }

// Run listens on Config.ListenAddress and serves heartbeats and baseline queries until ctx
// is done; then it stops the server, cancels the command calls still running, waits for
// them and returns nil. It returns an error if it cannot listen. Run may be called once.
func (t *Tunnel) Run(ctx context.Context) error {
	if !t.started.CompareAndSwap(false, true) {
		return errRunTwice
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("tunnel", "http"))
	t.log = log.G(ctx)
	callCtx, cancelCalls := context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		cancelCalls()
		t.calls.Wait()
	}()
	defer close(t.stopping) // first of the deferred: waiting handlers and calls give up
	t.mu.Lock()
	t.callCtx, t.running = callCtx, true
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.running = false
		t.mu.Unlock()
	}()

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", t.cfg.ListenAddress)
	if err != nil {
		return fmt.Errorf("http tunnel: listen on %s: %w", t.cfg.ListenAddress, err)
	}
	addr := ln.Addr().String()
	t.addr.Store(&addr)
	if t.tls != nil {
		ln = tls.NewListener(ln, t.tls)
	}
	mux := http.NewServeMux()
	mux.Handle(protocol.HTTPPathHeartbeat, t.handler(protocol.HTTPPathHeartbeat, t.onHeartbeat))
	mux.Handle(protocol.HTTPPathQueryBaseline, t.handler(protocol.HTTPPathQueryBaseline, t.onQueryBaseline))
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		ReadTimeout:       DefaultReadTimeout,
		WriteTimeout:      max(DefaultWriteTimeout, t.cfg.BaselineWait+5*time.Second),
		IdleTimeout:       DefaultIdleTimeout,
		MaxHeaderBytes:    16 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.serving.Store(true)
	close(t.ready)
	t.log.WithField("address", addr).WithField("tls", t.tls != nil).WithField("auth", t.cfg.AuthToken != "").
		Info("serving the http tunnel")

	select {
	case <-ctx.Done():
	case err = <-done:
	}
	t.serving.Store(false)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	_ = srv.Shutdown(sctx) // a handler still running after the timeout is cut off
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http tunnel: serve: %w", err)
	}
	t.log.Info("http tunnel stopped")
	return nil
}

// requestHandler handles one authenticated, rate-bounded POST whose body (at most
// Config.MaxRequestBytes) was read. It writes the answer itself, or returns a drop reason,
// a status and an error, which the caller logs, counts and answers as plain text.
type requestHandler func(w http.ResponseWriter, r *http.Request, from netip.Addr, body []byte) (reason string, status int, err error)

// handler wraps h with what every request gets: panic recovery, the method check, the
// bearer token, the client's rate bound and the capped body read, in this order, so a
// refused request costs neither a body read nor a JSON parse.
func (t *Tunnel) handler(path string, h requestHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		from := remoteAddr(r)
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler { //nolint:errorlint // the sentinel net/http panics with, compared as net/http does
					panic(p)
				}
				t.metrics.dropped.WithLabelValues("other").Inc()
				t.log.WithField("path", path).WithField("panic", fmt.Sprint(p)).Error("recovered from panic while handling an http tunnel request")
				if !rw.wrote {
					http.Error(rw, "internal error", http.StatusInternalServerError)
				}
			}
			t.metrics.requests.WithLabelValues(path, strconv.Itoa(rw.code)).Inc()
		}()
		reason, status, err := t.admit(rw, r, from)
		if err == nil {
			var body []byte
			if body, reason, status, err = t.readBody(rw, r); err == nil {
				reason, status, err = h(rw, r, from, body)
			}
		}
		if err != nil {
			t.metrics.dropped.WithLabelValues(reason).Inc()
			t.log.WithFields(log.Fields{"path": path, "client": from.String(), "reason": reason}).WithError(err).
				Debug("dropped an http tunnel request")
			http.Error(rw, err.Error(), status)
		}
	})
}

// admit applies the method check, the token and the rate bound.
func (t *Tunnel) admit(w http.ResponseWriter, r *http.Request, from netip.Addr) (string, int, error) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return reasonMethod, http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed, use POST", r.Method)
	}
	if t.cfg.AuthToken != "" {
		want := "Bearer " + t.cfg.AuthToken
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(want)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="module-controller"`)
			return reasonUnauthorized, http.StatusUnauthorized, errors.New("unauthorized")
		}
	}
	if !t.allowClient(from) {
		return reasonRateLimited, http.StatusTooManyRequests, errors.New("too many requests")
	}
	return "", 0, nil
}

// readBody reads the request body through http.MaxBytesReader, so at most
// Config.MaxRequestBytes are ever read or allocated.
func (t *Tunnel) readBody(w http.ResponseWriter, r *http.Request) ([]byte, string, int, error) {
	limit := t.cfg.MaxRequestBytes
	if r.ContentLength > limit {
		return nil, "too_large", http.StatusRequestEntityTooLarge,
			fmt.Errorf("%w: %d bytes, limit %d", protocol.ErrTooLarge, r.ContentLength, limit)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, "too_large", http.StatusRequestEntityTooLarge,
				fmt.Errorf("%w: over the limit of %d bytes", protocol.ErrTooLarge, limit)
		}
		return nil, "malformed", http.StatusBadRequest, fmt.Errorf("%w: reading the body: %w", protocol.ErrMalformed, err)
	}
	return body, "", 0, nil
}

// onHeartbeat checks a heartbeat, remembers the address it announces and delivers it
// stamped with the receive time.
func (t *Tunnel) onHeartbeat(w http.ResponseWriter, r *http.Request, from netip.Addr, body []byte) (string, int, error) {
	status, err := protocol.DecodeHTTP[protocol.BaseStatus](body)
	if err != nil {
		return protocol.Reason(err), http.StatusBadRequest, err
	}
	id := status.BaseMetadata.Identity
	addr, err := t.announced(status, from)
	if err != nil {
		reason := reasonAddress
		if errors.Is(err, errForeign) {
			reason = reasonForeign
		}
		return reason, http.StatusBadRequest, err
	}
	now := t.cfg.Now()
	if !t.remember(id, addr, now) {
		return reasonFull, http.StatusServiceUnavailable, errors.New("too many bases")
	}
	ev := tunnel.BaseHeartbeat{Header: tunnel.Header{BaseID: id, PublishedAt: now}, Status: status}
	if err := t.deliver(r.Context(), ev); err != nil {
		return reasonStopped, http.StatusServiceUnavailable, err
	}
	t.log.WithField("base", id).WithField("address", addr.String()).Debug("http heartbeat received")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, protocol.HTTPHeartbeatAnswer) // the client may be gone; nothing to do then
	return "", 0, nil
}

// onQueryBaseline delivers a baseline query and answers with the bizs the consumer hands
// to SendBaseline, or 503 if it does not within Config.BaselineWait.
func (t *Tunnel) onQueryBaseline(w http.ResponseWriter, r *http.Request, _ netip.Addr, body []byte) (string, int, error) {
	meta, err := protocol.DecodeHTTP[protocol.BaseMetadata](body)
	if err != nil {
		return protocol.Reason(err), http.StatusBadRequest, err
	}
	id := meta.Identity
	answer := make(chan []protocol.BizModel, 1)
	t.mu.Lock()
	if _, waiting := t.baselines[id]; waiting {
		t.mu.Unlock()
		return reasonRateLimited, http.StatusTooManyRequests, errors.New("a baseline query of this base is already waiting")
	}
	t.baselines[id] = answer
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		if t.baselines[id] == answer {
			delete(t.baselines, id)
		}
		t.mu.Unlock()
	}()
	ev := tunnel.BaselineQuery{Header: tunnel.Header{BaseID: id, PublishedAt: t.cfg.Now()}, Metadata: meta}
	if err := t.deliver(r.Context(), ev); err != nil {
		return reasonStopped, http.StatusServiceUnavailable, err
	}
	timer := time.NewTimer(t.cfg.BaselineWait)
	defer timer.Stop()
	var bizs []protocol.BizModel
	select {
	case bizs = <-answer:
	case <-timer.C:
		return reasonBaselineWait, http.StatusServiceUnavailable, errors.New("no baseline for this base")
	case <-r.Context().Done():
		return reasonBaselineWait, http.StatusServiceUnavailable, r.Context().Err()
	case <-t.stopping:
		return reasonStopped, http.StatusServiceUnavailable, errors.New("shutting down")
	}
	payload, err := protocol.EncodeCommand(bizs)
	if err != nil {
		return "other", http.StatusInternalServerError, err
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(payload) // the client may be gone; nothing to do then
	return "", 0, nil
}

// errForeign marks a heartbeat announcing an address that is not its sender's.
var errForeign = errors.New("localIP is not the address the heartbeat came from")

// announced returns the address a heartbeat announces, if the address rules allow calling
// it: a valid unicast localIP and a port in 1–65535, not loopback unless
// Config.AllowLoopback, and the sender's own address unless Config.AllowForeignAddress.
func (t *Tunnel) announced(s protocol.BaseStatus, from netip.Addr) (netip.AddrPort, error) {
	ip, err := netip.ParseAddr(s.LocalIP)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("localIP %q is not an IP address", s.LocalIP)
	}
	ip = ip.Unmap()
	if err := t.allowedIP(ip); err != nil {
		return netip.AddrPort{}, err
	}
	if s.Port < 1 || s.Port > 65535 {
		return netip.AddrPort{}, fmt.Errorf("port %d is not in 1-65535", s.Port)
	}
	if !t.cfg.AllowForeignAddress && ip != from.Unmap() {
		return netip.AddrPort{}, fmt.Errorf("%w: localIP %s, sent from %s", errForeign, ip, from)
	}
	return netip.AddrPortFrom(ip, uint16(s.Port)), nil
}

// allowedIP applies the address rules to an address commands would be sent to.
func (t *Tunnel) allowedIP(ip netip.Addr) error {
	switch {
	case !ip.IsValid():
		return errors.New("no address")
	case ip.Zone() != "":
		return fmt.Errorf("address %s has a zone", ip)
	case ip.IsUnspecified():
		return fmt.Errorf("address %s is unspecified", ip)
	case ip.IsMulticast():
		return fmt.Errorf("address %s is multicast", ip)
	case ip.IsLoopback():
		if t.cfg.AllowLoopback {
			return nil
		}
		return fmt.Errorf("address %s is loopback (allowed only with --allow-loopback-base-ip)", ip)
	case ip.IsLinkLocalUnicast():
		return fmt.Errorf("address %s is link-local", ip)
	case !ip.IsGlobalUnicast():
		return fmt.Errorf("address %s is not unicast", ip)
	case ip.Is4() && ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("address %s is broadcast", ip)
	}
	return nil
}

// remember records the address a base announced, making room by forgetting bases silent
// for Config.BaseTTL. It returns false if there is no room.
func (t *Tunnel) remember(id string, addr netip.AddrPort, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if b, ok := t.bases[id]; ok {
		if b.addr != addr {
			t.log.WithField("base", id).WithField("address", addr.String()).WithField("previous", b.addr.String()).
				Info("base announced a new http address")
		}
		b.addr, b.seen = addr, now
		return true
	}
	if len(t.bases) >= t.cfg.MaxBases {
		for k, b := range t.bases {
			if now.Sub(b.seen) > t.cfg.BaseTTL && len(b.pending) == 0 {
				delete(t.bases, k)
			}
		}
		if len(t.bases) >= t.cfg.MaxBases {
			return false
		}
	}
	t.bases[id] = &baseEntry{addr: addr, seen: now, pending: map[string]struct{}{}}
	return true
}

// clientIdle is how long a client address's rate state is kept without a request once
// Config.MaxBases of them are tracked.
const clientIdle = time.Minute

// allowClient applies the per-client-address token bucket.
func (t *Tunnel) allowClient(from netip.Addr) bool {
	now := t.cfg.Now()
	key := from.Unmap()
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.clients[key]
	if !ok {
		if len(t.clients) >= t.cfg.MaxBases {
			for k, e := range t.clients {
				if now.Sub(e.seen) > clientIdle {
					delete(t.clients, k)
				}
			}
			if len(t.clients) >= t.cfg.MaxBases {
				return false
			}
		}
		c = &clientEntry{limiter: rate.NewLimiter(rate.Limit(t.cfg.ClientRate), t.cfg.ClientBurst)}
		t.clients[key] = c
	}
	c.seen = now
	return c.limiter.AllowN(now, 1)
}

// deliver sends ev to Events, waiting for room until ctx is done or the tunnel stops.
func (t *Tunnel) deliver(ctx context.Context, ev tunnel.Event) error {
	select {
	case t.events <- ev:
		return nil
	case <-t.stopping:
		return errors.New("http tunnel stopped")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// remoteAddr returns the client's IP address, or the zero Addr if RemoteAddr is not an
// ip:port (it always is for TCP).
func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// statusWriter records the status code written, for the requests metric.
type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

// WriteHeader records code and writes it.
func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write marks the header written (200 unless set) and writes b.
func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}
