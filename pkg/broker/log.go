package broker

import (
	"context"
	"log/slog"
	"sync/atomic"

	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
)

// logHandler is a slog.Handler that forwards mochi's records to
// virtual-kubelet's logger, so the broker logs through the project's single
// logging stack. mochi's Info records (listener attached, server started) are
// logged at Debug: Run logs the lifecycle itself.
type logHandler struct {
	ctx    *atomic.Pointer[context.Context] // logger source; set by Run
	fields vklog.Fields
	group  string
}

func newLogHandler() *logHandler {
	p := new(atomic.Pointer[context.Context])
	ctx := context.TODO() // replaced by Run's context; until then log.G falls back to log.L
	p.Store(&ctx)
	return &logHandler{ctx: p}
}

// newSlogLogger is the only place the package touches log/slog, because mochi
// takes a *slog.Logger.
func newSlogLogger(h *logHandler) *slog.Logger { return slog.New(h) }

func (h *logHandler) setContext(ctx context.Context) { h.ctx.Store(&ctx) }

// logger is the broker's own logger, for what the broker logs itself.
func (h *logHandler) logger() vklog.Logger {
	return vklog.G(*h.ctx.Load()).WithField("component", "mqtt-broker")
}

func (h *logHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *logHandler) Handle(_ context.Context, r slog.Record) error {
	l := h.logger()
	if len(h.fields) > 0 {
		l = l.WithFields(h.fields)
	}
	r.Attrs(func(a slog.Attr) bool {
		l = h.with(l, a)
		return true
	})
	switch {
	case r.Level >= slog.LevelError:
		l.Error(r.Message)
	case r.Level >= slog.LevelWarn:
		l.Warn(r.Message)
	default:
		l.Debug(r.Message)
	}
	return nil
}

func (h *logHandler) with(l vklog.Logger, a slog.Attr) vklog.Logger {
	v := a.Value.Resolve()
	if err, ok := v.Any().(error); ok {
		return l.WithError(err)
	}
	return l.WithField(h.key(a.Key), v.Any())
}

func (h *logHandler) key(k string) string {
	if h.group == "" {
		return k
	}
	return h.group + "." + k
}

func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := &logHandler{ctx: h.ctx, group: h.group, fields: make(vklog.Fields, len(h.fields)+len(attrs))}
	for k, v := range h.fields {
		n.fields[k] = v
	}
	for _, a := range attrs {
		n.fields[h.key(a.Key)] = a.Value.Resolve().Any()
	}
	return n
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &logHandler{ctx: h.ctx, fields: h.fields, group: h.key(name)}
}
