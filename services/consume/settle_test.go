package consume

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/streams"
)

// startPull runs an at-least-once member of group on its own connection.
func (e *groupEnv) startPull(t *testing.T, group, id string, o Options) *running {
	t.Helper()
	o.Group, o.Member, o.AtLeastOnce = group, id, true
	o.TTL, o.Tick = 2*time.Second, 100*time.Millisecond
	return e.run(t, o)
}

// create makes group with the given settings.
func (e *groupEnv) create(t *testing.T, g GroupConfig) {
	t.Helper()
	_, err := CreateGroup(clustertest.Context(t, 10*time.Second), e.store, g)
	require.NoError(t, err)
}

// pull calls Next until it has handed out n events or within passed.
func pull(t *testing.T, m *running, n int, within time.Duration) []Delivery {
	t.Helper()
	ctx := clustertest.Context(t, within+5*time.Second)
	var got []Delivery
	deadline := time.Now().Add(within)
	for len(got) < n && time.Now().Before(deadline) {
		d, err := m.Next(ctx, n-len(got), 200*time.Millisecond)
		require.NoError(t, err)
		got = append(got, d...)
	}
	if len(got) < n {
		t.Fatalf("member %s handed out %d events in %s, want %d", m.ID(), len(got), within, n)
	}
	return got
}

// waitBuffered waits until m has read at least n events of its
// partitions. A test that needs n deliveries out at once of one
// partition calls it first: Next hands out what is buffered, and holds
// the partition while those are out.
func waitBuffered(t *testing.T, m *running, n int) {
	t.Helper()
	clustertest.Eventually(t, 30*time.Second, func() error {
		m.pull.mu.Lock()
		got := m.pull.buffered
		m.pull.mu.Unlock()
		if got < n {
			return fmt.Errorf("member %s buffered %d events, want %d", m.ID(), got, n)
		}
		return nil
	})
}

// positionOf reads partition p's committed position.
func (e *groupEnv) positionOf(t *testing.T, group string, p int) position {
	t.Helper()
	en, err := e.store.Get(clustertest.Context(t, 10*time.Second), posKey(group, p))
	require.NoError(t, err)
	if !en.Found {
		return position{}
	}
	pos, err := decode[position](posKey(group, p), en.Value)
	require.NoError(t, err)
	return pos
}

// TestSettleNakRedeliversOnlyThatEvent stores 10 events of one topic in
// envelopes, naks one and acknowledges the others: only the nak'd one is
// handed out again, as attempt 2, and the partition's position passes
// the envelopes once it is acknowledged too. Settling is batched: the
// position key is written once per tick, not once per ack.
func TestSettleNakRedeliversOnlyThatEvent(t *testing.T) {
	e := newGroupEnv(t)
	e.create(t, GroupConfig{Name: "nak", Partitions: 4})
	e.publishEnvelopes(t, []string{"k"}, 0, 10)
	m := e.startPull(t, "nak", "a", Options{Partitions: 4})

	first := pull(t, m, 10, 30*time.Second)
	p := first[0].Partition
	var enveloped bool
	for i, d := range first {
		if got := string(d.Event.Data); got != strconv.Itoa(i) {
			t.Fatalf("delivery %d holds %q, want %d: not in stream order", i, got, i)
		}
		if d.Attempt != 1 {
			t.Errorf("delivery %d: attempt %d, want 1", i, d.Attempt)
		}
		enveloped = enveloped || d.Event.Pos.Count > 1
	}
	require.True(t, enveloped, "no event came from an envelope")
	require.NoError(t, m.Nak(first[4].Token(), 0))
	for i, d := range first {
		if i != 4 {
			require.NoError(t, m.Ack(d.Token()))
		}
	}
	again := pull(t, m, 1, 10*time.Second)
	if got := string(again[0].Event.Data); got != "4" || again[0].Attempt != 2 {
		t.Errorf("redelivered %q as attempt %d, want only event 4 as attempt 2", got, again[0].Attempt)
	}
	if more, err := m.Next(clustertest.Context(t, 5*time.Second), 10, 300*time.Millisecond); err != nil || len(more) != 0 {
		t.Errorf("after the redelivery Next gave %d more events (err %v), want none", len(more), err)
	}
	// The position holds at the nak'd event until it is settled.
	want := after(first[9].Event.Pos)
	held := cursorOf(first[4].Event.Pos)
	clustertest.Eventually(t, 10*time.Second, func() error {
		if got := e.positionOf(t, "nak", p).at(); got != held {
			return fmt.Errorf("position %v, want %v (the nak'd event)", got, held)
		}
		return nil
	})
	require.NoError(t, m.Ack(again[0].Token()))
	require.NoError(t, m.Ack(again[0].Token()), "acknowledging twice")
	clustertest.Eventually(t, 10*time.Second, func() error {
		if got := e.positionOf(t, "nak", p).at(); got.less(want) {
			return fmt.Errorf("position %v, want at least %v", got, want)
		}
		return nil
	})
	if err := m.Nak(again[0].Token(), 0); !errors.Is(err, ErrSettled) {
		t.Errorf("nak of a settled event: %v, want ErrSettled", err)
	}
}

