package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Key is a lease's key in bucket LEASES. Every service with one active
// instance takes its key from the list below, so two services cannot pick
// the same.
type Key string

// The lease keys.
const (
	KeyDetector Key = "detector" // the detector that publishes transitions and writes MEMBERS
	KeyBalancer Key = "balancer" // the balancer that writes WEIGHTS and moves leaders
	KeyAlerting Key = "alerting" // the alerting instance that sends notifications
)

// keys does not compile if two keys above are equal: a map literal may not
// repeat a constant key.
var _ = map[Key]bool{KeyDetector: true, KeyBalancer: true, KeyAlerting: true}

// Server is what an Elected instance runs: a micro service instance
// (service.Service).
type Server interface {
	// Run serves until ctx is done.
	Run(ctx context.Context) error
	// Ready is closed once the instance serves.
	Ready() <-chan struct{}
	// ID is the instance's id once it serves; it names the holder.
	ID() string
}

// Gauge is set to 1 while the instance is active and to 0 otherwise (a
// prometheus.Gauge).
type Gauge interface{ Set(float64) }

// ElectedOptions configure an Elected instance.
type ElectedOptions struct {
	// Key is the lease's key. Required.
	Key Key
	// TTL and Renew time the lease (see New). Required: a service fills
	// its defaults before NewElected checks them.
	TTL, Renew time.Duration
	// Gauge shows whether this instance is active (nil: none).
	Gauge Gauge
	// OnChange is called when this instance becomes active (true) or
	// standby (false), on the lease's goroutine, after Active changed
	// (nil: nothing to do). On the way out it is called with false before
	// the lease is released.
	OnChange func(active bool)
	// Logger receives the lease's logs (default slog.Default()).
	Logger *slog.Logger
}

// Elected is the skeleton every service with one active instance shares:
// Serve starts the instance's micro service and waits until it serves or
// fails; Campaign then competes for the lease under the instance's id
// and keeps the active state (Active, the gauge, OnChange) while ctx
// lasts. A service calls Campaign once whatever the active instance
// relies on (subscriptions, followed buckets) is in place.
type Elected struct {
	opts   ElectedOptions
	active atomic.Bool
	srv    Server
}

// NewElected checks the options, so that a service refuses a bad lease
// setting in its constructor rather than failing at every start.
func NewElected(opts ElectedOptions) (*Elected, error) {
	switch {
	case opts.Key == "":
		return nil, errors.New("lease: empty key")
	case opts.Renew <= 0 || opts.TTL <= opts.Renew:
		return nil, fmt.Errorf("lease %s: ttl (%s) must exceed the renew interval (%s), which must be positive", opts.Key, opts.TTL, opts.Renew)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Elected{opts: opts}, nil
}

// Active reports whether this instance holds the lease.
func (e *Elected) Active() bool { return e.active.Load() }

// Serve runs srv on a goroutine added to wg until ctx is done, and
// returns once srv serves. If srv fails first, Serve returns its error
// (its goroutine has ended); if ctx ends first, ctx's error.
func (e *Elected) Serve(ctx context.Context, wg *sync.WaitGroup, srv Server) error {
	failed := make(chan error, 1)
	wg.Go(func() {
		if err := srv.Run(ctx); err != nil {
			failed <- err
		}
	})
	select {
	case <-srv.Ready():
		e.srv = srv
		return nil
	case err := <-failed:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Campaign competes for the lease on kv under the id of the instance
// Serve started, on a goroutine added to wg, until ctx is done; the lease
// is then released, after OnChange(false), so a standby takes over at
// once.
func (e *Elected) Campaign(ctx context.Context, wg *sync.WaitGroup, kv KV) error {
	if e.srv == nil {
		return errors.New("lease: campaign before the instance serves")
	}
	l, err := New(kv, string(e.opts.Key), e.srv.ID(), e.opts.TTL, e.opts.Renew)
	if err != nil {
		return err
	}
	log := e.opts.Logger.With("lease", e.opts.Key)
	wg.Go(func() { l.Run(ctx, log, e.set) })
	return nil
}

func (e *Elected) set(active bool) {
	if e.active.Swap(active) == active {
		return
	}
	if e.opts.Gauge != nil {
		if active {
			e.opts.Gauge.Set(1)
		} else {
			e.opts.Gauge.Set(0)
		}
	}
	if e.opts.OnChange != nil {
		e.opts.OnChange(active)
	}
}
