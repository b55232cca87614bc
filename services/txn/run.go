package txn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/platform/platform/internal/jsapi"
)

// Defaults of Run.
const (
	DefaultMaxAttempts = 10
	DefaultBaseBackoff = 2 * time.Millisecond
	DefaultMaxBackoff  = 200 * time.Millisecond
)

// ConflictResolver is called by Run after an attempt ends in a conflict,
// before it backs off and tries again. attempt counts from 1. Returning nil
// retries; returning an error stops Run with that error. A resolver may
// also wait (to let a hot key cool), record the conflict, or refresh
// caches the function depends on.
type ConflictResolver func(ctx context.Context, c *ConflictError, attempt int) error

// RunOption configures one Run.
type RunOption func(*runConfig)

type runConfig struct {
	maxAttempts int
	base, max   time.Duration
	resolver    ConflictResolver
	onCommit    func(revisions map[string]uint64)
}

// WithMaxAttempts bounds how many times Run calls the function (default
// DefaultMaxAttempts). The context's deadline bounds it too.
func WithMaxAttempts(n int) RunOption { return func(c *runConfig) { c.maxAttempts = n } }

// WithBackoff sets the exponential backoff between attempts: the k-th
// retry waits a random time in [d/2, d) with d = min(max, base*2^k)
// (defaults DefaultBaseBackoff, DefaultMaxBackoff).
func WithBackoff(base, max time.Duration) RunOption {
	return func(c *runConfig) { c.base, c.max = base, max }
}

// WithConflictResolver installs a hook called after each conflict.
func WithConflictResolver(r ConflictResolver) RunOption {
	return func(c *runConfig) { c.resolver = r }
}

// WithRevisions receives the revisions the successful commit wrote.
func WithRevisions(fn func(revisions map[string]uint64)) RunOption {
	return func(c *runConfig) { c.onCommit = fn }
}

// Run calls fn with a fresh Tx and commits what it read and wrote, as one
// atomic batch. When the commit conflicts (a key moved since fn read it),
// nothing was written and Run calls fn again, after the conflict resolver
// and an exponential backoff with jitter, up to the attempt limit and the
// context's deadline; it then returns the last *ConflictError wrapped
// (errors.Is ErrConflict).
//
// An error returned by fn is returned as is, without committing and
// without retrying, unless it wraps ErrConflict. Other commit errors
// (ErrUnavailable, ErrUnknownOutcome, invalid input) are returned without
// retrying the function: the commit itself already retried what could be
// retried safely.
func Run(ctx context.Context, s *Store, fn func(tx *Tx) error, opts ...RunOption) error {
	cfg := runConfig{maxAttempts: DefaultMaxAttempts, base: DefaultBaseBackoff, max: DefaultMaxBackoff}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.maxAttempts < 1 {
		cfg.maxAttempts = 1
	}
	var last error
	for attempt := 1; ; attempt++ {
		revs, err := runOnce(ctx, s, fn)
		if err == nil {
			if cfg.onCommit != nil {
				cfg.onCommit(revs)
			}
			return nil
		}
		if !errors.Is(err, ErrConflict) {
			return err
		}
		last = err
		if attempt >= cfg.maxAttempts {
			return fmt.Errorf("txn: run: gave up after %d attempts: %w", attempt, last)
		}
		if cfg.resolver != nil {
			var ce *ConflictError
			if !errors.As(err, &ce) {
				ce = &ConflictError{}
			}
			if rerr := cfg.resolver(ctx, ce, attempt); rerr != nil {
				return rerr
			}
		}
		var wait time.Duration
		if cfg.base > 0 && cfg.max > 0 {
			wait = jsapi.Backoff{Base: cfg.base, Max: cfg.max}.Delay(attempt - 1)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return fmt.Errorf("txn: run: deadline too near to retry after %d attempts: %w", attempt, last)
		}
		if err := jsapi.Sleep(ctx, wait); err != nil {
			return fmt.Errorf("txn: run: %w (after %w)", err, last)
		}
	}
}

func runOnce(ctx context.Context, s *Store, fn func(tx *Tx) error) (map[string]uint64, error) {
	tx := newTx(ctx, s)
	if err := fn(tx); err != nil {
		return nil, err
	}
	if tx.err != nil {
		return nil, fmt.Errorf("txn: commit: %w", tx.err)
	}
	return s.Commit(ctx, tx.commit())
}
