package txn

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/streams"
)

// TestTxnSingleNode covers the library on a 1-node cluster: reads, own
// writes, deletes as the KV CLI sees them, markers, conflicts, retries.
func TestTxnSingleNode(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)

	t.Run("get records revisions and absent keys", func(t *testing.T) {
		ctx := clustertest.Context(t, 10*time.Second)
		rev := put(t, e.store, "basic.a", "100")
		var got, absent Entry
		err := Run(ctx, e.store, func(tx *Tx) error {
			var err error
			if got, err = tx.Get("basic.a"); err != nil {
				return err
			}
			absent, err = tx.Get("basic.missing")
			return err
		})
		require.NoError(t, err)
		require.Equal(t, Entry{Key: "basic.a", Value: []byte("100"), Revision: rev, Found: true}, got)
		require.Equal(t, Entry{Key: "basic.missing"}, absent)
	})

	t.Run("reads see own writes and commit is visible to nats kv", func(t *testing.T) {
		ctx := clustertest.Context(t, 10*time.Second)
		var revs map[string]uint64
		err := Run(ctx, e.store, func(tx *Tx) error {
			if err := tx.Put("own.a", []byte("1")); err != nil {
				return err
			}
			got, err := tx.Get("own.a")
			if err != nil {
				return err
			}
			if string(got.Value) != "1" || !got.Found {
				return fmt.Errorf("own write not visible: %+v", got)
			}
			if err := tx.Delete("own.a"); err != nil {
				return err
			}
			if got, _ := tx.Get("own.a"); got.Found {
				return fmt.Errorf("own delete not visible: %+v", got)
			}
			return tx.Put("own.b", []byte("2"))
		}, WithRevisions(func(r map[string]uint64) { revs = r }))
		require.NoError(t, err)
		require.Len(t, revs, 2)
		kve, err := e.kv.Get(ctx, "own.b")
		require.NoError(t, err)
		require.Equal(t, "2", string(kve.Value()))
		require.Equal(t, revs["own.b"], kve.Revision())
		_, err = e.kv.Get(ctx, "own.a")
		require.ErrorIs(t, err, jetstream.ErrKeyNotFound, "a txn delete reads as deleted to nats kv")
	})

	t.Run("delete is a KV delete and reads back with its revision", func(t *testing.T) {
		ctx := clustertest.Context(t, 10*time.Second)
		put(t, e.store, "del.a", "x")
		var revs map[string]uint64
		require.NoError(t, Run(ctx, e.store, func(tx *Tx) error {
			if _, err := tx.Get("del.a"); err != nil {
				return err
			}
			return tx.Delete("del.a")
		}, WithRevisions(func(r map[string]uint64) { revs = r })))
		hist, err := e.kv.History(ctx, "del.a")
		require.NoError(t, err)
		require.Equal(t, jetstream.KeyValueDelete, hist[len(hist)-1].Operation())
		got, err := e.store.Get(ctx, "del.a")
		require.NoError(t, err)
		require.Equal(t, Entry{Key: "del.a", Revision: revs["del.a"]}, got)
		// Re-creating a deleted key expects the delete marker's revision.
		_, err = e.store.Commit(ctx, Commit{Reads: map[string]uint64{"del.a": 0}, Writes: map[string][]byte{"del.a": []byte("y")}})
		require.ErrorIs(t, err, ErrConflict)
		_, err = e.store.Commit(ctx, Commit{Reads: map[string]uint64{"del.a": got.Revision}, Writes: map[string][]byte{"del.a": []byte("y")}})
		require.NoError(t, err)
	})

	t.Run("atomicity: a conflict on the last key writes nothing", func(t *testing.T) {
		ctx := clustertest.Context(t, 10*time.Second)
		ra := put(t, e.store, "atom.a", "1")
		rz := put(t, e.store, "atom.z", "1")
		put(t, e.store, "atom.z", "moved")
		_, err := e.store.Commit(ctx, Commit{
			Reads:  map[string]uint64{"atom.a": ra, "atom.b": 0, "atom.z": rz},
			Writes: map[string][]byte{"atom.a": []byte("2"), "atom.b": []byte("2"), "atom.z": []byte("2")},
		})
		var ce *ConflictError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, "atom.z", ce.Key)
		require.Equal(t, rz, ce.Expected)
		require.Greater(t, ce.Actual, rz)
		for k, want := range map[string]string{"atom.a": "1", "atom.z": "moved"} {
			got, err := e.store.Get(ctx, k)
			require.NoError(t, err)
			require.Equal(t, want, string(got.Value), k)
		}
		got, err := e.store.Get(ctx, "atom.b")
		require.NoError(t, err)
		require.False(t, got.Found, "atom.b must not be written")
	})

	t.Run("a key only read is validated by a marker", func(t *testing.T) {
		ctx := clustertest.Context(t, 10*time.Second)
		rr := put(t, e.store, "mark.read", "1")
		put(t, e.store, "mark.read", "2")
		_, err := e.store.Commit(ctx, Commit{
			Reads:  map[string]uint64{"mark.read": rr, "mark.w": 0},
			Writes: map[string][]byte{"mark.w": []byte("x")},
		})
		var ce *ConflictError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, "mark.read", ce.Key)
		got, err := e.store.Get(ctx, "mark.w")
		require.NoError(t, err)
		require.False(t, got.Found)

		// With the current revision the same commit goes through, and the
		// marker stays out of `nats kv ls` and expires by its TTL.
		cur, err := e.store.Get(ctx, "mark.read")
		require.NoError(t, err)
		_, err = e.store.Commit(ctx, Commit{
			Reads:  map[string]uint64{"mark.read": cur.Revision, "mark.w": 0},
			Writes: map[string][]byte{"mark.w": []byte("x")},
		})
		require.NoError(t, err)
		lister, err := e.kv.ListKeys(ctx)
		require.NoError(t, err)
		for k := range lister.Keys() {
			require.NotContains(t, k, ReservedPrefix)
		}
		stream, err := e.js.Stream(ctx, "KV_STATE")
		require.NoError(t, err)
		clustertest.Eventually(t, 10*time.Second, func() error {
			_, err := stream.GetLastMsgForSubject(ctx, streams.KVSubject(streams.BucketState, MarkerKey))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return nil
			}
			return fmt.Errorf("marker still stored (err %v)", err)
		})
	})

	t.Run("invalid input is refused before anything is sent", func(t *testing.T) {
		ctx := clustertest.Context(t, 10*time.Second)
		small, err := NewStore(e.nc, WithMaxKeys(3), WithMaxValueBytes(4))
		require.NoError(t, err)
		tests := []struct {
			name string
			c    Commit
			want error
		}{
			{"invalid key", Commit{Writes: map[string][]byte{"a b": nil}}, ErrInvalidKey},
			{"reserved key", Commit{Writes: map[string][]byte{MarkerKey: nil}}, ErrReservedKey},
			{"reserved read", Commit{Reads: map[string]uint64{"_txn.x": 0}, Writes: map[string][]byte{"ok": nil}}, ErrReservedKey},
			{"oversize value", Commit{Writes: map[string][]byte{"big": []byte("12345")}}, ErrValueTooLarge},
			{"too many keys", Commit{Reads: map[string]uint64{"a": 0, "b": 0}, Writes: map[string][]byte{"c": nil, "d": nil}}, ErrTooManyKeys},
			{"written and deleted", Commit{Writes: map[string][]byte{"a": nil}, Deletes: []string{"a"}}, ErrInvalidCommit},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := small.Commit(ctx, tt.c)
				require.ErrorIs(t, err, tt.want)
			})
		}
		err = Run(ctx, e.store, func(tx *Tx) error {
			_ = tx.Put("bad key", nil) // ignored error still fails the commit
			return nil
		})
		require.ErrorIs(t, err, ErrInvalidKey)
	})

	t.Run("run retries conflicts and calls the resolver", func(t *testing.T) {
		ctx := clustertest.Context(t, 30*time.Second)
		const workers, each = 6, 10
		var conflicts atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					err := Run(ctx, e.store, func(tx *Tx) error {
						got, err := tx.Get("counter")
						if err != nil {
							return err
						}
						n, _ := strconv.Atoi(string(got.Value))
						return tx.Put("counter", []byte(strconv.Itoa(n+1)))
					}, WithMaxAttempts(1000), WithConflictResolver(func(ctx context.Context, c *ConflictError, attempt int) error {
						conflicts.Add(1)
						if c.Key != "counter" && c.Key != "" {
							return fmt.Errorf("conflict on unexpected key %q", c.Key)
						}
						return nil
					}))
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		got, err := e.store.Get(ctx, "counter")
		require.NoError(t, err)
		require.Equal(t, strconv.Itoa(workers*each), string(got.Value))
		t.Logf("%d conflicts resolved", conflicts.Load())
	})

	t.Run("run gives up after max attempts and stops on resolver error", func(t *testing.T) {
		ctx := clustertest.Context(t, 10*time.Second)
		calls := 0
		err := Run(ctx, e.store, func(tx *Tx) error {
			calls++
			if _, err := tx.Get("giveup"); err != nil {
				return err
			}
			put(t, e.store, "giveup", strconv.Itoa(calls)) // someone else moves it
			return tx.Put("giveup", []byte("mine"))
		}, WithMaxAttempts(3), WithBackoff(time.Millisecond, time.Millisecond))
		require.ErrorIs(t, err, ErrConflict)
		require.Equal(t, 3, calls)

		stop := errors.New("stop")
		calls = 0
		err = Run(ctx, e.store, func(tx *Tx) error {
			calls++
			if _, err := tx.Get("giveup"); err != nil {
				return err
			}
			put(t, e.store, "giveup", "other")
			return tx.Put("giveup", []byte("mine"))
		}, WithConflictResolver(func(context.Context, *ConflictError, int) error { return stop }))
		require.ErrorIs(t, err, stop)
		require.Equal(t, 1, calls)

		// A function's own error is returned as is, never retried.
		calls = 0
		mine := errors.New("insufficient funds")
		err = Run(ctx, e.store, func(tx *Tx) error { calls++; return mine })
		require.ErrorIs(t, err, mine)
		require.Equal(t, 1, calls)
	})
}
