package basesim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// The HTTP tunnel of the simulated base (docs/http-tunnel.md; the wire contract is
// arklet-http.md): an arklet HTTP server answering POST /<command> synchronously, and a
// heartbeat POSTed to Config.HTTPEndpoint + "/heartbeat" every HeartbeatInterval.

// ErrNotSupported is returned by operations that the base's transport does not have
// (publishing on an arbitrary topic over HTTP).
var ErrNotSupported = errors.New("not supported by this tunnel")

// httpResponse is arklet's Response as fastjson writes it (alphabetical, nulls omitted).
type httpResponse[T any] struct {
	BaseIdentity    string `json:"baseIdentity,omitempty"`
	Code            string `json:"code"`
	Data            T      `json:"data,omitempty,omitzero"`
	ErrorStackTrace string `json:"errorStackTrace,omitempty"`
	Message         string `json:"message,omitempty"`
}

// bizInfoJSON is arklet's BizInfo as the HTTP queryAllBiz answer lists it.
type bizInfoJSON struct {
	BizName         string                 `json:"bizName"`
	BizState        protocol.BizState      `json:"bizState"`
	BizStateRecords []protocol.StateRecord `json:"bizStateRecords"`
	BizVersion      string                 `json:"bizVersion"`
	MainClass       string                 `json:"mainClass"`
	WebContextPath  string                 `json:"webContextPath"`
}

// fromOutput is the HTTP Response of an Output.
func fromOutput[T any](o protocol.Output[T]) httpResponse[T] {
	return httpResponse[T]{Code: o.Code, Message: o.Message, Data: o.Data}
}

// httpTimeout is the Java base's read timeout of a heartbeat post (connect: 30 s).
const httpTimeout = 10 * time.Second

// startHTTP listens, serves the arklet HTTP server and posts the first heartbeat. A failed
// heartbeat is only logged, as the Java base does.
func (p *process) startHTTP() error {
	b := p.b
	var lc net.ListenConfig
	ln, err := lc.Listen(p.ctx, "tcp", b.cfg.HTTPListen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", b.cfg.HTTPListen, err)
	}
	p.port = ln.Addr().(*net.TCPAddr).Port
	p.srv = &http.Server{
		Handler:           http.HandlerFunc(p.serveCommand),
		ReadHeaderTimeout: 5 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return p.ctx },
	}
	transport := &http.Transport{DisableKeepAlives: true, TLSClientConfig: b.cfg.HTTPTLS}
	p.httpClient = &http.Client{Timeout: httpTimeout, Transport: transport}
	go func() { _ = p.srv.Serve(ln) }() // ends with ErrServerClosed when the process dies
	p.connected.Store(true)
	b.logger().WithField("port", p.port).Info("arklet http server listening")
	p.beat(time.Now())
	p.markReady(nil)
	return nil
}

// killHTTP closes the server and every connection: a dead JVM answers nothing.
func (p *process) killHTTP() {
	if p.srv != nil {
		_ = p.srv.Close() // closing: nothing to report
	}
}

