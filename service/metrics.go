package service

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// endpointMetrics are shared by every service registered on one registry.
type endpointMetrics struct {
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	inFlight *prometheus.GaugeVec
	// badBodies counts request bodies that did not decode: malformed,
	// of the wrong shape, or announcing lengths they do not hold.
	badBodies *prometheus.CounterVec
}

func newEndpointMetrics(reg prometheus.Registerer) *endpointMetrics {
	m := &endpointMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "platform_service_requests_total",
			Help: "Requests received, by service and endpoint.",
		}, []string{"service", "endpoint"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "platform_service_errors_total",
			Help: "Requests answered with an error, by service, endpoint and error code.",
		}, []string{"service", "endpoint", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "platform_service_request_duration_seconds",
			Help:    "Time from receiving a request to answering it.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"service", "endpoint"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "platform_service_requests_in_flight",
			Help: "Requests received and not yet answered.",
		}, []string{"service", "endpoint"}),
		badBodies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "platform_service_bad_bodies_total",
			Help: "Request bodies refused as undecodable (bad_request), by service, endpoint and codec: malformed, of the wrong shape, or announcing lengths beyond their bytes.",
		}, []string{"service", "endpoint", "codec"}),
	}
	m.requests = Register(reg, m.requests)
	m.errors = Register(reg, m.errors)
	m.latency = Register(reg, m.latency)
	m.inFlight = Register(reg, m.inFlight)
	m.badBodies = Register(reg, m.badBodies)
	return m
}

// Register registers c with reg and returns it, or returns the collector
// already registered under the same descriptor, so several service
// instances in one process share their metric families. A nil reg is
// allowed: the collector then works but is exported nowhere.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err) // two different metrics with one name: a programming error
	}
	return c
}
