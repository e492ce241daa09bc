package httptunnel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"

	"github.com/moduleops/module-controller/pkg/protocol"
	"github.com/moduleops/module-controller/tunnel"
)

// newClient returns the client of the command calls: no proxy, no redirects, no
// keep-alive (the arklet closes every connection anyway), and a dialer that applies the
// address rules once more to the address it actually connects to.
func (t *Tunnel) newClient() *http.Client {
	dialer := &net.Dialer{
		Timeout: 10 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("dial %s: %w", address, err)
			}
			return t.allowedIP(ap.Addr().Unmap())
		},
	}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil,
			DialContext:            dialer.DialContext,
			DisableKeepAlives:      true,
			MaxResponseHeaderBytes: 16 << 10,
			DisableCompression:     true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// InstallBiz calls POST /installBiz on the base with biz as the body. It returns once the
// call started, in its own goroutine bounded by Config.InstallTimeout; the base's answer
// becomes a BizOperationResult event. An install of the same biz still running is not
// repeated (nil). Errors: ErrUnknownBase, ErrBusy, ErrNotRunning (wrapped), or an invalid
// base ID or body; nothing was sent then.
//
// A call that fails (connection refused, an HTTP error status, an answer that is no
// arklet Response) yields a FAILED BizOperationResult saying why, so the pod shows the
// failure and the install is retried with back-off; one that times out yields nothing
// (the base may still be installing): the consumer's own install timeout asks for the
// biz list.
func (t *Tunnel) InstallBiz(ctx context.Context, baseID string, biz protocol.BizModel) error {
	return t.operation(ctx, baseID, protocol.CommandInstallBiz, biz)
}

// UninstallBiz calls POST /uninstallBiz on the base, like InstallBiz.
func (t *Tunnel) UninstallBiz(ctx context.Context, baseID string, biz protocol.BizModel) error {
	return t.operation(ctx, baseID, protocol.CommandUninstallBiz, biz)
}

// QueryAllBiz calls POST /queryAllBiz with {} on the base, bounded by
// Config.QueryTimeout; a successful answer becomes a BizStatus event (the full biz list
// converted with protocol.SimpleBizInfos), a failed one is dropped. At most one runs per
// base; a second call meanwhile returns nil.
func (t *Tunnel) QueryAllBiz(ctx context.Context, baseID string) error {
	return t.call(ctx, baseID, protocol.CommandQueryAllBiz, protocol.CommandQueryAllBiz, false, protocol.EmptyRequest{},
		func(h tunnel.Header, body []byte) (tunnel.Event, error) {
			r, err := decodeResponse[[]protocol.BizInfo](baseID, body)
			if err != nil {
				return nil, err
			}
			if !r.Output().Succeeded() {
				return nil, fmt.Errorf("%w: code %s: %s", errFailedReply, r.Code, r.Message)
			}
			return tunnel.BizStatus{Header: h, Bizs: protocol.SimpleBizInfos(r.Data)}, nil
		}, nil)
}

// QueryHealth calls POST /health with {} on the base, like QueryAllBiz; the answer becomes
// a BaseHealth event.
func (t *Tunnel) QueryHealth(ctx context.Context, baseID string) error {
	return t.call(ctx, baseID, protocol.CommandHealth, protocol.CommandHealth, false, protocol.EmptyRequest{},
		func(h tunnel.Header, body []byte) (tunnel.Event, error) {
			r, err := decodeResponse[protocol.Health](baseID, body)
			if err != nil {
				return nil, err
			}
			return tunnel.BaseHealth{Header: h, Health: r.Output()}, nil
		}, nil)
}

