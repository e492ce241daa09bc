package main

import (
	"github.com/go-logr/logr"
	"github.com/sirupsen/logrus"
)

// klogSink is a logr.LogSink writing to logrus, so that what client-go logs
// through klog lands in the controller's one log stream (docs/architecture.md,
// "Conventions").
// klog's V(0) is logged at Info, V(1) and up at Debug (V(5) and up at Trace);
// errors at Error.
type klogSink struct {
	entry *logrus.Entry
}

var _ logr.LogSink = klogSink{}

// Init implements logr.LogSink.
func (klogSink) Init(logr.RuntimeInfo) {}

// level maps a klog verbosity to a logrus level.
func (klogSink) level(v int) logrus.Level {
	switch {
	case v <= 0:
		return logrus.InfoLevel
	case v < 5:
		return logrus.DebugLevel
	default:
		return logrus.TraceLevel
	}
}

// Enabled implements logr.LogSink.
func (s klogSink) Enabled(v int) bool { return s.entry.Logger.IsLevelEnabled(s.level(v)) }

// Info implements logr.LogSink.
func (s klogSink) Info(v int, msg string, kv ...any) {
	s.with(kv).Log(s.level(v), msg)
}

// Error implements logr.LogSink.
func (s klogSink) Error(err error, msg string, kv ...any) {
	s.with(kv).WithError(err).Error(msg)
}

// WithValues implements logr.LogSink.
func (s klogSink) WithValues(kv ...any) logr.LogSink { return klogSink{entry: s.with(kv)} }

// WithName implements logr.LogSink.
func (s klogSink) WithName(name string) logr.LogSink {
	if prev, ok := s.entry.Data["logger"].(string); ok && prev != "" {
		name = prev + "/" + name
	}
	return klogSink{entry: s.entry.WithField("logger", name)}
}

// with adds key/value pairs as fields; a key that is not a string is
// formatted, a missing value is logged as such.
func (s klogSink) with(kv []any) *logrus.Entry {
	if len(kv) == 0 {
		return s.entry
	}
	fields := make(logrus.Fields, len(kv)/2+1)
	for i := 0; i < len(kv); i += 2 {
		key, ok := kv[i].(string)
		if !ok {
			key = "!(key)"
		}
		if i+1 < len(kv) {
			fields[key] = kv[i+1]
		} else {
			fields[key] = "(missing value)"
		}
	}
	return s.entry.WithFields(fields)
}
