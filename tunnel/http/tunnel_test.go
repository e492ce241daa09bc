package httptunnel

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/certtest"
	"github.com/moduleops/module-controller/pkg/protocol"
	"github.com/moduleops/module-controller/tunnel"
)

func TestHeartbeatGolden(t *testing.T) {
	tt := start(t, Config{AllowForeignAddress: true})
	code, body := tt.post(t, protocol.HTTPPathHeartbeat, vector(t, "heartbeat.json"))
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "SUCCESS", body)
	ev := tt.next(t)
	hb, ok := ev.(tunnel.BaseHeartbeat)
	require.True(t, ok, "%T", ev)
	require.Equal(t, testBaseID, hb.Base())
	require.Equal(t, fixedNow, hb.Published(), "stamped with the receive time")
	require.Equal(t, protocol.BaseStatus{
		BaseMetadata:  protocol.BaseMetadata{Identity: testBaseID, Name: "base", Version: "1.0.0", ClusterName: "default"},
		LocalIP:       testBaseID,
		LocalHostName: "base-7c9d8f6b5-x2k4p",
		Port:          1238,
		State:         "activated",
	}, hb.Status)
}

func TestHeartbeatRefused(t *testing.T) {
	good := func(t *testing.T) []byte { return heartbeat(t, "base-1", 1238) }
	cases := []struct {
		name   string
		cfg    Config
		method string
		body   func(t *testing.T) []byte
		header []string
		code   int
		reason string
	}{
		{name: "wrong method", method: http.MethodGet, body: good, code: http.StatusMethodNotAllowed, reason: reasonMethod},
		{name: "bad json", body: func(*testing.T) []byte { return []byte(`{"baseMetadata":`) }, code: http.StatusBadRequest, reason: "malformed"},
		{name: "not an object", body: func(*testing.T) []byte { return []byte(`"hello"`) }, code: http.StatusBadRequest, reason: "malformed"},
		{name: "trailing data", body: func(t *testing.T) []byte { return append(good(t), []byte(`{}`)...) }, code: http.StatusBadRequest, reason: "malformed"},
		{name: "wrong type", body: func(t *testing.T) []byte {
			return []byte(strings.Replace(string(good(t)), `"port":1238`, `"port":"1238"`, 1))
		}, code: http.StatusBadRequest, reason: "malformed"},
		{name: "no identity", body: func(t *testing.T) []byte {
			return []byte(strings.Replace(string(good(t)), `"identity":"base-1"`, `"identity":""`, 1))
		}, code: http.StatusBadRequest, reason: "missing_field"},
		{name: "bad identity", body: func(t *testing.T) []byte {
			return []byte(strings.Replace(string(good(t)), `"identity":"base-1"`, `"identity":"a/b"`, 1))
		}, code: http.StatusBadRequest, reason: "invalid_base_id"},
		{name: "oversized", cfg: Config{MaxRequestBytes: 100}, body: good, code: http.StatusRequestEntityTooLarge, reason: "too_large"},
		{name: "port 0", body: func(t *testing.T) []byte { return heartbeat(t, "base-1", 0) }, code: http.StatusBadRequest, reason: reasonAddress},
		{name: "loopback not allowed", cfg: Config{AllowLoopback: false}, body: good, code: http.StatusBadRequest, reason: reasonAddress},
		{name: "link-local", cfg: Config{AllowForeignAddress: true}, body: func(t *testing.T) []byte {
			return []byte(strings.Replace(string(good(t)), `"localIP":"127.0.0.1"`, `"localIP":"169.254.169.254"`, 1))
		}, code: http.StatusBadRequest, reason: reasonAddress},
		{name: "unspecified", cfg: Config{AllowForeignAddress: true}, body: func(t *testing.T) []byte {
			return []byte(strings.Replace(string(good(t)), `"localIP":"127.0.0.1"`, `"localIP":"0.0.0.0"`, 1))
		}, code: http.StatusBadRequest, reason: reasonAddress},
		{name: "multicast", cfg: Config{AllowForeignAddress: true}, body: func(t *testing.T) []byte {
			return []byte(strings.Replace(string(good(t)), `"localIP":"127.0.0.1"`, `"localIP":"224.0.0.1"`, 1))
		}, code: http.StatusBadRequest, reason: reasonAddress},
		{name: "foreign address", body: func(t *testing.T) []byte {
			return []byte(strings.Replace(string(good(t)), `"localIP":"127.0.0.1"`, `"localIP":"10.0.0.5"`, 1))
		}, code: http.StatusBadRequest, reason: reasonForeign},
		{name: "no token", cfg: Config{AuthToken: "s3cret"}, body: good, code: http.StatusUnauthorized, reason: reasonUnauthorized},
		{name: "wrong token", cfg: Config{AuthToken: "s3cret"}, body: good, header: []string{"Authorization", "Bearer s3cres"}, code: http.StatusUnauthorized, reason: reasonUnauthorized},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			if c.name != "loopback not allowed" {
				cfg.AllowLoopback = true
			}
			tt := start(t, cfg)
			method := c.method
			if method == "" {
				method = http.MethodPost
			}
			code, body := tt.request(t, http.DefaultClient, method, protocol.HTTPPathHeartbeat, c.body(t), c.header...)
			require.Equal(t, c.code, code, body)
			require.Equal(t, 1.0, tt.dropped(c.reason))
			tt.noEvent(t)
			tt.mu.Lock()
			require.Empty(t, tt.bases, "nothing remembered")
			tt.mu.Unlock()
		})
	}
}

