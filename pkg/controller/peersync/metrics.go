package peersync

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of one sync, the values of the "result" label.
const (
	resultScaled    = "scaled"
	resultMarked    = "marked"
	resultUnchanged = "unchanged"
	resultSkipped   = "skipped"
	resultError     = "error"
)

// metrics are the controller's Prometheus collectors.
type metrics struct {
	syncs *prometheus.CounterVec
}

// newMetrics creates the collectors and registers them on reg, if not nil.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "module_controller", Name: "peer_replica_syncs_total",
			Help: "Syncs of peer Deployments, by result (scaled; marked: pods on nodes that no longer count marked to go first, scale-down follows; unchanged; skipped; error).",
		}, []string{"result"}),
	}
	for _, r := range []string{resultScaled, resultMarked, resultUnchanged, resultSkipped, resultError} {
		m.syncs.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	return m, errors.Join(reg.Register(m.syncs))
}
