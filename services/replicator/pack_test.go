package replicator

import (
	"bytes"
	"crypto/rand"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/platform/platform/streams"
	"github.com/stretchr/testify/require"
)

// countObserver counts observations.
type countObserver struct{ n int }

func (c *countObserver) Observe(float64) { c.n++ }

func TestPackCheck(t *testing.T) {
	const limit = 100
	for _, tc := range []struct {
		name     string
		msg      Message
		wantSize int
		wantID   string
		wantErr  error
	}{
		{name: "payload only", msg: Message{Subject: "events.a", Data: []byte("hello")}, wantSize: 5},
		{name: "headers count", msg: Message{Subject: "events.a", Data: []byte("hello"), Header: nats.Header{"A": {"bc"}}},
			wantSize: 5 + (1 + 4) + (2 + 2)},
		{name: "Nats-Msg-Id header becomes the id", msg: Message{Subject: "events.a", Header: nats.Header{jetstream.MsgIDHeader: {"h1"}}},
			wantSize: len(jetstream.MsgIDHeader) + 4 + 2 + 2, wantID: "h1"},
		{name: "explicit id wins over the header", msg: Message{Subject: "events.a", ID: "mine", Header: nats.Header{jetstream.MsgIDHeader: {"h1"}}},
			wantSize: len(jetstream.MsgIDHeader) + 4 + 2 + 2, wantID: "mine"},
		{name: "Content-Encoding is reserved", msg: Message{Subject: "events.a", Header: nats.Header{"Content-Encoding": {"gzip"}}},
			wantErr: ErrReservedHeader},
		{name: "envelope headers are reserved in any case", msg: Message{Subject: "events.a", Header: nats.Header{"platform-envelope-count": {"2"}}},
			wantErr: ErrReservedHeader},
		{name: "at the size limit", msg: Message{Subject: "events.a", ID: "id", Data: make([]byte, limit-len("events.a")-len("id"))},
			wantSize: limit - len("events.a") - len("id"), wantID: "id"},
		{name: "over the size limit", msg: Message{Subject: "events.a", ID: "id", Data: make([]byte, limit-len("events.a")-len("id")+1)},
			wantErr: ErrTooLarge},
		{name: "headers count toward the limit", msg: Message{Subject: "events.a", Data: make([]byte, limit-len("events.a")-4), Header: nats.Header{"X": {""}}},
			wantErr: ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := &packer{maxEvent: limit}
			m := tc.msg
			size, err := k.check(&m)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantSize, size, "size counted against the buffer")
			require.Equal(t, tc.wantID, m.ID)
		})
	}
}

// wantUnit is one stream message pack should make.
type wantUnit struct {
	subject  string
	msgID    string   // its Nats-Msg-Id
	eventIDs []string // the ids of its events, in order
	encoding string   // its Content-Encoding
}

