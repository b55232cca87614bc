package detector

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/platform/platform/service"
	"github.com/platform/platform/services/detector/accrual"
	"github.com/platform/platform/streams"
)

// MaxHeartbeatBytes bounds a heartbeat body; anything larger is dropped.
const MaxHeartbeatBytes = 16 << 10

// Reasons a heartbeat is dropped, the label of
// platform_detector_bad_heartbeats_total.
const (
	badSubject = "subject"
	badBody    = "body"
	badValue   = "value"
	badSize    = "size"
)

// errBadHeartbeat is wrapped by every heartbeat decoding failure; the
// wrapping badHeartbeatError carries the reason.
var errBadHeartbeat = errors.New("bad heartbeat")

type badHeartbeatError struct {
	reason string
	msg    string
	cause  error // what the reason was found by, if an error
}

func (e *badHeartbeatError) Error() string { return "bad heartbeat (" + e.reason + "): " + e.msg }

func (e *badHeartbeatError) Unwrap() []error {
	if e.cause != nil {
		return []error{errBadHeartbeat, e.cause}
	}
	return []error{errBadHeartbeat}
}

func bad(reason, format string, args ...any) error {
	return &badHeartbeatError{reason: reason, msg: fmt.Sprintf(format, args...)}
}

// reasonOf returns the bad-heartbeat reason of err.
func reasonOf(err error) string {
	var b *badHeartbeatError
	if errors.As(err, &b) {
		return b.reason
	}
	return badBody
}

// Ingest decodes one heartbeat message received at now (time since tab's
// epoch) and records it in tab. A bad heartbeat is not recorded; its error
// wraps an error whose reason is one of the bad-heartbeat labels: subject
// (not hb.<service>.<instance>, see streams.ParseHeartbeatSubject), body,
// value or size (see DecodeHeartbeat).
func Ingest(tab *accrual.Table, subject string, h nats.Header, data []byte, now time.Duration) error {
	svc, inst, err := parseSubject(subject)
	if err != nil {
		return err
	}
	l, err := DecodeHeartbeat(h, data)
	if err != nil {
		return err
	}
	tab.Heartbeat(svc, inst, accrual.Load(l), now)
	return nil
}

// parseSubject is streams.ParseHeartbeatSubject with the bad-heartbeat
// reason "subject".
func parseSubject(subject string) (svc, instance string, err error) {
	svc, instance, err = streams.ParseHeartbeatSubject(subject)
	if err != nil {
		return "", "", &badHeartbeatError{reason: badSubject, msg: err.Error(), cause: err}
	}
	return svc, instance, nil
}

// DecodeHeartbeat decodes a heartbeat body leniently, in the codec its
// Content-Type names (JSON when absent): every field is optional, unknown
// fields are ignored and an empty body is a valid heartbeat. It rejects
// what is not a document, and values no instance can report (negative or
// non-finite figures, fractions above 1, an interval over an hour). Every
// error wraps an error whose reason is one of the bad-heartbeat labels.
func DecodeHeartbeat(h nats.Header, data []byte) (service.Load, error) {
	var l service.Load
	if len(data) > MaxHeartbeatBytes {
		return l, bad(badSize, "%d bytes, the limit is %d", len(data), MaxHeartbeatBytes)
	}
	codec := service.JSON
	if h != nil {
		c, err := service.CodecOf(h)
		if err != nil {
			return l, bad(badBody, "%v", err)
		}
		codec = c
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return l, nil
	}
	switch codec {
	case service.Msgpack:
		if err := service.Msgpack.DecodeLenient(data, &l); err != nil {
			return service.Load{}, bad(badBody, "%v", service.AsError(err).Message)
		}
	default:
		// A JSON heartbeat must be an object (or null); json.Unmarshal
		// ignores unknown fields, which is what the contract wants.
		if t := bytes.TrimSpace(data); t[0] != '{' && !bytes.Equal(t, []byte("null")) {
			return l, bad(badBody, "JSON heartbeat must be an object")
		}
		if err := json.Unmarshal(data, &l); err != nil {
			return service.Load{}, bad(badBody, "invalid JSON: %v", err)
		}
	}
	if err := checkLoad(l); err != nil {
		return service.Load{}, err
	}
	return l, nil
}

// Largest values a heartbeat may carry; above them the sender is broken.
const (
	maxIntervalMS = 3_600_000 // one hour
	maxMillis     = 1e7       // latencies: under three hours
	maxRate       = 1e9
)

func checkLoad(l service.Load) error {
	fractions := []struct {
		name string
		v    float64
	}{{"cpu", l.CPU}, {"mem", l.Mem}, {"error_rate", l.ErrorRate}}
	for _, f := range fractions {
		if math.IsNaN(f.v) || f.v < 0 || f.v > 1 {
			return bad(badValue, "%s=%v: want a fraction in [0,1]", f.name, f.v)
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
			return bad(badValue, "%s=%v: want a number in [0,%g]", m.name, m.v, m.max)
		}
	}
	return nil
}
