package backup

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/platform/platform/internal/msgpackscan"
)

// maxRecordBytes bounds one record: a message of 64 MiB, the largest
// max_payload a server allows with its default max_pending, with its
// subject and the record's own fields.
const maxRecordBytes = 64<<20 + 64<<10

// record is one stream message as an increment stores it.
type record struct {
	Seq     uint64              `msgpack:"q"`
	Time    int64               `msgpack:"t"`
	Subject string              `msgpack:"s"`
	Header  map[string][]string `msgpack:"h,omitempty"`
	Data    []byte              `msgpack:"d"`
}

// size is what the record counts for in Stream.Bytes.
func (r *record) size() uint64 {
	n := len(r.Subject) + len(r.Data)
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v)
		}
	}
	return uint64(n)
}

// segmentWriter writes one zstd-compressed segment file of msgpack records
// and checksums it as it goes.
type segmentWriter struct {
	rel  string
	f    *os.File
	h    hash.Hash
	buf  *bufio.Writer
	zw   *zstd.Encoder
	enc  *msgpack.Encoder
	msgs uint64
	raw  int64
}

func createSegment(dir, rel string, level zstd.EncoderLevel) (*segmentWriter, error) {
	path := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	w := &segmentWriter{rel: rel, f: f, h: sha256.New()}
	w.buf = bufio.NewWriterSize(io.MultiWriter(f, w.h), 256<<10)
	w.zw, err = zstd.NewWriter(w.buf, zstd.WithEncoderLevel(level))
	if err != nil {
		f.Close()
		return nil, err
	}
	w.enc = msgpack.NewEncoder(w.zw)
	return w, nil
}

func (w *segmentWriter) write(r *record) error {
	if err := w.enc.Encode(r); err != nil {
		return fmt.Errorf("write segment %s: %w", w.rel, err)
	}
	w.msgs++
	w.raw += int64(r.size())
	return nil
}

// close finishes the segment, syncs it and returns its record.
func (w *segmentWriter) close() (File, error) {
	err := w.zw.Close()
	if err == nil {
		err = w.buf.Flush()
	}
	if err == nil {
		err = w.f.Sync()
	}
	st, serr := w.f.Stat()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = serr
	}
	if err != nil {
		return File{}, fmt.Errorf("close segment %s: %w", w.rel, err)
	}
	return File{Path: w.rel, Size: st.Size(), SHA256: hex.EncodeToString(w.h.Sum(nil)), Messages: w.msgs}, nil
}

// abort removes a segment that will not be recorded.
func (w *segmentWriter) abort() {
	w.zw.Close()
	w.f.Close()
	os.Remove(w.f.Name())
}

// ErrDamaged is wrapped by every error about a backup file that is
// missing, of the wrong size or checksum, or does not decode.
var ErrDamaged = errors.New("backup damaged")

// damaged names the file and what is wrong with it.
func damaged(rel, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrDamaged, rel, fmt.Sprintf(format, args...))
}

// checkFile verifies that dir/f exists with the recorded size and checksum.
func checkFile(dir string, f File) error {
	got, err := describe(dir, f.Path)
	if errors.Is(err, os.ErrNotExist) {
		return damaged(f.Path, "missing")
	}
	if err != nil {
		return damaged(f.Path, "%v", err)
	}
	if got.Size != f.Size {
		return damaged(f.Path, "size %d, the manifest says %d", got.Size, f.Size)
	}
	if got.SHA256 != f.SHA256 {
		return damaged(f.Path, "checksum mismatch")
	}
	return nil
}

// readSegment checks a segment against its record, then calls fn with
// each record in order. A segment that fails its checksum is refused
// before any record reaches fn.
func readSegment(dir string, f File, fn func(*record) error) error {
	if err := checkFile(dir, f); err != nil {
		return err
	}
	fh, err := os.Open(filepath.Join(dir, filepath.FromSlash(f.Path)))
	if err != nil {
		return damaged(f.Path, "%v", err)
	}
	defer fh.Close()
	zr, err := zstd.NewReader(bufio.NewReaderSize(fh, 256<<10), zstd.WithDecoderConcurrency(1))
	if err != nil {
		return damaged(f.Path, "%v", err)
	}
	defer zr.Close()
	// Each record is read and checked whole before it is decoded: the
	// decoder would allocate whatever length a damaged record announces.
	br := bufio.NewReaderSize(zr, 64<<10)
	var n uint64
	for {
		b, err := msgpackscan.ReadValue(br, maxRecordBytes)
		if errors.Is(err, io.EOF) {
			break
		}
		var r record
		if err == nil {
			err = msgpack.Unmarshal(b, &r)
		}
		if err != nil {
			return damaged(f.Path, "record %d: %v", n+1, err)
		}
		n++
		if fn != nil {
			if err := fn(&r); err != nil {
				return err
			}
		}
	}
	if n != f.Messages {
		return damaged(f.Path, "%d messages, the manifest says %d", n, f.Messages)
	}
	return nil
}
