//go:build e2e

package chaos

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moduleops/module-controller/e2e/framework"
)

// supervisor plays the kubelet for the controller process: when it exits it
// is started again, after a crash-loop back-off if the exit was not one the
// suite injected. Exits the suite did not inject are counted.
type supervisor struct {
	t *testing.T
	c *framework.Controller

	mu         sync.Mutex // serializes every use of c
	expected   bool       // the next exit is an injected one
	unexpected int
	exits      []string // how each unexpected exit ended
	pid        int
	cancel     context.CancelFunc
	done       chan struct{}
}

// crashLoopBackOff is the kubelet's first back-off before restarting a
// container that exited on its own.
const crashLoopBackOff = 10 * time.Second

// supervise watches c until the test ends.
func supervise(t *testing.T, c *framework.Controller) *supervisor {
	ctx, cancel := context.WithCancel(t.Context())
	s := &supervisor{t: t, c: c, pid: c.PID(), cancel: cancel, done: make(chan struct{})}
	go s.run(ctx)
	// Registered after StartController's cleanup, so it runs before it: the
	// supervisor stops before the controller is stopped.
	t.Cleanup(func() {
		cancel()
		<-s.done
		if *flagLogs != "" {
			s.keepLogs(*flagLogs)
		}
	})
	return s
}

// keepLogs copies every log of the controller's processes into dir.
func (s *supervisor) keepLogs(dir string) {
	logs, _ := filepath.Glob(filepath.Join(filepath.Dir(s.c.LogPath()), "module-controller-*.log"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		s.t.Logf("keep controller logs: %v", err)
		return
	}
	for _, l := range logs {
		raw, err := os.ReadFile(l)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, s.t.Name()[strings.LastIndex(s.t.Name(), "/")+1:]+"-"+filepath.Base(l)), raw, 0o644)
		}
		if err != nil {
			s.t.Logf("keep controller log %s: %v", l, err)
		}
	}
}

func (s *supervisor) run(ctx context.Context) {
	defer close(s.done)
	for {
		s.mu.Lock()
		exited := s.c.Done()
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-exited:
		}
		s.mu.Lock()
		if s.expected {
			s.expected = false
		} else {
			s.unexpected++
			s.exits = append(s.exits, exitSummary(s.c))
			s.t.Logf("controller exited on its own (%d so far): %s", s.unexpected, exitSummary(s.c))
			backOff := time.NewTimer(crashLoopBackOff)
			select {
			case <-backOff.C:
			case <-ctx.Done():
				backOff.Stop()
				s.mu.Unlock()
				return
			}
		}
		if err := s.c.Start(ctx); err != nil {
			s.t.Logf("controller restart: %v", err)
		}
		s.pid = s.c.PID()
		s.mu.Unlock()
	}
}

// crash kills the controller with SIGKILL by its PID and returns that PID;
// the supervisor starts it again.
func (s *supervisor) crash() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pid := s.c.PID()
	s.expected = true
	if err := s.c.Kill(); err != nil {
		s.expected = false
		return pid, err
	}
	return pid, nil
}

// unexpectedExits returns how many exits the suite did not inject, and how
// they ended.
func (s *supervisor) unexpectedExits() (int, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unexpected, append([]string(nil), s.exits...)
}

// BrokerURL is where the broker the controller uses accepts connections.
func (s *supervisor) BrokerURL() string { return s.c.BrokerURL() }

// metrics returns the controller's Prometheus text, or "" while it is down.
func (s *supervisor) metrics() string {
	m, err := s.c.Metrics()
	if err != nil {
		return ""
	}
	return m
}

// exitSummary says how the controller process ended: the exit status and,
// if it panicked, the panic and the first frames from its log.
func exitSummary(c *framework.Controller) string {
	status, _, _ := strings.Cut(c.ExitError().Error(), ";")
	raw, err := os.ReadFile(c.LogPath())
	if err != nil {
		return status
	}
	log := string(raw)
	i := strings.LastIndex(log, "panic: ")
	if i < 0 {
		return status
	}
	lines := strings.SplitN(log[i:], "\n", 9)
	return status + ": " + strings.Join(lines[:min(len(lines), 8)], " | ")
}
