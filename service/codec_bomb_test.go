package service

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// document is shaped like the platform's request bodies: slices of
// structs, maps of strings and of numbers, bytes, times and free values.
type document struct {
	Name    string            `json:"name"`
	Items   []item            `json:"items"`
	Labels  map[string]string `json:"labels"`
	Reads   map[string]uint64 `json:"reads"`
	Keys    []string          `json:"keys"`
	Data    []byte            `json:"data"`
	At      time.Time         `json:"at"`
	Extra   any               `json:"extra"`
	Ptr     *item             `json:"ptr"`
	Numbers [4]int            `json:"numbers"`
}

type item struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	URL         string            `json:"url"`
}

// lengthBombs are msgpack bodies a few bytes long that announce 2^32-1
// elements or bytes, at the top level and inside a field.
var lengthBombs = map[string][]byte{
	"array32":             {0xdd, 0xff, 0xff, 0xff, 0xff},
	"map32":               {0xdf, 0xff, 0xff, 0xff, 0xff},
	"bin32":               {0xc6, 0xff, 0xff, 0xff, 0xff},
	"str32":               {0xdb, 0xff, 0xff, 0xff, 0xff},
	"ext32":               {0xc9, 0xff, 0xff, 0xff, 0xff, 0x05},
	"items array32":       append([]byte{0x81, 0xa5}, append([]byte("items"), 0xdd, 0xff, 0xff, 0xff, 0xff)...),
	"labels map32":        append([]byte{0x81, 0xa6}, append([]byte("labels"), 0xdf, 0xff, 0xff, 0xff, 0xff)...),
	"reads map32":         append([]byte{0x81, 0xa5}, append([]byte("reads"), 0xdf, 0xff, 0xff, 0xff, 0xff)...),
	"keys array32":        append([]byte{0x81, 0xa4}, append([]byte("keys"), 0xdd, 0xff, 0xff, 0xff, 0xff)...),
	"data bin32":          append([]byte{0x81, 0xa4}, append([]byte("data"), 0xc6, 0xff, 0xff, 0xff, 0xff)...),
	"extra array32":       append([]byte{0x81, 0xa5}, append([]byte("extra"), 0xdd, 0xff, 0xff, 0xff, 0xff)...),
	"extra map32":         append([]byte{0x81, 0xa5}, append([]byte("extra"), 0xdf, 0xff, 0xff, 0xff, 0xff)...),
	"extra nested deeply": append([]byte{0x81, 0xa5}, append([]byte("extra"), bytes.Repeat([]byte{0x91}, 1<<20)...)...),
}

// TestDecodeRefusesLengthBombs sends each bomb through Decode and
// DecodeLenient: each is a bad_request, and decoding them all costs
// kilobytes, not the gigabytes they announce.
func TestDecodeRefusesLengthBombs(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for name, b := range lengthBombs {
		for _, lenient := range []bool{false, true} {
			var d document
			var err error
			if lenient {
				err = Msgpack.DecodeLenient(b, &d)
			} else {
				err = Msgpack.Decode(b, &d)
			}
			if err == nil || AsError(err).Code != CodeBadRequest {
				t.Errorf("%s (lenient %v): got %v, want bad_request", name, lenient, err)
			}
			var v any
			if err := Msgpack.Decode(b, &v); err == nil {
				t.Errorf("%s into any: accepted", name)
			}
		}
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Errorf("decoding the bombs allocated %d MiB", grew>>20)
	}
}

// FuzzDecode checks both codecs on arbitrary bodies, as Decode,
// DecodeLenient and ParseError read them: never a panic, every failure a
// bad_request, and memory linear in the body.
func FuzzDecode(f *testing.F) {
	for _, b := range lengthBombs {
		f.Add(b, true)
	}
	good, _ := Msgpack.Encode(document{Name: "a", Items: []item{{Labels: map[string]string{"alertname": "X"}}}, Keys: []string{"k"}, Extra: []any{1, "x"}})
	f.Add(good, true)
	for _, s := range []string{
		`{"name":"a","items":[{"labels":{"a":"b"}}],"reads":{"k":1},"data":"AQI=","extra":{"x":[1,2]}}`,
		`[` + strings.Repeat(`null,`, 100) + `null]`, strings.Repeat("[", 20000), `{"keys":` + strings.Repeat(`[`, 5000) + `}`,
		`{"reads":{"a":18446744073709551616}}`, `{"at":"x"}`, `{}`, `null`, ``,
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, b []byte, asMsgpack bool) {
		c := JSON
		if asMsgpack {
			c = Msgpack
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for _, lenient := range []bool{false, true} {
			var d document
			var err error
			if lenient {
				err = c.DecodeLenient(b, &d)
			} else {
				err = c.Decode(b, &d)
			}
			if err != nil && AsError(err).Code != CodeBadRequest {
				t.Fatalf("%v: code %s, want bad_request", err, AsError(err).Code)
			}
		}
		_ = ParseError(c, b) // clients read error bodies with it
		runtime.ReadMemStats(&after)
		// A document element costs at most a few hundred bytes per byte
		// of body; a length bomb costs gigabytes.
		if grew := after.TotalAlloc - before.TotalAlloc; grew > uint64(1<<20+1024*len(b)) {
			t.Fatalf("a %d-byte body allocated %d bytes", len(b), grew)
		}
	})
}

// TestDecodeBudget: a body within the size limit whose elements would
// decode into far more memory (4 MiB of nils or nulls as structs: 640 and
// 330 MiB) is refused as too_large before decoding; a real document of
// the same size decodes.
func TestDecodeBudget(t *testing.T) {
	const size = 4 << 20
	nils := make([]byte, size)
	nils[0] = 0xdd
	binary.BigEndian.PutUint32(nils[1:], uint32(size-5))
	for i := 5; i < size; i++ {
		nils[i] = 0xc0
	}
	nulls := []byte("[" + strings.Repeat("null,", size/5-1) + "null]")
	for _, tt := range []struct {
		name  string
		codec Codec
		body  []byte
	}{{"msgpack nils", Msgpack, nils}, {"json nulls", JSON, nulls}} {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			var items []item
			err := tt.codec.Decode(tt.body, &items)
			runtime.ReadMemStats(&after)
			if err == nil || AsError(err).Code != CodeTooLarge {
				t.Fatalf("got %v, want too_large", err)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
				t.Errorf("refusing took %d MiB", grew>>20)
			}
			var d document
			if err := tt.codec.DecodeLenient(tt.body, &d); err == nil {
				t.Errorf("lenient: accepted")
			}
		})
	}

	// 28,000 small real alerts: 3.9 MiB of JSON, near the largest body
	// alerts.post takes (2.9 MiB as msgpack, with the same counts, so
	// the same estimate).
	real := make([]item, 28_000)
	for i := range real {
		real[i] = item{Labels: map[string]string{"alertname": fmt.Sprintf("A%d", i), "severity": "warning", "instance": "host-1"}, URL: "http://x"}
	}
	for _, c := range []Codec{JSON} {
		b, err := c.Encode(real)
		t.Logf("%s: %d real alerts in %d bytes", c, len(real), len(b))
		if err != nil || len(b) > size {
			t.Fatalf("%s: %d bytes, %v", c, len(b), err)
		}
		var got []item
		if err := c.Decode(b, &got); err != nil || len(got) != len(real) {
			t.Errorf("%s: %d real alerts in %d bytes: got %d, %v", c, len(real), len(b), len(got), err)
		}
	}
}
