package replicator

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/streams"
)

func fnv32a(s string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(s))
	return h.Sum32()
}

func TestKeyHashIsFNV1a(t *testing.T) {
	for _, k := range []string{"", "a", "orders.eu", "c42", strings.Repeat("x", 300)} {
		if got, want := KeyHash(k), fnv32a(k); got != want {
			t.Errorf("KeyHash(%q) = %08x, want FNV-1a %08x", k, got, want)
		}
	}
}

// TestPackerStampsKeySummary packs envelopes and reads their summaries
// back as a consumer does: the hashes of the distinct keys, a topic's
// events counting as one key, and "*" (decode) past MaxEnvelopeKeys.
func TestPackerStampsKeySummary(t *testing.T) {
	keyed := func(k string) nats.Header { return nats.Header{streams.KeyHeader: {k}} }
	for _, tc := range []struct {
		name    string
		headers []nats.Header // one event each, all on events.orders.eu
		want    []string      // keys whose hashes the summary holds; nil: no usable summary
	}{
		{name: "no keys: the topic", headers: []nats.Header{nil, nil, nil}, want: []string{"orders.eu"}},
		{name: "mixed: keys and the topic", headers: []nats.Header{keyed("c1"), nil, keyed("c2"), keyed("c1")}, want: []string{"c1", "orders.eu", "c2"}},
		{name: "an empty key is the topic", headers: []nats.Header{keyed(""), keyed("c1")}, want: []string{"orders.eu", "c1"}},
		{name: "other headers do not count", headers: []nats.Header{{"Trace": {"x"}}, nil}, want: []string{"orders.eu"}},
		{name: "as many keys as allowed", headers: manyKeyed(MaxEnvelopeKeys), want: keysUpTo(MaxEnvelopeKeys)},
		{name: "one key too many", headers: manyKeyed(MaxEnvelopeKeys + 1), want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := &packer{envelope: true, compression: NoCompression, maxEvent: 1 << 20, idPrefix: "p.", replyPrefix: "r.", ratios: &countObserver{}}
			var evs []*pending
			for i, h := range tc.headers {
				evs = append(evs, &pending{msg: Message{Subject: "events.orders.eu", Data: []byte{byte(i)}, Header: h}})
			}
			units := k.pack(evs)
			require.Len(t, units, 1)
			h := units[0].msg.Header
			got, ok := EnvelopeKeys(h, nil)
			if tc.want == nil {
				require.False(t, ok, "summary %q must not be usable", h.Get(streams.EnvelopeKeysHeader))
				require.Equal(t, "*", h.Get(streams.EnvelopeKeysHeader))
				return
			}
			require.True(t, ok, "summary %q", h.Get(streams.EnvelopeKeysHeader))
			var want []uint32
			for _, key := range tc.want {
				want = append(want, KeyHash(key))
			}
			require.Equal(t, want, got)
			// Every decoded event's key is in the summary.
			decoded, err := Decode(units[0].msg.Subject, 1, time.Time{}, h, units[0].msg.Data)
			require.NoError(t, err)
			for _, ev := range decoded {
				require.True(t, slices.Contains(got, KeyHash(EventKey(ev.Subject, ev.Header))), "event %d's key missing", ev.Pos.Index)
			}
		})
	}
}

func manyKeyed(n int) []nats.Header {
	var out []nats.Header
	for _, k := range keysUpTo(n) {
		out = append(out, nats.Header{streams.KeyHeader: {k}})
	}
	return out
}

func keysUpTo(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("k%d", i))
	}
	return out
}

// TestEnvelopeKeysRefusesMalformed: the summary is untrusted input; all
// but the exact format means "decode".
func TestEnvelopeKeysRefusesMalformed(t *testing.T) {
	env := func(vs ...string) nats.Header {
		h := nats.Header{streams.EnvelopeHeader: {envelopeVersion}}
		if vs != nil {
			h[streams.EnvelopeKeysHeader] = vs
		}
		return h
	}
	long := strings.TrimSuffix(strings.Repeat("0000abcd,", MaxEnvelopeKeys+1), ",")
	for _, tc := range []struct {
		name string
		h    nats.Header
		want []uint32 // nil: refused
	}{
		{name: "one hash", h: env("0000abcd"), want: []uint32{0xabcd}},
		{name: "two hashes", h: env("0000abcd,ffffffff"), want: []uint32{0xabcd, 0xffffffff}},
		{name: "no summary (stored before summaries)", h: env()},
		{name: "not an envelope", h: nats.Header{streams.EnvelopeKeysHeader: {"0000abcd"}}},
		{name: "another envelope version", h: nats.Header{streams.EnvelopeHeader: {"2"}, streams.EnvelopeKeysHeader: {"0000abcd"}}},
		{name: "too many keys", h: env("*")},
		{name: "empty", h: env("")},
		{name: "two values", h: env("0000abcd", "0000abce")},
		{name: "upper case", h: env("0000ABCD")},
		{name: "short", h: env("abcd")},
		{name: "not hex", h: env("0000abcg")},
		{name: "sign", h: env("+000abcd")},
		{name: "other separator", h: env("0000abcd;0000abce")},
		{name: "trailing comma", h: env("0000abcd,")},
		{name: "spaces", h: env("0000abcd, 0000abce")},
		{name: "more than MaxEnvelopeKeys", h: env(long)},
		{name: "huge", h: env(strings.Repeat("f", 1<<20))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := EnvelopeKeys(tc.h, nil)
			if tc.want == nil {
				require.False(t, ok, "got %v", got)
				require.Empty(t, got)
				return
			}
			require.True(t, ok)
			require.Equal(t, tc.want, got)
		})
	}
}

