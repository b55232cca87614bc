package txn

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/platform/platform/service"
)

// metrics are the txn service's Prometheus metrics; with a nil Registerer
// they are collected but not exported.
type metrics struct {
	commits *prometheus.CounterVec
	latency prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		commits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "platform_txn_commits_total",
			Help: "txn.commit requests by result: committed, conflict, error or invalid.",
		}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "platform_txn_commit_duration_seconds",
			Help:    "Time from a txn.commit request to its result, scheduling included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	// Shared with other instances in the process, as every service does.
	m.commits = service.Register(reg, m.commits)
	m.latency = service.Register(reg, m.latency)
	return m
}

func (m *metrics) result(r string) { m.commits.WithLabelValues(r).Inc() }
