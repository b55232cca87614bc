package replicator

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/nats-io/nats.go"
)

// An envelope packs many events into one stream message. It is a msgpack
// array with one element per event: the event's bytes (msgpack bin), or,
// when the event has headers, a two-element array of its bytes and a map
// from header name to an array of values. A stream message holding an
// envelope carries the header Platform-Envelope: 1 (the format version)
// and Platform-Envelope-Count: N; the envelope as a whole may be compressed
// (Content-Encoding). Event i of the envelope stored with message id M has
// the id "M:i".
const envelopeVersion = "1"

// errEnvelope is wrapped by every envelope decoding error.
var errEnvelope = errors.New("malformed envelope")

// entry is one event inside an envelope.
type entry struct {
	data   []byte
	header nats.Header
}

// EncodeEnvelope returns the envelope of payloads (events without headers)
// as the Publisher stores it, before compression. Stored with the headers
// streams.EnvelopeHeader: 1 and streams.EnvelopeCountHeader: len(payloads), Decode and a
// Reader unpack it.
func EncodeEnvelope(payloads [][]byte) []byte {
	n := 5
	for _, d := range payloads {
		n += entrySize(d, nil)
	}
	b := appendEnvelopeHeader(make([]byte, 0, n), len(payloads))
	for _, d := range payloads {
		b = appendEntry(b, d, nil)
	}
	return b
}

// appendEnvelopeHeader appends the array header for n events.
func appendEnvelopeHeader(b []byte, n int) []byte { return appendArrayLen(b, n) }

// appendEntry appends one event.
func appendEntry(b []byte, data []byte, h nats.Header) []byte {
	if len(h) == 0 {
		return appendBin(b, data)
	}
	b = appendArrayLen(b, 2)
	b = appendBin(b, data)
	b = appendMapLen(b, len(h))
	for k, vs := range h {
		b = appendStr(b, k)
		b = appendArrayLen(b, len(vs))
		for _, v := range vs {
			b = appendStr(b, v)
		}
	}
	return b
}

// entrySize is an upper bound of what appendEntry adds.
func entrySize(data []byte, h nats.Header) int {
	n := 5 + len(data)
	if len(h) > 0 {
		n += 10
		for k, vs := range h {
			n += 10 + len(k)
			for _, v := range vs {
				n += 5 + len(v)
			}
		}
	}
	return n
}

func appendArrayLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xdc), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(n))
	}
}

func appendMapLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x80|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xde), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, 0xdf), uint32(n))
	}
}

func appendBin(b []byte, p []byte) []byte {
	switch n := len(p); {
	case n <= math.MaxUint8:
		b = append(b, 0xc4, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xc5), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xc6), uint32(n))
	}
	return append(b, p...)
}

func appendStr(b []byte, s string) []byte {
	switch n := len(s); {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		b = append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
	}
	return append(b, s...)
}

// decodeEnvelope returns the events of an envelope. The entries' data
// slices alias b. It never panics, and whatever b holds it allocates at
// most a fixed multiple of len(b): every announced count or length is
// checked against the bytes that are left before anything is allocated.
func decodeEnvelope(b []byte) ([]entry, error) {
	d := decoder{b: b}
	n, err := d.arrayLen()
	if err != nil {
		return nil, err
	}
	// Every entry takes at least one byte: a larger count is a lie.
	if n > len(d.b)-d.off {
		return nil, fmt.Errorf("%w: %d entries in %d bytes", errEnvelope, n, len(d.b)-d.off)
	}
	out := make([]entry, 0, n)
	for i := range n {
		e, err := d.entry()
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		out = append(out, e)
	}
	if d.off != len(d.b) {
		return nil, fmt.Errorf("%w: %d bytes after the last entry", errEnvelope, len(d.b)-d.off)
	}
	return out, nil
}

type decoder struct {
	b   []byte
	off int
}

func (d *decoder) byte1() (byte, error) {
	if d.off >= len(d.b) {
		return 0, fmt.Errorf("%w: unexpected end", errEnvelope)
	}
	c := d.b[d.off]
	d.off++
	return c, nil
}

