package txnbench

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/services/txn"
	"github.com/platform/platform/streams"
)

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

// All runs every row in order and adds the ratios the targets are stated
// in: 1-key vs kv.Update, 4-key vs 1-key, 16 clients (own connections, and
// sharing one) vs 1 client, the scheduler vs concurrent group commit.
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
	sched, err := r.SchedulerVsGroup(ctx)
	out = append(out, sched...)
	return out, err
}

func ratio(a, b bench.Result) float64 {
	if b.EventsPerSec == 0 {
		return 0
	}
	return a.EventsPerSec / b.EventsPerSec
}
