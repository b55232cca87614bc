package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/platform/platform/health"
	"github.com/platform/platform/streams"
)

// readyTimeout bounds one /readyz evaluation.
const readyTimeout = 3 * time.Second

// extraStreamTimeout bounds the stream look-ups of a /readyz that a local
// check has already failed.
const extraStreamTimeout = 250 * time.Millisecond

// checkReady is /readyz: it fails, naming every reason, unless the data
// path works end to end. Start-up is over; the process's NATS connection
// is up; on the embedded cluster every local node passes nats-server's own
// health check (meta leader, every stream and consumer replica it holds
// current) and has storage left; every platform stream has a leader and a
// quorum of current replicas; on an external cluster the account has
// storage left; and every selected service serves (a service whose
// subscriptions closed is being restarted and says why).
func (a *App) checkReady(ctx context.Context) error {
	a.mu.Lock()
	phase, sups, js, nc, c := a.phase, a.sups, a.js, a.nc, a.cluster
	a.mu.Unlock()
	if phase != nil {
		return phase
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if st := nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("NATS connection %s", strings.ToLower(st.String()))
	}
	var errs []error
	if c != nil {
		errs = append(errs, c.Health()...)
	}
	var names []string
	for _, s := range streams.All(a.replicas) {
		names = append(names, s.Name)
	}
	sctx := ctx
	if len(errs) > 0 {
		// Not ready already, from checks that answer at once: what the
		// streams add are extra reasons, not worth a prober's waiting
		// for a leaderless stream's look-up to time out.
		var cancel context.CancelFunc
		sctx, cancel = context.WithTimeout(ctx, extraStreamTimeout)
		defer cancel()
	}
	errs = append(errs, health.Streams(sctx, js, names)...)
	if c == nil {
		if err := health.Storage(ctx, js); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range sups {
		if err := s.status(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(sups) < len(a.selected) {
		errs = append(errs, fmt.Errorf("%d of %d services started", len(sups), len(a.selected)))
	}
	return errors.Join(errs...)
}
