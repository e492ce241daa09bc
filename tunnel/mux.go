package tunnel

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// ErrNoTransport is returned (wrapped) by Mux commands for a base that no transport has
// announced: nothing was sent.
var ErrNoTransport = errors.New("no transport serves this base")

// DefaultMuxSilentAfter is how long a base's transport keeps it without any message: the
// controller's default --unreachable-after.
const DefaultMuxSilentAfter = 25 * time.Second

// DefaultMuxEventBuffer is the capacity of a Mux's Events channel.
const DefaultMuxEventBuffer = 4096

// Transport is one named transport of a Mux.
type Transport struct {
	// Name labels the transport in logs and metrics, e.g. "mqtt" or "http".
	Name string
	// Tunnel is the transport.
	Tunnel Tunnel
}

// MuxConfig configures a Mux.
type MuxConfig struct {
	// Transports are the transports to combine; at least one, names unique.
	Transports []Transport
	// SilentAfter is how long a base may be silent on the transport that serves it before
	// another transport's heartbeat may take it over; DefaultMuxSilentAfter if zero.
	SilentAfter time.Duration
	// EventBuffer is the capacity of Events; DefaultMuxEventBuffer if zero.
	EventBuffer int
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// OnIgnored, if set, is called (from the transport's forwarding goroutine) for every
	// event dropped because another transport serves its base: for a metric and a log line.
	OnIgnored func(baseID, served, ignored string)
}

// Mux combines several transports into one Tunnel: it merges their events and sends each
// command over the transport that serves the base. The consumer does not know which
// transport a base uses.
//
// A base is served by one transport at a time: the first one that announces it (a
// heartbeat or a baseline query) keeps it as long as any message of the base arrives on
// it at least every SilentAfter; every event of that base from another transport is
// dropped meanwhile (OnIgnored). Once the base has been silent on its transport for
// SilentAfter, the next announcement on any transport takes it over. So a base that
// speaks MQTT and HTTP at once is served once, over the transport it used first, and a
// base moved from one transport to the other is taken over about SilentAfter after its
// last message on the old one.
type Mux struct {
	cfg    MuxConfig
	events chan Event
	ready  chan struct{}

	mu    sync.Mutex
	bases map[string]*muxBase
	swept time.Time // last forgetSilent
}

// muxBase is which transport serves a base, and when the base was last heard on it.
type muxBase struct {
	transport int
	seen      time.Time
}

var _ Tunnel = (*Mux)(nil)

// NewMux validates cfg and returns a Mux. It starts nothing: Run does.
func NewMux(cfg MuxConfig) (*Mux, error) {
	if len(cfg.Transports) == 0 {
		return nil, errors.New("mux: no transport")
	}
	names := map[string]bool{}
	for _, tr := range cfg.Transports {
		if tr.Tunnel == nil || tr.Name == "" || names[tr.Name] {
			return nil, fmt.Errorf("mux: transport %q: a unique name and a tunnel are required", tr.Name)
		}
		names[tr.Name] = true
	}
	if cfg.SilentAfter < 0 || cfg.EventBuffer < 0 {
		return nil, errors.New("mux: silent-after and event buffer must not be negative")
	}
	if cfg.SilentAfter == 0 {
		cfg.SilentAfter = DefaultMuxSilentAfter
	}
	if cfg.EventBuffer == 0 {
		cfg.EventBuffer = DefaultMuxEventBuffer
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Mux{
		cfg:    cfg,
		events: make(chan Event, cfg.EventBuffer),
		ready:  make(chan struct{}),
		bases:  map[string]*muxBase{},
	}, nil
}

// Run runs every transport and forwards their events until ctx is done, then waits for
// them and returns nil. If a transport's Run fails, the others are stopped and its error
// is returned.
func (m *Mux) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(m.cfg.Transports))
	for i, tr := range m.cfg.Transports {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := tr.Tunnel.Run(ctx); err != nil {
				errs[i] = fmt.Errorf("%s tunnel: %w", tr.Name, err)
				cancel()
			}
		}()
		go func() {
			defer wg.Done()
			m.forward(ctx, i)
		}()
	}
	go func() {
		for _, tr := range m.cfg.Transports {
			select {
			case <-tr.Tunnel.Ready():
			case <-ctx.Done():
				return
			}
		}
		close(m.ready)
	}()
	wg.Wait()
	return errors.Join(errs...)
}