// TestSettleAckWaitAndInProgress: an event left unsettled past the ack
// wait is handed out again; one kept in progress is not, however long it
// takes.
func TestSettleAckWaitAndInProgress(t *testing.T) {
	e := newGroupEnv(t)
	e.create(t, GroupConfig{Name: "wait", Partitions: 1, AckWait: 700 * time.Millisecond})
	e.publishPlain(t, []string{"w"}, 0, 1)
	m := e.startPull(t, "wait", "a", Options{Partitions: 1})

	d := pull(t, m, 1, 30*time.Second)[0]
	start := time.Now()
	again := pull(t, m, 1, 10*time.Second)[0]
	if waited := time.Since(start); again.Event.Pos != d.Event.Pos || again.Attempt != 2 || waited < 600*time.Millisecond {
		t.Errorf("redelivered %v as attempt %d after %s, want %v as attempt 2 after the 700ms ack wait", again.Event.Pos, again.Attempt, waited, d.Event.Pos)
	}
	// In progress every 200ms for three ack waits: never handed out.
	ctx := clustertest.Context(t, 10*time.Second)
	for end := time.Now().Add(2100 * time.Millisecond); time.Now().Before(end); {
		require.NoError(t, m.InProgress(again.Token()))
		got, err := m.Next(ctx, 1, 200*time.Millisecond)
		require.NoError(t, err)
		if len(got) != 0 {
			t.Fatalf("an event in progress was handed out again (attempt %d)", got[0].Attempt)
		}
	}
	require.NoError(t, m.Ack(again.Token()))
	if got, err := m.Next(ctx, 1, time.Second); err != nil || len(got) != 0 {
		t.Errorf("after the ack Next gave %d events (err %v), want none", len(got), err)
	}
}

