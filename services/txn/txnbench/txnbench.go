// Package txnbench measures the txn library on a live cluster, side by side
// with raw KV compare-and-set, for `platform bench txn` and the package's
// Go benchmarks.
package txnbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/bench/target"
	"github.com/platform/platform/services/txn"
)

// Options configure the benchmarks.
type Options struct {
	// Duration is how long each timed row runs (default 5s).
	Duration time.Duration
	// Clients is the client count of the concurrent rows (default 16).
	Clients int
	// HotKeys is the key count of the hot-key row (default 10).
	HotKeys int
	// Commits is the commit count of each scheduler comparison row
	// (default 1000).
	Commits int
	// Overlap is the share of commits of the overlapping scheduler
	// workload that reuse a key of an earlier commit (default 0.2).
	Overlap float64
	// Progress receives progress bars (nil: none).
	Progress io.Writer
}

func (o *Options) setDefaults() {
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.Clients <= 0 {
		o.Clients = 16
	}
	if o.HotKeys <= 0 {
		o.HotKeys = 10
	}
	if o.Commits <= 0 {
		o.Commits = 1000
	}
	if o.Overlap <= 0 || o.Overlap > 1 {
		o.Overlap = 0.2
	}
}

// Row names.
const (
	RowKVUpdate    = "kv.update 1 client"
	RowOneKey      = "txn 1-key 1 client"
	RowFourKey     = "txn 4-key 1 client"
	RowDisjoint    = "txn 1-key disjoint"
	RowHot         = "txn hot keys"
	RowScheduler   = "scheduler"
	RowGroup       = "group commit"
	runID          = "bench"
	counterInitial = "0"
)

// Runner runs the rows against one target.
type Runner struct {
	t    *target.Target
	opts Options
	run  string // key prefix unique to this runner
}

// New returns a runner on the target (its streams already provisioned).
func New(t *target.Target, opts Options) *Runner {
	opts.setDefaults()
	return &Runner{t: t, opts: opts, run: fmt.Sprintf("%s.%d", runID, time.Now().UnixNano())}
}

func (r *Runner) key(parts ...any) string {
	k := r.run
	for _, p := range parts {
		k += "." + fmt.Sprint(p)
	}
	return k
}

// clients opens n connections.
func (r *Runner) clients(n int) ([]*nats.Conn, func(), error) {
	conns := make([]*nats.Conn, 0, n)
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	for range n {
		nc, err := r.t.Connect()
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("connect: %w", err)
		}
		conns = append(conns, nc)
	}
	return conns, closeAll, nil
}

// timed runs op from each client until the duration passes and returns
// the row: events are successful ops, latencies those of successful ops.
// op returns (aborts, err); aborts are conflicts retried inside the op.
func (r *Runner) timed(ctx context.Context, name string, clients int, op func(ctx context.Context, client, i int) (int, error)) (bench.Result, error) {
	res := bench.Result{Name: name, Extra: map[string]float64{"clients": float64(clients)}}
	var (
		lat    bench.Latencies
		events atomic.Int64
		aborts atomic.Int64
		errs   atomic.Int64
		wg     sync.WaitGroup
		first  error
		once   sync.Once
	)
	p := bench.NewProgress(r.opts.Progress, name, r.opts.Duration.Milliseconds())
	rctx, cancel := context.WithTimeout(ctx, r.opts.Duration)
	defer cancel()
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; rctx.Err() == nil; i++ {
				t0 := time.Now()
				n, err := op(ctx, c, i)
				aborts.Add(int64(n))
				if err != nil {
					errs.Add(1)
					if !errors.Is(err, txn.ErrConflict) && ctx.Err() == nil {
						once.Do(func() { first = err })
						cancel()
					}
					continue
				}
				lat.Add(time.Since(t0))
				events.Add(1)
			}
		}()
	}
	ticker := time.NewTicker(100 * time.Millisecond)
	last := time.Now()
	for done := false; !done; {
		select {
		case <-rctx.Done():
			done = true
		case now := <-ticker.C:
			p.Add(now.Sub(last).Milliseconds())
			last = now
		}
	}
	ticker.Stop()
	wg.Wait()
	p.Stop()
	if first != nil {
		return res, fmt.Errorf("%s: %w", name, first)
	}
	res.Finish(events.Load(), time.Since(start), &lat)
	if a := aborts.Load(); a > 0 || name == RowHot {
		attempts := float64(events.Load() + a + errs.Load())
		res.Extra["aborts"] = float64(a)
		res.Extra["abort_rate"] = float64(a) / max(1, attempts)
		res.Extra["gave_up"] = float64(errs.Load())
	}
	return res, nil
}
