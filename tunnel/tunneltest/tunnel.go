package tunneltest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moduleops/module-controller/pkg/protocol"
	"github.com/moduleops/module-controller/tunnel"
)

// Command is one command the fake tunnel was asked to send.
type Command struct {
	// Name is the protocol command name, e.g. protocol.CommandInstallBiz.
	Name string
	// BaseID is the base the command was addressed to.
	BaseID string
	// Biz is the biz of an install or uninstall.
	Biz protocol.BizModel
	// Baseline is the biz list of a baseline.
	Baseline []protocol.BizModel
}

// Tunnel is an in-memory tunnel.Tunnel: Inject delivers events, Commands
// returns what was sent, and WaitFor, WaitForCommands and Sent let a test
// wait for a command instead of polling for it. SetSendError, when set,
// fails every command (nothing is recorded then).
type Tunnel struct {
	events       chan tunnel.Event
	ready        chan struct{}
	disconnected atomic.Bool

	mu       sync.Mutex
	commands []Command
	sendErr  error
	sent     chan struct{} // closed, and replaced, when a command is recorded
}

var _ tunnel.Tunnel = (*Tunnel)(nil)

// New returns a fake tunnel that is already connected.
func New() *Tunnel {
	t := &Tunnel{events: make(chan tunnel.Event, 1024), ready: make(chan struct{}), sent: make(chan struct{})}
	close(t.ready)
	return t
}

// Run implements tunnel.Tunnel; it waits for ctx.
func (t *Tunnel) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// Ready implements tunnel.Tunnel.
func (t *Tunnel) Ready() <-chan struct{} { return t.ready }

// Connected implements tunnel.Tunnel; true unless SetConnected(false).
func (t *Tunnel) Connected() bool { return !t.disconnected.Load() }

// SetConnected sets what Connected reports, as if the broker went away or
// came back. Commands still succeed unless SetSendError says otherwise.
func (t *Tunnel) SetConnected(connected bool) { t.disconnected.Store(!connected) }

// Events implements tunnel.Tunnel.
func (t *Tunnel) Events() <-chan tunnel.Event { return t.events }

// Inject delivers an event as if a base had published it.
func (t *Tunnel) Inject(ev tunnel.Event) { t.events <- ev }

// SetSendError makes every later command fail with err (nil to succeed again).
func (t *Tunnel) SetSendError(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sendErr = err
}

// Commands returns a copy of every command sent so far.
func (t *Tunnel) Commands() []Command {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Command(nil), t.commands...)
}

// CommandsFor returns the commands of one name sent to one base.
func (t *Tunnel) CommandsFor(baseID, name string) []Command {
	return filter(t.Commands(), Named(baseID, name))
}

// Named matches the commands of one name sent to one base.
func Named(baseID, name string) func(Command) bool {
	return func(c Command) bool { return c.BaseID == baseID && c.Name == name }
}

// Sent returns a channel that is closed once the next command is recorded
// (a command that SetSendError fails is not). Take it before the action
// that sends, then wait on it.
func (t *Tunnel) Sent() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sent
}

// WaitFor waits until at least n of the commands sent so far match, and
// returns every matching command. It returns ctx's error, with what matched
// so far, if ctx ends first.
func (t *Tunnel) WaitFor(ctx context.Context, n int, match func(Command) bool) ([]Command, error) {
	for {
		t.mu.Lock()
		got, sent := filter(t.commands, match), t.sent
		t.mu.Unlock()
		if len(got) >= n {
			return got, nil
		}
		select {
		case <-sent:
		case <-ctx.Done():
			return got, fmt.Errorf("%d of %d commands sent: %w", len(got), n, ctx.Err())
		}
	}
}

// WaitForCommands is WaitFor for a test: it fails t if n matching commands
// were not sent within timeout.
func (t *Tunnel) WaitForCommands(tb testing.TB, timeout time.Duration, n int, match func(Command) bool) []Command {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), timeout)
	defer cancel()
	got, err := t.WaitFor(ctx, n, match)
	if err != nil {
		tb.Fatalf("waiting for commands: %v (sent: %+v)", err, t.Commands())
	}
	return got
}

func filter(cmds []Command, match func(Command) bool) []Command {
	var out []Command
	for _, c := range cmds {
		if match(c) {
			out = append(out, c)
		}
	}
	return out
}

func (t *Tunnel) record(c Command) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sendErr != nil {
		return t.sendErr
	}
	t.commands = append(t.commands, c)
	close(t.sent)
	t.sent = make(chan struct{})
	return nil
}

// InstallBiz implements tunnel.Tunnel.
func (t *Tunnel) InstallBiz(_ context.Context, baseID string, biz protocol.BizModel) error {
	return t.record(Command{Name: protocol.CommandInstallBiz, BaseID: baseID, Biz: biz})
}

// UninstallBiz implements tunnel.Tunnel.
func (t *Tunnel) UninstallBiz(_ context.Context, baseID string, biz protocol.BizModel) error {
	return t.record(Command{Name: protocol.CommandUninstallBiz, BaseID: baseID, Biz: biz})
}

// QueryAllBiz implements tunnel.Tunnel.
func (t *Tunnel) QueryAllBiz(_ context.Context, baseID string) error {
	return t.record(Command{Name: protocol.CommandQueryAllBiz, BaseID: baseID})
}

// QueryHealth implements tunnel.Tunnel.
func (t *Tunnel) QueryHealth(_ context.Context, baseID string) error {
	return t.record(Command{Name: protocol.CommandHealth, BaseID: baseID})
}

// SendBaseline implements tunnel.Tunnel.
func (t *Tunnel) SendBaseline(_ context.Context, baseID string, bizs []protocol.BizModel) error {
	return t.record(Command{Name: protocol.CommandBatchInstallBiz, BaseID: baseID, Baseline: append([]protocol.BizModel(nil), bizs...)})
}
