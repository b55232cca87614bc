// Package txnbench measures the txn library on a live cluster, side by side
// with raw KV compare-and-set, for `platform bench txn` and the package's
// Go benchmarks.
package txnbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/bench/target"
	"github.com/platform/platform/services/txn"
	"github.com/platform/platform/streams"
)

// Options configure the benchmarks.
type Options struct {
	// Duration is how long each timed row runs (default 5s).
	Duration time.Duration
	// Clients is the client count of the concurrent rows (default 16).
	Clients int
	// HotKeys is the key count of the hot-key row (default 10).
	HotKeys int
	// Commits is the commit count of the scheduler row (default 1000).
	Commits int
	// Overlap is the share of scheduler commits that reuse a key of an
	// earlier commit (default 0.2).
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
	RowOneByOne    = "one by one"
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

// seed writes initial values through the store.
func seed(ctx context.Context, s *txn.Store, keys []string) error {
	for i := 0; i < len(keys); i += 100 {
		c := txn.Commit{Writes: map[string][]byte{}}
		for _, k := range keys[i:min(i+100, len(keys))] {
			c.Writes[k] = []byte(counterInitial)
		}
		if _, err := s.Commit(ctx, c); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
	}
	return nil
}

// Increment is the benchmark transaction: read each key and write it back
// plus one. It returns how many conflicts Run retried.
func Increment(ctx context.Context, s *txn.Store, keys ...string) (int, error) {
	aborts := 0
	err := txn.Run(ctx, s, func(tx *txn.Tx) error {
		var got map[string]txn.Entry
		if len(keys) == 1 {
			e, err := tx.Get(keys[0])
			if err != nil {
				return err
			}
			got = map[string]txn.Entry{keys[0]: e}
		} else {
			var err error
			if got, err = tx.GetAll(keys...); err != nil {
				return err
			}
		}
		for _, k := range keys {
			n, _ := strconv.Atoi(string(got[k].Value))
			if err := tx.Put(k, []byte(strconv.Itoa(n+1))); err != nil {
				return err
			}
		}
		return nil
	}, txn.WithMaxAttempts(100), txn.WithConflictResolver(func(context.Context, *txn.ConflictError, int) error {
		aborts++
		return nil
	}))
	return aborts, err
}

// KVIncrement is the baseline: kv.Get then kv.Update at the revision read,
// retried on a revision mismatch.
func KVIncrement(ctx context.Context, kv jetstream.KeyValue, key string) (int, error) {
	for aborts := 0; ; aborts++ {
		e, err := kv.Get(ctx, key)
		if err != nil {
			return aborts, err
		}
		n, _ := strconv.Atoi(string(e.Value()))
		_, err = kv.Update(ctx, key, []byte(strconv.Itoa(n+1)), e.Revision())
		if err == nil {
			return aborts, nil
		}
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence || aborts > 100 {
			return aborts, err
		}
	}
}

// KVUpdate measures the baseline from one client.
func (r *Runner) KVUpdate(ctx context.Context) (bench.Result, error) {
	js, err := jetstream.New(r.t.Conn)
	if err != nil {
		return bench.Result{}, err
	}
	kv, err := js.KeyValue(ctx, streams.BucketState)
	if err != nil {
		return bench.Result{}, fmt.Errorf("open bucket: %w", err)
	}
	key := r.key("kv")
	if _, err := kv.Put(ctx, key, []byte(counterInitial)); err != nil {
		return bench.Result{}, err
	}
	return r.timed(ctx, RowKVUpdate, 1, func(ctx context.Context, _, _ int) (int, error) {
		return KVIncrement(ctx, kv, key)
	})
}

// Keys measures n-key increments from one client.
func (r *Runner) Keys(ctx context.Context, n int) (bench.Result, error) {
	s, err := txn.NewStore(r.t.Conn)
	if err != nil {
		return bench.Result{}, err
	}
	keys := make([]string, n)
	for i := range keys {
		keys[i] = r.key("keys", n, i)
	}
	if err := seed(ctx, s, keys); err != nil {
		return bench.Result{}, err
	}
	name := RowOneKey
	if n != 1 {
		name = fmt.Sprintf("txn %d-key 1 client", n)
	}
	return r.timed(ctx, name, 1, func(ctx context.Context, _, _ int) (int, error) {
		return Increment(ctx, s, keys...)
	})
}

// Disjoint measures 1-key increments from Clients clients, each on its own
// key and connection.
func (r *Runner) Disjoint(ctx context.Context) (bench.Result, error) {
	conns, closeAll, err := r.clients(r.opts.Clients)
	if err != nil {
		return bench.Result{}, err
	}
	defer closeAll()
	stores := make([]*txn.Store, len(conns))
	keys := make([]string, len(conns))
	for i, nc := range conns {
		if stores[i], err = txn.NewStore(nc); err != nil {
			return bench.Result{}, err
		}
		keys[i] = r.key("disjoint", i)
	}
	if err := seed(ctx, stores[0], keys); err != nil {
		return bench.Result{}, err
	}
	return r.timed(ctx, fmt.Sprintf("%s %d clients", RowDisjoint, len(conns)), len(conns), func(ctx context.Context, c, _ int) (int, error) {
		return Increment(ctx, stores[c], keys[c])
	})
}

// DisjointShared measures 1-key increments from Clients goroutines on
// disjoint keys sharing one connection and one Store, as the goroutines of
// one process do (and as the txn service does for all its requesters):
// their commits are group-committed, several per atomic batch.
func (r *Runner) DisjointShared(ctx context.Context) (bench.Result, error) {
	s, err := txn.NewStore(r.t.Conn)
	if err != nil {
		return bench.Result{}, err
	}
	keys := make([]string, r.opts.Clients)
	for i := range keys {
		keys[i] = r.key("shared", i)
	}
	if err := seed(ctx, s, keys); err != nil {
		return bench.Result{}, err
	}
	return r.timed(ctx, fmt.Sprintf("%s %d clients, one connection", RowDisjoint, len(keys)), len(keys), func(ctx context.Context, c, _ int) (int, error) {
		return Increment(ctx, s, keys[c])
	})
}

// KVDisjoint is Disjoint's baseline: raw kv.Get + kv.Update from Clients
// clients on disjoint keys, to tell the txn layer's cost from the
// cluster's own limit.
func (r *Runner) KVDisjoint(ctx context.Context) (bench.Result, error) {
	conns, closeAll, err := r.clients(r.opts.Clients)
	if err != nil {
		return bench.Result{}, err
	}
	defer closeAll()
	kvs := make([]jetstream.KeyValue, len(conns))
	keys := make([]string, len(conns))
	for i, nc := range conns {
		js, err := jetstream.New(nc)
		if err != nil {
			return bench.Result{}, err
		}
		if kvs[i], err = js.KeyValue(ctx, streams.BucketState); err != nil {
			return bench.Result{}, fmt.Errorf("open bucket: %w", err)
		}
		keys[i] = r.key("kvdisjoint", i)
		if _, err := kvs[i].Put(ctx, keys[i], []byte(counterInitial)); err != nil {
			return bench.Result{}, err
		}
	}
	return r.timed(ctx, fmt.Sprintf("kv.update disjoint %d clients", len(conns)), len(conns), func(ctx context.Context, c, _ int) (int, error) {
		return KVIncrement(ctx, kvs[c], keys[c])
	})
}

// Hot measures 2-key transfers among HotKeys keys from Clients clients.
func (r *Runner) Hot(ctx context.Context) (bench.Result, error) {
	conns, closeAll, err := r.clients(r.opts.Clients)
	if err != nil {
		return bench.Result{}, err
	}
	defer closeAll()
	stores := make([]*txn.Store, len(conns))
	for i, nc := range conns {
		if stores[i], err = txn.NewStore(nc); err != nil {
			return bench.Result{}, err
		}
	}
	keys := make([]string, r.opts.HotKeys)
	for i := range keys {
		keys[i] = r.key("hot", i)
	}
	if err := seed(ctx, stores[0], keys); err != nil {
		return bench.Result{}, err
	}
	rngs := make([]*rand.Rand, len(conns))
	for i := range rngs {
		rngs[i] = rand.New(rand.NewPCG(uint64(i), 42))
	}
	res, err := r.timed(ctx, RowHot, len(conns), func(ctx context.Context, c, _ int) (int, error) {
		a := rngs[c].IntN(len(keys))
		b := (a + 1 + rngs[c].IntN(len(keys)-1)) % len(keys)
		return Increment(ctx, stores[c], keys[a], keys[b])
	})
	res.Name = fmt.Sprintf("%s (%d keys, %d clients)", RowHot, len(keys), len(conns))
	return res, err
}

// schedulerCommits builds Commits 2-key blind writes; Overlap of them
// reuse a key of an earlier commit.
func (r *Runner) schedulerCommits(prefix string) []txn.Commit {
	rng := rand.New(rand.NewPCG(7, 7))
	commits := make([]txn.Commit, r.opts.Commits)
	for i := range commits {
		a := r.key(prefix, i, "a")
		b := r.key(prefix, i, "b")
		if i > 0 && rng.Float64() < r.opts.Overlap {
			b = r.key(prefix, rng.IntN(i), "a")
		}
		commits[i] = txn.Commit{Writes: map[string][]byte{a: []byte(strconv.Itoa(i)), b: []byte(strconv.Itoa(i))}}
	}
	return commits
}

// Scheduler commits the workload through a Scheduler, then one by one, and
// returns both rows.
func (r *Runner) Scheduler(ctx context.Context) (bench.Result, bench.Result, error) {
	s, err := txn.NewStore(r.t.Conn)
	if err != nil {
		return bench.Result{}, bench.Result{}, err
	}
	name := fmt.Sprintf("%s %d commits %.0f%% overlap", RowScheduler, r.opts.Commits, r.opts.Overlap*100)
	sched := bench.Result{Name: name, Extra: map[string]float64{}}
	var levels, windows atomic.Int64
	sc := txn.NewScheduler(s, txn.WithObserver(func(commits, lv int) {
		windows.Add(1)
		levels.Add(int64(lv))
	}))
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go sc.Run(sctx)
	commits := r.schedulerCommits("sched")
	var lat bench.Latencies
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr error
	var once sync.Once
	p := bench.NewProgress(r.opts.Progress, name, int64(len(commits)))
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
			p.Stop()
			return sched, bench.Result{}, err
		}
	}
	wg.Wait()
	p.Stop()
	sched.Finish(int64(len(commits))-failed.Load(), time.Since(start), &lat)
	if firstErr != nil {
		return sched, bench.Result{}, fmt.Errorf("scheduler: %d commits failed: %w", failed.Load(), firstErr)
	}
	sched.Extra["windows"] = float64(windows.Load())
	sched.Extra["levels"] = float64(levels.Load())

	serial := bench.Result{Name: fmt.Sprintf("%s %d commits %.0f%% overlap", RowOneByOne, r.opts.Commits, r.opts.Overlap*100)}
	var slat bench.Latencies
	commits = r.schedulerCommits("serial")
	p = bench.NewProgress(r.opts.Progress, serial.Name, int64(len(commits)))
	start = time.Now()
	for _, c := range commits {
		t0 := time.Now()
		if _, err := s.Commit(ctx, c); err != nil {
			p.Stop()
			return sched, serial, fmt.Errorf("one by one: %w", err)
		}
		slat.Add(time.Since(t0))
		p.Add(1)
	}
	p.Stop()
	serial.Finish(int64(len(commits)), time.Since(start), &slat)
	if serial.EventsPerSec > 0 {
		sched.Extra["x_one_by_one"] = sched.EventsPerSec / serial.EventsPerSec
	}
	return sched, serial, nil
}