func TestHeartbeatAuthAccepted(t *testing.T) {
	tt := start(t, Config{AuthToken: "s3cret", AllowLoopback: true})
	code, body := tt.post(t, protocol.HTTPPathHeartbeat, heartbeat(t, "base-1", 1238), "Authorization", "Bearer s3cret")
	require.Equal(t, http.StatusOK, code, body)
	require.IsType(t, tunnel.BaseHeartbeat{}, tt.next(t))
}

func TestRateLimitPerClient(t *testing.T) {
	tt := start(t, Config{AllowLoopback: true, ClientRate: 0.001, ClientBurst: 2})
	for range 2 {
		code, _ := tt.post(t, protocol.HTTPPathHeartbeat, heartbeat(t, "base-1", 1238))
		require.Equal(t, http.StatusOK, code)
		tt.next(t)
	}
	code, _ := tt.post(t, protocol.HTTPPathHeartbeat, heartbeat(t, "base-1", 1238))
	require.Equal(t, http.StatusTooManyRequests, code)
	require.Equal(t, 1.0, tt.dropped(reasonRateLimited))
	tt.noEvent(t)
}

func TestMutualTLS(t *testing.T) {
	ca := certtest.NewCA(t, "http-tunnel-ca")
	certFile, keyFile, _ := ca.Server("server")
	_, _, clientPair := ca.Client("base-1")
	tt := start(t, Config{AllowLoopback: true, TLSCertFile: certFile, TLSKeyFile: keyFile, ClientCAFile: ca.CAFile})

	anonymous := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}}}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, tt.base+protocol.HTTPPathHeartbeat, strings.NewReader(string(heartbeat(t, "base-1", 1238))))
	require.NoError(t, err)
	resp, err := anonymous.Do(req)
	if err == nil {
		require.NoError(t, resp.Body.Close())
	}
	require.Error(t, err, "a client without a certificate is refused")

	withCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: ca.Pool(), Certificates: []tls.Certificate{clientPair}, MinVersion: tls.VersionTLS12,
	}}}
	code, body := tt.request(t, withCert, http.MethodPost, protocol.HTTPPathHeartbeat, heartbeat(t, "base-1", 1238))
	require.Equal(t, http.StatusOK, code, body)
	require.IsType(t, tunnel.BaseHeartbeat{}, tt.next(t))
}