func TestPack(t *testing.T) {
	text := func(n int) []byte { return []byte(strings.Repeat("abcdefgh", n/8+1)[:n]) }
	noise := make([]byte, 512)
	_, _ = rand.Read(noise)
	msg := func(subject string, data []byte) Message { return Message{Subject: subject, Data: data} }
	for _, tc := range []struct {
		name  string
		k     packer
		msgs  []Message
		units []wantUnit
	}{
		{
			name: "one message per event, ids in order",
			k:    packer{compression: NoCompression},
			msgs: []Message{msg("events.a", text(8)), msg("events.a", text(8)), msg("events.b", text(8))},
			units: []wantUnit{
				{"events.a", "p.1", []string{"p.1"}, ""},
				{"events.a", "p.2", []string{"p.2"}, ""},
				{"events.b", "p.3", []string{"p.3"}, ""},
			},
		},
		{
			name: "an explicit id is kept",
			k:    packer{compression: NoCompression},
			msgs: []Message{{Subject: "events.a", Data: text(8), ID: "mine"}, msg("events.a", text(8))},
			units: []wantUnit{
				{"events.a", "mine", []string{"mine"}, ""},
				{"events.a", "p.2", []string{"p.2"}, ""},
			},
		},
		{
			name: "envelopes group by subject, a lone event stays alone",
			k:    packer{envelope: true, compression: NoCompression},
			msgs: []Message{msg("events.a", text(8)), msg("events.b", text(8)), msg("events.a", text(9)), msg("events.c", text(8)), msg("events.a", text(10))},
			units: []wantUnit{
				{"events.a", "p.1", []string{"p.1:0", "p.1:1", "p.1:2"}, ""},
				{"events.b", "p.2", []string{"p.2"}, ""},
				{"events.c", "p.3", []string{"p.3"}, ""},
			},
		},
		{
			name: "events with an id or a Nats- header are not enveloped",
			k:    packer{envelope: true, compression: NoCompression},
			msgs: []Message{
				{Subject: "events.a", Data: text(8), ID: "mine"},
				msg("events.a", text(8)),
				{Subject: "events.a", Data: text(8), Header: nats.Header{"Nats-Expected-Stream": {"EVENTS"}}},
				msg("events.a", text(8)),
			},
			units: []wantUnit{
				{"events.a", "mine", []string{"mine"}, ""},
				{"events.a", "p.2", []string{"p.2"}, ""},
				{"events.a", "p.3", []string{"p.3:0", "p.3:1"}, ""},
			},
		},
		{
			name: "compressed from the threshold on",
			k:    packer{compression: S2, compressAbove: 64},
			msgs: []Message{msg("events.a", text(63)), msg("events.a", text(64)), msg("events.a", []byte{})},
			units: []wantUnit{
				{"events.a", "p.1", []string{"p.1"}, ""},
				{"events.a", "p.2", []string{"p.2"}, "s2"},
				{"events.a", "p.3", []string{"p.3"}, ""},
			},
		},
		{
			name: "incompressible payloads are stored as they are",
			k:    packer{compression: Zstd, compressAbove: 64},
			msgs: []Message{msg("events.a", noise)},
			units: []wantUnit{
				{"events.a", "p.1", []string{"p.1"}, ""},
			},
		},
		{
			name: "an envelope is compressed as a whole",
			k:    packer{envelope: true, compression: Gzip, compressAbove: 64},
			msgs: []Message{msg("events.a", text(200)), msg("events.a", text(200)), msg("events.b", text(10)), msg("events.b", text(10))},
			units: []wantUnit{
				{"events.a", "p.1", []string{"p.1:0", "p.1:1"}, "gzip"},
				{"events.b", "p.2", []string{"p.2:0", "p.2:1"}, ""},
			},
		},
		{
			name: "no compression",
			k:    packer{compression: NoCompression, compressAbove: 0},
			msgs: []Message{msg("events.a", text(4096))},
			units: []wantUnit{
				{"events.a", "p.1", []string{"p.1"}, ""},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ratios := &countObserver{}
			k := tc.k
			k.idPrefix, k.replyPrefix, k.maxEvent, k.ratios = "p.", "r.", 1<<20, ratios
			events := make([]*pending, len(tc.msgs))
			for i, m := range tc.msgs {
				h := nats.Header{"X-I": {strconv.Itoa(i)}}
				for name, v := range m.Header {
					h[name] = v
				}
				m.Header = h
				_, err := k.check(&m)
				require.NoError(t, err)
				events[i] = &pending{msg: m}
			}
			units := k.pack(events)
			require.Len(t, units, len(tc.units))
			compressed := 0
			for i, u := range units {
				want := tc.units[i]
				require.Equal(t, want.subject, u.msg.Subject, "unit %d subject", i)
				require.Equal(t, want.msgID, u.msg.Header.Get(jetstream.MsgIDHeader), "unit %d message id", i)
				require.Equal(t, uint64(i+1), u.key, "unit %d key", i)
				require.Equal(t, "r."+strconv.FormatUint(u.key, 36), u.msg.Reply, "unit %d reply names its key", i)
				require.Equal(t, want.encoding, u.msg.Header.Get(streams.ContentEncodingHeader), "unit %d encoding", i)
				require.Equal(t, len(want.eventIDs) > 1, u.envelope, "unit %d envelope", i)
				if want.encoding != "" {
					compressed++
				}
				// The stored message reads back as its events, with their
				// ids, payloads and own headers.
				evs, err := Decode(u.msg.Subject, 1, time.Time{}, u.msg.Header, u.msg.Data)
				require.NoError(t, err, "unit %d decodes", i)
				require.Len(t, evs, len(want.eventIDs), "unit %d events", i)
				for j, ev := range evs {
					e := u.events[j]
					require.Equal(t, want.eventIDs[j], e.msg.ID, "unit %d event %d id", i, j)
					require.Equal(t, e.msg.ID, ev.ID, "unit %d event %d stored id", i, j)
					require.True(t, bytes.Equal(e.msg.Data, ev.Data), "unit %d event %d payload", i, j)
					require.Equal(t, e.msg.Header.Get("X-I"), ev.Header.Get("X-I"), "unit %d event %d header", i, j)
				}
			}
			require.Equal(t, compressed, ratios.n, "one ratio per compressed message")
		})
	}
}

// BenchmarkPackEnvelope packs a full ingest batch of one topic: 128-byte
// JSON-like events up to 1 MiB, S2-compressed, as under a burst.
func BenchmarkPackEnvelope(b *testing.B) {
	data := []byte(`{"id":1000001,"type":"order.created","user":"u01234","city":"Berlin","amount":12.34,"note":"abcdefghij klmnopqrstuv wxyz"}`)
	k := &packer{envelope: true, compression: S2, compressAbove: DefaultCompressAbove, maxEvent: 1 << 20,
		idPrefix: "p.", replyPrefix: "r.", ratios: &countObserver{}}
	n := DefaultMaxBatchBytes / entrySize(data, nil)
	events := make([]*pending, n)
	b.ReportAllocs()
	for b.Loop() {
		for i := range events {
			events[i] = &pending{msg: Message{Subject: "events.bench", Data: data}, level: Async}
		}
		if units := k.pack(events); len(units) != 1 {
			b.Fatalf("%d units, want 1", len(units))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
}
