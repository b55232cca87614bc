package balancer

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/platform/platform/service"
)

// metrics are the balancer's Prometheus metrics. Several balancers in one
// process (tests) share the collectors.
type metrics struct {
	bad         *prometheus.CounterVec
	routed      *prometheus.CounterVec
	writes      prometheus.Counter
	writeErrs   prometheus.Counter
	leaderMoves prometheus.Counter
	active      prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		bad: service.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "platform_balancer_bad_heartbeats_total",
			Help: "Heartbeats the balancer dropped, by reason: subject, body, value or size.",
		}, []string{"reason"})),
		routed: service.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "platform_balancer_routed_total",
			Help: "route.<subject> requests by result: ok, bad_subject, bad_request, unknown_subject, no_instance, overloaded, timeout, error.",
		}, []string{"result"})),
		writes: service.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "platform_balancer_weight_writes_total",
			Help: "Records written to KV WEIGHTS.",
		})),
		writeErrs: service.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "platform_balancer_weight_write_errors_total",
			Help: "Writes to KV WEIGHTS that failed.",
		})),
		leaderMoves: service.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "platform_balancer_leader_moves_total",
			Help: "Stream and consumer leaders asked to step down to even out leaders.",
		})),
		active: service.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "platform_balancer_active",
			Help: "1 while this process's balancer holds the lease and writes WEIGHTS.",
		})),
	}
}
