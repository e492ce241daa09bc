package httptunnel

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// Metric names, all under the module_controller_http_tunnel_ prefix.
const (
	metricsNamespace = "module_controller"
	metricsSubsystem = "http_tunnel"
)

// Drop reasons of this package, beside the protocol.Reason labels ("too_large",
// "malformed", "invalid_base_id", "base_id_mismatch", "missing_field", "other").
const (
	reasonMethod       = "method"        // not POST
	reasonUnauthorized = "unauthorized"  // bearer token missing or wrong
	reasonRateLimited  = "rate_limited"  // over the client's rate bound
	reasonAddress      = "address"       // localIP:port refused by the address rules
	reasonForeign      = "foreign"       // localIP is not the sender's address
	reasonFull         = "full"          // MaxBases addresses kept, none stale
	reasonFailedReply  = "failed_reply"  // a health or queryAllBiz answer that is no success
	reasonStopped      = "stopped"       // the tunnel stopped while the event waited
	reasonBaselineWait = "baseline_wait" // no SendBaseline in time
)

var dropReasons = []string{
	"too_large", "malformed", "invalid_base_id", "base_id_mismatch", "missing_field", "other",
	reasonMethod, reasonUnauthorized, reasonRateLimited, reasonAddress, reasonForeign, reasonFull,
	reasonFailedReply, reasonStopped, reasonBaselineWait,
}

// Command results, the result label of commands_total.
const (
	resultOK          = "ok"           // the base answered and the answer became an event
	resultUnknownBase = "unknown_base" // no valid heartbeat announced an address
	resultBusy        = "busy"         // MaxInFlight calls already run for the base
	resultDuplicate   = "duplicate"    // the same call is still running; not repeated
	resultInvalid     = "invalid"      // bad base ID or body; nothing sent
	resultTimeout     = "timeout"      // no answer within the call's timeout
	resultError       = "error"        // connection failed, an HTTP error status or an unusable answer
	resultStopped     = "stopped"      // the tunnel stopped during the call
)

var commandResults = []string{resultOK, resultUnknownBase, resultBusy, resultDuplicate, resultInvalid, resultTimeout, resultError, resultStopped}

var commandLabels = []string{
	protocol.CommandInstallBiz, protocol.CommandUninstallBiz, protocol.CommandQueryAllBiz,
	protocol.CommandHealth, baselineLabel,
}

// baselineLabel is the command label of SendBaseline.
const baselineLabel = "baseline"

// metrics are the tunnel's Prometheus collectors.
type metrics struct {
	requests *prometheus.CounterVec
	dropped  *prometheus.CounterVec
	commands *prometheus.CounterVec
	inFlight prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: name, Help: help}
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts(opts("requests_total",
			"HTTP requests served to bases, by path and status code.")), []string{"path", "code"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts(opts("messages_dropped_total",
			"Requests and answers from bases dropped without an event, by reason.")), []string{"reason"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts(opts("commands_total",
			"Command calls to bases, by command and result.")), []string{"command", "result"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts(opts("calls_in_flight",
			"Command calls to bases running now."))),
	}
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
	for _, c := range []prometheus.Collector{m.requests, m.dropped, m.commands, m.inFlight} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("register http tunnel metrics: %w", err)
	}
	return m, nil
}
