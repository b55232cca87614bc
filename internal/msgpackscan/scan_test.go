package msgpackscan

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// bombs are tiny documents announcing lengths far beyond their bytes: each
// made vmihailenco/msgpack allocate gigabytes (or recurse without end).
var bombs = map[string][]byte{
	"array32 of 2^32-1":          {0xdd, 0xff, 0xff, 0xff, 0xff},
	"map32 of 2^32-1":            {0xdf, 0xff, 0xff, 0xff, 0xff},
	"array16 of 65535":           {0xdc, 0xff, 0xff},
	"map16 of 65535":             {0xde, 0xff, 0xff},
	"bin32 of 4 GiB":             {0xc6, 0xff, 0xff, 0xff, 0xff},
	"str32 of 4 GiB":             {0xdb, 0xff, 0xff, 0xff, 0xff},
	"ext32 of 4 GiB":             {0xc9, 0xff, 0xff, 0xff, 0xff, 0x01},
	"str8 past the end":          {0xd9, 0x10, 'a'},
	"nested array32":             {0x91, 0x91, 0xdd, 0xff, 0xff, 0xff, 0xff},
	"map value array32":          {0x81, 0xa1, 'k', 0xdd, 0x7f, 0xff, 0xff, 0xff},
	"map32 of 2 with 1 entry":    {0xdf, 0x00, 0x00, 0x00, 0x02, 0x01, 0x02},
	"array past end by one":      {0x93, 0x01, 0x02},
	"nesting beyond MaxDepth":    bytes.Repeat([]byte{0x91}, MaxDepth+1),
	"nesting of a million":       bytes.Repeat([]byte{0x91}, 1<<20),
	"never-used type byte":       {0xc1},
	"empty":                      {},
	"trailing byte":              {0xc0, 0xc0},
	"fixext16 short":             {0xd8, 0x01, 0x00},
	"uint64 short":               {0xcf, 0x00, 0x00},
	"float64 short":              {0xcb, 0x00},
	"array32 of maps of 2^32-1":  {0x91, 0xdf, 0xff, 0xff, 0xff, 0xff},
	"str16 past the end":         {0xda, 0x00, 0x05, 'a', 'b'},
	"bin8 announcing 255 bytes":  {0xc4, 0xff},
	"ext8 whose type is missing": {0xc7, 0x00},
}

func TestCheckRefusesBombs(t *testing.T) {
	for name, b := range bombs {
		t.Run(name, func(t *testing.T) {
			err := Check(b)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Check(% x) = %v, want ErrMalformed", head(b), err)
			}
		})
	}
}

func head(b []byte) []byte { return b[:min(len(b), 16)] }

func TestCheckAcceptsWhatTheEncoderWrites(t *testing.T) {
	big := strings.Repeat("x", 70000)
	many := make([]int, 70000)
	wide := make(map[string]int, 20)
	for i := range 20 {
		wide[string(rune('a'+i))] = i
	}
	deep := any(1)
	for range MaxDepth {
		deep = []any{deep}
	}
	values := map[string]any{
		"nil":          nil,
		"bools":        []bool{true, false},
		"ints":         []int64{0, 1, -1, 127, -32, 128, -33, 1 << 15, -1 << 15, 1 << 31, -1 << 31, math.MaxInt64, math.MinInt64},
		"uint64":       uint64(math.MaxUint64),
		"floats":       []any{float32(1.5), 2.5, math.Inf(1)},
		"strings":      []string{"", "a", strings.Repeat("b", 31), strings.Repeat("c", 32), strings.Repeat("d", 256), big},
		"bytes":        [][]byte{{}, {1}, bytes.Repeat([]byte{2}, 300), []byte(big)},
		"long array":   many,
		"wide map":     wide,
		"time":         time.Unix(1700000000, 123456789).UTC(),
		"times":        []time.Time{time.Unix(1, 0), time.Unix(1<<40, 5)},
		"nested":       map[string]any{"a": []any{map[string]any{"b": []any{1, "x", nil}}}},
		"deep to max":  deep,
		"struct":       struct{ A, B string }{"a", "b"},
		"map of lists": map[string][]string{"x": {"1", "2"}, "y": nil},
	}
	for name, v := range values {
		t.Run(name, func(t *testing.T) {
			b, err := msgpack.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if err := Check(b); err != nil {
				t.Fatalf("Check: %v", err)
			}
			n, err := Len(append(b, 0xc1))
			if err != nil || n != len(b) {
				t.Fatalf("Len = %d, %v; want %d", n, err, len(b))
			}
			got, err := ReadValue(bufio.NewReader(bytes.NewReader(append(b, 0xc0))), len(b))
			if err != nil || !bytes.Equal(got, b) {
				t.Fatalf("ReadValue = %d bytes, %v; want %d", len(got), err, len(b))
			}
		})
	}
}

func TestReadValue(t *testing.T) {
	var stream bytes.Buffer
	enc := msgpack.NewEncoder(&stream)
	for i := range 3 {
		if err := enc.Encode(map[string]any{"i": i, "d": bytes.Repeat([]byte{1}, 100000)}); err != nil {
			t.Fatal(err)
		}
	}
	r := bufio.NewReader(&stream)
	for i := range 3 {
		b, err := ReadValue(r, 1<<20)
		if err != nil {
			t.Fatalf("value %d: %v", i, err)
		}
		var m map[string]any
		if err := msgpack.Unmarshal(b, &m); err != nil || m["i"] != int8(i) {
			t.Fatalf("value %d: %v, %v", i, m["i"], err)
		}
	}
	if _, err := ReadValue(r, 1<<20); err != io.EOF {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}

	for name, b := range bombs {
		if len(b) == 0 || name == "trailing byte" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			if _, err := ReadValue(bufio.NewReader(bytes.NewReader(b)), 1<<30); !errors.Is(err, ErrMalformed) {
				t.Fatalf("ReadValue(% x) = %v, want ErrMalformed", head(b), err)
			}
		})
	}
	if _, err := ReadValue(bufio.NewReader(bytes.NewReader([]byte{0xc4, 0x10})), 8); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a value beyond max: %v, want ErrMalformed", err)
	}
}

// FuzzCheck checks Check against the decoder it protects: whatever Check
// accepts, the decoder skips exactly, and ReadValue and Len agree with it.
func FuzzCheck(f *testing.F) {
	for _, b := range bombs {
		f.Add(b)
	}
	for _, v := range []any{nil, 1, "s", []any{1, "a", nil}, map[string]any{"k": []byte{1, 2}}, time.Unix(5, 6)} {
		b, _ := msgpack.Marshal(v)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := Check(b)
		n, lerr := Len(b)
		rv, rerr := ReadValue(bufio.NewReader(bytes.NewReader(b)), len(b))
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Check: %v does not wrap ErrMalformed", err)
			}
			if lerr == nil && n == len(b) {
				t.Fatalf("Len accepts all %d bytes that Check refuses: %v", n, err)
			}
			return
		}
		if lerr != nil || n != len(b) || rerr != nil || !bytes.Equal(rv, b) {
			t.Fatalf("Check accepts; Len = %d, %v; ReadValue = %d bytes, %v", n, lerr, len(rv), rerr)
		}
		br := bytes.NewReader(b)
		if err := msgpack.NewDecoder(br).Skip(); err != nil {
			t.Fatalf("Check accepts what the decoder cannot skip: %v", err)
		}
		if br.Len() != 0 {
			t.Fatalf("decoder left %d bytes that Check counted", br.Len())
		}
		var v any
		_ = msgpack.Unmarshal(b, &v) // must not panic or run out of memory
	})
}
