package lease

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/streams"
)

const (
	ttl   = time.Second
	renew = 250 * time.Millisecond
)

func newLease(t *testing.T, kv KV, key, holder string) *Lease {
	t.Helper()
	l, err := New(kv, key, holder, ttl, renew)
	require.NoError(t, err)
	return l
}

func TestLiveLease(t *testing.T) {
	t.Parallel()
	_, _, js := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, time.Minute)
	kv, err := js.KeyValue(ctx, streams.BucketLeases)
	require.NoError(t, err)
	t0 := time.Now()

	t.Run("one holder at a time", func(t *testing.T) {
		ls := []*Lease{newLease(t, kv, "one", "a"), newLease(t, kv, "one", "b"), newLease(t, kv, "one", "c")}
		holder := -1
		for round := range 12 { // three TTLs of renewals
			now := t0.Add(time.Duration(round) * renew)
			held := 0
			for i, l := range ls {
				h, err := l.Step(ctx, now)
				require.NoError(t, err)
				if h {
					held++
					if holder < 0 {
						holder = i
					}
					require.Equal(t, holder, i, "round %d: the lease moved while renewed", round)
				}
			}
			require.Equal(t, 1, held, "round %d: holders", round)
		}
	})

	t.Run("takeover after the TTL", func(t *testing.T) {
		a, b := newLease(t, kv, "takeover", "a"), newLease(t, kv, "takeover", "b")
		held, err := a.Step(ctx, t0)
		require.NoError(t, err)
		require.True(t, held)
		for _, d := range []time.Duration{0, renew, ttl - time.Millisecond} {
			held, err = b.Step(ctx, t0.Add(d))
			require.NoError(t, err)
			require.False(t, held, "%s after a's last renewal", d)
		}
		held, err = b.Step(ctx, t0.Add(ttl))
		require.NoError(t, err)
		require.True(t, held, "a TTL without renewal: taken over")
		held, err = a.Step(ctx, t0.Add(ttl))
		require.NoError(t, err)
		require.False(t, held, "the old holder finds its revision gone and steps down")
	})

	t.Run("release hands over at once", func(t *testing.T) {
		a, b := newLease(t, kv, "release", "a"), newLease(t, kv, "release", "b")
		held, err := a.Step(ctx, t0)
		require.NoError(t, err)
		require.True(t, held)
		held, err = b.Step(ctx, t0)
		require.NoError(t, err)
		require.False(t, held)
		require.NoError(t, a.Release(ctx))
		require.NoError(t, a.Release(ctx), "releasing twice is fine")
		held, err = b.Step(ctx, t0.Add(time.Millisecond))
		require.NoError(t, err)
		require.True(t, held, "a released lease is free")
	})

	t.Run("an unreadable record is taken like an expired one", func(t *testing.T) {
		_, err := kv.Put(ctx, "garbled", []byte("not json"))
		require.NoError(t, err)
		held, err := newLease(t, kv, "garbled", "a").Step(ctx, t0)
		require.NoError(t, err)
		require.True(t, held)
	})
}

func TestNewChecksItsArguments(t *testing.T) {
	kv := newFakeKV()
	tests := []struct {
		name       string
		key, owner string
		ttl, renew time.Duration
	}{
		{"no key", "", "a", ttl, renew},
		{"no holder", "k", "", ttl, renew},
		{"ttl not above renew", "k", "a", renew, renew},
		{"no renew", "k", "a", ttl, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(kv, tt.key, tt.owner, tt.ttl, tt.renew)
			require.Error(t, err)
		})
	}
}

// A holder that cannot renew keeps the lease until TTL minus one renew
// interval has passed since its last renewal, then steps down on its own,
// before any standby could take over.
func TestHolderStepsDownWhenItCannotRenew(t *testing.T) {
	kv := newFakeKV()
	l := newLease(t, kv, "k", "a")
	t0 := time.Unix(1_700_000_000, 0)
	held, err := l.Step(context.Background(), t0)
	require.NoError(t, err)
	require.True(t, held)
	kv.fail(errors.New("no responders"))
	held, err = l.Step(context.Background(), t0.Add(ttl-renew-time.Millisecond))
	require.Error(t, err)
	require.True(t, held, "still within the grace")
	held, err = l.Step(context.Background(), t0.Add(ttl-renew))
	require.Error(t, err)
	require.False(t, held, "stepped down")
}