// TestSettleDeadLettersAndReplay: an event nak'd up to max deliveries and
// one terminated go to DEAD with their reason, attempts, group and
// original subject and position; replaying puts them back for the group
// alone (another group on the same subjects does not see them again) and
// empties DEAD.
func TestSettleDeadLettersAndReplay(t *testing.T) {
	e := newGroupEnv(t)
	e.create(t, GroupConfig{Name: "dl", Partitions: 2, MaxDeliver: 2})
	e.create(t, GroupConfig{Name: "other", Partitions: 2})
	e.publishPlain(t, []string{"d"}, 0, 3)
	m := e.startPull(t, "dl", "a", Options{Partitions: 2})
	o := e.startPull(t, "other", "b", Options{Partitions: 2})

	waitBuffered(t, o, 3)
	for _, d := range pull(t, o, 3, 30*time.Second) {
		require.NoError(t, o.Ack(d.Token()))
	}
	waitBuffered(t, m, 3)
	first := pull(t, m, 3, 30*time.Second)
	require.NoError(t, m.Ack(first[0].Token()))
	require.NoError(t, m.Term(clustertest.Context(t, 10*time.Second), first[2].Token(), "cannot parse"))
	require.NoError(t, m.Nak(first[1].Token(), 0))
	second := pull(t, m, 1, 10*time.Second)[0]
	require.Equal(t, "1", string(second.Event.Data))
	require.NoError(t, m.Nak(second.Token(), 0)) // the second delivery of two: DEAD

	ctx := clustertest.Context(t, 30*time.Second)
	dead := func() []jetstream.Msg {
		t.Helper()
		c, err := e.js.OrderedConsumer(ctx, streams.Dead, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"dead.dl.>"}})
		require.NoError(t, err)
		var out []jetstream.Msg
		for len(out) < 2 {
			msg, err := clustertest.Next(c, 10*time.Second)
			require.NoError(t, err, "dead letters after %d", len(out))
			out = append(out, msg)
		}
		return out
	}
	letters := dead()
	require.Len(t, letters, 2)
	want := map[string]struct{ reason, attempts, pos string }{
		"2": {"term: cannot parse", "1", strconv.FormatUint(first[2].Event.Pos.Seq, 10)},
		"1": {"max deliveries (2): nak", "2", strconv.FormatUint(first[1].Event.Pos.Seq, 10)},
	}
	for _, l := range letters {
		h := l.Headers()
		w, ok := want[string(l.Data())]
		if !ok {
			t.Errorf("unexpected dead letter %q", l.Data())
			continue
		}
		got := []string{l.Subject(), h.Get(streams.DeadReasonHeader), h.Get(streams.DeadAttemptsHeader), h.Get(streams.DeadGroupHeader), h.Get(streams.DeadSubjectHeader), h.Get(streams.DeadPositionHeader)}
		exp := []string{"dead.dl.d", w.reason, w.attempts, "dl", "events.d", w.pos}
		if !slices.Equal(got, exp) {
			t.Errorf("dead letter %q: subject, reason, attempts, group, subject, position = %q, want %q", l.Data(), got, exp)
		}
	}

	n, err := ReplayDead(ctx, e.js, "dl")
	require.NoError(t, err)
	require.Equal(t, 2, n)
	// One partition: each replayed event is acknowledged before the next
	// can be handed out, however the two were read.
	var vals []string
	for range 2 {
		d := pull(t, m, 1, 30*time.Second)[0]
		vals = append(vals, string(d.Event.Data))
		if d.Attempt != 1 || d.Event.Header.Get(streams.ReplayGroupHeader) != "dl" {
			t.Errorf("replayed event %q: attempt %d, replay header %q; want attempt 1 for group dl", d.Event.Data, d.Attempt, d.Event.Header.Get(streams.ReplayGroupHeader))
		}
		require.NoError(t, m.Ack(d.Token()))
	}
	slices.Sort(vals)
	if !slices.Equal(vals, []string{"1", "2"}) {
		t.Errorf("replayed %q, want 1 and 2", vals)
	}
	if got, err := o.Next(ctx, 10, time.Second); err != nil || len(got) != 0 {
		t.Errorf("the other group was handed %d replayed events (err %v), want none", len(got), err)
	}
	s, err := e.js.Stream(ctx, streams.Dead)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	if info.State.Msgs != 0 {
		t.Errorf("DEAD holds %d letters after the replay, want 0", info.State.Msgs)
	}
	if n, err := ReplayDead(ctx, e.js, "dl"); err != nil || n != 0 {
		t.Errorf("a second replay replayed %d (err %v), want 0", n, err)
	}
}

// TestSettleRefusesForeignTokens: a token of another group, of another
// member, of an old epoch, or not a token at all settles nothing.
func TestSettleRefusesForeignTokens(t *testing.T) {
	e := newGroupEnv(t)
	e.create(t, GroupConfig{Name: "tok", Partitions: 1, AckWait: time.Second})
	e.publishPlain(t, []string{"t"}, 0, 1)
	m := e.startPull(t, "tok", "a", Options{Partitions: 1})
	d := pull(t, m, 1, 30*time.Second)[0]
	tok, err := ParseToken(d.Token())
	require.NoError(t, err)

	forged := func(f func(*Token)) string { c := tok; f(&c); return c.String() }
	for _, tc := range []struct {
		name  string
		token string
		want  error
	}{
		{"garbage", "not a token", ErrBadToken},
		{"empty", "", ErrBadToken},
		{"another group", forged(func(c *Token) { c.Group = "elsewhere" }), ErrWrongGroup},
		{"another member", forged(func(c *Token) { c.Member = "b" }), ErrOtherMember},
		{"old epoch", forged(func(c *Token) { c.Epoch-- }), ErrStale},
		{"another partition", forged(func(c *Token) { c.Partition = 3 }), ErrStale},
		{"never handed out", forged(func(c *Token) { c.Seq += 100 }), ErrBadToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := m.Ack(tc.token); !errors.Is(err, tc.want) {
				t.Errorf("ack: %v, want %v", err, tc.want)
			}
		})
	}
	// None of them settled the event: it comes back after the ack wait.
	again := pull(t, m, 1, 10*time.Second)[0]
	require.Equal(t, d.Event.Pos, again.Event.Pos)

	// A member that took the partition over refuses the old owner's token.
	m.stop(t)
	n := e.startPull(t, "tok", "a", Options{Partitions: 1})
	third := pull(t, n, 1, 30*time.Second)[0]
	if err := n.Ack(again.Token()); !errors.Is(err, ErrStale) {
		t.Errorf("ack with the previous owner's epoch: %v, want ErrStale", err)
	}
	// AckDelivery refuses the same without a token.
	for _, tc := range []struct {
		name string
		d    Delivery
		want error
	}{
		{"not from Next", Delivery{Event: third.Event, Partition: third.Partition}, ErrBadToken},
		{"the previous owner's", again, ErrStale},
		{"another member's", func() Delivery { c := third; c.tok.Member = "b"; return c }(), ErrOtherMember},
		{"another group's", func() Delivery { c := third; c.tok.Group = "elsewhere"; return c }(), ErrWrongGroup},
	} {
		if err := n.AckDelivery(tc.d); !errors.Is(err, tc.want) {
			t.Errorf("AckDelivery of %s delivery: %v, want %v", tc.name, err, tc.want)
		}
	}
	require.NoError(t, n.AckDelivery(third))
	require.NoError(t, n.AckDelivery(third), "acknowledging twice succeeds")
	if err := n.Nak(third.Token(), 0); !errors.Is(err, ErrSettled) {
		t.Errorf("nak after AckDelivery: %v, want ErrSettled", err)
	}
	// Settled: the position moves past it.
	clustertest.Eventually(t, 10*time.Second, func() error {
		if at := e.positionOf(t, "tok", 0).at(); at.less(after(third.Event.Pos)) {
			return fmt.Errorf("position at %v, want past %v", at, third.Event.Pos)
		}
		return nil
	})
}

