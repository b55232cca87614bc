package service

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/platform/platform/streams"
)

func TestParseHeartbeatSubject(t *testing.T) {
	tests := []struct {
		subject, svc, inst string
		ok                 bool
	}{
		{"hb.demo.i1", "demo", "i1", true},
		{"hb.platform-txn.Kx3abc", "platform-txn", "Kx3abc", true},
		{"hb.demo", "", "", false},
		{"hb.demo.i1.extra", "", "", false},
		{"hb..i1", "", "", false},
		{"hb.demo.", "", "", false},
		{"heartbeat.demo.i1", "", "", false},
		{"hb.de mo.i1", "", "", false},
		{"hb.demo.i*", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.subject, func(t *testing.T) {
			hb, err := ParseHeartbeat(tt.subject, nil, []byte("{}"))
			if !tt.ok {
				require.Error(t, err)
				require.ErrorIs(t, err, ErrBadHeartbeat)
				require.ErrorIs(t, err, streams.ErrBadSubject)
				require.Equal(t, BadHeartbeatSubject, HeartbeatReason(err))
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.svc, hb.Service)
			require.Equal(t, tt.inst, hb.Instance)
		})
	}
}

func TestDecodeHeartbeat(t *testing.T) {
	mp, err := msgpack.Marshal(map[string]any{"seq": 7, "cpu": 0.5, "unknown": "ignored"})
	require.NoError(t, err)
	msgpackHdr := nats.Header{ContentTypeHeader: []string{ContentTypeMsgpack}}
	tests := []struct {
		name   string
		header nats.Header
		body   string
		want   Load
		reason string // "" = accepted
	}{
		{name: "empty body is a heartbeat", body: ""},
		{name: "whitespace is a heartbeat", body: "  \n"},
		{name: "empty object", body: "{}"},
		{name: "null", body: "null"},
		{name: "full contract", body: `{"seq":1,"interval_ms":1000,"cpu":0.31,"mem":0.52,"latency_ms":12,"p99_ms":40,"error_rate":0.01,"rps":120,"leaving":false}`,
			want: Load{Seq: 1, IntervalMS: 1000, CPU: 0.31, Mem: 0.52, LatencyMS: 12, P99MS: 40, ErrorRate: 0.01, RPS: 120}},
		{name: "unknown fields ignored", body: `{"seq":3,"region":"eu"}`, want: Load{Seq: 3}},
		{name: "leaving", body: `{"leaving":true}`, want: Load{Leaving: true}},
		{name: "msgpack", header: msgpackHdr, body: string(mp), want: Load{Seq: 7, CPU: 0.5}},
		{name: "garbage", body: "hello", reason: BadHeartbeatBody},
		{name: "array", body: "[1]", reason: BadHeartbeatBody},
		{name: "number", body: "5", reason: BadHeartbeatBody},
		{name: "wrong type", body: `{"cpu":"high"}`, reason: BadHeartbeatBody},
		{name: "truncated", body: `{"cpu":0.`, reason: BadHeartbeatBody},
		{name: "negative cpu", body: `{"cpu":-0.1}`, reason: BadHeartbeatValue},
		{name: "cpu as percent", body: `{"cpu":31}`, reason: BadHeartbeatValue},
		{name: "error rate above one", body: `{"error_rate":1.5}`, reason: BadHeartbeatValue},
		{name: "negative latency", body: `{"latency_ms":-1}`, reason: BadHeartbeatValue},
		{name: "interval over an hour", body: `{"interval_ms":3600001}`, reason: BadHeartbeatValue},
		{name: "negative in flight", body: `{"in_flight":-1}`, reason: BadHeartbeatValue},
		{name: "bad msgpack", header: msgpackHdr, body: "\xc1", reason: BadHeartbeatBody},
		{name: "unknown content type", header: nats.Header{ContentTypeHeader: []string{"text/xml"}}, body: "{}", reason: BadHeartbeatBody},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeHeartbeat(tt.header, []byte(tt.body))
			if tt.reason != "" {
				require.Error(t, err)
				require.True(t, errors.Is(err, ErrBadHeartbeat))
				require.Equal(t, tt.reason, HeartbeatReason(err), "err: %v", err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
	_, err = DecodeHeartbeat(nil, make([]byte, MaxHeartbeatBytes+1))
	require.Equal(t, BadHeartbeatSize, HeartbeatReason(err))
}

func TestDecodeHeartbeatRejectsNonFiniteMsgpack(t *testing.T) {
	hdr := nats.Header{ContentTypeHeader: []string{ContentTypeMsgpack}}
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		b, err := msgpack.Marshal(map[string]any{"latency_ms": v})
		require.NoError(t, err)
		_, err = DecodeHeartbeat(hdr, b)
		require.Equal(t, BadHeartbeatValue, HeartbeatReason(err), "latency_ms=%v", v)
	}
}

// FuzzDecodeHeartbeat checks that decoding never panics, that whatever it
// accepts is within the contract's bounds, and that an accepted heartbeat
// survives a round trip.
func FuzzDecodeHeartbeat(f *testing.F) {
	for _, s := range []string{
		"", "{}", "null", "[]", "5", `"x"`, "hello", `{"cpu":0.5}`, `{"cpu":-1}`,
		`{"seq":1,"interval_ms":1000,"cpu":0.31,"mem":0.52,"latency_ms":12,"p99_ms":40,"error_rate":0.01,"rps":120,"leaving":false}`,
		`{"seq":18446744073709551615}`, `{"interval_ms":1e300}`, `{"leaving":true,"x":{"y":[1,2]}}`,
		"\x80", "\x81\xa3cpu\xcb\x3f\xe0\x00\x00\x00\x00\x00\x00",
		// Length bombs: headers announcing 2^32-1 entries or bytes.
		"\xdd\xff\xff\xff\xff", "\xdf\xff\xff\xff\xff", "\x81\xa3cpu\xc6\xff\xff\xff\xff",
		"\x81\xa1x\xdd\xff\xff\xff\xff", strings.Repeat("\x91", 10000),
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	hdr := nats.Header{ContentTypeHeader: []string{ContentTypeMsgpack}}
	f.Fuzz(func(t *testing.T, body string, asMsgpack bool) {
		var h nats.Header
		if asMsgpack {
			h = hdr
		}
		l, err := DecodeHeartbeat(h, []byte(body))
		if err != nil {
			if !errors.Is(err, ErrBadHeartbeat) {
				t.Fatalf("error %v does not wrap ErrBadHeartbeat", err)
			}
			return
		}
		if err := l.check(); err != nil {
			t.Fatalf("accepted an out-of-bounds heartbeat: %v", err)
		}
		b, err := json.Marshal(l)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		back, err := DecodeHeartbeat(nil, b)
		if err != nil || back != l {
			t.Fatalf("round trip: got %+v, %v; want %+v", back, err, l)
		}
	})
}
