package cluster

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Causes of a handover, the cause label of handovers_total.
const (
	// Gained.
	CauseNew      = "new"      // the base had no Lease yet
	CauseReleased = "released" // its previous owner released it
	CauseFailover = "failover" // its previous owner stopped renewing it
	CauseRestart  = "restart"  // a previous process of this replica held it
	// Lost.
	CauseRebalance   = "rebalance"    // another replica is now the chosen owner
	CauseShutdown    = "shutdown"     // this replica is stopping
	CauseTaken       = "taken"        // another replica holds it now
	CauseRenewFailed = "renew_failed" // no renewal succeeded within the renew deadline
	CauseForgotten   = "forgotten"    // the base was not heard of for ForgetAfter
)

// metrics are the Prometheus collectors of an Ownership.
type metrics struct {
	owned         prometheus.Gauge
	replicas      prometheus.Gauge
	waiting       prometheus.Gauge
	handovers     *prometheus.CounterVec
	renewFailures *prometheus.CounterVec
	writes        *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		owned: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "module_controller", Subsystem: "cluster", Name: "bases_owned",
			Help: "Bases whose Lease this replica holds.",
		}),
		replicas: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "module_controller", Subsystem: "cluster", Name: "replicas",
			Help: "Live replicas of this env, as this replica sees them (itself included).",
		}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "module_controller", Subsystem: "cluster", Name: "bases_waiting",
			Help: "Bases the hashing gives this replica that another replica still holds; above 0 for longer than a lease duration means the replicas disagree.",
		}),
		handovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "module_controller", Subsystem: "cluster", Name: "handovers_total",
			Help: "Base Leases gained or lost by this replica, by direction (gained, lost) and cause.",
		}, []string{"direction", "cause"}),
		renewFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "module_controller", Subsystem: "cluster", Name: "lease_renew_failures_total",
			Help: "Failed renewals of a held Lease, by kind (replica, base).",
		}, []string{"kind"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "module_controller", Subsystem: "cluster", Name: "lease_writes_total",
			Help: "Lease API writes sent, by kind (replica, base) and verb (create, update, delete).",
		}, []string{"kind", "verb"}),
	}
	for _, c := range []string{CauseNew, CauseReleased, CauseFailover, CauseRestart} {
		m.handovers.WithLabelValues("gained", c)
	}
	for _, c := range []string{CauseRebalance, CauseShutdown, CauseTaken, CauseRenewFailed, CauseForgotten} {
		m.handovers.WithLabelValues("lost", c)
	}
	m.renewFailures.WithLabelValues(LeaseReplica)
	m.renewFailures.WithLabelValues(LeaseBase)
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.owned, m.replicas, m.waiting, m.handovers, m.renewFailures, m.writes} {
		errs = append(errs, reg.Register(c))
	}
	return m, errors.Join(errs...)
}
