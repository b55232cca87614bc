package txnbench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/services/txn"
)

// A workload of the scheduler comparison: Commits 2-key blind writes.
type workload struct {
	name string
	// make builds the commits under a key prefix.
	make func(prefix string) []txn.Commit
}

// workloads are the scheduler comparison's key patterns, from no overlap
// to hot keys.
func (r *Runner) workloads() []workload {
	return []workload{
		{"no overlap", func(p string) []txn.Commit { return r.overlapCommits(p, 0) }},
		{fmt.Sprintf("%.0f%% overlap", r.opts.Overlap*100), func(p string) []txn.Commit { return r.overlapCommits(p, r.opts.Overlap) }},
		{fmt.Sprintf("hot %d keys", r.opts.HotKeys), r.hotCommits},
	}
}

// overlapCommits builds Commits 2-key blind writes; a share overlap of
// them reuse a key of an earlier commit.
func (r *Runner) overlapCommits(prefix string, overlap float64) []txn.Commit {
	rng := rand.New(rand.NewPCG(7, 7))
	commits := make([]txn.Commit, r.opts.Commits)
	for i := range commits {
		a := r.key(prefix, i, "a")
		b := r.key(prefix, i, "b")
		if i > 0 && rng.Float64() < overlap {
			b = r.key(prefix, rng.IntN(i), "a")
		}
		commits[i] = txn.Commit{Writes: map[string][]byte{a: []byte(strconv.Itoa(i)), b: []byte(strconv.Itoa(i))}}
	}
	return commits
}

// hotCommits builds Commits blind writes of 2 of HotKeys keys.
func (r *Runner) hotCommits(prefix string) []txn.Commit {
	rng := rand.New(rand.NewPCG(8, 8))
	commits := make([]txn.Commit, r.opts.Commits)
	for i := range commits {
		a := rng.IntN(r.opts.HotKeys)
		b := (a + 1 + rng.IntN(r.opts.HotKeys-1)) % r.opts.HotKeys
		v := []byte(strconv.Itoa(i))
		commits[i] = txn.Commit{Writes: map[string][]byte{r.key(prefix, "hot", a): v, r.key(prefix, "hot", b): v}}
	}
	return commits
}

// groupGoroutines are the concurrency levels of the group-commit side: a
// modest pool, and one goroutine per commit.
var groupGoroutines = []int{64, 0}

// SchedulerVsGroup commits each workload through a Scheduler (what the txn
// service does with every txn.commit) and, in the same run, through
// Store.Commit from many goroutines at once (concurrent group commit:
// the store merges commits in flight into shared atomic batches), and
// reports each row's commits/s with the scheduler's ratio to the best
// group-commit row of the workload (x_group).
func (r *Runner) SchedulerVsGroup(ctx context.Context) ([]bench.Result, error) {
	var out []bench.Result
	for wi, w := range r.workloads() {
		sched, err := r.viaScheduler(ctx, RowScheduler+" "+w.name, w.make(fmt.Sprintf("sched%d", wi)))
		if err != nil {
			return append(out, sched), err
		}
		best := 0.0
		var rows []bench.Result
		for _, g := range groupGoroutines {
			commits := w.make(fmt.Sprintf("group%d-%d", wi, g))
			if g == 0 {
				g = len(commits)
			}
			res, err := r.viaGroup(ctx, fmt.Sprintf("%s %d goroutines %s", RowGroup, g, w.name), commits, g)
			if err != nil {
				return append(out, sched), err
			}
			best = max(best, res.EventsPerSec)
			rows = append(rows, res)
		}
		if best > 0 {
			sched.Extra["x_group"] = sched.EventsPerSec / best
		}
		out = append(out, sched)
		out = append(out, rows...)
	}
	return out, nil
}

// viaScheduler submits every commit at once to a fresh Scheduler and waits
// for all results.
func (r *Runner) viaScheduler(ctx context.Context, name string, commits []txn.Commit) (bench.Result, error) {
	res := bench.Result{Name: name, Extra: map[string]float64{}}
	s, err := txn.NewStore(r.t.Conn)
	if err != nil {
		return res, err
	}
	sc := txn.NewScheduler(s)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go sc.Run(sctx)
	var (
		lat      bench.Latencies
		wg       sync.WaitGroup
		failed   atomic.Int64
		firstErr error
		once     sync.Once
	)
	p := bench.NewProgress(r.opts.Progress, name, int64(len(commits)))
	defer p.Stop()
	start := time.Now()
	for _, c := range commits {
		wg.Add(1)
		t0 := time.Now()
		err := sc.Submit(ctx, c, func(_ map[string]uint64, err error) {
			if err != nil {
				failed.Add(1)
				once.Do(func() { firstErr = err })
			} else {
				lat.Add(time.Since(t0))
			}
			p.Add(1)
			wg.Done()
		})
		if err != nil {
			wg.Done()
			return res, err
		}
	}
	wg.Wait()
	res.Finish(int64(len(commits))-failed.Load(), time.Since(start), &lat)
	if firstErr != nil {
		return res, fmt.Errorf("%s: %d commits failed: %w", name, failed.Load(), firstErr)
	}
	return res, nil
}

// viaGroup commits from goroutines workers taking commits in order from a
// shared queue, each through Store.Commit.
func (r *Runner) viaGroup(ctx context.Context, name string, commits []txn.Commit, goroutines int) (bench.Result, error) {
	res := bench.Result{Name: name, Extra: map[string]float64{"goroutines": float64(goroutines)}}
	s, err := txn.NewStore(r.t.Conn)
	if err != nil {
		return res, err
	}
	var (
		lat      bench.Latencies
		next     atomic.Int64
		failed   atomic.Int64
		firstErr error
		once     sync.Once
		wg       sync.WaitGroup
	)
	p := bench.NewProgress(r.opts.Progress, name, int64(len(commits)))
	defer p.Stop()
	start := time.Now()
	for range goroutines {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(commits) {
					return
				}
				t0 := time.Now()
				if _, err := s.Commit(ctx, commits[i]); err != nil {
					failed.Add(1)
					once.Do(func() { firstErr = err })
				} else {
					lat.Add(time.Since(t0))
				}
				p.Add(1)
			}
		})
	}
	wg.Wait()
	res.Finish(int64(len(commits))-failed.Load(), time.Since(start), &lat)
	if firstErr != nil {
		return res, fmt.Errorf("%s: %d commits failed: %w", name, failed.Load(), firstErr)
	}
	return res, nil
}
