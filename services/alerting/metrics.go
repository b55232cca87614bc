package alerting

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/platform/platform/service"
)

type metrics struct {
	evalSeconds   prometheus.Histogram
	notifications *prometheus.CounterVec
	notifyErrs    *prometheus.CounterVec
	truncated     *prometheus.CounterVec
	bad           *prometheus.CounterVec
	reloads       *prometheus.CounterVec
	posted        prometheus.Counter
	active        prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		evalSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "platform_alerting_evaluation_seconds", Help: "Time to evaluate every rule once.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "platform_alerting_notifications_total", Help: "Notifications sent, by receiver."}, []string{"receiver"}),
		notifyErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "platform_alerting_notification_errors_total", Help: "Notifications not delivered, by receiver."}, []string{"receiver"}),
		truncated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "platform_alerting_truncated_alerts_total",
			Help: "Alerts left out of notifications by max_alerts or the size of one message, by receiver."}, []string{"receiver"}),
		bad: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "platform_alerting_bad_input_total", Help: "Inputs refused, by reason: a heartbeat, transition, alert or fanout message that did not decode."}, []string{"reason"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "platform_alerting_reloads_total", Help: "Rules file reloads, by result."}, []string{"result"}),
		posted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "platform_alerting_posted_alerts_total", Help: "Alerts accepted from alerts.post and POST /api/v2/alerts."}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "platform_alerting_active", Help: "1 while this instance holds the lease and sends notifications."}),
	}
	m.evalSeconds = service.Register(reg, m.evalSeconds)
	m.notifications = service.Register(reg, m.notifications)
	m.notifyErrs = service.Register(reg, m.notifyErrs)
	m.truncated = service.Register(reg, m.truncated)
	m.bad = service.Register(reg, m.bad)
	m.reloads = service.Register(reg, m.reloads)
	m.posted = service.Register(reg, m.posted)
	m.active = service.Register(reg, m.active)
	return m
}
