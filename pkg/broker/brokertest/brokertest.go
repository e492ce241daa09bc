// Package brokertest runs the embedded MQTT broker in-process for tests, the
// way net/http/httptest runs an HTTP server: on a free loopback port, stopped
// when the test ends.
package brokertest

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/moduleops/module-controller/pkg/broker"
)

// Server is a running broker. The embedded Broker is the current one: after
// Restart, a new broker on the same address.
type Server struct {
	*broker.Broker
	tb  testing.TB
	cfg broker.Config

	mu     sync.Mutex
	cancel context.CancelFunc // nil once stopped
	done   chan error
}

// Start runs a broker with cfg until the test ends or Stop is called. An
// empty cfg.Address means a free port on 127.0.0.1.
func Start(tb testing.TB, cfg broker.Config) *Server {
	tb.Helper()
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1:0"
	}
	s := &Server{tb: tb, cfg: cfg}
	s.start()
	tb.Cleanup(s.Stop)
	return s
}

func (s *Server) start() {
	s.tb.Helper()
	b, err := broker.New(s.cfg)
	if err != nil {
		s.tb.Fatalf("broker: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	s.mu.Lock()
	s.Broker, s.cancel, s.done = b, cancel, done
	s.cfg.Address = b.Addr() // a restart takes the same port
	s.mu.Unlock()
}

// URL is the broker's tcp:// URL (use ssl:// with Addr for a TLS broker).
func (s *Server) URL() string { return "tcp://" + s.Addr() }

// Stop stops the broker and waits for it; Run must return nil, or
// broker.ErrClosed if the test closed the broker itself. Stopping a stopped
// server does nothing.
func (s *Server) Stop() {
	s.tb.Helper()
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.cancel = nil
	s.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, broker.ErrClosed) {
		s.tb.Errorf("broker: %v", err)
	}
}

// StartAgain starts a new broker with the same config on the address of the
// stopped one: it knows no sessions or subscriptions of the old one.
func (s *Server) StartAgain() {
	s.tb.Helper()
	s.mu.Lock()
	running := s.cancel != nil
	s.mu.Unlock()
	if running {
		s.tb.Fatal("brokertest: StartAgain on a running broker")
	}
	s.start()
}
