package controller

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moduleops/module-controller/provider"
)

// metrics are the controller's Prometheus collectors.
type metrics struct {
	bases       prometheus.Gauge
	heartbeats  prometheus.Counter
	transitions *prometheus.CounterVec
	duplicates  prometheus.Counter
	orphans     prometheus.Counter
	baselines   prometheus.Counter

	unsolicited     prometheus.Counter
	droppedCommands prometheus.Counter
	rejected        *prometheus.CounterVec
	dropped         *prometheus.CounterVec
	disrupted       prometheus.Gauge
	disruptions     prometheus.Counter
	panics          prometheus.Counter
	registrations   prometheus.Counter
	removing        prometheus.Gauge
}

// newMetrics creates the collectors and registers them on reg, if not nil.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		bases: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "module_controller", Name: "bases",
			Help: "Bases served by this replica (one virtual node each).",
		}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "module_controller", Name: "heartbeats_total",
			Help: "Heartbeats received from served bases.",
		}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "module_controller", Name: "node_transitions_total",
			Help: "Virtual node transitions, by the state entered (ready, unreachable, removed).",
		}, []string{"to"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "module_controller", Name: "duplicate_base_identities_total",
			Help: "Times two live bases were seen publishing under one identity.",
		}),
		orphans: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "module_controller", Name: "orphan_bizs_total",
			Help: "Bizs found running on a base that no pod on its node asks for.",
		}),
		baselines: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "module_controller", Name: "baselines_sent_total",
			Help: "Baselines sent to bases that (re)started.",
		}),
		unsolicited: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "module_controller", Name: "unsolicited_results_total",
			Help: "Install and uninstall results dropped: no such command was outstanding.",
		}),
		droppedCommands: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "module_controller", Name: "commands_dropped_total",
			Help: "Commands dropped because a base's command queue was full; they are retried when they time out.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "module_controller", Name: "heartbeats_rejected_total",
			Help: "Heartbeats that did not become a node, by reason (an invalid field, max_bases).",
		}, []string{"reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "module_controller", Name: "messages_dropped_total",
			Help: "Base messages dropped by the controller, by reason (rate_limited; invalid_biz counts biz-list entries).",
		}, []string{"reason"}),
		disrupted: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "module_controller", Name: "tunnel_disrupted",
			Help: "1 while the tunnel is disrupted (disconnected, or most bases silent at once): nothing is marked unreachable or removed.",
		}),
		disruptions: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "module_controller", Name: "tunnel_disruptions_total",
			Help: "Times the controller entered tunnel disruption mode.",
		}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "module_controller", Name: "base_panics_total",
			Help: "Panics recovered in a base's goroutines; each tore down only that base's node controller.",
		}),
		removing: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "module_controller", Name: "bases_removing",
			Help: "Bases whose old node, lease and pods are still being deleted (or whose goroutines are stopping); stuck above 0 means removals keep failing.",
		}),
		registrations: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "module_controller", Name: "node_registration_failures_total",
			Help: "Failed attempts to register or run a virtual node; each is retried with backoff.",
		}),
	}
	for _, reason := range append([]string{"max_bases"}, provider.FieldReasons...) {
		m.rejected.WithLabelValues(reason) // present at 0 from the start, for alerts
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.bases, m.heartbeats, m.transitions, m.duplicates, m.orphans, m.baselines,
		m.unsolicited, m.droppedCommands, m.rejected, m.dropped, m.disrupted, m.disruptions, m.panics, m.registrations, m.removing} {
		errs = append(errs, reg.Register(c))
	}
	return m, errors.Join(errs...)
}
