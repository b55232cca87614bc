package txn

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Defaults of a Scheduler.
const (
	DefaultWindow      = time.Millisecond
	DefaultMaxBatch    = 1000
	DefaultConcurrency = 32
)

// ErrStopped is returned for commits submitted to a scheduler that has
// stopped.
var ErrStopped = errors.New("txn: scheduler stopped")

// Scheduler commits many independent requesters' transactions together
// (the reference design's transaction batch processor, in linear time). It
// gathers the commits that arrive within a short window, assigns each a
// level through a key → last-transaction index (one pass over the keys, no
// pairwise comparison): a commit's level is one more than the highest level
// of an earlier commit in the window sharing any key with it. Levels then
// run in order; the commits of one level share no key and run concurrently,
// so commits that share a key run in arrival order, and the final state is
// the one running them one by one in arrival order would give. Each
// submitter gets its own result as soon as its commit finishes.
type Scheduler struct {
	store       *Store
	window      time.Duration
	maxBatch    int
	concurrency int
	in          chan *job

	// observe, when set, is told each window's size and level count.
	observe func(commits, levels int)

	mu      sync.Mutex
	stopped bool
	done    chan struct{}
}

// SchedulerOption configures a Scheduler.
type SchedulerOption func(*Scheduler)

// WithWindow sets how long the scheduler waits for more commits after the
// first one of a window arrives (default DefaultWindow). Commits that
// arrive while a window runs wait for the next window anyway.
func WithWindow(d time.Duration) SchedulerOption { return func(s *Scheduler) { s.window = d } }

// WithObserver is told each window's commit count and level count, for
// metrics and benchmarks.
func WithObserver(fn func(commits, levels int)) SchedulerOption {
	return func(s *Scheduler) { s.observe = fn }
}

// WithMaxBatch bounds the commits of one window (default DefaultMaxBatch).
func WithMaxBatch(n int) SchedulerOption { return func(s *Scheduler) { s.maxBatch = n } }

// WithConcurrency bounds the commits in flight at once (default
// DefaultConcurrency; the server allows 50 atomic batches in flight per
// stream by default).
func WithConcurrency(n int) SchedulerOption { return func(s *Scheduler) { s.concurrency = n } }

type job struct {
	ops   []op
	done  func(map[string]uint64, error)
	level int
}

// NewScheduler returns a scheduler committing to store. Call Run to start
// it.
func NewScheduler(store *Store, opts ...SchedulerOption) *Scheduler {
	s := &Scheduler{store: store, window: DefaultWindow, maxBatch: DefaultMaxBatch, concurrency: DefaultConcurrency, done: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	s.maxBatch = max(1, s.maxBatch)
	s.concurrency = max(1, s.concurrency)
	s.window = max(0, s.window)
	s.in = make(chan *job, 4*s.maxBatch)
	return s
}

// Submit queues c and returns at once; done is called with the commit's
// result (Store.Commit's) from another goroutine, exactly once. Invalid
// commits are refused here, with Store.Commit's errors, and done is not
// called. Submit blocks while the queue is full, until ctx is done.
func (s *Scheduler) Submit(ctx context.Context, c Commit, done func(revisions map[string]uint64, err error)) error {
	ops, err := s.store.plan(c)
	if err != nil {
		return fmt.Errorf("txn: submit: %w", err)
	}
	j := &job{ops: ops, done: done}
	// The lock orders Submit against Run's shutdown: a job sent before
	// stopped is set is drained and answered there.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	select {
	case s.in <- j:
		return nil
	case <-s.done:
		return ErrStopped
	case <-ctx.Done():
		return fmt.Errorf("txn: submit: %w", ctx.Err())
	}
}

// Commit submits c and waits for its result.
func (s *Scheduler) Commit(ctx context.Context, c Commit) (map[string]uint64, error) {
	type result struct {
		revs map[string]uint64
		err  error
	}
	ch := make(chan result, 1)
	if err := s.Submit(ctx, c, func(r map[string]uint64, err error) { ch <- result{r, err} }); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r.revs, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("txn: commit: %w (the commit may still be applied)", ctx.Err())
	}
}

// Run schedules commits until ctx is done, then finishes the window in
// progress, fails the commits still queued with ErrStopped and returns nil.
func (s *Scheduler) Run(ctx context.Context) error {
	defer func() {
		close(s.done) // wakes Submits blocked on a full queue
		s.mu.Lock()
		s.stopped = true
		s.mu.Unlock()
		for {
			select {
			case j := <-s.in:
				j.done(nil, ErrStopped)
			default:
				return
			}
		}
	}()
	// Commits already started finish even when ctx ends (each is bounded
	// by the store's operation timeout).
	cctx := context.WithoutCancel(ctx)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var batch []*job
	for {
		batch = batch[:0]
		select {
		case j := <-s.in:
			batch = append(batch, j)
		case <-ctx.Done():
			return nil
		}
		timer.Reset(s.window)
	gather:
		for len(batch) < s.maxBatch {
			select {
			case j := <-s.in:
				batch = append(batch, j)
			case <-timer.C:
				break gather
			case <-ctx.Done():
				break gather
			}
		}
		timer.Stop()
		s.execute(cctx, batch)
	}
}

// levels assigns each job its level in one pass over the keys and returns
// the jobs grouped by level.
func levels(batch []*job) [][]*job {
	last := make(map[string]int, len(batch)*2) // key → highest level using it
	var out [][]*job
	for _, j := range batch {
		lvl := 0
		for _, o := range j.ops {
			if l, ok := last[o.key]; ok && l+1 > lvl {
				lvl = l + 1
			}
		}
		for _, o := range j.ops {
			last[o.key] = lvl
		}
		j.level = lvl
		if lvl == len(out) {
			out = append(out, nil)
		}
		out[lvl] = append(out[lvl], j)
	}
	return out
}

// execute commits the window level by level.
func (s *Scheduler) execute(ctx context.Context, batch []*job) {
	lv := levels(batch)
	if s.observe != nil {
		s.observe(len(batch), len(lv))
	}
	sem := make(chan struct{}, s.concurrency)
	var wg sync.WaitGroup
	for _, level := range lv {
		for _, j := range level {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				revs, err := s.store.commitPlanned(ctx, j.ops)
				j.done(revs, err)
			}()
		}
		wg.Wait()
	}
}