// forward moves the events of transport i that it serves to Events, in its order.
func (m *Mux) forward(ctx context.Context, i int) {
	in := m.cfg.Transports[i].Tunnel.Events()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-in:
			if !m.admit(i, ev) {
				continue
			}
			select {
			case m.events <- ev:
			case <-ctx.Done():
				return
			}
		}
	}
}

// admit reports whether ev of transport i is served, claiming its base for i when it is
// an announcement and the base is unserved or silent on its transport.
func (m *Mux) admit(i int, ev Event) bool {
	now := m.cfg.Now()
	id := ev.Base()
	m.mu.Lock()
	b, ok := m.bases[id]
	switch {
	case ok && b.transport == i:
		b.seen = now
		m.mu.Unlock()
		return true
	case ok && now.Sub(b.seen) < m.cfg.SilentAfter:
		served := b.transport
		m.mu.Unlock()
		if m.cfg.OnIgnored != nil {
			m.cfg.OnIgnored(id, m.cfg.Transports[served].Name, m.cfg.Transports[i].Name)
		}
		return false
	}
	switch ev.(type) {
	case BaseHeartbeat, BaselineQuery:
	default:
		// A reply on a transport that does not serve the base answers nothing we sent.
		m.mu.Unlock()
		if ok && m.cfg.OnIgnored != nil {
			m.cfg.OnIgnored(id, m.cfg.Transports[b.transport].Name, m.cfg.Transports[i].Name)
		}
		return false
	}
	if !ok && now.Sub(m.swept) >= m.cfg.SilentAfter {
		m.swept = now
		m.forgetSilent(now)
	}
	m.bases[id] = &muxBase{transport: i, seen: now}
	m.mu.Unlock()
	return true
}

// forgetSilent drops bases silent for ten times SilentAfter, so the table does not grow
// with identities long gone. It runs under mu when a new base is added, at most once per
// SilentAfter.
func (m *Mux) forgetSilent(now time.Time) {
	for id, b := range m.bases {
		if now.Sub(b.seen) > 10*m.cfg.SilentAfter {
			delete(m.bases, id)
		}
	}
}

// Transport returns the name of the transport serving baseID, or "" if none does.
func (m *Mux) Transport(baseID string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b, ok := m.bases[baseID]; ok {
		return m.cfg.Transports[b.transport].Name
	}
	return ""
}

// Ready is closed once every transport is ready.
func (m *Mux) Ready() <-chan struct{} { return m.ready }

// Connected reports whether every transport is connected: one that is not cuts off its
// bases, which the consumer's disruption handling must know.
func (m *Mux) Connected() bool {
	for _, tr := range m.cfg.Transports {
		if !tr.Tunnel.Connected() {
			return false
		}
	}
	return true
}

// Events returns the merged events of the bases each transport serves; each transport's
// order is kept. It is never closed.
func (m *Mux) Events() <-chan Event { return m.events }

// route returns the transport serving baseID.
func (m *Mux) route(baseID string) (Tunnel, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.bases[baseID]
	if !ok {
		return nil, fmt.Errorf("base %s: %w", baseID, ErrNoTransport)
	}
	return m.cfg.Transports[b.transport].Tunnel, nil
}

// InstallBiz sends the command over the transport serving the base.
func (m *Mux) InstallBiz(ctx context.Context, baseID string, biz protocol.BizModel) error {
	t, err := m.route(baseID)
	if err != nil {
		return err
	}
	return t.InstallBiz(ctx, baseID, biz)
}

// UninstallBiz sends the command over the transport serving the base.
func (m *Mux) UninstallBiz(ctx context.Context, baseID string, biz protocol.BizModel) error {
	t, err := m.route(baseID)
	if err != nil {
		return err
	}
	return t.UninstallBiz(ctx, baseID, biz)
}

// QueryAllBiz sends the command over the transport serving the base.
func (m *Mux) QueryAllBiz(ctx context.Context, baseID string) error {
	t, err := m.route(baseID)
	if err != nil {
		return err
	}
	return t.QueryAllBiz(ctx, baseID)
}

// QueryHealth sends the command over the transport serving the base.
func (m *Mux) QueryHealth(ctx context.Context, baseID string) error {
	t, err := m.route(baseID)
	if err != nil {
		return err
	}
	return t.QueryHealth(ctx, baseID)
}

// SendBaseline sends the baseline over the transport serving the base.
func (m *Mux) SendBaseline(ctx context.Context, baseID string, bizs []protocol.BizModel) error {
	t, err := m.route(baseID)
	if err != nil {
		return err
	}
	return t.SendBaseline(ctx, baseID, bizs)
}
