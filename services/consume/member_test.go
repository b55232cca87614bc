package consume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster"
	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/services/txn"
	"github.com/platform/platform/streams"
)

// counter is what the test handler keeps per topic in STATE.
type counter struct {
	N   int    `json:"n"`
	Sum int    `json:"sum"`
	Seq uint64 `json:"seq"` // position of the last event applied
	Idx int    `json:"idx"`
	Bad int    `json:"bad"` // events applied out of stream order
}

// count is a Handler: it adds the event's value (its payload, a number)
// to its topic's counter and checks that the topic's events come in
// stream order. A violation is recorded in STATE, so only a committed
// one counts.
func count(tx *txn.Tx, ev replicator.Event) error {
	key := "c." + strings.TrimPrefix(ev.Subject, streams.EventsPrefix)
	e, err := tx.Get(key)
	if err != nil {
		return err
	}
	var c counter
	if e.Found {
		if err := json.Unmarshal(e.Value, &c); err != nil {
			return err
		}
	}
	v, err := strconv.Atoi(string(ev.Data))
	if err != nil {
		return err
	}
	if c.N > 0 && !(cursor{c.Seq, c.Idx}).less(cursorOf(ev.Pos)) {
		c.Bad++
	}
	c.N++
	c.Sum += v
	c.Seq, c.Idx = ev.Pos.Seq, ev.Pos.Index
	b, _ := json.Marshal(c)
	return tx.Put(key, b)
}

type groupEnv struct {
	c     *cluster.Cluster
	nc    *nats.Conn
	js    jetstream.JetStream
	store *txn.Store
}

func newGroupEnv(t *testing.T) *groupEnv {
	t.Helper()
	c, nc, js := clustertest.Provisioned(t, 3)
	store, err := txn.NewStore(nc, txn.WithLogger(clustertest.Logger()))
	require.NoError(t, err)
	return &groupEnv{c: c, nc: nc, js: js, store: store}
}

// running is a member running on its own connection.
type running struct {
	*Member
	cancel context.CancelFunc
	done   chan error
}

// start runs a member of group with its own connection and store.
func (e *groupEnv) start(t *testing.T, group, id string, h Handler) *running {
	t.Helper()
	return e.run(t, Options{Group: group, Member: id, Handler: h,
		TTL: 2 * time.Second, Tick: 100 * time.Millisecond, MaxBatch: 20})
}

// run runs a member with options o, on a connection and store of its own
// (which it sets, with the test's logger), until the test ends.
func (e *groupEnv) run(t *testing.T, o Options) *running {
	t.Helper()
	nc := clustertest.Connect(t, e.c)
	store, err := txn.NewStore(nc, txn.WithLogger(clustertest.Logger()))
	require.NoError(t, err)
	o.Conn, o.Store, o.Logger = nc, store, clustertest.Logger()
	m, err := New(o)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Member: m, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- m.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the member and waits until Run returned.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			require.NoError(t, err, "member %s", r.ID())
			close(r.done)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("member %s did not stop", r.ID())
	}
}

// counters reads the counters of topics.
func (e *groupEnv) counters(t *testing.T, topics []string) map[string]counter {
	t.Helper()
	keys := make([]string, len(topics))
	for i, tp := range topics {
		keys[i] = "c." + tp
	}
	got, err := e.store.GetMany(clustertest.Context(t, 10*time.Second), keys)
	require.NoError(t, err)
	out := map[string]counter{}
	for i, tp := range topics {
		var c counter
		if en := got[keys[i]]; en.Found {
			require.NoError(t, json.Unmarshal(en.Value, &c))
		}
		out[tp] = c
	}
	return out
}

// waitApplied waits until every topic's counter has counted want.N
// events (it may count more: checkExact says whether it did).
func (e *groupEnv) waitApplied(t *testing.T, topics []string, want counter, within time.Duration) {
	t.Helper()
	clustertest.Eventually(t, within, func() error {
		for tp, got := range e.counters(t, topics) {
			if got.N < want.N {
				return fmt.Errorf("topic %s: %d of %d events applied", tp, got.N, want.N)
			}
		}
		return nil
	})
}

// checkExact reports every topic whose counter is not exactly want: an
// event applied twice or missed, or applied out of stream order.
func (e *groupEnv) checkExact(t *testing.T, topics []string, want counter, when string) {
	t.Helper()
	for tp, got := range e.counters(t, topics) {
		if got.N != want.N || got.Sum != want.Sum || got.Bad != 0 {
			t.Errorf("%stopic %s: applied %d events summing %d with %d out of order, want %d summing %d in order",
				when, tp, got.N, got.Sum, got.Bad, want.N, want.Sum)
		}
	}
}

// publishPlain stores events from to to-1 of each topic, one message each.
func (e *groupEnv) publishPlain(t *testing.T, topics []string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		for _, tp := range topics {
			_, err := e.js.PublishAsync(streams.EventsPrefix+tp, []byte(strconv.Itoa(i)))
			require.NoError(t, err)
		}
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("publish did not complete")
	}
}

