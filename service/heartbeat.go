package service

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/nats-io/nats.go"

	"github.com/platform/platform/streams"
)

// MaxHeartbeatBytes bounds a heartbeat body; anything larger is dropped.
const MaxHeartbeatBytes = 16 << 10

// Reasons a heartbeat is refused (HeartbeatError.Reason), the label every
// service that reads heartbeats counts refusals by.
const (
	BadHeartbeatSubject = "subject" // not hb.<service>.<instance>
	BadHeartbeatBody    = "body"    // not a JSON object or msgpack map, or a Content-Type neither
	BadHeartbeatValue   = "value"   // a figure no instance can report
	BadHeartbeatSize    = "size"    // over MaxHeartbeatBytes
)

// BadHeartbeatReasons lists every reason, for metrics that start each
// label at zero.
var BadHeartbeatReasons = []string{BadHeartbeatSubject, BadHeartbeatBody, BadHeartbeatValue, BadHeartbeatSize}

// ErrBadHeartbeat is wrapped by every heartbeat decoding failure.
var ErrBadHeartbeat = errors.New("bad heartbeat")

// HeartbeatError is a refused heartbeat and why.
type HeartbeatError struct {
	// Reason is one of the BadHeartbeat* labels.
	Reason string
	msg    string
	cause  error
}

func (e *HeartbeatError) Error() string { return "bad heartbeat (" + e.Reason + "): " + e.msg }

// Unwrap returns ErrBadHeartbeat and the cause, if any.
func (e *HeartbeatError) Unwrap() []error {
	if e.cause != nil {
		return []error{ErrBadHeartbeat, e.cause}
	}
	return []error{ErrBadHeartbeat}
}

func badHeartbeat(reason, format string, args ...any) error {
	return &HeartbeatError{Reason: reason, msg: fmt.Sprintf(format, args...)}
}

// HeartbeatReason returns the BadHeartbeat* reason of err (body for an
// error that is not a *HeartbeatError).
func HeartbeatReason(err error) string {
	if e, ok := errors.AsType[*HeartbeatError](err); ok {
		return e.Reason
	}
	return BadHeartbeatBody
}

// Heartbeat is one decoded heartbeat message: who sent it and its load.
type Heartbeat struct {
	Service, Instance string
	Load              Load
}

// ParseHeartbeat decodes a heartbeat message: its subject names the
// instance (streams.ParseHeartbeatSubject) and its body is decoded by
// DecodeHeartbeat. Every error is a *HeartbeatError.
func ParseHeartbeat(subject string, h nats.Header, data []byte) (Heartbeat, error) {
	svc, inst, err := streams.ParseHeartbeatSubject(subject)
	if err != nil {
		return Heartbeat{}, &HeartbeatError{Reason: BadHeartbeatSubject, msg: err.Error(), cause: err}
	}
	l, err := DecodeHeartbeat(h, data)
	if err != nil {
		return Heartbeat{}, err
	}
	return Heartbeat{Service: svc, Instance: inst, Load: l}, nil
}

// DecodeHeartbeat decodes a heartbeat body, the one rule for every reader.
// The codec is the one its Content-Type names (JSON when absent), so the
// platform's own JSON heartbeats and msgpack ones from other senders read
// alike. It is lenient where the contract lets senders be brief: every
// field is optional, unknown fields are ignored and an empty body is a
// valid heartbeat (a bare `nats pub hb.svc.i1 ""` is alive). It refuses a
// body over MaxHeartbeatBytes, what is not a document, and values no
// instance can report (negative or non-finite figures, fractions above 1,
// an interval over an hour). Every error is a *HeartbeatError.
func DecodeHeartbeat(h nats.Header, data []byte) (Load, error) {
	var l Load
	if len(data) > MaxHeartbeatBytes {
		return l, badHeartbeat(BadHeartbeatSize, "%d bytes, the limit is %d", len(data), MaxHeartbeatBytes)
	}
	codec, err := CodecOf(h)
	if err != nil {
		return l, badHeartbeat(BadHeartbeatBody, "%v", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return l, nil
	}
	switch codec {
	case Msgpack:
		// DecodeLenient checks every announced length against the bytes
		// present before the decoder allocates.
		if err := Msgpack.DecodeLenient(data, &l); err != nil {
			return Load{}, badHeartbeat(BadHeartbeatBody, "%s", AsError(err).Message)
		}
	default:
		// A JSON heartbeat must be an object (or null); json.Unmarshal
		// ignores unknown fields, which is what the contract wants.
		if t := bytes.TrimSpace(data); t[0] != '{' && !bytes.Equal(t, []byte("null")) {
			return l, badHeartbeat(BadHeartbeatBody, "JSON heartbeat must be an object")
		}
		if err := json.Unmarshal(data, &l); err != nil {
			return Load{}, badHeartbeat(BadHeartbeatBody, "invalid JSON: %v", err)
		}
	}
	if err := l.check(); err != nil {
		return Load{}, err
	}
	return l, nil
}

// Largest values a heartbeat may carry; above them the sender is broken.
const (
	maxIntervalMS = 3_600_000 // one hour
	maxMillis     = 1e7       // latencies: under three hours
	maxRate       = 1e9
)

// check refuses figures no instance can report.
func (l Load) check() error {
	fractions := []struct {
		name string
		v    float64
	}{{"cpu", l.CPU}, {"mem", l.Mem}, {"error_rate", l.ErrorRate}}
	for _, f := range fractions {
		if math.IsNaN(f.v) || f.v < 0 || f.v > 1 {
			return badHeartbeat(BadHeartbeatValue, "%s=%v: want a fraction in [0,1]", f.name, f.v)
		}
	}
	magnitudes := []struct {
		name string
		v    float64
		max  float64
	}{
		{"latency_ms", l.LatencyMS, maxMillis},
		{"p99_ms", l.P99MS, maxMillis},
		{"rps", l.RPS, maxRate},
		{"in_flight", float64(l.InFlight), maxRate},
		{"interval_ms", float64(l.IntervalMS), maxIntervalMS},
	}
	for _, m := range magnitudes {
		if math.IsNaN(m.v) || m.v < 0 || m.v > m.max {
			return badHeartbeat(BadHeartbeatValue, "%s=%v: want a number in [0,%g]", m.name, m.v, m.max)
		}
	}
	return nil
}
