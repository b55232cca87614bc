package alerting

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// deliver sends one due group, as Alertmanager's notification pipeline
// does: the notification log decides whether the flush is news; the
// notification is retried with backoff until the group's next flush;
// the log is written only once it is delivered, so a failure is sent
// again at the next flush. Only the active instance sends. A standby
// reads the log for groups with resolved alerts: once the active
// instance has told a resolution, the alert leaves the standby's group
// too; until then it stays, so that a standby taking over tells it.
func (s *Service) deliver(ctx context.Context, nflog jetstream.KeyValue, d Due, now time.Time) {
	active := s.Active()
	if !active && len(d.Resolved) == 0 {
		return
	}
	key := LogKey(d.Receiver, d.GroupKey)
	log := KVLog{KV: nflog}
	// Alertmanager gives a flush's notification until the next flush;
	// ending a flush tick earlier lets that flush find the group free.
	cctx, cancel := context.WithTimeout(ctx, max(d.Interval-s.opts.FlushInterval, time.Second))
	defer cancel()
	prev, rev, err := log.Read(cctx, key)
	if err != nil {
		s.m.notifyErrs.WithLabelValues(d.Receiver).Inc()
		s.log.Warn("notification log", "group", d.GroupKey, "err", err)
		return
	}
	if !NeedsUpdate(prev, d.Firing, d.Resolved, now, d.Repeat) {
		s.engine.Delivered(d, now)
		return
	}
	if !active {
		// What the log says was told resolved is done with here too,
		// even if this instance's view of the group differs otherwise.
		if told := toldResolved(d, prev); len(told.Alerts) > 0 {
			s.engine.Delivered(told, now)
		}
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
	truncated, err := s.notifier.Send(cctx, rc, d.Notification, msgID(key, rev), now)
	if truncated > 0 {
		s.m.truncated.WithLabelValues(d.Receiver).Add(float64(truncated))
		s.log.Warn("notification truncated", "receiver", d.Receiver, "group", d.GroupKey, "alerts", len(d.Alerts), "left_out", truncated)
	}
	if err != nil {
		s.m.notifyErrs.WithLabelValues(d.Receiver).Inc()
		s.log.Warn("notification not delivered; the next flush sends it again", "receiver", d.Receiver, "group", d.GroupKey, "err", err)
		return
	}
	next := LogEntry{Firing: d.Firing, Resolved: d.Resolved, At: now}
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer wcancel()
	if _, err := log.Record(wctx, key, next, rev); err != nil {
		s.m.notifyErrs.WithLabelValues(d.Receiver).Inc()
		s.log.Warn("notification sent, log not written", "group", d.GroupKey, "err", err)
	}
	s.engine.Delivered(d, now)
	s.m.notifications.WithLabelValues(d.Receiver).Inc()
	s.log.Info("notified", "receiver", d.Receiver, "group", d.GroupKey, "status", d.Status, "alerts", len(d.Alerts))
}

// toldResolved returns d with only the resolved alerts whose resolution
// the log entry prev records as told.
func toldResolved(d Due, prev *LogEntry) Due {
	out := d
	out.Alerts = nil
	if prev == nil {
		return out
	}
	for _, a := range d.Alerts {
		if _, ok := slices.BinarySearch(prev.Resolved, uint64(a.Fingerprint())); ok {
			out.Alerts = append(out.Alerts, a)
		}
	}
	return out
}

// forward posts the current alerts to every configured Alertmanager.
func (s *Service) forward(ctx context.Context, now time.Time) {
	cfg := s.engine.Config()
	if len(cfg.Alertmanagers) == 0 {
		return
	}
	alerts := s.engine.Current()
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

// deliveries runs each group's notification on its own goroutine, one at
// a time per group, as Alertmanager's aggregation groups do: a receiver
// retried until the next flush holds back neither the evaluation nor the
// other groups.
type deliveries struct {
	mu       sync.Mutex
	inflight map[string]bool
	wg       sync.WaitGroup
}

// start runs send for the group of log key key unless its previous
// notification is still under way.
func (ds *deliveries) start(key string, send func()) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if ds.inflight[key] {
		return
	}
	if ds.inflight == nil {
		ds.inflight = map[string]bool{}
	}
	ds.inflight[key] = true
	ds.wg.Go(func() {
		defer func() {
			ds.mu.Lock()
			delete(ds.inflight, key)
			ds.mu.Unlock()
		}()
		send()
	})
}

// wait waits for the notifications under way.
func (ds *deliveries) wait() { ds.wg.Wait() }