// Run steps once per renew interval after a random start within one,
// reports changes only, and on stop reports the loss before it releases.
func TestRunStepsEachIntervalAndReleasesOnStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		kv := newFakeKV()
		l := newLease(t, kv, "k", "a")
		var mu sync.Mutex
		var changes []bool
		releasedFirst := false
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			l.Run(ctx, nil, func(held bool) {
				mu.Lock()
				defer mu.Unlock()
				changes = append(changes, held)
				if !held && kv.holder() == "" {
					releasedFirst = true
				}
			})
			close(done)
		}()
		time.Sleep(renew)
		synctest.Wait()
		require.Equal(t, 1, kv.updates()+kv.creates(), "first step within one interval")
		time.Sleep(10 * renew)
		synctest.Wait()
		require.Equal(t, 11, kv.updates()+kv.creates(), "then one step per interval")
		mu.Lock()
		require.Equal(t, []bool{true}, changes, "one change: taken")
		mu.Unlock()
		require.Equal(t, "a", kv.holder())

		cancel()
		cancel() // stopping twice is fine
		<-done
		require.Equal(t, []bool{true, false}, changes)
		require.False(t, releasedFirst, "the loss is reported before the lease is released")
		require.Empty(t, kv.holder(), "released")
		time.Sleep(10 * renew)
		require.Equal(t, 12, kv.updates()+kv.creates(), "no steps after stop (the release was the last update)")
	})
}

// fakeKV is a one-process KV with revisions, for timing tests without
// NATS.
type fakeKV struct {
	mu      sync.Mutex
	vals    map[string]fakeEntry
	rev     uint64
	err     error
	nUpdate int
	nCreate int
}

func newFakeKV() *fakeKV { return &fakeKV{vals: map[string]fakeEntry{}} }

func (f *fakeKV) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeKV) updates() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nUpdate
}

func (f *fakeKV) creates() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nCreate
}

// holder returns the holder named in key "k"'s record.
func (f *fakeKV) holder() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var rec record
	_ = json.Unmarshal(f.vals["k"].value, &rec)
	return rec.Holder
}

func (f *fakeKV) Get(_ context.Context, key string) (jetstream.KeyValueEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	e, ok := f.vals[key]
	if !ok {
		return nil, jetstream.ErrKeyNotFound
	}
	return e, nil
}

func (f *fakeKV) Create(_ context.Context, key string, value []byte, _ ...jetstream.KVCreateOpt) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nCreate++
	if f.err != nil {
		return 0, f.err
	}
	if _, ok := f.vals[key]; ok {
		return 0, jetstream.ErrKeyExists
	}
	return f.put(key, value), nil
}

func (f *fakeKV) Update(_ context.Context, key string, value []byte, revision uint64) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nUpdate++
	if f.err != nil {
		return 0, f.err
	}
	if f.vals[key].rev != revision {
		return 0, jetstream.ErrKeyRevisionMismatch
	}
	return f.put(key, value), nil
}

func (f *fakeKV) put(key string, value []byte) uint64 {
	f.rev++
	f.vals[key] = fakeEntry{key: key, value: value, rev: f.rev}
	return f.rev
}

type fakeEntry struct {
	key   string
	value []byte
	rev   uint64
}

func (e fakeEntry) Bucket() string                  { return "LEASES" }
func (e fakeEntry) Key() string                     { return e.key }
func (e fakeEntry) Value() []byte                   { return e.value }
func (e fakeEntry) Revision() uint64                { return e.rev }
func (e fakeEntry) Created() time.Time              { return time.Time{} }
func (e fakeEntry) Delta() uint64                   { return 0 }
func (e fakeEntry) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePut }
