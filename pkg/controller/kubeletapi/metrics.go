package kubeletapi

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus metrics.
type metrics struct {
	requests *prometheus.CounterVec // by route and code
	refused  *prometheus.CounterVec // by reason
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "module_controller", Name: "kubelet_api_requests_total",
			Help: "Requests to the virtual nodes' kubelet API that passed authentication and authorization, by route and HTTP status code.",
		}, []string{"route", "code"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "module_controller", Name: "kubelet_api_refused_total",
			Help: "Requests to the virtual nodes' kubelet API refused before any work: unauthenticated, forbidden, authorization_error or too_many_streams.",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.refused)
	}
	return m
}