// TestSettleOrderPerKeyAcrossRebalance: two members hand out 20 topics'
// events to consumers that acknowledge them; one member stops and another
// joins midway. For every topic the events handed out for the first time
// come in stream order, and every event is handed out.
func TestSettleOrderPerKeyAcrossRebalance(t *testing.T) {
	e := newGroupEnv(t)
	e.create(t, GroupConfig{Name: "ord", Partitions: 8})
	var topics []string
	for i := range 20 {
		topics = append(topics, fmt.Sprintf("o%d", i))
	}
	const perTopic = 60
	e.publishPlain(t, topics, 0, perTopic/2)

	var mu sync.Mutex
	firsts := map[string][]int{} // topic -> values in order of first delivery
	seen := map[string]map[int]bool{}
	consume := func(m *running, stop <-chan struct{}) <-chan struct{} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				ds, err := m.Next(context.Background(), 50, 100*time.Millisecond)
				if err != nil {
					return
				}
				mu.Lock()
				for _, d := range ds {
					tp := strings.TrimPrefix(d.Event.Subject, streams.EventsPrefix)
					v, _ := strconv.Atoi(string(d.Event.Data))
					if seen[tp] == nil {
						seen[tp] = map[int]bool{}
					}
					if !seen[tp][v] {
						seen[tp][v] = true
						firsts[tp] = append(firsts[tp], v)
					}
				}
				mu.Unlock()
				for _, d := range ds {
					_ = m.Ack(d.Token()) // stale after a rebalance: handed out again elsewhere
				}
			}
		}()
		return done
	}
	total := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, s := range seen {
			n += len(s)
		}
		return n
	}
	a := e.startPull(t, "ord", "a", Options{Partitions: 8})
	b := e.startPull(t, "ord", "b", Options{Partitions: 8})
	stopA, stopB, stopC := make(chan struct{}), make(chan struct{}), make(chan struct{})
	doneA, doneB := consume(a, stopA), consume(b, stopB)
	clustertest.Eventually(t, 30*time.Second, func() error {
		if n := total(); n < 200 {
			return fmt.Errorf("%d events handed out", n)
		}
		return nil
	})
	close(stopA)
	<-doneA
	a.stop(t)
	c := e.startPull(t, "ord", "c", Options{Partitions: 8})
	doneC := consume(c, stopC)
	e.publishPlain(t, topics, perTopic/2, perTopic)
	clustertest.Eventually(t, 60*time.Second, func() error {
		if n := total(); n < perTopic*len(topics) {
			return fmt.Errorf("%d of %d events handed out", n, perTopic*len(topics))
		}
		return nil
	})
	close(stopB)
	close(stopC)
	<-doneB
	<-doneC
	mu.Lock()
	defer mu.Unlock()
	for _, tp := range topics {
		if !slices.IsSorted(firsts[tp]) || len(firsts[tp]) != perTopic {
			t.Errorf("topic %s: first deliveries %v, want 0..%d in order", tp, firsts[tp], perTopic-1)
		}
	}
}
