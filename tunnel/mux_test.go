package tunnel_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/protocol"
	"github.com/moduleops/module-controller/tunnel"
	"github.com/moduleops/module-controller/tunnel/tunneltest"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type muxFixture struct {
	mux        *tunnel.Mux
	mqtt, http *tunneltest.Tunnel
	clock      *clock
	mu         sync.Mutex
	ignored    []string
}

func newMux(t *testing.T) *muxFixture {
	t.Helper()
	f := &muxFixture{mqtt: tunneltest.New(), http: tunneltest.New(), clock: &clock{now: time.Unix(1736935800, 0)}}
	m, err := tunnel.NewMux(tunnel.MuxConfig{
		Transports:  []tunnel.Transport{{Name: "mqtt", Tunnel: f.mqtt}, {Name: "http", Tunnel: f.http}},
		SilentAfter: 25 * time.Second,
		Now:         f.clock.Now,
		OnIgnored: func(baseID, served, ignored string) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.ignored = append(f.ignored, baseID+":"+served+"/"+ignored)
		},
	})
	require.NoError(t, err)
	f.mux = m
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	select {
	case <-m.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("mux not ready")
	}
	return f
}

func (f *muxFixture) next(t *testing.T) tunnel.Event {
	t.Helper()
	select {
	case ev := <-f.mux.Events():
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
		return nil
	}
}

func (f *muxFixture) ignoredList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ignored...)
}

func hb(id, ip string) tunnel.BaseHeartbeat {
	return tunnel.BaseHeartbeat{Header: tunnel.Header{BaseID: id}, Status: protocol.BaseStatus{
		BaseMetadata: protocol.BaseMetadata{Identity: id}, LocalIP: ip, State: protocol.BaseStateActivated,
	}}
}

func TestMuxRoutesToTheAnnouncingTransport(t *testing.T) {
	f := newMux(t)
	f.mqtt.Inject(hb("base-m", "10.0.0.1"))
	require.Equal(t, "base-m", f.next(t).Base())
	f.http.Inject(hb("base-h", "10.0.0.2"))
	require.Equal(t, "base-h", f.next(t).Base())
	require.Equal(t, "mqtt", f.mux.Transport("base-m"))
	require.Equal(t, "http", f.mux.Transport("base-h"))

	biz := protocol.BizModel{BizName: "a", BizVersion: "1", BizURL: "https://x/a.jar"}
	require.NoError(t, f.mux.InstallBiz(t.Context(), "base-m", biz))
	require.NoError(t, f.mux.UninstallBiz(t.Context(), "base-h", biz))
	require.NoError(t, f.mux.QueryHealth(t.Context(), "base-m"))
	require.NoError(t, f.mux.QueryAllBiz(t.Context(), "base-h"))
	require.NoError(t, f.mux.SendBaseline(t.Context(), "base-m", nil))
	require.Len(t, f.mqtt.Commands(), 3)
	require.Len(t, f.http.Commands(), 2)
	require.Len(t, f.mqtt.CommandsFor("base-m", protocol.CommandInstallBiz), 1)
	require.Len(t, f.http.CommandsFor("base-h", protocol.CommandUninstallBiz), 1)

	require.ErrorIs(t, f.mux.QueryHealth(t.Context(), "base-x"), tunnel.ErrNoTransport)
}

func TestMuxServesABaseOnceFirstTransportWins(t *testing.T) {
	f := newMux(t)
	f.mqtt.Inject(hb("base-1", "10.0.0.1"))
	require.Equal(t, "base-1", f.next(t).Base())

	// The same identity over HTTP is ignored while it is alive on MQTT, and so is a reply.
	f.http.Inject(hb("base-1", "10.0.0.9"))
	f.http.Inject(tunnel.BaseHealth{Header: tunnel.Header{BaseID: "base-1"}})
	f.http.Inject(hb("base-2", "10.0.0.2")) // in order after the two above
	require.Equal(t, "base-2", f.next(t).Base())
	require.Equal(t, []string{"base-1:mqtt/http", "base-1:mqtt/http"}, f.ignoredList())
	require.Equal(t, "mqtt", f.mux.Transport("base-1"))
	require.NoError(t, f.mux.QueryHealth(t.Context(), "base-1"))
	require.Len(t, f.mqtt.CommandsFor("base-1", protocol.CommandHealth), 1)
	require.Empty(t, f.http.CommandsFor("base-1", protocol.CommandHealth))

	// Messages on MQTT keep it there past the silence window.
	f.clock.Add(20 * time.Second)
	f.mqtt.Inject(tunnel.BizStatus{Header: tunnel.Header{BaseID: "base-1"}})
	require.IsType(t, tunnel.BizStatus{}, f.next(t))
	f.clock.Add(20 * time.Second)
	f.http.Inject(hb("base-1", "10.0.0.9"))
	f.http.Inject(hb("base-2", "10.0.0.2"))
	require.Equal(t, "base-2", f.next(t).Base())
	require.Equal(t, "mqtt", f.mux.Transport("base-1"))

	// Silent on MQTT for the window: a reply over HTTP still changes nothing, the next
	// HTTP heartbeat takes the base over, and MQTT is ignored from then on.
	f.clock.Add(26 * time.Second)
	f.http.Inject(tunnel.BaseHealth{Header: tunnel.Header{BaseID: "base-1"}})
	f.http.Inject(hb("base-1", "10.0.0.9"))
	ev := f.next(t)
	require.IsType(t, tunnel.BaseHeartbeat{}, ev)
	require.Equal(t, "base-1", ev.Base())
	require.Equal(t, "http", f.mux.Transport("base-1"))
	f.mqtt.Inject(hb("base-1", "10.0.0.1"))
	f.mqtt.Inject(hb("base-3", "10.0.0.3"))
	require.Equal(t, "base-3", f.next(t).Base())
	require.NoError(t, f.mux.QueryHealth(t.Context(), "base-1"))
	require.Len(t, f.http.CommandsFor("base-1", protocol.CommandHealth), 1)
}

func TestMuxConnected(t *testing.T) {
	f := newMux(t)
	require.True(t, f.mux.Connected())
	f.http.SetConnected(false)
	require.False(t, f.mux.Connected(), "a transport down cuts off its bases")
}

func TestNewMuxValidates(t *testing.T) {
	_, err := tunnel.NewMux(tunnel.MuxConfig{})
	require.Error(t, err)
	one := tunneltest.New()
	_, err = tunnel.NewMux(tunnel.MuxConfig{Transports: []tunnel.Transport{{Name: "a", Tunnel: one}, {Name: "a", Tunnel: one}}})
	require.Error(t, err)
}
