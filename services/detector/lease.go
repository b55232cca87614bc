package detector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// LeaseKey is the key of the active detector's lease in bucket LEASES.
const LeaseKey = "detector"

// leaseRecord is the lease's value.
type leaseRecord struct {
	Holder string `json:"holder"`
	TTLMS  int64  `json:"ttl_ms"`
}

// lease decides which detector instance is active: the one holding the
// LEASES key "detector". The holder renews it every renew interval by a
// compare-and-set on the revision it wrote. A standby reads it as often
// and takes it over, by the same compare-and-set, once it has seen the
// revision unchanged for a TTL on its own clock, so no two hosts' clocks
// are ever compared. Worst case, a holder that dies right after renewing
// is replaced after TTL plus two renew intervals (1.5 s by default).
//
// A holder that cannot renew for TTL minus one renew interval steps down
// on its own before any standby can take over, so two actives overlap
// only if a renewal is lost in flight; transitions carry message ids so
// JetStream drops what both would publish then.
type lease struct {
	kv     jetstream.KeyValue
	holder string
	ttl    time.Duration
	renew  time.Duration

	held      bool
	rev       uint64
	lastRenew time.Time
	seenRev   uint64
	seenAt    time.Time
}

func newLease(kv jetstream.KeyValue, holder string, ttl, renew time.Duration) *lease {
	return &lease{kv: kv, holder: holder, ttl: ttl, renew: renew}
}

// step renews or tries to take the lease, and reports whether this
// instance holds it afterwards.
func (l *lease) step(ctx context.Context, now time.Time) (bool, error) {
	val, err := json.Marshal(leaseRecord{Holder: l.holder, TTLMS: l.ttl.Milliseconds()})
	if err != nil {
		return false, fmt.Errorf("encode lease: %w", err)
	}
	if l.held {
		rev, err := l.kv.Update(ctx, LeaseKey, val, l.rev)
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
			return l.held, fmt.Errorf("renew lease: %w", err)
		}
	}
	e, err := l.kv.Get(ctx, LeaseKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		rev, err := l.kv.Create(ctx, LeaseKey, val)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				return false, nil // someone was quicker
			}
			return false, fmt.Errorf("create lease: %w", err)
		}
		l.take(rev, now)
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("read lease: %w", err)
	}
	var rec leaseRecord
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
	rev, err := l.kv.Update(ctx, LeaseKey, val, e.Revision())
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return false, nil
		}
		return false, fmt.Errorf("take lease: %w", err)
	}
	l.take(rev, now)
	return true, nil
}

func (l *lease) take(rev uint64, now time.Time) {
	l.held, l.rev, l.lastRenew = true, rev, now
}

// release gives the lease up so a standby takes over at once.
func (l *lease) release(ctx context.Context) error {
	if !l.held {
		return nil
	}
	l.held = false
	val, _ := json.Marshal(leaseRecord{})
	if _, err := l.kv.Update(ctx, LeaseKey, val, l.rev); err != nil {
		return fmt.Errorf("release lease: %w", err)
	}
	return nil
}
