package controller

import (
	"io"
	"net/http"
	"sync"
)

// APIRequestLimit bounds the Kubernetes API requests this process has open
// at once, watches aside. client-go sends every request over one HTTP/2
// connection until it carries the server's limit of concurrent streams (the
// API server allows 100); past that, each further request opens a new TLS
// connection, which is closed again once idle. Registering a thousand
// bases at once did exactly that: a fifth of the controller's CPU went into
// TLS handshakes, and as much into the API server's. Below the limit the
// requests wait for a stream on the open connection instead.
//
// One APIRequestLimit is shared by every client of the process (Wrap it
// into each rest.Config), since they share the connection.
type APIRequestLimit struct {
	slots chan struct{}
}

// NewAPIRequestLimit returns a limit of n open requests; n must be positive.
func NewAPIRequestLimit(n int) *APIRequestLimit {
	return &APIRequestLimit{slots: make(chan struct{}, n)}
}

// Wrap is a rest.Config WrapTransport: the requests through the returned
// RoundTripper count against the limit until their response body is closed
// (or the request failed). Watches are not counted: each holds its stream
// for as long as it runs, and a process has a handful.
func (l *APIRequestLimit) Wrap(next http.RoundTripper) http.RoundTripper {
	return &limitedTransport{next: next, slots: l.slots}
}

type limitedTransport struct {
	next  http.RoundTripper
	slots chan struct{}
}

func (t *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if q := req.URL.Query().Get("watch"); q == "true" || q == "1" {
		return t.next.RoundTrip(req)
	}
	select {
	case t.slots <- struct{}{}:
	case <-req.Context().Done():
		return nil, req.Context().Err()
	}
	release := sync.OnceFunc(func() { <-t.slots })
	resp, err := t.next.RoundTrip(req)
	if err != nil || resp == nil || resp.Body == nil {
		release()
		return resp, err
	}
	resp.Body = &releasingBody{ReadCloser: resp.Body, release: release}
	return resp, nil
}

// releasingBody frees the request's slot when the body is closed, or read
// to its end, whichever comes first.
type releasingBody struct {
	io.ReadCloser
	release func()
}

func (b *releasingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.release()
	}
	return n, err
}

func (b *releasingBody) Close() error {
	defer b.release()
	return b.ReadCloser.Close()
}
