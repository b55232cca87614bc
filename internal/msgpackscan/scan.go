// Package msgpackscan checks the structure of a msgpack document before a
// decoder sees it, so that no length announced by untrusted input can make
// the decoder allocate more than the input itself holds.
//
// github.com/vmihailenco/msgpack/v5 trusts the lengths it reads: an array
// header of 2^32 elements into a slice makes it allocate them all before it
// reads the first one (its allocation limit is never applied to slices), a
// map header preallocates up to a million entries, a bin header allocates
// its whole length at once, and nesting is not limited, so a deep document
// overflows the goroutine stack. None of these is a panic a recover could
// catch: the process dies. A document that passes Check has every array,
// map, str, bin and ext length within the bytes actually present, nesting
// of at most MaxDepth, and so costs a decoder memory linear in its size.
package msgpackscan

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MaxDepth is how deeply arrays and maps may nest. The platform's
// documents nest a handful of levels; a hundred leaves room for any
// document a client means to send and keeps a decoder's recursion shallow.
const MaxDepth = 100

// ErrMalformed is wrapped by every error Check and ReadValue return for
// input that is not one well-formed, bounded msgpack value.
var ErrMalformed = errors.New("malformed msgpack")

// Check reports whether b is exactly one msgpack value whose lengths all
// fit within b and whose nesting is at most MaxDepth. It allocates nothing
// and reads each byte at most once.
func Check(b []byte) error {
	_, err := Scan(b)
	return err
}

// Counts are what a document holds: a decoder allocates per element.
type Counts struct {
	// Elements counts the elements of every array.
	Elements int
	// Entries counts the entries of every map.
	Entries int
}

// Scan checks b as Check does and counts its array elements and map
// entries.
func Scan(b []byte) (Counts, error) {
	s := scanner{b: b, limit: len(b)}
	if err := s.value(0); err != nil {
		return Counts{}, err
	}
	if s.off != len(b) {
		return Counts{}, fmt.Errorf("%w: %d bytes after the value", ErrMalformed, len(b)-s.off)
	}
	return s.counts, nil
}

// Len returns the length of the msgpack value at the start of b, checked
// as Check does; bytes after it are not looked at.
func Len(b []byte) (int, error) {
	s := scanner{b: b, limit: len(b)}
	if err := s.value(0); err != nil {
		return 0, err
	}
	return s.off, nil
}

// ReadValue reads one msgpack value from r and returns its bytes, checked
// as Check does, refusing a value of more than max bytes. Memory grows
// with the bytes actually read, never with a length the input announces.
// At the end of r before the first byte it returns io.EOF.
func ReadValue(r *bufio.Reader, max int) ([]byte, error) {
	if _, err := r.Peek(1); err != nil {
		return nil, err
	}
	s := scanner{r: r, limit: max}
	if err := s.value(0); err != nil {
		return nil, err
	}
	return s.b, nil
}

// scanner walks one value. Over a slice, b holds the whole input and
// limit is len(b); over a reader, b holds what has been read so far and
// limit caps it.
type scanner struct {
	b      []byte
	off    int
	limit  int
	r      *bufio.Reader
	counts Counts
}

// left is the most bytes the rest of the value may take.
func (s *scanner) left() int { return s.limit - s.off }

// need makes n more bytes available at s.off, or fails.
func (s *scanner) need(n int) error {
	if n < 0 || n > s.left() {
		return fmt.Errorf("%w: %d bytes announced at offset %d, at most %d left", ErrMalformed, n, s.off, max(0, s.left()))
	}
	if s.off+n <= len(s.b) {
		return nil
	}
	if s.r == nil {
		return fmt.Errorf("%w: unexpected end at offset %d", ErrMalformed, s.off)
	}
	// Read in steps of at most 64 KiB, so a length the input announces
	// but does not hold costs no more than what did arrive.
	for len(s.b) < s.off+n {
		step := min(s.off+n-len(s.b), 64<<10)
		start := len(s.b)
		s.b = append(s.b, make([]byte, step)...)
		if _, err := io.ReadFull(s.r, s.b[start:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("%w: unexpected end at offset %d", ErrMalformed, start)
			}
			return err
		}
	}
	return nil
}

