package controller

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the controller's Prometheus collectors.
type metrics struct {
	bases       prometheus.Gauge
	heartbeats  prometheus.Counter
	transitions *prometheus.CounterVec
	duplicates  prometheus.Counter
	orphans     prometheus.Counter
	baselines   prometheus.Counter
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
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.bases, m.heartbeats, m.transitions, m.duplicates, m.orphans, m.baselines} {
		errs = append(errs, reg.Register(c))
	}
	return m, errors.Join(errs...)
}