// postHTTP posts body to the controller's path and reports a non-200 answer as an error.
func (p *process) postHTTP(path string, body []byte) error {
	if p.ctx.Err() != nil {
		return ErrStopped
	}
	req, err := http.NewRequestWithContext(p.ctx, http.MethodPost, strings.TrimSuffix(p.b.cfg.HTTPEndpoint, "/")+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if p.b.cfg.HTTPToken != "" {
		req.Header.Set("Authorization", "Bearer "+p.b.cfg.HTTPToken)
	}
	resp, err := p.httpClient.Do(req)
	if err != nil {
		if p.ctx.Err() != nil {
			return ErrStopped
		}
		return fmt.Errorf("post %s: %w", path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("post %s: status %d: %s", path, resp.StatusCode, strings.TrimSpace(string(answer)))
	}
	return nil
}

// sendHTTP posts data as JSON (no envelope) to the controller endpoint of suffix, unless
// the base is silenced.
func (p *process) sendHTTP(suffix string, data any) error {
	if p.b.silenced.Load() {
		return ErrSilenced
	}
	body, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("encode %s: %w", suffix, err)
	}
	return p.sendRawHTTP(suffix, body)
}

// sendRawHTTP posts payload to the controller endpoint of suffix: base/heart is
// /heartbeat, base/queryBaseline /queryBaseline.
func (p *process) sendRawHTTP(suffix string, payload []byte) error {
	var path string
	switch suffix {
	case protocol.SuffixHeartbeat:
		path = protocol.HTTPPathHeartbeat
	case protocol.SuffixQueryBaseline:
		path = protocol.HTTPPathQueryBaseline
	default:
		return fmt.Errorf("%w: %s over http", ErrNotSupported, suffix)
	}
	if err := p.postHTTP(path, payload); err != nil {
		return err
	}
	p.b.countPublished(suffix)
	return nil
}

// serveCommand is the arklet HTTP server: POST /<command> with a JSON object body,
// answered synchronously with a Response (an install once the biz started). Like the
// netty server, a non-POST request or a body that is no JSON object gets a plain-text
// 500, and the connection is closed after every answer.
func (p *process) serveCommand(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Connection", "close")
	name := strings.TrimPrefix(r.URL.Path, "/")
	payload, err := io.ReadAll(io.LimitReader(r.Body, protocol.MaxPayloadSize+1))
	if err != nil {
		return
	}
	cmd := decodeCommand(name, r.URL.Path, payload, p.b.cfg.Now())
	if r.Method == http.MethodPost {
		p.b.recv.add(cmd)
	}
	logger := p.b.logger().WithField("command", name)
	if p.b.silenced.Load() {
		// A silenced base answers nothing: drop the connection without a response.
		panic(http.ErrAbortHandler)
	}
	if t := bytes.TrimSpace(payload); r.Method != http.MethodPost || len(t) == 0 || t[0] != '{' {
		http.Error(w, "request must be a POST with a JSON object body", http.StatusInternalServerError)
		return
	}
	logger.Debug("http command received")
	var answer any
	switch name {
	case protocol.CommandInstallBiz, protocol.CommandUninstallBiz:
		if cmd.Malformed {
			answer = fromOutput(exceptionOutput(validationError(installHandler, "invalid input")))
			break
		}
		run := p.install
		if name == protocol.CommandUninstallBiz {
			run = p.uninstall
		}
		out, ok := run(cmd.Bizs[0])
		if !ok {
			panic(http.ErrAbortHandler) // the process died meanwhile
		}
		answer = fromOutput(out)
	case protocol.CommandHealth:
		answer = fromOutput(p.health())
	case protocol.CommandQueryAllBiz:
		answer = httpResponse[[]bizInfoJSON]{Code: protocol.CodeSuccess, Data: p.reg.bizInfos()}
	default:
		answer = httpResponse[struct{}]{Code: protocol.CodeCommandNotFound, Message: "command not found: " + name}
	}
	body, err := json.Marshal(answer)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body) // the controller may be gone; nothing to do then
}

// decodeCommand records a command body as the base reads it.
func decodeCommand(name, topic string, payload []byte, at time.Time) Command {
	cmd := Command{Name: name, Topic: topic, Payload: payload, At: at}
	switch name {
	case protocol.CommandInstallBiz, protocol.CommandUninstallBiz:
		bm, err := protocol.DecodeCommand[protocol.BizModel](payload)
		if err != nil {
			cmd.Malformed = true
		} else {
			cmd.Bizs = []protocol.BizModel{bm}
		}
	case CommandBaseline:
		ms, err := protocol.DecodeCommand[[]protocol.BizModel](payload)
		if err != nil {
			cmd.Malformed = true
		} else {
			cmd.Bizs = ms
		}
	case protocol.CommandHealth, protocol.CommandQueryAllBiz:
		if _, err := protocol.DecodeCommand[protocol.EmptyRequest](payload); err != nil {
			cmd.Malformed = true
		}
	}
	return cmd
}

// HTTPPort returns the port of the base's arklet HTTP server (the one its heartbeats
// announce), or 0 if the base does not run the HTTP tunnel or is not started.
func (b *Base) HTTPPort() int {
	p := b.current()
	if p == nil {
		return 0
	}
	return p.port
}

// bizInfos lists the registry as arklet's BizInfo, for the HTTP queryAllBiz answer.
func (r *registry) bizInfos() []bizInfoJSON {
	r.mu.Lock()
	defer r.mu.Unlock()
	entries := r.sortedLocked()
	out := make([]bizInfoJSON, 0, len(entries))
	for _, e := range entries {
		records := e.records
		if records == nil {
			records = []protocol.StateRecord{}
		}
		out = append(out, bizInfoJSON{
			BizName:         e.model.BizName,
			BizState:        e.state,
			BizStateRecords: append([]protocol.StateRecord(nil), records...),
			BizVersion:      e.model.BizVersion,
			MainClass:       "com.alipay.sofa.web." + javaIdentifier(e.model.BizName) + ".Application",
			WebContextPath:  e.model.BizName,
		})
	}
	return out
}