// All runs every row in order and adds the ratios the targets are stated
// in: 1-key vs kv.Update, 4-key vs 1-key, 16 clients (own connections, and
// sharing one) vs 1 client,
// scheduler vs one by one.
func (r *Runner) All(ctx context.Context) ([]bench.Result, error) {
	var out []bench.Result
	kvu, err := r.KVUpdate(ctx)
	if err != nil {
		return out, err
	}
	out = append(out, kvu)
	one, err := r.Keys(ctx, 1)
	if err != nil {
		return out, err
	}
	one.Extra["x_kv_update"] = ratio(one, kvu)
	out = append(out, one)
	four, err := r.Keys(ctx, 4)
	if err != nil {
		return out, err
	}
	four.Extra["x_1key"] = ratio(four, one)
	out = append(out, four)
	dis, err := r.Disjoint(ctx)
	if err != nil {
		return out, err
	}
	dis.Extra["x_1client"] = ratio(dis, one)
	shared, err := r.DisjointShared(ctx)
	if err != nil {
		return out, err
	}
	shared.Extra["x_1client"] = ratio(shared, one)
	kvdis, err := r.KVDisjoint(ctx)
	if err != nil {
		return out, err
	}
	kvdis.Extra["x_1client"] = ratio(kvdis, kvu)
	dis.Extra["x_kv_update"] = ratio(dis, kvdis)
	out = append(out, dis, shared, kvdis)
	hot, err := r.Hot(ctx)
	if err != nil {
		return out, err
	}
	out = append(out, hot)
	sched, serial, err := r.Scheduler(ctx)
	if err != nil {
		return out, err
	}
	out = append(out, sched, serial)
	return out, nil
}

func ratio(a, b bench.Result) float64 {
	if b.EventsPerSec == 0 {
		return 0
	}
	return a.EventsPerSec / b.EventsPerSec
}