// publishEnvelopes stores events from to to-1 of each topic in envelopes.
func (e *groupEnv) publishEnvelopes(t *testing.T, topics []string, from, to int) {
	t.Helper()
	var msgs []replicator.Message
	for i := from; i < to; i++ {
		for _, tp := range topics {
			msgs = append(msgs, replicator.Message{Subject: streams.EventsPrefix + tp, Data: []byte(strconv.Itoa(i))})
		}
	}
	enveloped := publishInEnvelopes(t, e.js, 64, msgs)
	require.NotZero(t, enveloped, "no event was stored in an envelope")
}

// publishInEnvelopes publishes msgs with an enveloping Publisher of
// batches of batch events, waits for every ack and returns how many
// events were stored in an envelope (a batch cut by the linger can leave
// one event of a subject alone, stored as a plain message).
func publishInEnvelopes(t *testing.T, js jetstream.JetStream, batch int, msgs []replicator.Message) (enveloped int) {
	t.Helper()
	ctx := clustertest.Context(t, 30*time.Second)
	p, err := replicator.NewPublisher(js, replicator.WithEnvelope(), replicator.WithBatch(batch, 1<<20))
	require.NoError(t, err)
	futs := make([]*replicator.Future, 0, len(msgs))
	for _, m := range msgs {
		f, err := p.PublishAsync(ctx, m)
		require.NoError(t, err)
		futs = append(futs, f)
	}
	require.NoError(t, p.Flush(ctx))
	for _, f := range futs {
		a, err := f.Wait(ctx)
		require.NoError(t, err)
		if a.Count > 1 {
			enveloped++
		}
	}
	require.NoError(t, p.Close(ctx))
	return enveloped
}

// TestGroupExactlyOnceAcrossRebalance applies 5,000 events of 20 topics
// as counter increments with three members; one stops mid-way, a new one
// joins, and the leaders of KV_STATE and EVENTS step down. Every counter
// ends exact (nothing applied twice, nothing missing) and every topic's
// events were applied in stream order, across the rebalance. A member
// started after all stopped goes on from the stored positions.
func TestGroupExactlyOnceAcrossRebalance(t *testing.T) {
	e := newGroupEnv(t)
	const perTopic = 250
	var topics []string
	for i := range 20 {
		topics = append(topics, fmt.Sprintf("t%d", i))
	}
	e.publishPlain(t, topics, 0, perTopic/2)

	a := e.start(t, "sums", "a", count)
	b := e.start(t, "sums", "b", count)
	c := e.start(t, "sums", "c", count)
	clustertest.Eventually(t, 60*time.Second, func() error {
		if n := a.Applied() + b.Applied() + c.Applied(); n < 800 {
			return fmt.Errorf("%d events applied", n)
		}
		return nil
	})
	a.stop(t)
	d := e.start(t, "sums", "d", count)
	// Leaders move while events are applied: commits in flight get
	// unknown outcomes and are settled by reading the position again.
	clustertest.StepDown(t, e.c, e.nc, streams.KVStream(streams.BucketState))
	e.publishEnvelopes(t, topics, perTopic/2, perTopic*3/4)
	clustertest.StepDown(t, e.c, e.nc, streams.Events)
	e.publishEnvelopes(t, topics, perTopic*3/4, perTopic)

	want := counter{N: perTopic, Sum: perTopic * (perTopic - 1) / 2}
	e.waitApplied(t, topics, want, 90*time.Second)
	for _, r := range []*running{b, c, d} {
		r.stop(t)
	}
	e.checkExact(t, topics, want, "")
	if d.Applied() == 0 {
		t.Errorf("the member that joined applied nothing")
	}
	t.Logf("applied: a %d, b %d, c %d, d %d", a.Applied(), b.Applied(), c.Applied(), d.Applied())

	// The group's positions survive its members: a member started after
	// all stopped applies only what came since.
	e.publishPlain(t, topics, perTopic, perTopic+10)
	f := e.start(t, "sums", "f", count)
	want = counter{N: perTopic + 10, Sum: (perTopic + 10) * (perTopic + 9) / 2}
	e.waitApplied(t, topics, want, 60*time.Second)
	f.stop(t)
	e.checkExact(t, topics, want, "after a restart, ")
	if n := f.Applied(); n != int64(10*len(topics)) {
		t.Errorf("the restarted group applied %d events, want %d", n, 10*len(topics))
	}
}

