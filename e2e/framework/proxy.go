package framework

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Proxy is a TCP forwarder on a free loopback port in the test process that
// stands for the network between one client and a server, so tests can break
// that network the two ways networks break:
//
//   - Cut: the path is gone. Every connection is closed and new ones are
//     refused until Restore, as when the server's host or address is down.
//   - Freeze: the path stalls. Connections stay open but no byte moves in
//     either direction until Thaw; what was sent meanwhile waits in the
//     kernel's socket buffers and arrives after the Thaw, as TCP delivers
//     retransmitted segments after a partition heals.
//
// Its methods are safe for concurrent use.
type Proxy struct {
	upstream string
	address  string

	mu       sync.Mutex
	listener net.Listener // nil while cut or closed
	conns    map[net.Conn]struct{}
	open     chan struct{} // closed while not frozen
	cut      chan struct{} // closed by Cut and Close: frees goroutines held by a Freeze
	closed   bool
	wg       sync.WaitGroup
}

// proxyDialTimeout bounds the dial to the upstream server for one connection.
const proxyDialTimeout = 5 * time.Second

// StartProxy listens on a free loopback port and forwards every connection to
// upstream (host:port). Stop it with Close.
func StartProxy(upstream string) (*Proxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy listen: %w", err)
	}
	open := make(chan struct{})
	close(open)
	p := &Proxy{upstream: upstream, address: l.Addr().String(), listener: l, conns: map[net.Conn]struct{}{}, open: open, cut: make(chan struct{})}
	p.serve(l)
	return p, nil
}

// Address is the proxy's host:port, where clients connect.
func (p *Proxy) Address() string { return p.address }

// Cut closes the listener and every connection: clients see their connection
// drop and further connects refused, until Restore. It is idempotent.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeLocked()
}

func (p *Proxy) closeLocked() {
	if p.listener != nil {
		_ = p.listener.Close()
		p.listener = nil
		close(p.cut)
	}
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
	}
}

// Restore listens again on the same address after Cut; ctx bounds the
// retries while the kernel still holds the port. It is idempotent.
func (p *Proxy) Restore(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("proxy closed")
	}
	if p.listener != nil {
		return nil
	}
	var l net.Listener
	if err := retryUntil(ctx, func() (err error) {
		l, err = net.Listen("tcp", p.address)
		return err
	}); err != nil {
		return fmt.Errorf("proxy listen again on %s: %w", p.address, err)
	}
	p.listener, p.cut = l, make(chan struct{})
	p.serve(l)
	return nil
}

// Freeze stops every byte in both directions, on open and new connections,
// until Thaw. It is idempotent.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.open:
		p.open = make(chan struct{})
	default:
	}
}

// Thaw lets the bytes held by Freeze move again. It is idempotent.
func (p *Proxy) Thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.open:
	default:
		close(p.open)
	}
}

// Close cuts the proxy for good and waits for its goroutines. It is idempotent.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.closeLocked()
	select {
	case <-p.open:
	default:
		close(p.open)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// serve accepts on l until it is closed.
func (p *Proxy) serve(l net.Listener) {
	p.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.forward(c) })
		}
	})
}

// track registers c for Cut and returns the channel Cut closes; it returns
// nil (and closes c) once the listener is gone.
func (p *Proxy) track(c net.Conn) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.listener == nil {
		_ = c.Close()
		return nil
	}
	p.conns[c] = struct{}{}
	return p.cut
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
	_ = c.Close()
}

// pass waits while the proxy is frozen; it reports false once cut is closed.
func (p *Proxy) pass(cut <-chan struct{}) bool {
	p.mu.Lock()
	open := p.open
	p.mu.Unlock()
	select {
	case <-open:
		return true
	case <-cut:
		return false
	}
}

func (p *Proxy) forward(client net.Conn) {
	cut := p.track(client)
	if cut == nil {
		return
	}
	defer p.untrack(client)
	if !p.pass(cut) { // a frozen network does not carry the handshake either
		return
	}
	server, err := net.DialTimeout("tcp", p.upstream, proxyDialTimeout)
	if err != nil {
		return // the client sees its connection close, as with a refused connect
	}
	if p.track(server) == nil {
		return
	}
	defer p.untrack(server)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 32<<10)
		for p.pass(cut) {
			n, err := src.Read(buf)
			if n > 0 && (!p.pass(cut) || write(dst, buf[:n]) != nil) {
				return
			}
			if err != nil {
				return
			}
		}
	}
	go pipe(server, client)
	go pipe(client, server)
	<-done // one side ended: end both, as a TCP proxy does
	_ = client.Close()
	_ = server.Close()
	<-done
}

func write(dst net.Conn, b []byte) error {
	_, err := dst.Write(b)
	return err
}
