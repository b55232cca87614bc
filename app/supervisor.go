package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/service"
)

// Supervision settings: a service that fails is built and started again
// after a backoff that grows from restartBackoff.Base to restartBackoff.Max
// and starts over once the service has run healthyAfter without failing.
var (
	restartBackoff = jsapi.Backoff{Base: 250 * time.Millisecond, Max: 30 * time.Second}
	healthyAfter   = time.Minute
)

// supervisor runs one service and restarts it whenever it fails, until its
// context ends: a service that cannot start because JetStream is briefly
// unavailable (no stream leader yet after a restart, a timeout) is started
// again, and a failing service never takes the process or its siblings
// down.
type supervisor struct {
	svc      Service
	deps     Deps
	log      *slog.Logger
	restarts prometheus.Counter

	firstReady chan struct{} // closed the first time the service is ready
	readyOnce  sync.Once

	mu      sync.Mutex
	ready   bool      // serving now
	lastErr error     // why it last stopped, while not ready
	since   time.Time // when the current state began
}

func newSupervisor(svc Service, deps Deps, restarts *prometheus.CounterVec) *supervisor {
	return &supervisor{
		svc:        svc,
		deps:       deps,
		log:        deps.Logger.With("component", svc.Name),
		restarts:   restarts.WithLabelValues(svc.Name),
		firstReady: make(chan struct{}),
		since:      time.Now(),
	}
}

// newRestartsMetric registers platform_service_restarts_total.
func newRestartsMetric(reg prometheus.Registerer) *prometheus.CounterVec {
	return service.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "platform_service_restarts_total",
		Help: "Times a service was started again after it failed or could not start, by service.",
	}, []string{"service"}))
}

// run serves with first, the runner built at start-up (so configuration
// errors surface before anything runs), then with a fresh runner after
// every failure, until ctx ends.
func (s *supervisor) run(ctx context.Context, first Runner) {
	r := first
	for attempt := 0; ; {
		started := time.Now()
		var err error
		if r == nil {
			r, err = s.svc.New(s.deps)
		}
		if err == nil {
			err = s.runOnce(ctx, r)
		}
		r = nil
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("stopped on its own")
		}
		if time.Since(started) >= healthyAfter {
			attempt = 0
		}
		wait := restartBackoff.Delay(attempt)
		attempt++
		s.setState(false, err)
		s.restarts.Inc()
		s.log.Error("service failed, restarting", "err", err, "restart_in", wait.Round(time.Millisecond), "attempt", attempt)
		if jsapi.Sleep(ctx, wait) != nil {
			return
		}
	}
}

// runOnce runs r until it returns, marking the service ready meanwhile.
func (s *supervisor) runOnce(ctx context.Context, r Runner) error {
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	select {
	case <-r.Ready():
		s.setState(true, nil)
		s.readyOnce.Do(func() { close(s.firstReady) })
		return <-done
	case err := <-done:
		return err
	}
}

func (s *supervisor) setState(ready bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ready, s.lastErr, s.since = ready, err, time.Now()
}

// status returns nil while the service serves, else what it waits for.
func (s *supervisor) status() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.ready:
		return nil
	case s.lastErr != nil:
		return fmt.Errorf("service %s restarting for %s: %w", s.svc.Name, time.Since(s.since).Round(time.Second), s.lastErr)
	default:
		return fmt.Errorf("service %s starting", s.svc.Name)
	}
}
