package kvfollow

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/streams"
)

// event is one delivery.
type event struct {
	op    jetstream.KeyValueOp
	key   string
	value string
	rev   uint64
}

// recorder collects deliveries.
type recorder struct {
	mu     sync.Mutex
	events []event
}

func (r *recorder) options() Options {
	add := func(e jetstream.KeyValueEntry) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.events = append(r.events, event{e.Operation(), e.Key(), string(e.Value()), e.Revision()})
	}
	return Options{Put: add, Delete: add, Logger: clustertest.Logger()}
}

func (r *recorder) snapshot() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event(nil), r.events...)
}

// checkOrdered fails unless revisions strictly increase: nothing twice,
// nothing out of order.
func checkOrdered(t *testing.T, evs []event) {
	t.Helper()
	for i := 1; i < len(evs); i++ {
		require.Greater(t, evs[i].rev, evs[i-1].rev, "delivery %d after %d: %v", i, i-1, evs)
	}
}

// waitValues waits until the last delivery of every key in want has the
// wanted value.
func waitValues(t *testing.T, r *recorder, want map[string]string) {
	t.Helper()
	clustertest.Eventually(t, 30*time.Second, func() error {
		got := map[string]string{}
		for _, e := range r.snapshot() {
			got[e.key] = e.value
		}
		for k, v := range want {
			if got[k] != v {
				return fmt.Errorf("%s = %q, want %q (have %v)", k, got[k], v, got)
			}
		}
		return nil
	})
}

func membersKV(t *testing.T, js jetstream.JetStream) jetstream.KeyValue {
	t.Helper()
	kv, err := js.KeyValue(t.Context(), streams.BucketMembers)
	require.NoError(t, err)
	return kv
}

func TestLiveInitialViewThenUpdates(t *testing.T) {
	t.Parallel()
	_, _, js := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, time.Minute)
	kv := membersKV(t, js)
	for _, k := range []string{"a", "b", "c"} {
		_, err := kv.PutString(ctx, k, "1")
		require.NoError(t, err)
	}
	_, err := kv.PutString(ctx, "a", "2")
	require.NoError(t, err)
	require.NoError(t, kv.Delete(ctx, "b"))

	var r recorder
	f, err := Start(ctx, kv, r.options())
	require.NoError(t, err)
	defer f.Stop()
	select {
	case <-f.Synced():
	case <-ctx.Done():
		t.Fatal("not synced")
	}
	require.Equal(t, []event{
		{jetstream.KeyValuePut, "c", "1", 3},
		{jetstream.KeyValuePut, "a", "2", 4},
		{jetstream.KeyValueDelete, "b", "", 5},
	}, r.snapshot(), "the current view: each key's last entry, deletions included")

	_, err = kv.PutString(ctx, "d", "1")
	require.NoError(t, err)
	require.NoError(t, kv.Purge(ctx, "c"))
	clustertest.Eventually(t, 10*time.Second, func() error {
		if n := len(r.snapshot()); n != 5 {
			return fmt.Errorf("%d deliveries, want 5", n)
		}
		return nil
	})
	require.Equal(t, []event{
		{jetstream.KeyValuePut, "d", "1", 6},
		{jetstream.KeyValuePurge, "c", "", 7},
	}, r.snapshot()[3:], "then each change")

	f.Stop()
	f.Stop() // stopping twice is fine
	_, err = kv.PutString(ctx, "e", "1")
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond) // nothing may arrive; there is no event to wait for
	require.Len(t, r.snapshot(), 5, "nothing delivered after Stop")
}

// breakable wraps a bucket so a test can end the follower's watch, as a
// lost subscription does.
type breakable struct {
	jetstream.KeyValue
	mu      sync.Mutex
	current *brokenWatcher
	watches int
}

type brokenWatcher struct {
	jetstream.KeyWatcher
	out  chan jetstream.KeyValueEntry
	stop chan struct{}
	once sync.Once
}

func (w *brokenWatcher) Updates() <-chan jetstream.KeyValueEntry { return w.out }

func (w *brokenWatcher) Stop() error {
	w.once.Do(func() { close(w.stop) })
	return w.KeyWatcher.Stop()
}

func (b *breakable) WatchAll(ctx context.Context, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	inner, err := b.KeyValue.WatchAll(ctx, opts...)
	if err != nil {
		return nil, err
	}
	w := &brokenWatcher{KeyWatcher: inner, out: make(chan jetstream.KeyValueEntry), stop: make(chan struct{})}
	go func() {
		defer close(w.out)
		for e := range inner.Updates() {
			select {
			case <-w.stop: // cut: nothing read since goes through
				return
			default:
			}
			select {
			case w.out <- e:
			case <-w.stop:
				return
			}
		}
	}()
	b.mu.Lock()
	b.current = w
	b.watches++
	b.mu.Unlock()
	return w, nil
}

// cut ends the current watch: its channel closes.
func (b *breakable) cut() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.current.once.Do(func() { close(b.current.stop) })
}

func (b *breakable) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.watches
}

func TestLiveResumesFromTheLastRevisionWhenTheWatchEnds(t *testing.T) {
	t.Parallel()
	_, _, js := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, time.Minute)
	kv := &breakable{KeyValue: membersKV(t, js)}
	_, err := kv.PutString(ctx, "k", "0")
	require.NoError(t, err)
	var r recorder
	f, err := Start(ctx, kv, r.options())
	require.NoError(t, err)
	defer f.Stop()
	<-f.Synced()

	for round := 1; round <= 3; round++ {
		_, err := kv.PutString(ctx, "k", fmt.Sprint(round, "a"))
		require.NoError(t, err)
		waitValues(t, &r, map[string]string{"k": fmt.Sprint(round, "a")})
		kv.cut()
		// Written while no watch runs: delivered once the follower resumes.
		_, err = kv.PutString(ctx, "k", fmt.Sprint(round, "b"))
		require.NoError(t, err)
		_, err = kv.PutString(ctx, "other", fmt.Sprint(round))
		require.NoError(t, err)
		waitValues(t, &r, map[string]string{"k": fmt.Sprint(round, "b"), "other": fmt.Sprint(round)})
		require.Equal(t, round+1, kv.count(), "watches")
	}
	evs := r.snapshot()
	checkOrdered(t, evs)
	require.Len(t, evs, 1+3*3, "every write once: %v", evs)
}

func TestLiveUpdatesFlowAfterANodeRestart(t *testing.T) {
	t.Parallel()
	c, _, js := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, 2*time.Minute)
	kv := membersKV(t, js)
	var r recorder
	f, err := Start(ctx, kv, r.options())
	require.NoError(t, err)
	defer f.Stop()
	<-f.Synced()
	_, err = kv.PutString(ctx, "before", "1")
	require.NoError(t, err)
	waitValues(t, &r, map[string]string{"before": "1"})

	c.StopNode(0)
	clustertest.RestartNode(t, c, 0)
	for i := range 5 {
		key := fmt.Sprint("after", i)
		clustertest.Eventually(t, 30*time.Second, func() error {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, err := kv.PutString(pctx, key, "1")
			return err
		})
	}
	waitValues(t, &r, map[string]string{"after0": "1", "after4": "1"})
	evs := r.snapshot()
	checkOrdered(t, evs)
	keys := map[string]int{}
	for _, e := range evs {
		keys[e.key]++
	}
	for k, n := range keys {
		require.Equal(t, 1, n, "%s delivered %d times: %v", k, n, evs)
	}
	require.Len(t, keys, 6)
}

func TestStartNeedsPut(t *testing.T) {
	_, err := Start(t.Context(), nil, Options{})
	require.Error(t, err)
}
