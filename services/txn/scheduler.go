package txn

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Defaults of a Scheduler.
const (
	// DefaultConcurrency bounds the commits a scheduler has in the store
	// at once. The store's group committer sends one atomic batch at a
	// time and merges up to 64 waiting commits into it, so a few batches'
	// worth keep it full without queueing without bound.
	DefaultConcurrency = 256
	// queueLen is how many submitted commits may wait to be dispatched
	// before Submit blocks.
	queueLen = 4096
)

// ErrStopped is returned for commits submitted to a scheduler that has
// stopped.
var ErrStopped = errors.New("txn: scheduler stopped")

// Scheduler commits many requesters' transactions concurrently and in
// submission order for every key (the reference design's transaction
// batch processor). Submit returns at once; one dispatcher queues each
// commit into the store's group committer in submission order, and the
// group committer runs, round after round, the earliest queued commits
// whose keys no earlier queued or running commit holds, merged into one
// atomic batch: the reference design's dependency levels, found a round
// at a time in one pass over the keys. Independent commits therefore cost
// what concurrent Store.Commit calls cost, commits on a shared key run in
// submission order (the final state is the one running them one by one in
// that order would give), and each submitter gets its own result as soon
// as its commit finishes. Unlike goroutines calling Store.Commit, whose
// order is whatever order they reach the store in, a single requester can
// pipeline many commits and keep their order.
type Scheduler struct {
	store       *Store
	concurrency int
	in          chan *job

	mu      sync.Mutex
	stopped bool
	done    chan struct{}
}

// SchedulerOption configures a Scheduler.
type SchedulerOption func(*Scheduler)

// WithConcurrency bounds the commits in the store at once (default
// DefaultConcurrency).
func WithConcurrency(n int) SchedulerOption { return func(s *Scheduler) { s.concurrency = n } }

type job struct {
	ops  []op
	done func(map[string]uint64, error)
}

// NewScheduler returns a scheduler committing to store. Call Run to start
// it.
func NewScheduler(store *Store, opts ...SchedulerOption) *Scheduler {
	s := &Scheduler{store: store, concurrency: DefaultConcurrency, done: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	s.concurrency = max(1, s.concurrency)
	s.in = make(chan *job, queueLen)
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

// Run dispatches commits until ctx is done, then waits for the commits it
// dispatched, fails those still queued with ErrStopped and returns nil.
func (s *Scheduler) Run(ctx context.Context) error {
	// Commits already dispatched finish even when ctx ends (each is
	// bounded by the store's operation timeout).
	cctx := context.WithoutCancel(ctx)
	sem := make(chan struct{}, s.concurrency)
	var wg sync.WaitGroup
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
				wg.Wait()
				return
			}
		}
	}()
	for {
		select {
		case j := <-s.in:
			s.dispatch(cctx, j, sem, &wg)
		case <-ctx.Done():
			return nil
		}
	}
}

// dispatch queues j into the store behind every commit dispatched before
// it, once fewer than the concurrency limit are in the store, and reports
// its result when it has one.
func (s *Scheduler) dispatch(ctx context.Context, j *job, sem chan struct{}, wg *sync.WaitGroup) {
	sem <- struct{}{}
	wait := s.store.queuePlanned(j.ops)
	wg.Go(func() {
		revs, err := wait(ctx)
		<-sem
		j.done(revs, err)
	})
}
