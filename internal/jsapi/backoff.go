package jsapi

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Backoff is an exponential backoff with jitter: the k-th wait (from 0) is
// a random duration in [d/2, d) with d = min(Max, Base·2^k). The zero
// value waits 10 ms doubling up to 1 s.
type Backoff struct {
	// Base is the first wait's upper bound (default 10ms).
	Base time.Duration
	// Max caps every wait (default 1s).
	Max time.Duration
}

// Delay returns the wait before retry number attempt (0 for the first
// retry), jittered.
func (b Backoff) Delay(attempt int) time.Duration {
	base, limit := b.Base, b.Max
	if base <= 0 {
		base = 10 * time.Millisecond
	}
	if limit <= 0 {
		limit = time.Second
	}
	d := limit
	if attempt < 62 && base<<attempt > 0 && base<<attempt < limit {
		d = base << attempt
	}
	return Jitter(d)
}

// Jitter returns a random duration in [d/2, d).
func Jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// Sleep waits d or until ctx is done, and returns ctx's error then.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ErrGaveUp is wrapped by Retry.Do's error when it stopped retrying a
// retryable error: its deadline passed or its context ended. The last
// attempt's error is wrapped too.
var ErrGaveUp = errors.New("gave up retrying")

// Retry runs an operation until it succeeds, fails for good, or time runs
// out. The zero value retries transient errors with the default Backoff
// until the context ends.
type Retry struct {
	// Backoff spaces the attempts.
	Backoff Backoff
	// AttemptTimeout bounds each attempt (0: only the context does).
	AttemptTimeout time.Duration
	// Timeout bounds the whole operation; no attempt starts whose wait
	// would end past it (0: only the context does).
	Timeout time.Duration
	// Retryable says which errors are worth another attempt (default
	// IsTransient).
	Retryable func(error) bool
	// OnRetry, when set, hears of every failed attempt that will be
	// retried and the wait before the next one (for rate-limited logs).
	OnRetry func(err error, wait time.Duration)
}

// Do calls attempt until it returns nil or an error that is not
// retryable, which Do returns as is. When the timeout passes or ctx ends
// first, Do returns an error wrapping ErrGaveUp, the context's error if it
// ended, and the last attempt's error.
func (r Retry) Do(ctx context.Context, attempt func(ctx context.Context) error) error {
	retryable := r.Retryable
	if retryable == nil {
		retryable = IsTransient
	}
	var deadline time.Time
	if r.Timeout > 0 {
		deadline = time.Now().Add(r.Timeout)
	}
	for n := 0; ; n++ {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if r.AttemptTimeout > 0 {
			actx, cancel = context.WithTimeout(ctx, r.AttemptTimeout)
		}
		err := attempt(actx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w (last attempt: %w)", ErrGaveUp, ctx.Err(), err)
		}
		if !retryable(err) {
			return err
		}
		wait := r.Backoff.Delay(n)
		if !deadline.IsZero() && time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("%w after %d attempts: %w", ErrGaveUp, n+1, err)
		}
		if r.OnRetry != nil {
			r.OnRetry(err, wait)
		}
		if serr := Sleep(ctx, wait); serr != nil {
			return fmt.Errorf("%w: %w (last attempt: %w)", ErrGaveUp, serr, err)
		}
	}
}