func (d *decoder) uint(size int) (int, error) {
	if len(d.b)-d.off < size {
		return 0, fmt.Errorf("%w: unexpected end", errEnvelope)
	}
	p := d.b[d.off : d.off+size]
	d.off += size
	switch size {
	case 1:
		return int(p[0]), nil
	case 2:
		return int(binary.BigEndian.Uint16(p)), nil
	default:
		v := binary.BigEndian.Uint32(p)
		if uint64(v) > uint64(len(d.b)) {
			return 0, fmt.Errorf("%w: length %d beyond the envelope", errEnvelope, v)
		}
		return int(v), nil
	}
}

func (d *decoder) bytes(n int) ([]byte, error) {
	if n < 0 || len(d.b)-d.off < n {
		return nil, fmt.Errorf("%w: %d bytes announced, %d left", errEnvelope, n, len(d.b)-d.off)
	}
	p := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return p, nil
}

func (d *decoder) arrayLen() (int, error) {
	c, err := d.byte1()
	if err != nil {
		return 0, err
	}
	switch {
	case c&0xf0 == 0x90:
		return int(c & 0x0f), nil
	case c == 0xdc:
		return d.uint(2)
	case c == 0xdd:
		return d.uint(4)
	}
	return 0, fmt.Errorf("%w: want an array, got type byte 0x%02x", errEnvelope, c)
}

// blob reads a bin or a str.
func (d *decoder) blob() ([]byte, error) {
	c, err := d.byte1()
	if err != nil {
		return nil, err
	}
	var n int
	switch {
	case c&0xe0 == 0xa0:
		n = int(c & 0x1f)
	case c == 0xc4 || c == 0xd9:
		n, err = d.uint(1)
	case c == 0xc5 || c == 0xda:
		n, err = d.uint(2)
	case c == 0xc6 || c == 0xdb:
		n, err = d.uint(4)
	default:
		return nil, fmt.Errorf("%w: want bytes, got type byte 0x%02x", errEnvelope, c)
	}
	if err != nil {
		return nil, err
	}
	return d.bytes(n)
}

func (d *decoder) entry() (entry, error) {
	if d.off >= len(d.b) {
		return entry{}, fmt.Errorf("%w: unexpected end", errEnvelope)
	}
	c := d.b[d.off]
	if c&0xf0 != 0x90 && c != 0xdc && c != 0xdd {
		data, err := d.blob()
		return entry{data: data}, err
	}
	n, err := d.arrayLen()
	if err != nil {
		return entry{}, err
	}
	if n != 2 {
		return entry{}, fmt.Errorf("%w: an event with headers is a 2-element array, got %d", errEnvelope, n)
	}
	data, err := d.blob()
	if err != nil {
		return entry{}, err
	}
	h, err := d.header()
	if err != nil {
		return entry{}, err
	}
	return entry{data: data, header: h}, nil
}

func (d *decoder) header() (nats.Header, error) {
	c, err := d.byte1()
	if err != nil {
		return nil, err
	}
	var n int
	switch {
	case c&0xf0 == 0x80:
		n = int(c & 0x0f)
	case c == 0xde:
		n, err = d.uint(2)
	case c == 0xdf:
		n, err = d.uint(4)
	case c == 0xc0: // nil
		return nil, nil
	default:
		return nil, fmt.Errorf("%w: want a header map, got type byte 0x%02x", errEnvelope, c)
	}
	if err != nil {
		return nil, err
	}
	if n > (len(d.b)-d.off)/2 {
		return nil, fmt.Errorf("%w: %d headers in %d bytes", errEnvelope, n, len(d.b)-d.off)
	}
	h := make(nats.Header, n)
	for range n {
		k, err := d.blob()
		if err != nil {
			return nil, err
		}
		vn, err := d.arrayLen()
		if err != nil {
			return nil, err
		}
		if vn > len(d.b)-d.off {
			return nil, fmt.Errorf("%w: %d header values in %d bytes", errEnvelope, vn, len(d.b)-d.off)
		}
		vs := make([]string, 0, vn)
		for range vn {
			v, err := d.blob()
			if err != nil {
				return nil, err
			}
			vs = append(vs, string(v))
		}
		h[string(k)] = vs
	}
	return h, nil
}
