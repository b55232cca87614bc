package consume

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/streams"
)

// TestPickerSkipsByHeaders stores every kind of message in EVENTS and
// lets two pickers, owning the even and the odd partitions of 8, take
// them: each gets exactly its partitions' events, decoding a message
// only when its headers cannot rule it out: the Publisher's envelopes
// (one topic; one of mixed keys), single events with a Platform-Key,
// envelopes stored before summaries existed and envelopes with a
// malformed summary (decoded by both). A summary that lies is caught by
// the member that decodes it; the member it hid its event from skips it.
func TestPickerSkipsByHeaders(t *testing.T) {
	_, _, js := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, time.Minute)
	const parts = 8

	// The Publisher's envelopes: topics of their own, and one mixing
	// events keyed by Platform-Key with events keyed by their topic.
	var published []replicator.Message
	for i := range 40 {
		published = append(published, replicator.Message{Subject: fmt.Sprintf("events.t%d", i%8), Data: []byte(strconv.Itoa(i))})
		h := nats.Header{}
		if i%3 != 0 {
			h.Set(streams.KeyHeader, fmt.Sprintf("k%d", i%7))
		}
		published = append(published, replicator.Message{Subject: "events.mixed", Data: []byte(strconv.Itoa(i)), Header: h})
	}
	// Most must be in envelopes for the test to mean anything.
	enveloped := publishInEnvelopes(t, js, 1000, published)
	require.Greater(t, enveloped, len(published)/2, "events stored in envelopes")

	// Single events with a Platform-Key.
	for i := range 6 {
		m := nats.NewMsg("events.single")
		m.Header.Set(streams.KeyHeader, fmt.Sprintf("s%d", i))
		m.Data = []byte(strconv.Itoa(i))
		_, err := js.PublishMsg(ctx, m)
		require.NoError(t, err)
	}
	// Envelopes as stored before summaries, and with a malformed one.
	envelope := func(subject, summary string) {
		m := nats.NewMsg(subject)
		m.Header.Set(streams.EnvelopeHeader, "1")
		m.Header.Set(streams.EnvelopeCountHeader, "3")
		if summary != "" {
			m.Header.Set(streams.EnvelopeKeysHeader, summary)
		}
		m.Data = replicator.EncodeEnvelope([][]byte{[]byte("1"), []byte("2"), []byte("3")})
		_, err := js.PublishMsg(ctx, m)
		require.NoError(t, err)
	}
	envelope("events.old", "")
	envelope("events.bent", "not-a-summary")
	// A summary naming a key of the other parity than the topic's.
	claim := ""
	for i := 0; claim == ""; i++ {
		if k := fmt.Sprintf("claim%d", i); Partition(k, parts)%2 != Partition("lie", parts)%2 {
			claim = k
		}
	}
	envelope("events.lie", fmt.Sprintf("%08x", replicator.KeyHash(claim)))

	// Read back every stored message.
	cons, err := js.OrderedConsumer(ctx, streams.Events, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	info, err := js.Stream(ctx, streams.Events)
	require.NoError(t, err)
	var msgs []jetstream.Msg
	for uint64(len(msgs)) < info.CachedInfo().State.Msgs {
		m, err := clustertest.Next(cons, 5*time.Second)
		require.NoError(t, err)
		msgs = append(msgs, m)
	}

	type warning struct{ msg, summary string }
	newPicker := func(parity int) (*picker, *[]warning) {
		var mu sync.Mutex
		var warns []warning
		pk := &picker{group: "g", partitions: parts, own: func(p int) bool { return p%2 == parity }}
		pk.warn = func(msg string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			w := warning{msg: msg}
			for i := 0; i+1 < len(args); i += 2 {
				if args[i] == "summary" {
					w.summary, _ = args[i+1].(string)
				}
			}
			warns = append(warns, w)
		}
		return pk, &warns
	}
	even, evenWarns := newPicker(0)
	odd, oddWarns := newPicker(1)

	got := map[cursor]int{} // event -> pickers that took it
	for _, m := range msgs {
		md, err := m.Metadata()
		require.NoError(t, err)
		all, err := replicator.Decode(m.Subject(), md.Sequence.Stream, md.Timestamp, m.Headers(), m.Data())
		require.NoError(t, err)
		hashes, summarised := replicator.EnvelopeKeys(m.Headers(), nil)
		single := m.Headers().Get(streams.EnvelopeHeader) == ""
		for parity, pk := range []*picker{even, odd} {
			decodedBefore := pk.decoded.Load()
			evs, ps := pk.pick(m, md)
			decoded := pk.decoded.Load() > decodedBefore
			// Decoded exactly when the headers do not rule the message out.
			mayHold := !summarised && !single
			if single {
				mayHold = Partition(Key(all[0]), parts)%2 == parity
			}
			for _, h := range hashes {
				mayHold = mayHold || int(h%parts)%2 == parity
			}
			if decoded != mayHold {
				t.Errorf("%s (seq %d, summary %q): picker of parity %d decoded it: %v, want %v",
					m.Subject(), md.Sequence.Stream, m.Headers().Get(streams.EnvelopeKeysHeader), parity, decoded, mayHold)
			}
			for i, ev := range evs {
				if want := Partition(Key(ev), parts); ps[i] != want || want%2 != parity {
					t.Errorf("event %s: picker of parity %d took it as partition %d, its partition is %d", ev.ID, parity, ps[i], want)
				}
				got[cursorOf(ev.Pos)]++
			}
		}
		if m.Subject() == "events.lie" {
			continue
		}
		for _, ev := range all {
			if n := got[cursorOf(ev.Pos)]; n != 1 {
				t.Errorf("event %s (%s, key %s) taken %d times, want once", ev.Pos, ev.Subject, Key(ev), n)
			}
		}
	}
	require.Positive(t, even.skipped.Load(), "the even picker skipped nothing")
	require.Positive(t, odd.skipped.Load(), "the odd picker skipped nothing")

	// The lie: its events belong to the topic's partition, whose owner
	// skipped the envelope; the owner of the claimed key decoded it and
	// reports the summary.
	lieOwner, claimOwner := evenWarns, oddWarns
	if Partition("lie", parts)%2 == 1 {
		lieOwner, claimOwner = oddWarns, evenWarns
	}
	require.Empty(t, *lieOwner, "the topic's owner skipped the lying envelope without decoding it")
	require.Len(t, *claimOwner, 1, "the claimed key's owner decoded the envelope and warned")
	require.Equal(t, fmt.Sprintf("%08x", replicator.KeyHash(claim)), (*claimOwner)[0].summary)
	for at, n := range got {
		if n != 1 {
			t.Errorf("event %d:%d taken %d times", at.seq, at.index, n)
		}
	}
}
