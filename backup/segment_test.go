package backup

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/vmihailenco/msgpack/v5"
)

// writeRawSegment stores body, zstd-compressed, as a segment whose
// manifest record matches it, so only its content can be wrong.
func writeRawSegment(t testing.TB, dir string, body []byte, msgs uint64) File {
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	z := zw.EncodeAll(body, nil)
	zw.Close()
	if err := os.WriteFile(filepath.Join(dir, "seg.zst"), z, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := describe(dir, "seg.zst")
	if err != nil {
		t.Fatal(err)
	}
	f.Messages = msgs
	return f
}

func TestReadSegmentRefusesLengthBombs(t *testing.T) {
	good, err := msgpack.Marshal(&record{Seq: 1, Subject: "events.a", Data: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		body []byte
	}{
		// A record whose data announces 4 GiB: the decoder allocated it.
		{"data bin32", append(good[:len(good)-3:len(good)-3], 0xc6, 0xff, 0xff, 0xff, 0xff)},
		{"header map32", []byte{0x81, 0xa1, 'h', 0xdf, 0xff, 0xff, 0xff, 0xff}},
		{"record array32", []byte{0xdd, 0xff, 0xff, 0xff, 0xff}},
		{"deep nesting", bytes.Repeat([]byte{0x91}, 1<<20)},
		{"good then truncated", append(good, good[:len(good)-1]...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			f := writeRawSegment(t, dir, tt.body, 2)
			err := readSegment(dir, f, nil)
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("readSegment = %v, want ErrDamaged", err)
			}
		})
	}
	dir := t.TempDir()
	if err := readSegment(dir, writeRawSegment(t, dir, append(good, good...), 2), nil); err != nil {
		t.Fatalf("two good records: %v", err)
	}
}

// FuzzReadSegment feeds arbitrary decompressed segment content to the
// reader: it never panics and either reads records or names the damage.
func FuzzReadSegment(f *testing.F) {
	good, _ := msgpack.Marshal(&record{Seq: 1, Time: 2, Subject: "events.a", Header: map[string][]string{"A": {"b"}}, Data: []byte("x")})
	f.Add(good)
	f.Add(append(good, good...))
	f.Add([]byte{0xc6, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x85, 0xa1, 'd', 0xc6, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, body []byte) {
		dir := t.TempDir()
		fl := writeRawSegment(t, dir, body, 1)
		err := readSegment(dir, fl, func(*record) error { return nil })
		if err != nil && !errors.Is(err, ErrDamaged) {
			t.Fatalf("readSegment = %v, want nil or ErrDamaged", err)
		}
	})
}
