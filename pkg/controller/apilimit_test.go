package controller

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// heldTransport answers every request once the test lets it, and counts
// how many it holds at once.
type heldTransport struct {
	mu       sync.Mutex
	open     int
	peak     int
	proceed  chan struct{}
	received chan struct{}
}

func (h *heldTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	h.mu.Lock()
	h.open++
	h.peak = max(h.peak, h.open)
	h.mu.Unlock()
	h.received <- struct{}{}
	<-h.proceed
	h.mu.Lock()
	h.open--
	h.mu.Unlock()
	return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("{}")), Request: req}, nil
}

func get(ctx context.Context, t *testing.T, rt http.RoundTripper, url string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	return rt.RoundTrip(req)
}

// TestAPIRequestLimit: at most n requests are open at once across every
// transport wrapped by one limit; a slot is freed when the response body is
// closed; watches do not count; a request waiting for a slot gives up with
// its context.
func TestAPIRequestLimit(t *testing.T) {
	held := &heldTransport{proceed: make(chan struct{}), received: make(chan struct{}, 10)}
	limit := NewAPIRequestLimit(2)
	a, b := limit.Wrap(held), limit.Wrap(held) // two clients, one connection

	type result struct {
		resp *http.Response
		err  error
	}
	results := make(chan result, 3)
	for _, rt := range []http.RoundTripper{a, b, a} {
		go func() {
			resp, err := get(t.Context(), t, rt, "https://api/api/v1/nodes/n")
			results <- result{resp, err}
		}()
	}
	<-held.received
	<-held.received
	// A watch passes the full limit.
	go func() {
		resp, err := get(t.Context(), t, b, "https://api/api/v1/pods?watch=true")
		results <- result{resp, err}
	}()
	<-held.received
	select {
	case <-held.received:
		t.Fatal("a third request was sent while two were open")
	case <-time.After(50 * time.Millisecond):
	}
	// A request that waits for a slot ends with its context.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := get(ctx, t, a, "https://api/api/v1/nodes/m")
	require.ErrorIs(t, err, context.Canceled)

	// Answer the two and the watch; the waiting request goes out only once
	// a body is closed.
	for range 3 {
		held.proceed <- struct{}{}
	}
	var done []*http.Response
	for range 3 {
		r := <-results
		require.NoError(t, r.err)
		done = append(done, r.resp)
	}
	select {
	case <-held.received:
		t.Fatal("a request was sent before a response body was closed")
	case <-time.After(50 * time.Millisecond):
	}
	for _, resp := range done {
		require.NoError(t, resp.Body.Close())
		require.NoError(t, resp.Body.Close(), "closing twice frees one slot")
	}
	<-held.received
	held.proceed <- struct{}{}
	r := <-results
	require.NoError(t, r.err)
	require.NoError(t, r.resp.Body.Close())
	require.Equal(t, 3, held.peak, "two requests and a watch at most")
}
