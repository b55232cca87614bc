package txn_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/bench/target"
	"github.com/platform/platform/services/txn"
	"github.com/platform/platform/services/txn/txnbench"
	"github.com/platform/platform/streams"
)

// benchTarget is one embedded 3-node cluster (fsync always, the platform
// default) shared by the package's benchmarks.
var (
	benchOnce   sync.Once
	benchTarget *target.Target
	benchErr    error
	benchKey    atomic.Int64
)

func openTarget(b *testing.B) *target.Target {
	b.Helper()
	benchOnce.Do(func() {
		benchTarget, benchErr = target.Open(context.Background(), target.Options{Nodes: 3, SyncAlways: true})
	})
	require.NoError(b, benchErr)
	return benchTarget
}

func freshKeys(n int) []string {
	id := benchKey.Add(1)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("gobench.%d.%d", id, i)
	}
	return keys
}

func BenchmarkKVUpdate(b *testing.B) {
	t := openTarget(b)
	js, err := jetstream.New(t.Conn)
	require.NoError(b, err)
	kv, err := js.KeyValue(b.Context(), streams.BucketState)
	require.NoError(b, err)
	key := freshKeys(1)[0]
	_, err = kv.Put(b.Context(), key, []byte("0"))
	require.NoError(b, err)
	for b.Loop() {
		if _, err := txnbench.KVIncrement(b.Context(), kv, key); err != nil {
			b.Fatal(err)
		}
	}
}

func benchmarkKeys(b *testing.B, n int) {
	t := openTarget(b)
	s, err := txn.NewStore(t.Conn)
	require.NoError(b, err)
	keys := freshKeys(n)
	for b.Loop() {
		if _, err := txnbench.Increment(b.Context(), s, keys...); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTxn1Key(b *testing.B) { benchmarkKeys(b, 1) }
func BenchmarkTxn4Key(b *testing.B) { benchmarkKeys(b, 4) }

func BenchmarkTxn1KeyParallel(b *testing.B) {
	t := openTarget(b)
	s, err := txn.NewStore(t.Conn)
	require.NoError(b, err)
	b.SetParallelism(8) // 16 clients on 2 cores
	b.RunParallel(func(pb *testing.PB) {
		key := freshKeys(1)[0]
		for pb.Next() {
			if _, err := txnbench.Increment(context.Background(), s, key); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkScheduler1000 commits 1000 disjoint 2-key commits through the
// scheduler per iteration.
func BenchmarkScheduler1000(b *testing.B) {
	t := openTarget(b)
	s, err := txn.NewStore(t.Conn)
	require.NoError(b, err)
	sc := txn.NewScheduler(s)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sc.Run(ctx)
	for b.Loop() {
		var wg sync.WaitGroup
		for range 1000 {
			keys := freshKeys(2)
			wg.Add(1)
			err := sc.Submit(ctx, txn.Commit{Writes: map[string][]byte{keys[0]: []byte("x"), keys[1]: []byte("y")}},
				func(_ map[string]uint64, err error) {
					if err != nil {
						b.Error(err)
					}
					wg.Done()
				})
			if err != nil {
				b.Fatal(err)
			}
		}
		wg.Wait()
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchTarget != nil {
		benchTarget.Close()
	}
	os.Exit(code)
}
