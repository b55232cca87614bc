package replicator

import (
	"bytes"
	"crypto/rand"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/platform/platform/streams"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

func encodeEnvelope(entries []entry) []byte {
	b := appendEnvelopeHeader(nil, len(entries))
	for _, e := range entries {
		b = appendEntry(b, e.data, e.header)
	}
	return b
}

func TestEnvelopeRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 70_000) // bin32 length
	mid := bytes.Repeat([]byte("y"), 300)    // bin16 length
	many := make([]entry, 70_000)            // array32 length
	for i := range many {
		many[i] = entry{data: []byte{byte(i)}}
	}
	for _, tc := range []struct {
		name    string
		entries []entry
	}{
		{"empty envelope", nil},
		{"one event", []entry{{data: []byte(`{"id":1}`)}}},
		{"empty payload", []entry{{data: []byte{}}, {data: []byte("a")}}},
		{"headers", []entry{{data: []byte("a"), header: nats.Header{"Content-Type": {"application/json"}, "X-Multi": {"1", "2"}}}, {data: []byte("b")}}},
		{"length classes", []entry{{data: mid}, {data: big}, {data: []byte("s")}}},
		{"many entries", many},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := encodeEnvelope(tc.entries)
			got, err := decodeEnvelope(b)
			require.NoError(t, err)
			require.Len(t, got, len(tc.entries))
			for i := range tc.entries {
				require.Equal(t, tc.entries[i].data, got[i].data, "entry %d data", i)
				if len(tc.entries[i].header) > 0 {
					require.Equal(t, tc.entries[i].header, got[i].header, "entry %d header", i)
				}
			}
			// It is real msgpack: a generic decoder reads it too.
			var generic []any
			require.NoError(t, msgpack.Unmarshal(b, &generic))
			require.Len(t, generic, len(tc.entries))
		})
	}
}

func TestEncodeEnvelope(t *testing.T) {
	payloads := [][]byte{[]byte(`{"id":1}`), {}, bytes.Repeat([]byte("p"), 300)}
	entries := make([]entry, len(payloads))
	for i, d := range payloads {
		entries[i] = entry{data: d}
	}
	b := EncodeEnvelope(payloads)
	require.Equal(t, encodeEnvelope(entries), b, "the bytes the Publisher stores")
	h := nats.Header{streams.EnvelopeHeader: {envelopeVersion}, streams.EnvelopeCountHeader: {"3"}}
	evs, err := Decode("events.x", 7, time.Time{}, h, b)
	require.NoError(t, err)
	require.Len(t, evs, len(payloads))
	for i, ev := range evs {
		require.Equal(t, payloads[i], ev.Data, "event %d", i)
	}
}

func TestEnvelopeRejectsMalformed(t *testing.T) {
	good := encodeEnvelope([]entry{{data: []byte("hello")}, {data: []byte("x"), header: nats.Header{"A": {"b"}}}})
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"not an array", []byte{0xc4, 0x01, 'a'}},
		{"truncated", good[:len(good)-1]},
		{"trailing bytes", append(append([]byte{}, good...), 0x00)},
		{"count beyond the data", []byte{0xdd, 0xff, 0xff, 0xff, 0xff, 0xc4, 0x00}},
		{"length beyond the data", []byte{0x91, 0xc6, 0x7f, 0xff, 0xff, 0xff, 'a'}},
		{"wrong entry type", []byte{0x91, 0x01}},
		{"three-element entry", []byte{0x91, 0x93, 0xc4, 0x00, 0x80, 0x80}},
		{"header count beyond the data", []byte{0x91, 0x92, 0xc4, 0x00, 0xdf, 0x7f, 0xff, 0xff, 0xff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeEnvelope(tc.b)
			require.ErrorIs(t, err, errEnvelope)
		})
	}
}

// FuzzDecodeEnvelope checks that no input makes the decoder panic or
// over-allocate, and that what it accepts re-encodes to the same events.
// `go test` runs the seed corpus; `go test -fuzz FuzzDecodeEnvelope` explores.
func FuzzDecodeEnvelope(f *testing.F) {
	f.Add(encodeEnvelope(nil))
	f.Add(encodeEnvelope([]entry{{data: []byte(`{"id":1}`)}, {data: []byte(`{"id":2}`)}}))
	f.Add(encodeEnvelope([]entry{{data: []byte("a"), header: nats.Header{"K": {"v1", "v2"}}}}))
	f.Add(encodeEnvelope([]entry{{data: bytes.Repeat([]byte("z"), 300)}}))
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x91, 0x92, 0xc4, 0x00, 0xdf, 0x7f, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := decodeEnvelope(b)
		if err != nil {
			return
		}
		again, err := decodeEnvelope(encodeEnvelope(entries))
		if err != nil {
			t.Fatalf("re-encoded envelope does not decode: %v", err)
		}
		if len(again) != len(entries) {
			t.Fatalf("re-encoded envelope has %d entries, want %d", len(again), len(entries))
		}
		for i := range entries {
			if !bytes.Equal(again[i].data, entries[i].data) {
				t.Fatalf("entry %d changed", i)
			}
		}
	})
}

func TestCompression(t *testing.T) {
	text := bytes.Repeat([]byte(`{"user":"alice","action":"login"},`), 100)
	noise := make([]byte, 4096)
	_, _ = rand.Read(noise)
	for _, codec := range []Compression{S2, Zstd, Gzip} {
		t.Run(codec.String(), func(t *testing.T) {
			c := codec.Compress(text)
			require.NotNil(t, c, "compressible text is compressed")
			require.Less(t, len(c), len(text))
			d, err := decompress(codec.String(), c)
			require.NoError(t, err)
			require.Equal(t, text, d)
			d, err = codec.Decompress(c)
			require.NoError(t, err)
			require.Equal(t, text, d, "Decompress undoes Compress")
			require.Nil(t, codec.Compress(noise), "incompressible data is left as is")
			_, err = decompress(codec.String(), []byte("not compressed at all"))
			require.Error(t, err)
		})
	}
	d, err := NoCompression.Decompress(text)
	require.NoError(t, err)
	require.Equal(t, text, d, "NoCompression leaves data as is")
	_, err = decompress("brotli", text)
	require.ErrorIs(t, err, ErrUnknownEncoding)
	for _, s := range []string{"s2", "ZSTD", "gzip", "none"} {
		_, err := ParseCompression(s)
		require.NoError(t, err, s)
	}
	_, err = ParseCompression("lz4")
	require.ErrorIs(t, err, ErrUnknownEncoding)
}
