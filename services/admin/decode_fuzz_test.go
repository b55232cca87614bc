package admin

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/platform/platform/service"
	"github.com/platform/platform/service/servicetest"
)

// Fuzz targets for what admin.status reads: its request body, from any
// client, and its answer, read by platform status from whoever answers
// the subject. `go test` runs their seeds; `go test -fuzz FuzzName`
// explores.

// FuzzStatusRequest reads arbitrary admin.status bodies as the handler
// does: every refusal is a bad_request or too_large; an empty body, or
// one without "services", asks for the services; and whatever an
// accepted body asked, a request written back in either codec asks the
// same.
func FuzzStatusRequest(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `{"services":false}`, `{"services":true}`, `null`, `  `, `{"services":"no"}`,
		`{"services":false,"x":1}`, `{"services":false} {}`, strings.Repeat(`{"a":`, 10000),
	} {
		f.Add([]byte(s), false)
	}
	no := false
	good, _ := service.Msgpack.Encode(StatusRequest{Services: &no})
	f.Add(good, true)
	// A msgpack map announcing 2^32-1 entries in five bytes.
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff}, true)
	f.Fuzz(func(t *testing.T, body []byte, asMsgpack bool) {
		c := service.JSON
		if asMsgpack {
			c = service.Msgpack
		}
		decode := func(b []byte, c service.Codec) (bool, error) {
			return decodeStatusRequest(b, func(v any) error { return c.Decode(b, v) })
		}
		with, err := decode(body, c)
		if err != nil {
			servicetest.RequireCode(t, "status request", err, service.CodeBadRequest, service.CodeTooLarge)
			return
		}
		if len(body) == 0 && !with {
			t.Fatalf("an empty body asked for no services")
		}
		var req StatusRequest
		if err := c.Decode(body, &req); err == nil && req.Services == nil && !with {
			t.Fatalf("body %q without services asked for none", body)
		}
		for _, w := range []service.Codec{service.JSON, service.Msgpack} {
			again, err := w.Encode(StatusRequest{Services: &with})
			if err != nil {
				t.Fatalf("encode in %s: %v", w, err)
			}
			if back, err := decode(again, w); err != nil || back != with {
				t.Fatalf("body %q asked services=%v; written in %s as %q it asks %v, %v", body, with, w, again, back, err)
			}
		}
	})
}

// FuzzStatusAnswer reads arbitrary admin.status answers as platform
// status does: an error body gives the *service.Error it carries, what
// is not a status gives a decode error, and a status written back as
// JSON reads the same.
func FuzzStatusAnswer(f *testing.F) {
	w := 87.5
	st := Status{
		Embedded: true, MetaLeader: "n1", Problems: []string{"stream EVENTS has no leader"},
		Nodes:    []Node{{Name: "n1", URL: "nats://127.0.0.1:4222", Running: true, MetaLeader: true}, {Name: "n2"}},
		Streams:  []Stream{{Name: "EVENTS", Leader: "n1", Replicas: 3, Messages: 10, Bytes: 1 << 40, Peers: []Replica{{Name: "n2", Current: true, Lag: 2, Active: 1.5}, {Name: "n3", Offline: true}}, Problem: "below quorum"}},
		Services: []Instance{{Name: "platform-txn", ID: "ABC", Version: "1.2.3", Weight: &w, WeightReason: "policy"}, {Name: "admin", ID: "X"}},
	}
	b, _ := json.Marshal(st)
	f.Add(b)
	b, _ = json.Marshal(Status{MetaLeaderNote: metaLeaderHint, Nodes: []Node{}, Streams: []Stream{}, Services: []Instance{}, Problems: []string{}})
	f.Add(b)
	b, _ = json.Marshal(service.Errorf(service.CodeUnavailable, "gather status: %s", "no JetStream"))
	f.Add(b)
	for _, s := range []string{
		`{"error":{}}`, `{"error":"text"}`, `{"error":{"code":"internal","message":"m","x":[1]}}`, `null`, ``, `[]`,
		`{"nodes":[{"name":1}]}`, `{"streams":[{"messages":-1}]}`, `{"services":[{"weight":1e400}]}`, strings.Repeat("[", 100000),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, answer []byte) {
		st, err := DecodeStatus(answer)
		if err != nil {
			var se *service.Error
			if !errors.As(err, &se) && !strings.HasPrefix(err.Error(), "decode status: ") {
				t.Fatalf("answer %q: %v, want a *service.Error or a decode error", answer, err)
			}
			if st != nil {
				t.Fatalf("answer %q gave both a status and %v", answer, err)
			}
			return
		}
		again, err := json.Marshal(st)
		if err != nil {
			t.Fatalf("answer %q read as %+v, which JSON cannot write: %v", answer, st, err)
		}
		back, err := DecodeStatus(again)
		if err != nil {
			t.Fatalf("status written as %s does not read back: %v", again, err)
		}
		if twice, _ := json.Marshal(back); string(twice) != string(again) {
			t.Fatalf("status written as %s reads back as %s", again, twice)
		}
	})
}