// SendBaseline answers the base's waiting POST /queryBaseline with bizs (a JSON array, []
// if empty). The base never asks for a baseline over HTTP on its own, so without a
// waiting query it returns ErrNoBaselineQuery: a base restarted empty gets its bizs
// reinstalled one by one once its queryAllBiz list shows them missing.
func (t *Tunnel) SendBaseline(_ context.Context, baseID string, bizs []protocol.BizModel) error {
	if bizs == nil {
		bizs = []protocol.BizModel{}
	}
	t.mu.Lock()
	answer, ok := t.baselines[baseID]
	if ok {
		delete(t.baselines, baseID)
	}
	t.mu.Unlock()
	if !ok {
		t.metrics.commands.WithLabelValues(baselineLabel, resultUnknownBase).Inc()
		return fmt.Errorf("baseline to base %s: %w", baseID, ErrNoBaselineQuery)
	}
	answer <- bizs // capacity 1, and only this call took it out of the map
	t.metrics.commands.WithLabelValues(baselineLabel, resultOK).Inc()
	return nil
}

// operation starts an install or uninstall call.
func (t *Tunnel) operation(ctx context.Context, baseID, command string, biz protocol.BizModel) error {
	failed := func(h tunnel.Header, err error) tunnel.Event {
		return tunnel.BizOperationResult{Header: h, Operation: protocol.BizOperation{
			Command: command, BizName: biz.BizName, BizVersion: biz.BizVersion,
			Response: protocol.Output[protocol.ClientResponse]{
				Code:    protocol.CodeFailed,
				Message: "calling the base over http failed: " + err.Error(),
			},
		}}
	}
	return t.call(ctx, baseID, command, command+"/"+biz.Key(), true, biz,
		func(h tunnel.Header, body []byte) (tunnel.Event, error) {
			r, err := decodeResponse[protocol.ClientResponse](baseID, body)
			if err != nil {
				return nil, err
			}
			op := protocol.BizOperation{Command: command, BizName: biz.BizName, BizVersion: biz.BizVersion, Response: r.Output()}
			if err := op.Validate(); err != nil {
				return nil, err
			}
			return tunnel.BizOperationResult{Header: h, Operation: op}, nil
		}, failed)
}

// errFailedReply marks a health or biz-list answer that is no success.
var errFailedReply = errors.New("the base answered with a failure")

// errStatus marks an HTTP answer whose status is not 200.
var errStatus = errors.New("http error status")

// decodeResponse decodes an arklet Response and checks that it comes from baseID when it
// says where it comes from: an address now used by another base is not that base.
func decodeResponse[T any](baseID string, body []byte) (protocol.Response[T], error) {
	r, err := protocol.DecodeHTTP[protocol.Response[T]](body)
	if err != nil {
		return r, err
	}
	if r.BaseIdentity != "" {
		if err := protocol.CheckBaseID(baseID, r.BaseIdentity); err != nil {
			return r, err
		}
	}
	return r, nil
}

// replyFunc turns a 200 answer into an event.
type replyFunc func(h tunnel.Header, body []byte) (tunnel.Event, error)

// failFunc turns a call that failed (not timed out) into an event, or is nil.
type failFunc func(h tunnel.Header, err error) tunnel.Event

