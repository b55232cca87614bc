package replicator

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/streams"
)

// Position is where an event is stored: the stream sequence of its message
// and its index in the message's envelope (0 for a message of its own).
type Position struct {
	// Seq is the stream sequence of the message.
	Seq uint64 `json:"seq"`
	// Index is the event's index in the envelope.
	Index int `json:"index"`
	// Count is how many events the message holds (1 without an envelope).
	Count int `json:"count"`
}

// Next returns the position right after p: the next event of the same
// envelope, or the first event of the next message. Resume a Reader with
// WithStartAt(last.Next()) to continue exactly after the last event handled.
func (p Position) Next() Position {
	if p.Index+1 < p.Count {
		return Position{Seq: p.Seq, Index: p.Index + 1, Count: p.Count}
	}
	return Position{Seq: p.Seq + 1}
}

// String formats the position as seq or seq:index.
func (p Position) String() string {
	if p.Count <= 1 {
		return strconv.FormatUint(p.Seq, 10)
	}
	return fmt.Sprintf("%d:%d", p.Seq, p.Index)
}

// Event is one decoded event.
type Event struct {
	// Subject is the subject it was stored under.
	Subject string
	// Data is its payload, decompressed.
	Data []byte
	// Header holds its own headers (the replicator's are removed).
	Header nats.Header
	// ID is its message id ("<envelope id>:<index>" inside an envelope).
	ID string
	// Pos is where it is stored.
	Pos Position
	// Time is when the stream stored its message.
	Time time.Time
}

// Decode undoes compression and envelope of one stream message and returns
// its events. A message without the replicator's headers is one event, so
// Decode reads anything stored in a stream.
func Decode(subject string, seq uint64, stamp time.Time, h nats.Header, data []byte) ([]Event, error) {
	enc := h.Get(streams.ContentEncodingHeader)
	plain, err := decompress(enc, data)
	if err != nil {
		return nil, fmt.Errorf("%w: seq %d: %w", ErrMalformed, seq, err)
	}
	id := h.Get(jetstream.MsgIDHeader)
	if h.Get(streams.EnvelopeHeader) == "" {
		own := ownHeader(h)
		return []Event{{Subject: subject, Data: plain, Header: own, ID: id, Pos: Position{Seq: seq, Count: 1}, Time: stamp}}, nil
	}
	if v := h.Get(streams.EnvelopeHeader); v != envelopeVersion {
		return nil, fmt.Errorf("%w: seq %d: envelope version %q", ErrMalformed, seq, v)
	}
	entries, err := decodeEnvelope(plain)
	if err != nil {
		return nil, fmt.Errorf("%w: seq %d: %w", ErrMalformed, seq, err)
	}
	evs := make([]Event, len(entries))
	for i, e := range entries {
		evs[i] = Event{
			Subject: subject, Data: e.data, Header: e.header,
			Pos:  Position{Seq: seq, Index: i, Count: len(entries)},
			Time: stamp,
		}
	}
	entryIDs(id, len(evs), func(i int, s string) { evs[i].ID = s })
	return evs, nil
}

// ownHeader returns the event's headers without the ones JetStream and the
// replicator add.
func ownHeader(h nats.Header) nats.Header {
	var out nats.Header
	for k, v := range h {
		if strings.EqualFold(k, streams.ContentEncodingHeader) || strings.HasPrefix(k, "Nats-") || strings.HasPrefix(k, streams.EnvelopeHeader) {
			continue
		}
		if out == nil {
			out = nats.Header{}
		}
		out[k] = v
	}
	return out
}

// ReaderOption configures a Reader.
type ReaderOption func(*readerConfig) error

type readerConfig struct {
	stream  string
	filters []string
	durable string
	start   Position
	newOnly bool
}

// WithNewOnly reads only events stored from now on (like tail -f).
func WithNewOnly() ReaderOption {
	return func(c *readerConfig) error { c.newOnly = true; return nil }
}

// WithStream reads another stream than EVENTS.
func WithStream(name string) ReaderOption {
	return func(c *readerConfig) error { c.stream = name; return nil }
}

// WithFilter reads only the given subjects (wildcards allowed).
func WithFilter(subjects ...string) ReaderOption {
	return func(c *readerConfig) error { c.filters = subjects; return nil }
}

// WithDurable reads through the durable consumer name (created if needed,
// explicit acks): several readers with one name share the events, and a
// restarted reader continues where the consumer is. A stream message is
// acknowledged when Next is called after its last event was returned.
// Without it the Reader uses an ordered consumer of its own.
func WithDurable(name string) ReaderOption {
	return func(c *readerConfig) error { c.durable = name; return nil }
}

// WithStartAt starts at position p (inclusive): the events of p.Seq before
// p.Index are skipped. With a durable consumer it applies only when the
// consumer is created.
func WithStartAt(p Position) ReaderOption {
	return func(c *readerConfig) error { c.start = p; return nil }
}

// Reader yields the events of a stream one by one with their positions,
// undoing envelopes and compression. Next is not safe for concurrent use.
type Reader struct {
	js   jetstream.JetStream
	cfg  readerConfig
	cons jetstream.Consumer
	it   jetstream.MessagesContext

	buf     []Event
	pending jetstream.Msg // message whose events are in buf, acked when buf drains
	skip    Position
}

