package detector

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/platform/platform/service"
)

// metrics are the detector's Prometheus metrics. Several detectors in one
// process (tests) share the collectors.
type metrics struct {
	heartbeats  prometheus.Counter
	bad         map[string]prometheus.Counter
	transitions *prometheus.CounterVec
	members     *prometheus.GaugeVec
	writes      prometheus.Counter
	publishErrs prometheus.Counter
	active      prometheus.Gauge
	handovers   prometheus.Counter
	rtt         prometheus.Histogram
	tick        prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	badVec := service.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "platform_detector_bad_heartbeats_total",
		Help: "Heartbeats dropped, by reason: subject (not hb.<service>.<instance>), body (not a JSON or msgpack document), value (absurd figures), size.",
	}, []string{"reason"}))
	m := &metrics{
		heartbeats: service.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "platform_detector_heartbeats_total",
			Help: "Heartbeats received and accepted.",
		})),
		bad: map[string]prometheus.Counter{},
		transitions: service.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "platform_detector_transitions_total",
			Help: "State transitions published, by new state.",
		}, []string{"state"})),
		members: service.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "platform_detector_members",
			Help: "Instances known to the detector, by state.",
		}, []string{"state"})),
		writes: service.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "platform_detector_member_writes_total",
			Help: "Records written to KV MEMBERS (state changes and refreshes).",
		})),
		publishErrs: service.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "platform_detector_publish_errors_total",
			Help: "Transitions or MEMBERS writes that JetStream did not acknowledge.",
		})),
		active: service.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "platform_detector_active",
			Help: "1 while this process's detector holds the lease and publishes, else 0.",
		})),
		handovers: service.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "platform_detector_lease_acquisitions_total",
			Help: "Times a detector instance took the lease and became active.",
		})),
		rtt: service.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "platform_detector_probe_rtt_seconds",
			Help:    "Round trip of $SRV.PING probes to micro service instances.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		})),
		tick: service.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "platform_detector_evaluation_duration_seconds",
			Help:    "Time one evaluation of every instance's state takes.",
			Buckets: prometheus.ExponentialBuckets(0.00001, 2, 18),
		})),
	}
	for _, r := range service.BadHeartbeatReasons {
		m.bad[r] = badVec.WithLabelValues(r)
	}
	return m
}