// call checks and registers one command call and runs it in its own goroutine. key
// identifies the call for deduplication; op says whether it counts against
// Config.MaxInFlight.
func (t *Tunnel) call(ctx context.Context, baseID, command, key string, op bool, body any, reply replyFunc, fail failFunc) (err error) {
	result := resultInvalid
	defer func() {
		if err != nil || result == resultDuplicate {
			t.metrics.commands.WithLabelValues(command, result).Inc()
		}
	}()
	if err := protocol.ValidateBaseID(baseID); err != nil {
		return fmt.Errorf("%s: %w", command, err)
	}
	payload, err := protocol.EncodeCommand(body)
	if err != nil {
		return fmt.Errorf("%s to base %s: %w", command, baseID, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s to base %s: %w", command, baseID, err)
	}
	t.mu.Lock()
	b, known := t.bases[baseID]
	switch {
	case !t.running:
		t.mu.Unlock()
		result = resultStopped
		return fmt.Errorf("%s to base %s: %w", command, baseID, ErrNotRunning)
	case !known || t.cfg.Now().Sub(b.seen) > t.cfg.BaseTTL:
		t.mu.Unlock()
		result = resultUnknownBase
		return fmt.Errorf("%s to base %s: %w", command, baseID, ErrUnknownBase)
	}
	if _, dup := b.pending[key]; dup {
		t.mu.Unlock()
		result = resultDuplicate
		return nil
	}
	if op && b.ops >= t.cfg.MaxInFlight {
		t.mu.Unlock()
		result = resultBusy
		return fmt.Errorf("%s to base %s: %w (%d running)", command, baseID, ErrBusy, t.cfg.MaxInFlight)
	}
	b.pending[key] = struct{}{}
	if op {
		b.ops++
	}
	addr, parent := b.addr, t.callCtx
	t.calls.Add(1)
	t.mu.Unlock()

	timeout := t.cfg.QueryTimeout
	if op {
		timeout = t.cfg.InstallTimeout
	}
	logger := log.G(ctx).WithFields(log.Fields{"base": baseID, "command": command, "address": addr.String()})
	go func() {
		defer t.calls.Done()
		defer t.release(b, key, op)
		t.metrics.inFlight.Inc()
		defer t.metrics.inFlight.Dec()
		t.run(parent, logger, baseID, command, addr, payload, timeout, reply, fail)
	}()
	if op {
		logger.Info("http command started")
	} else {
		logger.Debug("http command started") // periodic polls: per-message traffic
	}
	return nil
}

// release ends the bookkeeping of a call.
func (t *Tunnel) release(b *baseEntry, key string, op bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(b.pending, key)
	if op {
		b.ops--
	}
}

// run makes one call and delivers what it yields. It never panics the process: a panic
// is recovered and counted.
func (t *Tunnel) run(parent context.Context, logger log.Logger, baseID, command string, addr netip.AddrPort,
	payload []byte, timeout time.Duration, reply replyFunc, fail failFunc) {
	result := resultError
	defer func() {
		if p := recover(); p != nil {
			result = resultError
			t.metrics.dropped.WithLabelValues("other").Inc()
			logger.WithField("panic", fmt.Sprint(p)).Error("recovered from panic in an http command call")
		}
		t.metrics.commands.WithLabelValues(command, result).Inc()
	}()
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	body, err := t.post(ctx, addr, command, payload)
	header := tunnel.Header{BaseID: baseID, PublishedAt: t.cfg.Now()}
	var ev tunnel.Event
	if err == nil {
		ev, err = reply(header, body)
		if err != nil {
			t.metrics.dropped.WithLabelValues(dropReason(err)).Inc()
		}
	}
	switch {
	case err == nil:
	case parent.Err() != nil:
		result = resultStopped
		return
	case errors.Is(err, context.DeadlineExceeded):
		result = resultTimeout
		logger.WithField("timeout", timeout).Warn("http command got no answer in time; the base may still be working on it")
		return
	default:
		logger.WithError(err).Warn("http command failed")
		if fail == nil {
			return
		}
		ev = fail(header, err)
	}
	if err := t.deliver(parent, ev); err != nil {
		result = resultStopped
		return
	}
	if result == resultError && err == nil {
		result = resultOK
	}
	logger.Debug("http command answered")
}

// dropReason labels an unusable answer.
func dropReason(err error) string {
	if errors.Is(err, errFailedReply) {
		return reasonFailedReply
	}
	return protocol.Reason(err)
}

// post sends one command and returns the body of a 200 answer, read until the connection
// closes (the arklet misspells Content-Length on some answers) and capped at
// Config.MaxResponseBytes.
func (t *Tunnel) post(ctx context.Context, addr netip.AddrPort, command string, payload []byte) ([]byte, error) {
	url := "http://" + addr.String() + "/" + command
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }() // read-only; nothing to report
	limit := t.cfg.MaxResponseBytes
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if int64(len(body)) > limit {
		t.metrics.dropped.WithLabelValues("too_large").Inc()
		return nil, fmt.Errorf("%w: answer over the limit of %d bytes", protocol.ErrTooLarge, limit)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w %d: %s", errStatus, resp.StatusCode, excerpt(body))
	}
	return body, nil
}

// excerpt returns the start of an error answer for a log line or a pod message: the first
// line, at most 200 bytes, control characters removed.
func excerpt(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, ""))
}
