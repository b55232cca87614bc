package alerting

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// notify sends one due group, once across instances: the notification log
// entry is claimed by compare-and-set before sending.
func (s *Service) notify(ctx context.Context, nflog jetstream.KeyValue, d Due, now time.Time) {
	key := LogKey(d.Receiver, d.GroupKey)
	next := LogEntry{Firing: d.Firing, Resolved: d.Resolved, At: now}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	won, err := KVLog{KV: nflog}.Claim(cctx, key, func(prev *LogEntry) bool {
		return NeedsUpdate(prev, d.Firing, d.Resolved, now, d.Repeat)
	}, next)
	if err != nil {
		s.m.notifyErrs.WithLabelValues(d.Receiver).Inc()
		s.log.Warn("notification log", "group", d.GroupKey, "err", err)
		return
	}
	if !won {
		return
	}
	var rc *Receiver
	for _, r := range s.engine.Config().Receivers {
		if r.Name == d.Receiver {
			rc = r
		}
	}
	if rc == nil {
		return
	}
	truncated, err := s.notifier.Send(cctx, rc, d.Notification, msgID(key, now), now)
	if truncated > 0 {
		s.m.truncated.WithLabelValues(d.Receiver).Add(float64(truncated))
		s.log.Warn("notification truncated", "receiver", d.Receiver, "group", d.GroupKey, "alerts", len(d.Alerts), "left_out", truncated)
	}
	if err != nil {
		s.m.notifyErrs.WithLabelValues(d.Receiver).Inc()
		s.log.Warn("notification not delivered", "receiver", d.Receiver, "group", d.GroupKey, "err", err)
		return
	}
	s.m.notifications.WithLabelValues(d.Receiver).Inc()
	s.log.Info("notified", "receiver", d.Receiver, "group", d.GroupKey, "status", d.Status, "alerts", len(d.Alerts))
}

// forward posts the current alerts to every configured Alertmanager.
func (s *Service) forward(ctx context.Context, now time.Time) {
	cfg := s.engine.Config()
	if len(cfg.Alertmanagers) == 0 {
		return
	}
	var alerts []Alert
	for _, a := range s.engine.Alerts(now) {
		alerts = append(alerts, a.Alert)
	}
	if len(alerts) == 0 {
		return
	}
	for _, u := range cfg.Alertmanagers {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.notifier.Forward(fctx, u, alerts, 4*cfg.EvaluationInterval.Std()+time.Minute, now)
		cancel()
		if err != nil {
			s.m.notifyErrs.WithLabelValues("alertmanager").Inc()
			s.log.Warn("forward to alertmanager", "url", u, "err", err)
		}
	}
}
