package replicator

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// PublisherOption configures a Publisher.
type PublisherOption func(*config) error

// config is a Publisher's configuration after its options.
type config struct {
	level          Level
	envelope       bool
	maxInFlight    int
	maxBatches     int
	maxBytesFlying int
	maxBatchEvents int
	maxBatchBytes  int
	linger         time.Duration
	maxBuffered    int
	compression    Compression
	compressAbove  int
	ackTimeout     time.Duration
	retryDeadline  time.Duration
	allPoll        time.Duration
	burstDiv       int
	onResult       func(m *Message, ack Ack, err error)
	logger         *slog.Logger
	registerer     prometheus.Registerer
}

// Defaults.
const (
	// DefaultMaxInFlight is the pipeline depth in one-message-per-event mode.
	DefaultMaxInFlight = 256
	// DefaultEnvelopeMaxInFlight is the pipeline depth in envelope mode: a
	// shallow pipeline lets batches grow while earlier ones are in flight.
	DefaultEnvelopeMaxInFlight = 4
	// DefaultMaxBatchEvents caps the events of one batch.
	DefaultMaxBatchEvents = 4096
	// DefaultMaxBatchBytes caps the bytes of one batch (one envelope).
	DefaultMaxBatchBytes = 1 << 20
	// DefaultMaxBuffered caps the bytes accepted and not yet published.
	DefaultMaxBuffered = 64 << 20
	// DefaultCompressAbove is the size from which payloads are compressed.
	DefaultCompressAbove = 1024
	// DefaultAckTimeout is how long one publish attempt waits for its ack.
	DefaultAckTimeout = 2 * time.Second
	// DefaultRetryDeadline bounds retries of one event. It must stay well
	// inside the stream's duplicate window (2 minutes for EVENTS) for
	// retries to be idempotent.
	DefaultRetryDeadline = 30 * time.Second
)

// payloadHeadroom is what a message keeps free below the server's max
// payload for its subject, reply subject and headers: an envelope's body,
// and an ingested event's, may take the rest.
const payloadHeadroom = 4096

// bodyLimit returns the largest envelope or event body that fits in one
// message on a server with the given max payload (nats.Conn.MaxPayload).
func bodyLimit(maxPayload int64) int { return int(maxPayload) - payloadHeadroom }

// fitPayload shrinks the batch bytes of an envelope Publisher so that an
// envelope fits in one message of at most maxPayload bytes, and reports
// whether it did. Without envelopes a batch is many messages and nothing
// needs to fit.
func (c *config) fitPayload(maxPayload int64) (bool, error) {
	limit := bodyLimit(maxPayload)
	if limit < 1 {
		return false, fmt.Errorf("the server's max payload %d leaves no room for events", maxPayload)
	}
	if !c.envelope || c.maxBatchBytes <= limit {
		return false, nil
	}
	c.maxBatchBytes = limit
	return true, nil
}

func defaultConfig() config {
	return config{
		level:          Quorum,
		maxBatchEvents: DefaultMaxBatchEvents,
		maxBatchBytes:  DefaultMaxBatchBytes,
		maxBuffered:    DefaultMaxBuffered,
		compression:    S2,
		compressAbove:  DefaultCompressAbove,
		ackTimeout:     DefaultAckTimeout,
		retryDeadline:  DefaultRetryDeadline,
		allPoll:        5 * time.Millisecond,
		burstDiv:       8,
	}
}

func (c *config) validate() error {
	switch {
	case c.level < Async || c.level > All:
		return fmt.Errorf("%w: %d", ErrUnknownLevel, c.level)
	case c.maxInFlight < 1:
		return fmt.Errorf("max in flight must be at least 1, got %d", c.maxInFlight)
	case c.maxBytesFlying < 0:
		return fmt.Errorf("max bytes in flight must not be negative, got %d", c.maxBytesFlying)
	case c.maxBatches < 0:
		return fmt.Errorf("max batches in flight must not be negative, got %d", c.maxBatches)
	case c.maxBatchEvents < 1:
		return fmt.Errorf("max batch events must be at least 1, got %d", c.maxBatchEvents)
	case c.maxBatchBytes < 1:
		return fmt.Errorf("max batch bytes must be at least 1, got %d", c.maxBatchBytes)
	case c.maxBuffered < c.maxBatchBytes:
		return fmt.Errorf("max buffered bytes %d is below the max batch bytes %d", c.maxBuffered, c.maxBatchBytes)
	case c.linger < 0:
		return fmt.Errorf("linger must not be negative, got %s", c.linger)
	case c.compression < S2 || c.compression > NoCompression:
		return fmt.Errorf("%w: %d", ErrUnknownEncoding, c.compression)
	case c.compressAbove < 0:
		return fmt.Errorf("compression threshold must not be negative, got %d", c.compressAbove)
	case c.ackTimeout <= 0 || c.retryDeadline <= 0:
		return errors.New("ack timeout and retry deadline must be positive")
	}
	return nil
}