// NewReader creates the consumer and starts reading.
func NewReader(ctx context.Context, js jetstream.JetStream, opts ...ReaderOption) (*Reader, error) {
	cfg := readerConfig{stream: streams.Events}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("new reader: %w", err)
		}
	}
	deliver, startSeq := jetstream.DeliverAllPolicy, uint64(0)
	if cfg.start.Seq > 0 {
		deliver, startSeq = jetstream.DeliverByStartSequencePolicy, cfg.start.Seq
	} else if cfg.newOnly {
		// "From now on" is pinned to a sequence rather than left to
		// DeliverNew: an ordered consumer that is recreated (a missed
		// heartbeat, a reconnect) before its first message would
		// otherwise restart at the new "now" and skip what came between.
		s, err := js.Stream(ctx, cfg.stream)
		if err != nil {
			return nil, fmt.Errorf("new reader on %s: %w", cfg.stream, err)
		}
		deliver, startSeq = jetstream.DeliverByStartSequencePolicy, s.CachedInfo().State.LastSeq+1
	}
	r := &Reader{js: js, cfg: cfg, skip: cfg.start}
	var err error
	if cfg.durable != "" {
		r.cons, err = js.CreateOrUpdateConsumer(ctx, cfg.stream, jetstream.ConsumerConfig{
			Durable:        cfg.durable,
			FilterSubjects: cfg.filters,
			AckPolicy:      jetstream.AckExplicitPolicy,
			DeliverPolicy:  deliver,
			OptStartSeq:    startSeq,
		})
	} else {
		r.cons, err = js.OrderedConsumer(ctx, cfg.stream, jetstream.OrderedConsumerConfig{
			FilterSubjects: cfg.filters,
			DeliverPolicy:  deliver,
			OptStartSeq:    startSeq,
		})
	}
	if err != nil {
		return nil, fmt.Errorf("new reader on %s: %w", cfg.stream, err)
	}
	r.it, err = r.cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("new reader on %s: %w", cfg.stream, err)
	}
	return r, nil
}

// Next returns the next event, waiting until one is stored or ctx ends. A
// message that cannot be decoded is returned as an error wrapping
// ErrMalformed (and acknowledged, so it does not block the consumer);
// call Next again to go on.
func (r *Reader) Next(ctx context.Context) (Event, error) {
	for {
		if len(r.buf) > 0 {
			ev := r.buf[0]
			r.buf = r.buf[1:]
			return ev, nil
		}
		if r.pending != nil {
			if err := r.pending.Ack(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
				return Event{}, fmt.Errorf("read %s: ack: %w", r.cfg.stream, err)
			}
			r.pending = nil
		}
		m, err := r.it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return Event{}, ErrClosed
			}
			return Event{}, fmt.Errorf("read %s: %w", r.cfg.stream, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return Event{}, fmt.Errorf("read %s: %w", r.cfg.stream, err)
		}
		evs, err := Decode(m.Subject(), md.Sequence.Stream, md.Timestamp, m.Headers(), m.Data())
		if r.cfg.durable != "" {
			r.pending = m
		}
		if err != nil {
			return Event{}, err
		}
		if r.skip.Seq != 0 && md.Sequence.Stream == r.skip.Seq {
			evs = evs[min(r.skip.Index, len(evs)):]
		}
		if r.skip.Seq != 0 && md.Sequence.Stream >= r.skip.Seq {
			r.skip = Position{}
		}
		r.buf = evs
	}
}

// Get reads the event at pos once. Strong asks the stream leader
// ($JS.API.STREAM.MSG.GET) and sees every acknowledged event; Eventual asks
// any replica by direct get ($JS.API.DIRECT.GET, the stream allows direct)
// and may not see the latest. A missing position returns ErrNotFound.
func (r *Reader) Get(ctx context.Context, pos Position, level ReadLevel) (Event, error) {
	return Get(ctx, r.js.Conn(), r.cfg.stream, pos, level)
}

// Close stops the Reader; the durable consumer, if any, stays.
func (r *Reader) Close() error {
	r.it.Stop()
	return nil
}

// Get reads the event at pos of stream once, at the given read level,
// through conn. See Reader.Get.
func Get(ctx context.Context, nc *nats.Conn, stream string, pos Position, level ReadLevel) (Event, error) {
	evs, err := GetMessage(ctx, nc, stream, pos.Seq, level)
	if err != nil {
		return Event{}, err
	}
	if pos.Index < 0 || pos.Index >= len(evs) {
		return Event{}, fmt.Errorf("get %s %s: %w: the message holds %d events", stream, pos, ErrNotFound, len(evs))
	}
	return evs[pos.Index], nil
}

// GetMessage reads every event of the stream message seq at the given read
// level. A missing message (or stream) returns an error wrapping
// ErrNotFound and jetstream.ErrMsgNotFound.
func GetMessage(ctx context.Context, nc *nats.Conn, stream string, seq uint64, level ReadLevel) ([]Event, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	op, via := "get", jsapi.Leader
	if level == Eventual {
		op, via = "direct get", jsapi.Direct
	}
	m, err := jsapi.GetMsg(ctx, nc, stream, jsapi.GetRequest{Seq: seq}, via)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound), jsapi.HasCode(err, jsapi.CodeStreamNotFound):
		return nil, fmt.Errorf("%s %s %d: %w: %w", op, stream, seq, ErrNotFound, err)
	case err != nil:
		return nil, fmt.Errorf("%s %s %d: %w", op, stream, seq, err)
	}
	return Decode(m.Subject, m.Seq, m.Time, m.Header, m.Data)
}