func (s *scanner) skip(n int) error {
	if err := s.need(n); err != nil {
		return err
	}
	s.off += n
	return nil
}

func (s *scanner) uint(size int) (int, error) {
	if err := s.need(size); err != nil {
		return 0, err
	}
	p := s.b[s.off : s.off+size]
	s.off += size
	switch size {
	case 1:
		return int(p[0]), nil
	case 2:
		return int(binary.BigEndian.Uint16(p)), nil
	}
	v := binary.BigEndian.Uint32(p)
	if uint64(v) > uint64(s.left()) {
		return 0, fmt.Errorf("%w: length %d at offset %d, at most %d bytes left", ErrMalformed, v, s.off-size, s.left())
	}
	return int(v), nil
}

// value walks the value at s.off, nested depth levels deep.
func (s *scanner) value(depth int) error {
	if err := s.need(1); err != nil {
		return err
	}
	c := s.b[s.off]
	s.off++
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		return nil // fixint, nil, bool
	case c <= 0x8f:
		return s.container(int(c&0x0f), 2, depth)
	case c <= 0x9f:
		return s.container(int(c&0x0f), 1, depth)
	case c <= 0xbf:
		return s.skip(int(c & 0x1f))
	}
	switch c {
	case 0xc4, 0xd9: // bin 8, str 8
		return s.blob(1)
	case 0xc5, 0xda:
		return s.blob(2)
	case 0xc6, 0xdb:
		return s.blob(4)
	case 0xc7, 0xc8, 0xc9: // ext 8, 16, 32: length, type, data
		n, err := s.uint([...]int{1, 2, 4}[c-0xc7])
		if err != nil {
			return err
		}
		return s.skip(1 + n)
	case 0xca, 0xcb: // float 32, 64
		return s.skip(4 << (c - 0xca))
	case 0xcc, 0xcd, 0xce, 0xcf: // uint 8..64
		return s.skip(1 << (c - 0xcc))
	case 0xd0, 0xd1, 0xd2, 0xd3: // int 8..64
		return s.skip(1 << (c - 0xd0))
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1..16 and its type
		return s.skip(1 + 1<<(c-0xd4))
	case 0xdc:
		n, err := s.uint(2)
		if err != nil {
			return err
		}
		return s.container(n, 1, depth)
	case 0xdd:
		n, err := s.uint(4)
		if err != nil {
			return err
		}
		return s.container(n, 1, depth)
	case 0xde:
		n, err := s.uint(2)
		if err != nil {
			return err
		}
		return s.container(n, 2, depth)
	case 0xdf:
		n, err := s.uint(4)
		if err != nil {
			return err
		}
		return s.container(n, 2, depth)
	}
	return fmt.Errorf("%w: type byte 0x%02x at offset %d is never used", ErrMalformed, c, s.off-1)
}

// blob skips a str or bin whose length takes size bytes.
func (s *scanner) blob(size int) error {
	n, err := s.uint(size)
	if err != nil {
		return err
	}
	return s.skip(n)
}

// container walks n entries of per values each (1 for an array, 2 for a
// map). Every value takes at least one byte, so n*per may not exceed what
// is left: checked before the first entry, so a false count costs nothing.
func (s *scanner) container(n, per, depth int) error {
	if depth >= MaxDepth {
		return fmt.Errorf("%w: nested deeper than %d levels at offset %d", ErrMalformed, MaxDepth, s.off)
	}
	if n*per > s.left() {
		kind := "array"
		if per == 2 {
			kind = "map"
		}
		return fmt.Errorf("%w: %s of %d entries at offset %d, at most %d bytes left", ErrMalformed, kind, n, s.off, s.left())
	}
	if per == 1 {
		s.counts.Elements += n
	} else {
		s.counts.Entries += n
	}
	for range n * per {
		if err := s.value(depth + 1); err != nil {
			return err
		}
	}
	return nil
}
