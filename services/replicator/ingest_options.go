package replicator

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure the ingest service.
type Options struct {
	// Conn is the NATS connection the service answers and publishes on.
	Conn *nats.Conn
	// JS is a JetStream context on Conn (default: made from Conn).
	JS jetstream.JetStream
	// PerEvent stores one stream message per event, readable by the stock
	// NATS CLI. By default events of one topic that arrive together share
	// an envelope (a lone event still gets a message of its own).
	PerEvent bool
	// Compression is the codec for payloads of at least CompressAbove
	// bytes (default S2 from 1024 bytes).
	Compression Compression
	// CompressAbove is the compression threshold in bytes (0: 1024).
	CompressAbove int
	// MaxEventBytes is the largest event accepted (default 1 MiB). It is
	// lowered, with a log line, to the server's max payload less 4 KiB
	// for the subject and headers.
	MaxEventBytes int
	// MaxInFlight is the publish pipeline depth (0: 64 with envelopes and a
	// cap on batches, else the Publisher's default).
	MaxInFlight int
	// BatchesInFlight caps the batches published and not yet acknowledged
	// (0: 1 with envelopes, so each batch holds everything that arrived
	// while the previous one was being stored; no cap per event; negative:
	// no cap).
	BatchesInFlight int
	// Linger is how long a batch waits for more events (default 0: it
	// grows only while the pipeline is full).
	Linger time.Duration
	// Buffer is the memory, in event bytes, for events received and not
	// yet stored (default DefaultIngestBuffer, 1 GiB): a quarter bounds the
	// intake subscription's pending queue, the rest the Publisher's buffer.
	// Beyond it requests get "unavailable" and fire-and-forget events are
	// dropped and counted (reasons slow_consumer and buffer_full). The
	// process holds up to about three times as much for 128-byte events,
	// counting each event's bookkeeping.
	Buffer int
	// TopicRate is the events per second allowed per topic (0: unlimited),
	// with bursts of TopicBurst (default: one second's worth).
	TopicRate float64
	// TopicBurst is the per-topic bucket size.
	TopicBurst int
	// ClientRate is the events per second allowed per client (0:
	// unlimited), with bursts of ClientBurst (default: one second's worth).
	// See streams.ClientHeader for what a client is.
	ClientRate float64
	// ClientBurst is the per-client bucket size.
	ClientBurst int
	// RequestTimeout is the longest a request at quorum or all waits for
	// its answer (default DefaultRequestTimeout): past it, or at once when
	// earlier requests have waited half of it, the answer is unavailable
	// with retry_after_ms. A request's Platform-Timeout header may
	// shorten it.
	RequestTimeout time.Duration
	// RetryDeadline bounds publish retries across leader changes (default 30s).
	RetryDeadline time.Duration
	// HeartbeatInterval is the service heartbeat period (0: the default).
	HeartbeatInterval time.Duration
	// Logger is the logger (default slog.Default()).
	Logger *slog.Logger
	// Registerer registers the metrics (nil: not registered).
	Registerer prometheus.Registerer
}

func (o *Options) validate() error {
	switch {
	case o.Conn == nil:
		return errors.New("replicator: nil NATS connection")
	case o.MaxEventBytes < 0 || o.CompressAbove < 0 || o.MaxInFlight < 0 || o.Buffer < 0 || o.RequestTimeout < 0:
		return errors.New("replicator: sizes must not be negative")
	case o.TopicRate < 0 || o.ClientRate < 0 || o.TopicBurst < 0 || o.ClientBurst < 0:
		return errors.New("replicator: rates and bursts must not be negative")
	case o.Compression < S2 || o.Compression > NoCompression:
		return fmt.Errorf("replicator: %w: %d", ErrUnknownEncoding, o.Compression)
	}
	if bodyLimit(o.Conn.MaxPayload()) < 1 {
		return fmt.Errorf("replicator: the server's max payload %d leaves no room for events", o.Conn.MaxPayload())
	}
	return nil
}

// fitMaxEvent sets MaxEventBytes to its default when unset, and lowers it
// (with a log line) to what fits in one message on the connected server:
// its max payload less room for the subject and headers.
func (o *Options) fitMaxEvent() {
	want := cmp.Or(o.MaxEventBytes, DefaultMaxEventBytes)
	o.MaxEventBytes = min(want, bodyLimit(o.Conn.MaxPayload()))
	if o.MaxEventBytes < want {
		o.Logger.Info("event size limited by the server's max payload", "component", "replicator",
			"max_event_bytes", o.MaxEventBytes, "configured", want, "max_payload", o.Conn.MaxPayload())
	}
}

func (o *Options) setDefaults() error {
	if o.JS == nil {
		js, err := jetstream.New(o.Conn)
		if err != nil {
			return fmt.Errorf("replicator: jetstream: %w", err)
		}
		o.JS = js
	}
	if o.CompressAbove == 0 {
		o.CompressAbove = DefaultCompressAbove
	}
	if o.Buffer == 0 {
		o.Buffer = DefaultIngestBuffer
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.RetryDeadline == 0 {
		o.RetryDeadline = DefaultRetryDeadline
	}
	if o.TopicRate > 0 && o.TopicBurst == 0 {
		o.TopicBurst = max(1, int(o.TopicRate))
	}
	if o.ClientRate > 0 && o.ClientBurst == 0 {
		o.ClientBurst = max(1, int(o.ClientRate))
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.fitMaxEvent()
	return nil
}