// WithLevel sets the level of events whose Message.Level is LevelDefault
// (default Quorum).
func WithLevel(l Level) PublisherOption {
	return func(c *config) error { c.level = l; return nil }
}

// WithEnvelope packs the events of a batch that share a subject into one
// stream message (an envelope), compressed as a whole. Events that carry an
// explicit id or a Nats-* header, and a batch's only event on a subject,
// are still stored one per message. Read envelopes with a Reader or
// `platform tail`.
func WithEnvelope() PublisherOption {
	return func(c *config) error { c.envelope = true; return nil }
}

// WithMaxInFlight sets the pipeline depth: how many stream messages may be
// published and not yet acknowledged (default 256, or 4 with envelopes).
// When it is full, batches wait and grow.
func WithMaxInFlight(n int) PublisherOption {
	return func(c *config) error { c.maxInFlight = n; return nil }
}

// WithMaxBatchesInFlight caps how many batches may be published and not
// yet wholly acknowledged (default 0: no cap beyond WithMaxInFlight). With
// 1 the next batch forms while one is in flight and is sent when that one
// is acknowledged: the classic group commit, whose batches grow with the
// load, so fewer and larger stream messages carry the same events.
func WithMaxBatchesInFlight(n int) PublisherOption {
	return func(c *config) error { c.maxBatches = n; return nil }
}

// WithMaxBytesInFlight caps the bytes of the stream messages published
// and not yet acknowledged (default 0: no cap beyond WithMaxInFlight); a
// message larger than the cap goes out alone. Another publisher's messages
// to the same stream queue behind these at the stream leader, so the cap
// bounds how long they wait: the ingest service keeps requests from
// waiting behind many large fire-and-forget events with it.
func WithMaxBytesInFlight(n int) PublisherOption {
	return func(c *config) error { c.maxBytesFlying = n; return nil }
}

// WithBatch caps a batch at events events and bytes bytes (defaults 4096
// and 1 MiB). In envelope mode bytes also caps one envelope before
// compression, and is lowered (with a log line) to what fits in one
// message on the connected server: its max payload less 4 KiB.
func WithBatch(events, bytes int) PublisherOption {
	return func(c *config) error { c.maxBatchEvents, c.maxBatchBytes = events, bytes; return nil }
}

// WithLinger makes a batch wait up to d for more events before it is sent
// (default 0: a batch is sent as soon as the pipeline has room, and grows
// while the pipeline is full).
func WithLinger(d time.Duration) PublisherOption {
	return func(c *config) error { c.linger = d; return nil }
}

// WithMaxBuffered caps the bytes accepted and not yet published (default
// 64 MiB). Beyond it Publish blocks and the ingest service refuses.
func WithMaxBuffered(bytes int) PublisherOption {
	return func(c *config) error { c.maxBuffered = bytes; return nil }
}

// WithCompression compresses payloads of at least above bytes with codec
// (default S2 from 1024 bytes), skipping those that do not shrink.
func WithCompression(codec Compression, above int) PublisherOption {
	return func(c *config) error { c.compression, c.compressAbove = codec, above; return nil }
}

// WithRetry sets how long one attempt waits for its ack and how long an
// event is retried in all (defaults 2s and 30s). Keep the deadline inside
// the stream's duplicate window.
func WithRetry(ackTimeout, deadline time.Duration) PublisherOption {
	return func(c *config) error { c.ackTimeout, c.retryDeadline = ackTimeout, deadline; return nil }
}

// WithResultHandler calls fn with every event's outcome, at its level. It
// runs on the Publisher's goroutines and must not block.
func WithResultHandler(fn func(m *Message, ack Ack, err error)) PublisherOption {
	return func(c *config) error { c.onResult = fn; return nil }
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) PublisherOption {
	return func(c *config) error { c.logger = l; return nil }
}

// WithRegisterer registers the Publisher's metrics (default: none).
func WithRegisterer(r prometheus.Registerer) PublisherOption {
	return func(c *config) error { c.registerer = r; return nil }
}
