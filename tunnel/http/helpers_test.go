package httptunnel

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/protocol"
	"github.com/moduleops/module-controller/tunnel"
)

// testBaseID is the identity of the vectors.
const testBaseID = "10.244.0.17"

// fixedNow is the clock of every test tunnel.
var fixedNow = time.Date(2025, 1, 15, 10, 10, 0, 0, time.UTC)

// vector reads a file of pkg/protocol/testdata/http.
func vector(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "pkg", "protocol", "testdata", "http", name))
	require.NoError(t, err)
	return b
}

// testTunnel is a running Tunnel on a free loopback port with its own registry.
type testTunnel struct {
	*Tunnel
	reg  *prometheus.Registry
	base string // http://addr
}

// start runs a tunnel with cfg (loopback allowed, port 0, fixed clock unless set) until
// the test ends.
func start(t *testing.T, cfg Config) *testTunnel {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	if cfg.ListenAddress == "" {
		cfg.ListenAddress = "127.0.0.1:0"
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return fixedNow }
	}
	tun, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- tun.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	select {
	case <-tun.Ready():
	case err := <-done:
		t.Fatalf("Run returned before Ready: %v", err)
	}
	scheme := "http://"
	if cfg.TLSCertFile != "" {
		scheme = "https://"
	}
	return &testTunnel{Tunnel: tun, reg: reg, base: scheme + tun.Addr()}
}

// post sends body to path with the default client and returns status and body.
func (tt *testTunnel) post(t *testing.T, path string, body []byte, header ...string) (int, string) {
	t.Helper()
	return tt.request(t, http.DefaultClient, http.MethodPost, path, body, header...)
}

func (tt *testTunnel) request(t *testing.T, c *http.Client, method, path string, body []byte, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, tt.base+path, strings.NewReader(string(body)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer func() { require.NoError(t, resp.Body.Close()) }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// dropped returns messages_dropped_total{reason}.
func (tt *testTunnel) dropped(reason string) float64 {
	return testutil.ToFloat64(tt.metrics.dropped.WithLabelValues(reason))
}

// commandCount returns commands_total{command,result}.
func (tt *testTunnel) commandCount(command, result string) float64 {
	return testutil.ToFloat64(tt.metrics.commands.WithLabelValues(command, result))
}

// next returns the next event, failing after a few seconds.
func (tt *testTunnel) next(t *testing.T) tunnel.Event {
	t.Helper()
	select {
	case ev := <-tt.Events():
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
		return nil
	}
}

// noEvent asserts that no event is buffered.
func (tt *testTunnel) noEvent(t *testing.T) {
	t.Helper()
	select {
	case ev := <-tt.Events():
		t.Fatalf("unexpected event %T %+v", ev, ev)
	default:
	}
}

// heartbeat builds a heartbeat of id announcing 127.0.0.1:port.
func heartbeat(t *testing.T, id string, port int) []byte {
	t.Helper()
	s := strings.Replace(string(vector(t, "heartbeat.json")), `"port":1238`, `"port":`+strconv.Itoa(port), 1)
	s = strings.ReplaceAll(s, `"localIP":"10.244.0.17"`, `"localIP":"127.0.0.1"`)
	return []byte(strings.ReplaceAll(s, testBaseID, id))
}

// announce posts a heartbeat of id pointing at the arklet a and consumes its event.
func (tt *testTunnel) announce(t *testing.T, id string, a *arklet) {
	t.Helper()
	code, body := tt.post(t, protocol.HTTPPathHeartbeat, heartbeat(t, id, a.port))
	require.Equal(t, http.StatusOK, code, body)
	ev := tt.next(t)
	require.IsType(t, tunnel.BaseHeartbeat{}, ev)
}

// arklet is a fake arklet HTTP server: it records every request and answers from a
// handler per command.
type arklet struct {
	srv  *httptest.Server
	port int

	mu       sync.Mutex
	requests []arkletRequest
	answer   map[string]func(w http.ResponseWriter, r *http.Request)
	arrived  chan string // command names, as they arrive
}

// arkletRequest is one request the fake arklet received.
type arkletRequest struct {
	Method, Path, ContentType string
	Body                      []byte
}

func newArklet(t *testing.T) *arklet {
	t.Helper()
	a := &arklet{answer: map[string]func(http.ResponseWriter, *http.Request){}, arrived: make(chan string, 64)}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		cmd := strings.TrimPrefix(r.URL.Path, "/")
		a.mu.Lock()
		a.requests = append(a.requests, arkletRequest{r.Method, r.URL.Path, r.Header.Get("Content-Type"), body})
		h := a.answer[cmd]
		a.mu.Unlock()
		a.arrived <- cmd
		if h == nil {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"code":"CMD_NOT_FOUND","message":"command not found"}`)
			return
		}
		h(w, r)
	}))
	t.Cleanup(a.srv.Close)
	_, port, err := net.SplitHostPort(a.srv.Listener.Addr().String())
	require.NoError(t, err)
	a.port, err = strconv.Atoi(port)
	require.NoError(t, err)
	return a
}

// on sets the answer of command to a fixed JSON body.
func (a *arklet) on(command string, body []byte) {
	a.handle(command, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
}

func (a *arklet) handle(command string, h func(http.ResponseWriter, *http.Request)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.answer[command] = h
}

func (a *arklet) received() []arkletRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]arkletRequest(nil), a.requests...)
}

// waitArrived waits for a request of command.
func (a *arklet) waitArrived(t *testing.T, command string) {
	t.Helper()
	for {
		select {
		case c := <-a.arrived:
			if c == command {
				return
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s request", command)
		}
	}
}

// netipAddrPort builds an address for a test.
func netipAddrPort(t *testing.T, ip string, port int) netip.AddrPort {
	t.Helper()
	a, err := netip.ParseAddr(ip)
	require.NoError(t, err)
	return netip.AddrPortFrom(a, uint16(port))
}
