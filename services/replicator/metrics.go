package replicator

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/platform/platform/service"
)

// metrics are the replicator's Prometheus metrics. Publishers and the
// ingest service share the families through service.Register, so several
// instances in one process report into the same series.
type metrics struct {
	eventsIn     *prometheus.CounterVec
	batchesOut   prometheus.Counter
	batchEvents  prometheus.Histogram
	compression  prometheus.Histogram
	ackLatency   *prometheus.HistogramVec
	dropped      *prometheus.CounterVec
	errors       *prometheus.CounterVec
	retries      prometheus.Counter
	inFlightMsgs prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		eventsIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "platform_replicator_events_in_total",
			Help: "Events accepted for publishing, by consistency level.",
		}, []string{"level"}),
		batchesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "platform_replicator_batches_out_total",
			Help: "Batches handed to JetStream.",
		}),
		batchEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "platform_replicator_batch_size_events",
			Help:    "Events per batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 15),
		}),
		compression: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "platform_replicator_compression_ratio",
			Help:    "Uncompressed over compressed size of each compressed message.",
			Buckets: []float64{1.1, 1.25, 1.5, 2, 3, 4, 6, 8, 12, 16, 32},
		}),
		ackLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "platform_replicator_ack_latency_seconds",
			Help:    "Time from accepting an event to reaching its consistency level, by level.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"level"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "platform_replicator_dropped_events_total",
			Help: "Fire-and-forget events not stored, by reason.",
		}, []string{"reason"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "platform_replicator_errors_total",
			Help: "Events or requests that failed, by reason.",
		}, []string{"reason"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "platform_replicator_retries_total",
			Help: "Stream messages published again after a timeout, a leader change or a lost connection.",
		}),
		inFlightMsgs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "platform_replicator_in_flight_messages",
			Help: "Stream messages published and not yet acknowledged.",
		}),
	}
	m.eventsIn = service.Register(reg, m.eventsIn)
	m.batchesOut = service.Register(reg, m.batchesOut)
	m.batchEvents = service.Register(reg, m.batchEvents)
	m.compression = service.Register(reg, m.compression)
	m.ackLatency = service.Register(reg, m.ackLatency)
	m.dropped = service.Register(reg, m.dropped)
	m.errors = service.Register(reg, m.errors)
	m.retries = service.Register(reg, m.retries)
	m.inFlightMsgs = service.Register(reg, m.inFlightMsgs)
	return m
}