// FuzzEnvelopeKeys feeds EnvelopeKeys arbitrary Platform-Envelope and
// Platform-Envelope-Keys values: what it accepts is exactly the summary
// keySummary writes for those hashes (so a summary has one spelling), at
// most MaxEnvelopeKeys of them, appended to the caller's buffer in
// place; what it refuses leaves the buffer as it was.
func FuzzEnvelopeKeys(f *testing.F) {
	f.Add(envelopeVersion, "0000abcd", false)
	f.Add(envelopeVersion, "0000abcd,ffffffff", false)
	f.Add(envelopeVersion, strings.TrimSuffix(strings.Repeat("0000abcd,", MaxEnvelopeKeys), ","), false)
	f.Add(envelopeVersion, strings.TrimSuffix(strings.Repeat("0000abcd,", MaxEnvelopeKeys+1), ","), false)
	for _, s := range []string{"*", "", "0000ABCD", "abcd", "0000abcg", "+000abcd", "0000abcd;0000abce", "0000abcd,", "0000abcd, 0000abce"} {
		f.Add(envelopeVersion, s, false)
	}
	f.Add(envelopeVersion, "0000abcd", true)
	f.Add("2", "0000abcd", false)
	f.Fuzz(func(t *testing.T, version, summary string, twoValues bool) {
		h := nats.Header{streams.EnvelopeHeader: {version}, streams.EnvelopeKeysHeader: {summary}}
		if twoValues {
			h.Add(streams.EnvelopeKeysHeader, summary)
		}
		buf := make([]uint32, 1, MaxEnvelopeKeys+1)
		buf[0] = 0xdeadbeef
		got, ok := EnvelopeKeys(h, buf)
		if len(got) == 0 || got[0] != 0xdeadbeef {
			t.Fatalf("the caller's buffer was overwritten: %v", got)
		}
		if !ok {
			if len(got) != 1 {
				t.Fatalf("refused summary %q appended %v", summary, got[1:])
			}
			return
		}
		hashes := got[1:]
		if version != envelopeVersion || twoValues {
			t.Fatalf("summary %q of envelope version %q (two values: %v) accepted", summary, version, twoValues)
		}
		if len(hashes) == 0 || len(hashes) > MaxEnvelopeKeys {
			t.Fatalf("summary %q gave %d hashes, want 1 to %d", summary, len(hashes), MaxEnvelopeKeys)
		}
		var again []byte
		for i, x := range hashes {
			if i > 0 {
				again = append(again, ',')
			}
			again = appendHex8(again, x)
		}
		if string(again) != summary {
			t.Fatalf("summary %q gave %08x, which is written %q", summary, hashes, again)
		}
		if &got[0] != &buf[0] {
			t.Fatalf("summary %q: hashes were not appended to the caller's buffer, which had room", summary)
		}
	})
}

// FuzzEventKey: an event's key is its Platform-Key header when set, else
// its topic, and KeyHash of it is FNV-1a whatever its bytes.
func FuzzEventKey(f *testing.F) {
	f.Add("events.orders", "")
	f.Add("events.orders.eu", "c42")
	f.Add("orders", "")
	f.Add("events.", "")
	f.Fuzz(func(t *testing.T, subject, key string) {
		h := nats.Header{}
		if key != "" {
			h.Set(streams.KeyHeader, key)
		}
		got := EventKey(subject, h)
		want := key
		if key == "" {
			want = strings.TrimPrefix(subject, streams.EventsPrefix)
		}
		if got != want {
			t.Fatalf("EventKey(%q, key %q) = %q, want %q", subject, key, got, want)
		}
		if KeyHash(got) != fnv32a(got) {
			t.Fatalf("KeyHash(%q) = %08x, want FNV-1a %08x", got, KeyHash(got), fnv32a(got))
		}
	})
}
