package txn

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
)

// TestReplicated runs the isolation, atomicity and scheduler checks on a
// 3-node cluster, where the server validates expectations against
// commits still in flight through RAFT.
func TestReplicated(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3)

	t.Run("write skew: two on-call doctors cannot both leave", func(t *testing.T) {
		ctx := clustertest.Context(t, 30*time.Second)
		leave := func(me, other string) func(tx *Tx) error {
			return func(tx *Tx) error {
				got, err := tx.GetAll(me, other)
				if err != nil {
					return err
				}
				if string(got[me].Value) == "on" && string(got[other].Value) == "on" {
					return tx.Put(me, []byte("off"))
				}
				return nil
			}
		}
		// Interleaved by hand: both read, then both commit.
		put(t, e.store, "doc.alice", "on")
		put(t, e.store, "doc.bob", "on")
		tx1, tx2 := newTx(ctx, e.store), newTx(ctx, e.store)
		require.NoError(t, leave("doc.alice", "doc.bob")(tx1))
		require.NoError(t, leave("doc.bob", "doc.alice")(tx2))
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i, tx := range []*Tx{tx1, tx2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = e.store.Commit(ctx, tx.commit())
			}()
		}
		wg.Wait()
		require.True(t, (errs[0] == nil) != (errs[1] == nil), "exactly one may commit, got %v and %v", errs[0], errs[1])
		for _, err := range errs {
			if err != nil {
				require.ErrorIs(t, err, ErrConflict)
			}
		}

		// Concurrently with retries, many rounds: someone stays on call.
		for round := range 20 {
			a, b := fmt.Sprintf("doc.%d.alice", round), fmt.Sprintf("doc.%d.bob", round)
			put(t, e.store, a, "on")
			put(t, e.store, b, "on")
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for i, pair := range [][2]string{{a, b}, {b, a}} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = Run(ctx, e.store, leave(pair[0], pair[1]), WithMaxAttempts(50))
				}()
			}
			wg.Wait()
			require.NoError(t, errors.Join(errs...))
			got, err := e.store.GetMany(ctx, []string{a, b})
			require.NoError(t, err)
			on := 0
			for _, k := range []string{a, b} {
				if string(got[k].Value) == "on" {
					on++
				}
			}
			require.Equal(t, 1, on, "round %d: exactly one doctor must stay on call", round)
		}
	})

	t.Run("atomicity: a conflict on the last key writes none", func(t *testing.T) {
		ctx := clustertest.Context(t, 10*time.Second)
		reads := map[string]uint64{}
		writes := map[string][]byte{}
		for i := range 5 {
			k := fmt.Sprintf("ra.%d", i)
			reads[k] = put(t, e.store, k, "old")
			writes[k] = []byte("new")
		}
		put(t, e.store, "ra.4", "moved") // the last key in batch order
		_, err := e.store.Commit(ctx, Commit{Reads: reads, Writes: writes})
		var ce *ConflictError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, "ra.4", ce.Key)
		for i := range 4 {
			got, err := e.store.Get(ctx, fmt.Sprintf("ra.%d", i))
			require.NoError(t, err)
			require.Equal(t, "old", string(got.Value))
		}
	})

	t.Run("scheduler gives the state of committing one by one in arrival order", func(t *testing.T) {
		ctx := clustertest.Context(t, 60*time.Second)
		serial := e.addBucket(t, "SERIAL")
		sched := e.addBucket(t, "SCHED")
		const nkeys, ncommits = 64, 300
		key := func(i int) string { return fmt.Sprintf("k%02d", i) }
		initial := map[string]uint64{}
		for i := range nkeys {
			r1 := put(t, serial, key(i), "init")
			r2 := put(t, sched, key(i), "init")
			require.Equal(t, r1, r2, "both buckets start alike")
			initial[key(i)] = r1
		}
		rng := rand.New(rand.NewPCG(1, 2))
		commits := make([]Commit, ncommits)
		for n := range commits {
			c := Commit{Reads: map[string]uint64{}, Writes: map[string][]byte{}}
			for range 1 + rng.IntN(3) {
				k := key(rng.IntN(nkeys))
				c.Reads[k] = initial[k]
			}
			for range 1 + rng.IntN(2) {
				k := key(rng.IntN(nkeys))
				if rng.IntN(10) == 0 {
					if _, w := c.Writes[k]; !w {
						c.Deletes = append(c.Deletes, k)
					}
					continue
				}
				if _, d := c.Reads[k]; d || rng.IntN(4) > 0 {
					c.Writes[k] = fmt.Appendf(nil, "v%d", n)
				}
			}
			// Drop writes that collide with deletes.
			for _, d := range c.Deletes {
				delete(c.Writes, d)
			}
			commits[n] = c
		}

		want := make([]error, ncommits)
		for n, c := range commits {
			_, want[n] = serial.Commit(ctx, c)
		}

		s := NewScheduler(sched, WithConcurrency(16))
		sctx, stop := context.WithCancel(ctx)
		defer stop()
		go s.Run(sctx)
		got := make([]error, ncommits)
		var wg sync.WaitGroup
		for n, c := range commits {
			wg.Add(1)
			require.NoError(t, s.Submit(ctx, c, func(_ map[string]uint64, err error) {
				got[n] = err
				wg.Done()
			}))
		}
		wg.Wait()
		committed := 0
		for n := range commits {
			require.Equal(t, want[n] == nil, got[n] == nil, "commit %d: serial %v, scheduled %v", n, want[n], got[n])
			if got[n] != nil {
				require.ErrorIs(t, got[n], ErrConflict, "commit %d", n)
			} else {
				committed++
			}
		}
		require.Greater(t, committed, nkeys, "the workload must commit something")
		require.Less(t, committed, ncommits, "the workload must conflict somewhere")
		for i := range nkeys {
			a, err := serial.Get(ctx, key(i))
			require.NoError(t, err)
			b, err := sched.Get(ctx, key(i))
			require.NoError(t, err)
			require.Equal(t, string(a.Value), string(b.Value), key(i))
			require.Equal(t, a.Found, b.Found, key(i))
		}
		t.Logf("%d of %d commits committed", committed, ncommits)
	})
}