// TestGroupFencesPausedOwner pauses a member (its membership and lease
// stop renewing, its handler blocks) until another member has taken its
// partitions; when it resumes, its commit is refused and it applies
// nothing.
func TestGroupFencesPausedOwner(t *testing.T) {
	e := newGroupEnv(t)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	blocking := func(tx *txn.Tx, ev replicator.Event) error {
		once.Do(func() { close(entered) })
		<-release
		return count(tx, ev)
	}
	e.publishPlain(t, []string{"x"}, 1, 2)
	a := e.start(t, "fence", "a", blocking)
	select {
	case <-entered:
	case <-time.After(60 * time.Second):
		t.Fatal("member a never handled the event")
	}
	a.pauseKeeper.Store(true)

	b := e.start(t, "fence", "b", count)
	clustertest.Eventually(t, 60*time.Second, func() error {
		if got := e.counters(t, []string{"x"})["x"]; got.N != 1 {
			return fmt.Errorf("counter x at %d events, want 1", got.N)
		}
		return nil
	})
	close(release)
	clustertest.Eventually(t, 30*time.Second, func() error {
		if a.fenced.Load() == 0 {
			return errors.New("member a's commit was not refused yet")
		}
		return nil
	})
	if got := e.counters(t, []string{"x"})["x"]; got.N != 1 || got.Sum != 1 {
		t.Errorf("after the paused owner resumed: counter x %+v, want 1 event summing 1", got)
	}
	if n := a.Applied(); n != 0 {
		t.Errorf("the fenced member applied %d events, want 0", n)
	}
	// The new owner goes on.
	e.publishPlain(t, []string{"x"}, 2, 3)
	clustertest.Eventually(t, 30*time.Second, func() error {
		if got := e.counters(t, []string{"x"})["x"]; got.N != 2 || got.Sum != 3 {
			return fmt.Errorf("counter x %+v, want 2 events summing 3", got)
		}
		return nil
	})
	if b.Applied() != 2 {
		t.Errorf("member b applied %d events, want 2", b.Applied())
	}

	// A member that asks another partition count or filter is refused.
	for _, o := range []Options{{Partitions: 8}, {Filter: []string{"events.x"}}} {
		o.Conn, o.Store, o.Group, o.Handler, o.Logger = e.nc, e.store, "fence", count, clustertest.Logger()
		m, err := New(o)
		require.NoError(t, err)
		if err := m.Run(clustertest.Context(t, 10*time.Second)); !errors.Is(err, ErrConfig) {
			t.Errorf("joining with partitions %d and filter %q: got %v, want ErrConfig", o.Partitions, o.Filter, err)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	nc := &nats.Conn{}
	store := &txn.Store{}
	ok := func(tc Options) Options {
		tc.Conn, tc.Store, tc.Handler = nc, store, count
		if tc.Group == "" {
			tc.Group = "g"
		}
		return tc
	}
	for _, tc := range []struct {
		name string
		opts Options
		bad  string
	}{
		{name: "defaults", opts: ok(Options{})},
		{name: "dotted group", opts: ok(Options{Group: "a.b"}), bad: "group"},
		{name: "wildcard member", opts: ok(Options{Member: "a*"}), bad: "member"},
		{name: "too many partitions", opts: ok(Options{Partitions: 5000}), bad: "partitions"},
		{name: "short ttl", opts: ok(Options{TTL: 500 * time.Millisecond}), bad: "ttl"},
		{name: "slow tick", opts: ok(Options{TTL: 3 * time.Second, Tick: 2 * time.Second}), bad: "tick"},
		{name: "no handler", opts: Options{Conn: nc, Store: store, Group: "g"}, bad: "Handler"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			o.defaults()
			err := o.validate()
			switch {
			case tc.bad == "" && err != nil:
				t.Errorf("got %v, want no error", err)
			case tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)):
				t.Errorf("got %v, want an error about %s", err, tc.bad)
			}
		})
	}
}

// TestGroupSkipsMalformedAndRetriesHandler stores a message that claims
// to be an envelope but is not, then events whose handler fails twice:
// the malformed message is skipped, and each event is applied exactly
// once after the handler's retries.
func TestGroupSkipsMalformedAndRetriesHandler(t *testing.T) {
	e := newGroupEnv(t)
	ctx := clustertest.Context(t, 30*time.Second)
	bad := nats.NewMsg(streams.EventsPrefix + "y")
	bad.Header.Set(streams.EnvelopeHeader, "1")
	bad.Data = []byte{0xc1, 0xff, 0x00} // not msgpack
	_, err := e.js.PublishMsg(ctx, bad)
	require.NoError(t, err)
	e.publishPlain(t, []string{"y"}, 1, 4)

	var mu sync.Mutex
	failures := 0
	flaky := func(tx *txn.Tx, ev replicator.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if string(ev.Data) == "2" && failures < 2 {
			failures++
			return errors.New("downstream not ready")
		}
		return count(tx, ev)
	}
	m := e.start(t, "flaky", "a", flaky)
	clustertest.Eventually(t, 60*time.Second, func() error {
		if got := e.counters(t, []string{"y"})["y"]; got.N != 3 {
			return fmt.Errorf("counter y at %d events, want 3", got.N)
		}
		return nil
	})
	m.stop(t)
	if got := e.counters(t, []string{"y"})["y"]; got.N != 3 || got.Sum != 6 || got.Bad != 0 {
		t.Errorf("counter y %+v, want 3 events summing 6 in order", got)
	}
	if failures != 2 {
		t.Errorf("handler failed %d times, want 2", failures)
	}
}