func TestQueryBaseline(t *testing.T) {
	tt := start(t, Config{AllowLoopback: true})
	type answer struct {
		code int
		body string
	}
	got := make(chan answer, 1)
	go func() {
		code, body := tt.post(t, protocol.HTTPPathQueryBaseline, vector(t, "query-baseline.json"))
		got <- answer{code, body}
	}()
	ev := tt.next(t)
	q, ok := ev.(tunnel.BaselineQuery)
	require.True(t, ok, "%T", ev)
	require.Equal(t, testBaseID, q.Base())
	require.Equal(t, "default", q.Metadata.ClusterName)
	bizs, err := protocol.DecodeCommand[[]protocol.BizModel](vector(t, "query-baseline-response.json"))
	require.NoError(t, err)
	require.NoError(t, tt.SendBaseline(t.Context(), testBaseID, bizs))
	a := <-got
	require.Equal(t, http.StatusOK, a.code)
	require.Equal(t, string(vector(t, "query-baseline-response.json")), a.body)

	err = tt.SendBaseline(t.Context(), testBaseID, nil)
	require.ErrorIs(t, err, ErrNoBaselineQuery, "over HTTP a baseline only answers a waiting query")
}

func TestQueryBaselineNotAnswered(t *testing.T) {
	tt := start(t, Config{AllowLoopback: true, BaselineWait: 50 * time.Millisecond})
	code, _ := tt.post(t, protocol.HTTPPathQueryBaseline, vector(t, "query-baseline.json"))
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.IsType(t, tunnel.BaselineQuery{}, tt.next(t))
	require.Equal(t, 1.0, tt.dropped(reasonBaselineWait))
}

func TestCommandsGolden(t *testing.T) {
	tt := start(t, Config{AllowLoopback: true})
	a := newArklet(t)
	a.on(protocol.CommandInstallBiz, vector(t, "install-biz-response.json"))
	a.on(protocol.CommandUninstallBiz, vector(t, "uninstall-biz-response.json"))
	a.on(protocol.CommandHealth, vector(t, "health-response.json"))
	a.on(protocol.CommandQueryAllBiz, vector(t, "query-all-biz-response.json"))
	tt.announce(t, "base-1", a)

	install, err := protocol.DecodeCommand[protocol.BizModel](vector(t, "install-biz.json"))
	require.NoError(t, err)
	require.NoError(t, tt.InstallBiz(t.Context(), "base-1", install))
	ev := tt.next(t)
	op, ok := ev.(tunnel.BizOperationResult)
	require.True(t, ok, "%T", ev)
	require.Equal(t, "base-1", op.Base())
	require.Equal(t, fixedNow, op.Published())
	require.Equal(t, protocol.CommandInstallBiz, op.Operation.Command)
	require.Equal(t, "biz1:0.0.1-SNAPSHOT", op.Operation.Key())
	require.Equal(t, protocol.OutcomeSucceeded, op.Operation.Outcome())
	require.Equal(t, protocol.BizActivated, op.Operation.InstalledState())

	uninstall, err := protocol.DecodeCommand[protocol.BizModel](vector(t, "uninstall-biz.json"))
	require.NoError(t, err)
	require.NoError(t, tt.UninstallBiz(t.Context(), "base-1", uninstall))
	op, ok = tt.next(t).(tunnel.BizOperationResult)
	require.True(t, ok)
	require.Equal(t, protocol.CommandUninstallBiz, op.Operation.Command)
	require.Equal(t, protocol.OutcomeSucceeded, op.Operation.Outcome())

	require.NoError(t, tt.QueryHealth(t.Context(), "base-1"))
	h, ok := tt.next(t).(tunnel.BaseHealth)
	require.True(t, ok)
	require.Equal(t, protocol.CodeSuccess, h.Health.Code)
	require.Equal(t, "ACTIVATED", h.Health.Data.HealthData.MasterBizInfo.BizState)

	require.NoError(t, tt.QueryAllBiz(t.Context(), "base-1"))
	s, ok := tt.next(t).(tunnel.BizStatus)
	require.True(t, ok)
	require.Len(t, s.Bizs, 2)
	require.Equal(t, "biz1", s.Bizs[0].Name)
	require.Equal(t, "activated", s.Bizs[0].State)
	require.Equal(t, protocol.BizActivated, s.Bizs[0].BizState())
	require.NotNil(t, s.Bizs[0].LatestStateRecord)
	require.Equal(t, "STARTED", s.Bizs[0].LatestStateRecord.Reason)

	// The request bodies are the MQTT command bodies, byte for byte.
	want := map[string]string{
		"/installBiz": "install-biz.json", "/uninstallBiz": "uninstall-biz.json",
		"/health": "health-request.json", "/queryAllBiz": "query-all-biz-request.json",
	}
	reqs := a.received()
	require.Len(t, reqs, 4)
	for _, r := range reqs {
		require.Equal(t, http.MethodPost, r.Method)
		require.Equal(t, "application/json", r.ContentType)
		require.Equal(t, string(vector(t, want[r.Path])), string(r.Body), r.Path)
	}
	require.Equal(t, 1.0, tt.commandCount(protocol.CommandInstallBiz, resultOK))
}

