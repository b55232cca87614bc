package replicator

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Compression is a payload codec, named on the wire by the Content-Encoding
// header of the stream message.
type Compression int

// Compression codecs. S2 is the default: it costs least CPU for a useful
// ratio; zstd shrinks more for more CPU; gzip is for consumers that only
// speak gzip.
const (
	S2 Compression = iota
	Zstd
	Gzip
	// NoCompression publishes payloads as they are.
	NoCompression
)

// maxDecodedBytes bounds what one message may expand to, so a hostile or
// corrupt payload cannot make a reader allocate without limit.
const maxDecodedBytes = 64 << 20

// String returns the codec's Content-Encoding token.
func (c Compression) String() string {
	switch c {
	case S2:
		return "s2"
	case Zstd:
		return "zstd"
	case Gzip:
		return "gzip"
	case NoCompression:
		return "none"
	}
	return fmt.Sprintf("compression(%d)", int(c))
}

// ParseCompression returns the codec named s ("s2", "zstd", "gzip" or
// "none"), case-insensitively.
func ParseCompression(s string) (Compression, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "s2":
		return S2, nil
	case "zstd":
		return Zstd, nil
	case "gzip":
		return Gzip, nil
	case "none", "identity", "":
		return NoCompression, nil
	}
	return NoCompression, fmt.Errorf("%w: %q (use s2, zstd, gzip or none)", ErrUnknownEncoding, s)
}

var (
	zstdEnc = sync.OnceValue(func() *zstd.Encoder {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
		if err != nil {
			panic(err) // only fails on invalid options
		}
		return e
	})
	zstdDec = sync.OnceValue(func() *zstd.Decoder {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(maxDecodedBytes))
		if err != nil {
			panic(err)
		}
		return d
	})
	gzipWriters = sync.Pool{New: func() any {
		w, _ := gzip.NewWriterLevel(nil, gzip.DefaultCompression)
		return w
	}}
)

// Compress returns data compressed with c, or nil when c is NoCompression
// or the result would not be smaller than data: the Publisher then stores
// data as it is, without a Content-Encoding.
func (c Compression) Compress(data []byte) []byte {
	var out []byte
	switch c {
	case S2:
		out = s2.Encode(nil, data)
	case Zstd:
		out = zstdEnc().EncodeAll(data, make([]byte, 0, len(data)/2))
	case Gzip:
		var buf bytes.Buffer
		buf.Grow(len(data) / 2)
		w := gzipWriters.Get().(*gzip.Writer)
		w.Reset(&buf)
		_, err := w.Write(data)
		if err == nil {
			err = w.Close()
		}
		gzipWriters.Put(w)
		if err != nil {
			return nil
		}
		out = buf.Bytes()
	default:
		return nil
	}
	if len(out) >= len(data) {
		return nil
	}
	return out
}

// Decompress undoes c (NoCompression returns data unchanged). Like a
// Reader, it refuses output beyond 64 MiB.
func (c Compression) Decompress(data []byte) ([]byte, error) {
	if c == NoCompression {
		return data, nil
	}
	return decompress(c.String(), data)
}

// decompress undoes the Content-Encoding enc. An empty enc returns data
// unchanged.
func decompress(enc string, data []byte) ([]byte, error) {
	switch strings.ToLower(enc) {
	case "", "identity":
		return data, nil
	case "s2":
		n, err := s2.DecodedLen(data)
		if err != nil {
			return nil, fmt.Errorf("decode s2: %w", err)
		}
		if n > maxDecodedBytes {
			return nil, fmt.Errorf("decode s2: %d bytes decoded exceeds the %d limit", n, maxDecodedBytes)
		}
		out, err := s2.Decode(nil, data)
		if err != nil {
			return nil, fmt.Errorf("decode s2: %w", err)
		}
		return out, nil
	case "zstd":
		out, err := zstdDec().DecodeAll(data, nil)
		if err != nil {
			return nil, fmt.Errorf("decode zstd: %w", err)
		}
		return out, nil
	case "gzip":
		r, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("decode gzip: %w", err)
		}
		out, err := io.ReadAll(io.LimitReader(r, maxDecodedBytes+1))
		if err != nil {
			return nil, fmt.Errorf("decode gzip: %w", err)
		}
		if len(out) > maxDecodedBytes {
			return nil, fmt.Errorf("decode gzip: more than %d bytes decoded", maxDecodedBytes)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownEncoding, enc)
}
