// Package lease picks one active instance among several instances of a
// service: the holder of a key in a KV bucket (streams.BucketLeases), taken
// and renewed by compare-and-set on the key's revision. It decides on each
// instance's own clock, so no two hosts' clocks are ever compared.
package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// KV is the part of a jetstream.KeyValue a lease uses.
type KV interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error)
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
}

// record is the lease's value.
type record struct {
	Holder string `json:"holder"`
	TTLMS  int64  `json:"ttl_ms"`
}

// Lease decides whether this instance is the active one: the one holding
// the key. The holder renews it every renew interval by a compare-and-set
// on the revision it wrote. A standby reads it as often and takes it over,
// by the same compare-and-set, once it has seen the revision unchanged for
// a TTL on its own clock, so no two hosts' clocks are ever compared. Worst
// case, a holder that dies right after renewing is replaced after TTL plus
// two renew intervals.
//
// A holder that cannot renew for TTL minus one renew interval steps down
// on its own before any standby can take over, so two actives overlap
// only if a renewal is lost in flight; what both would publish then must
// be harmless twice (the detector's transitions carry message ids, so
// JetStream drops the second copy).
//
// A record that cannot be read is taken at once, like an expired one, and
// a released lease (no holder) too. A Lease is used by one goroutine.
type Lease struct {
	kv     KV
	key    string
	holder string
	ttl    time.Duration
	renew  time.Duration

	held      bool
	rev       uint64
	lastRenew time.Time
	seenRev   uint64
	seenAt    time.Time
}

// New returns a lease on key in kv for holder (a name unique to this
// instance), lasting ttl without renewal and renewed (or checked, by a
// standby) every renew interval, which must be shorter than ttl.
func New(kv KV, key, holder string, ttl, renew time.Duration) (*Lease, error) {
	switch {
	case kv == nil:
		return nil, errors.New("lease: nil bucket")
	case key == "" || holder == "":
		return nil, errors.New("lease: empty key or holder")
	case renew <= 0 || ttl <= renew:
		return nil, fmt.Errorf("lease: ttl (%s) must exceed the renew interval (%s), which must be positive", ttl, renew)
	}
	return &Lease{kv: kv, key: key, holder: holder, ttl: ttl, renew: renew}, nil
}

// Held reports whether the last Step left this instance holding the lease.
func (l *Lease) Held() bool { return l.held }

// Step renews or tries to take the lease at now, and reports whether this
// instance holds it afterwards. An error says what went wrong on the way
// (held then tells whether the lease is still held: a holder keeps it
// through failed renewals until TTL minus one renew interval has passed).
func (l *Lease) Step(ctx context.Context, now time.Time) (held bool, err error) {
	val, err := json.Marshal(record{Holder: l.holder, TTLMS: l.ttl.Milliseconds()})
	if err != nil {
		return false, fmt.Errorf("encode lease: %w", err)
	}
	if l.held {
		rev, err := l.kv.Update(ctx, l.key, val, l.rev)
		switch {
		case err == nil:
			l.rev, l.lastRenew = rev, now
			return true, nil
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			l.held = false
			return false, nil
		default:
			if now.Sub(l.lastRenew) >= l.ttl-l.renew {
				l.held = false
			}
			return l.held, fmt.Errorf("renew lease %s: %w", l.key, err)
		}
	}
	e, err := l.kv.Get(ctx, l.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		rev, err := l.kv.Create(ctx, l.key, val)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				return false, nil // someone was quicker
			}
			return false, fmt.Errorf("create lease %s: %w", l.key, err)
		}
		l.take(rev, now)
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("read lease %s: %w", l.key, err)
	}
	var rec record
	_ = json.Unmarshal(e.Value(), &rec) // an unreadable lease is taken like an expired one
	ttl := l.ttl
	if rec.TTLMS > 0 {
		ttl = time.Duration(rec.TTLMS) * time.Millisecond
	}
	if e.Revision() != l.seenRev {
		l.seenRev, l.seenAt = e.Revision(), now
	}
	if rec.Holder != "" && rec.Holder != l.holder && now.Sub(l.seenAt) < ttl {
		return false, nil
	}
	rev, err := l.kv.Update(ctx, l.key, val, e.Revision())
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return false, nil
		}
		return false, fmt.Errorf("take lease %s: %w", l.key, err)
	}
	l.take(rev, now)
	return true, nil
}

func (l *Lease) take(rev uint64, now time.Time) {
	l.held, l.rev, l.lastRenew = true, rev, now
}

// Release gives the lease up, if held, so a standby takes over at once.
func (l *Lease) Release(ctx context.Context) error {
	if !l.held {
		return nil
	}
	l.held = false
	val, _ := json.Marshal(record{})
	if _, err := l.kv.Update(ctx, l.key, val, l.rev); err != nil {
		return fmt.Errorf("release lease %s: %w", l.key, err)
	}
	return nil
}

// releaseTimeout bounds the release on the way out of Run.
const releaseTimeout = time.Second

// Run competes for the lease until ctx is done: it steps every renew
// interval, starting after a random delay within one interval so
// instances started together do not step in lockstep, each step bounded
// by the interval. onChange is called with true when this instance takes
// the lease and with false when it loses it; on the way out it is called
// with false (if held) before the lease is released, so the holder stops
// acting before a standby can start. Errors go to log (nil:
// slog.Default()).
func (l *Lease) Run(ctx context.Context, log *slog.Logger, onChange func(held bool)) {
	if log == nil {
		log = slog.Default()
	}
	held := false
	set := func(h bool) {
		if h != held {
			held = h
			onChange(h)
		}
	}
	delay := time.NewTimer(rand.N(l.renew))
	select {
	case <-ctx.Done():
	case <-delay.C:
	}
	delay.Stop()
	t := time.NewTicker(l.renew)
	defer t.Stop()
	for ctx.Err() == nil {
		sctx, cancel := context.WithTimeout(ctx, l.renew)
		h, err := l.Step(sctx, time.Now())
		cancel()
		if err != nil && ctx.Err() == nil {
			log.Warn("lease", "key", l.key, "err", err)
		}
		set(h)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	set(false)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if err := l.Release(rctx); err != nil {
		log.Warn("release lease", "key", l.key, "err", err)
	}
}