func TestInstallFailedAnswer(t *testing.T) {
	tt := start(t, Config{AllowLoopback: true})
	a := newArklet(t)
	a.on(protocol.CommandInstallBiz, vector(t, "install-biz-response-failed.json"))
	tt.announce(t, "base-1", a)
	require.NoError(t, tt.InstallBiz(t.Context(), "base-1", protocol.BizModel{BizName: "biz3", BizVersion: "0.0.1-SNAPSHOT", BizURL: "https://x/biz3.jar"}))
	op, ok := tt.next(t).(tunnel.BizOperationResult)
	require.True(t, ok)
	require.Equal(t, protocol.OutcomeFailed, op.Operation.Outcome())
	require.NotEmpty(t, op.Operation.ErrorMessage())
}

// rawArklet answers every connection with raw, then closes it, as the arklet's netty
// server does (it spells the header Content_Length on its 500 answers).
func rawArklet(t *testing.T, raw string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				r := bufio.NewReader(c)
				for { // the request headers; the body is small and ignored
					line, err := r.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				_, _ = c.Write([]byte(raw))
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestAnswerReadUntilClose(t *testing.T) {
	t.Run("500 with Content_Length", func(t *testing.T) {
		tt := start(t, Config{AllowLoopback: true})
		port := rawArklet(t, "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent_Length: 31\r\nConnection: close\r\n\r\nbody is not a json object: xyz")
		tt.announce(t, "base-1", &arklet{port: port})
		require.NoError(t, tt.InstallBiz(t.Context(), "base-1", protocol.BizModel{BizName: "biz1", BizVersion: "1", BizURL: "https://x/b.jar"}))
		op, ok := tt.next(t).(tunnel.BizOperationResult)
		require.True(t, ok)
		require.Equal(t, protocol.OutcomeFailed, op.Operation.Outcome(), "a failed call is a failed install, visible on the pod")
		require.Contains(t, op.Operation.ErrorMessage(), "500")
		require.Contains(t, op.Operation.ErrorMessage(), "body is not a json object")
		require.Equal(t, 1.0, tt.commandCount(protocol.CommandInstallBiz, resultError))
	})
	t.Run("200 without Content-Length", func(t *testing.T) {
		tt := start(t, Config{AllowLoopback: true})
		body := string(vector(t, "health-response.json"))
		port := rawArklet(t, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent_Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
		tt.announce(t, "base-1", &arklet{port: port})
		require.NoError(t, tt.QueryHealth(t.Context(), "base-1"))
		h, ok := tt.next(t).(tunnel.BaseHealth)
		require.True(t, ok)
		require.Equal(t, protocol.CodeSuccess, h.Health.Code)
	})
}

func TestAnswerRefused(t *testing.T) {
	cases := []struct {
		name   string
		cfg    Config
		answer string
		reason string
	}{
		{name: "oversized", cfg: Config{MaxResponseBytes: 64}, answer: `{"code":"SUCCESS","data":{"healthData":{"masterBizInfo":{"bizName":"base","bizState":"ACTIVATED","bizVersion":"1"}}}}`, reason: "too_large"},
		{name: "bad json", answer: `{"code":`, reason: "malformed"},
		{name: "no code", answer: `{"data":{}}`, reason: "missing_field"},
		{name: "another base", answer: `{"code":"SUCCESS","baseIdentity":"base-2","data":{}}`, reason: "base_id_mismatch"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			cfg.AllowLoopback = true
			tt := start(t, cfg)
			a := newArklet(t)
			a.on(protocol.CommandHealth, []byte(c.answer))
			tt.announce(t, "base-1", a)
			require.NoError(t, tt.QueryHealth(t.Context(), "base-1"))
			require.Eventually(t, func() bool { return tt.commandCount(protocol.CommandHealth, resultError) == 1 },
				5*time.Second, 5*time.Millisecond)
			require.Equal(t, 1.0, tt.dropped(c.reason))
			tt.noEvent(t)
		})
	}
	t.Run("failed biz list", func(t *testing.T) {
		tt := start(t, Config{AllowLoopback: true})
		a := newArklet(t)
		a.on(protocol.CommandQueryAllBiz, []byte(`{"code":"FAILED","message":"boom"}`))
		tt.announce(t, "base-1", a)
		require.NoError(t, tt.QueryAllBiz(t.Context(), "base-1"))
		require.Eventually(t, func() bool { return tt.dropped(reasonFailedReply) == 1 }, 5*time.Second, 5*time.Millisecond)
		tt.noEvent(t)
	})
}

func TestUnknownBaseAndSSRF(t *testing.T) {
	tt := start(t, Config{})
	a := newArklet(t)
	// Loopback is not allowed here: the heartbeat is refused, so no address is known, and
	// no command goes anywhere.
	code, _ := tt.post(t, protocol.HTTPPathHeartbeat, heartbeat(t, "base-1", a.port))
	require.Equal(t, http.StatusBadRequest, code)
	err := tt.InstallBiz(t.Context(), "base-1", protocol.BizModel{BizName: "b", BizVersion: "1", BizURL: "https://x/b.jar"})
	require.ErrorIs(t, err, ErrUnknownBase)
	require.ErrorIs(t, tt.QueryHealth(t.Context(), "base-2"), ErrUnknownBase)
	require.Empty(t, a.received())
	require.Equal(t, 1.0, tt.commandCount(protocol.CommandInstallBiz, resultUnknownBase))

	// Even an address that got in is checked again when dialled.
	tt.mu.Lock()
	tt.bases["base-1"] = &baseEntry{addr: netipAddrPort(t, "127.0.0.1", a.port), seen: fixedNow, pending: map[string]struct{}{}}
	tt.mu.Unlock()
	require.NoError(t, tt.QueryHealth(t.Context(), "base-1"))
	require.Eventually(t, func() bool { return tt.commandCount(protocol.CommandHealth, resultError) == 1 }, 5*time.Second, 5*time.Millisecond)
	require.Empty(t, a.received(), "the dialler refused loopback")
}

func TestStaleAddressForgotten(t *testing.T) {
	now := fixedNow
	tt := start(t, Config{AllowLoopback: true, BaseTTL: time.Minute, Now: func() time.Time { return now }})
	a := newArklet(t)
	tt.announce(t, "base-1", a)
	now = now.Add(2 * time.Minute)
	require.ErrorIs(t, tt.QueryHealth(t.Context(), "base-1"), ErrUnknownBase)
}

func TestInFlightBound(t *testing.T) {
	tt := start(t, Config{AllowLoopback: true, MaxInFlight: 2})
	a := newArklet(t)
	release := make(chan struct{})
	a.handle(protocol.CommandInstallBiz, func(w http.ResponseWriter, _ *http.Request) {
		<-release
		_, _ = w.Write(vector(t, "install-biz-response.json"))
	})
	a.on(protocol.CommandHealth, vector(t, "health-response.json"))
	tt.announce(t, "base-1", a)
	biz := func(n string) protocol.BizModel {
		return protocol.BizModel{BizName: n, BizVersion: "1", BizURL: "https://x/" + n + ".jar"}
	}
	require.NoError(t, tt.InstallBiz(t.Context(), "base-1", biz("a")))
	require.NoError(t, tt.InstallBiz(t.Context(), "base-1", biz("b")))
	a.waitArrived(t, protocol.CommandInstallBiz)
	a.waitArrived(t, protocol.CommandInstallBiz)
	require.NoError(t, tt.InstallBiz(t.Context(), "base-1", biz("a")), "the same install still running is not repeated")
	require.Equal(t, 1.0, tt.commandCount(protocol.CommandInstallBiz, resultDuplicate))
	err := tt.InstallBiz(t.Context(), "base-1", biz("c"))
	require.ErrorIs(t, err, ErrBusy)
	require.Equal(t, 1.0, tt.commandCount(protocol.CommandInstallBiz, resultBusy))
	// Polls are not held up by slow installs.
	require.NoError(t, tt.QueryHealth(t.Context(), "base-1"))
	require.IsType(t, tunnel.BaseHealth{}, tt.next(t))

	close(release)
	for range 2 {
		require.IsType(t, tunnel.BizOperationResult{}, tt.next(t))
	}
	require.Len(t, a.received(), 3) // two installs and one health call
	require.Eventually(t, func() bool { return tt.InstallBiz(t.Context(), "base-1", biz("c")) == nil }, 5*time.Second, 5*time.Millisecond)
}

func TestInstallTimeout(t *testing.T) {
	tt := start(t, Config{AllowLoopback: true, InstallTimeout: 100 * time.Millisecond})
	a := newArklet(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	a.handle(protocol.CommandInstallBiz, func(http.ResponseWriter, *http.Request) { <-release })
	tt.announce(t, "base-1", a)
	require.NoError(t, tt.InstallBiz(t.Context(), "base-1", protocol.BizModel{BizName: "a", BizVersion: "1", BizURL: "https://x/a.jar"}))
	require.Eventually(t, func() bool { return tt.commandCount(protocol.CommandInstallBiz, resultTimeout) == 1 },
		5*time.Second, 5*time.Millisecond)
	tt.noEvent(t) // a timeout is no failure: the base may still be installing
}

func TestCommandsAfterStop(t *testing.T) {
	tun, err := New(Config{ListenAddress: "127.0.0.1:0"})
	require.NoError(t, err)
	require.ErrorIs(t, tun.QueryHealth(t.Context(), "base-1"), ErrNotRunning)
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, Config{}.withDefaults().Validate())
	require.NoError(t, DefaultConfig().Validate())
	err := Config{ListenAddress: "nope", TLSKeyFile: "k", ClientCAFile: "ca", MaxInFlight: -1, InstallTimeout: -time.Second}.withDefaults().Validate()
	require.ErrorContains(t, err, `ListenAddress "nope"`)
	require.ErrorContains(t, err, "TLSCertFile and TLSKeyFile go together")
	require.ErrorContains(t, err, "ClientCAFile needs TLS: set TLSCertFile")
	require.ErrorContains(t, err, "ClientCAFile ca: no such file")
	require.ErrorContains(t, err, "MaxInFlight -1 must be positive")
	require.ErrorContains(t, err, "InstallTimeout -1s must be positive")
}
