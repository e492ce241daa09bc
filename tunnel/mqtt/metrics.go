package mqtt

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// Metric names, all under the module_controller_mqtt_ prefix.
const (
	metricsNamespace = "module_controller"
	metricsSubsystem = "mqtt"
)

// Drop reasons of this package, beside the protocol.Reason labels ("too_large",
// "malformed", "invalid_base_id", "base_id_mismatch", "missing_field", "unknown_topic",
// "invalid_env", "other").
const (
	// reasonStale: a status message older than Config.MaxMessageAge.
	reasonStale = "stale"
	// reasonWrongEnv: a topic of another env (only a misbehaving broker delivers one).
	reasonWrongEnv = "wrong_env"
	// reasonLegacy: the legacy base/biz inventory (runtime <= v1.3.1), see handlers.go.
	reasonLegacy = "legacy"
	// reasonPanic: handling the message panicked; a bug, logged at error level.
	reasonPanic = "panic"
	// reasonStopped: the tunnel stopped while the message waited for room in Events.
	reasonStopped = "stopped"
)

// dropReasons are all labels of messages_dropped_total, pre-created so they read 0.
var dropReasons = []string{
	"too_large", "malformed", "invalid_base_id", "base_id_mismatch", "missing_field",
	"unknown_topic", "invalid_env", "other",
	reasonStale, reasonWrongEnv, reasonLegacy, reasonPanic, reasonStopped,
}

// Command results, the result label of commands_published_total.
const (
	resultOK           = "ok"            // PUBACK received
	resultNotConnected = "not_connected" // ErrNotConnected returned
	resultInvalid      = "invalid"       // bad base ID or body; nothing published
	resultCanceled     = "canceled"      // ctx ended before the PUBACK
	resultError        = "error"         // paho reported an error
)

var commandResults = []string{resultOK, resultNotConnected, resultInvalid, resultCanceled, resultError}

// unknownSuffix labels received messages whose topic is not a base→controller topic.
const unknownSuffix = "unknown"

// metrics are the tunnel's Prometheus collectors.
type metrics struct {
	// received counts every message delivered by the broker, by topic suffix.
	received *prometheus.CounterVec
	// dropped counts messages that produced no event, by reason.
	dropped *prometheus.CounterVec
	// commands counts commands published, by command and result.
	commands *prometheus.CounterVec
	// connected is 1 while connected and subscribed, else 0 (read from Tunnel.Connected).
	connected prometheus.GaugeFunc
	// connectFailures counts failed connection attempts (network, TLS or CONNACK).
	connectFailures prometheus.Counter
	// backpressure counts messages that found Events full and had to wait for the consumer.
	backpressure prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, connected func() bool) (*metrics, error) {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: name, Help: help}
	}
	m := &metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts(opts("messages_received_total",
			"MQTT messages received from bases, by topic suffix.")), []string{"suffix"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts(opts("messages_dropped_total",
			"MQTT messages from bases dropped without an event, by reason.")), []string{"reason"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts(opts("commands_published_total",
			"Commands published to bases, by command and result.")), []string{"command", "result"}),
		connected: prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("connected",
			"1 while the tunnel is connected to the broker and subscribed, else 0.")),
			func() float64 {
				if connected() {
					return 1
				}
				return 0
			}),
		connectFailures: prometheus.NewCounter(prometheus.CounterOpts(opts("connection_failures_total",
			"Failed attempts to connect to the broker."))),
		backpressure: prometheus.NewCounter(prometheus.CounterOpts(opts("events_backpressure_total",
			"Messages that found the event channel full and waited for the consumer."))),
	}
	for _, s := range baseSuffixes() {
		m.received.WithLabelValues(s)
	}
	m.received.WithLabelValues(unknownSuffix)
	for _, r := range dropReasons {
		m.dropped.WithLabelValues(r)
	}
	for _, c := range commandLabels {
		for _, r := range commandResults {
			m.commands.WithLabelValues(c, r)
		}
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.received, m.dropped, m.commands, m.connected, m.connectFailures, m.backpressure} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("register mqtt metrics: %w", err)
	}
	return m, nil
}

// reason returns the drop-reason label of a handler error.
func reason(err error) string {
	switch {
	case errors.Is(err, errStale):
		return reasonStale
	case errors.Is(err, errWrongEnv):
		return reasonWrongEnv
	case errors.Is(err, errLegacy):
		return reasonLegacy
	case errors.Is(err, errStopped):
		return reasonStopped
	default:
		return protocol.Reason(err)
	}
}
