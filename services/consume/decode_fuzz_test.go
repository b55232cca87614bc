package consume

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/platform/platform/service"
	"github.com/platform/platform/service/servicetest"
	"github.com/platform/platform/services/replicator"
)

// Fuzz targets for what the consume service reads from clients (tokens,
// the bodies of consume.<group>.next, .ack and .create) and from its
// bucket (a group's config key). `go test` runs their seeds;
// `go test -fuzz FuzzName` explores.

// decodeBody decodes a request body as Request.DecodeDocument does.
func decodeBody(c service.Codec, b []byte, v any) error {
	if err := c.Decode(b, v); err != nil {
		return err
	}
	if t := bytes.TrimSpace(b); string(t) == "null" || (len(t) == 1 && t[0] == 0xc0) {
		return service.Errorf(service.CodeBadRequest, "null body")
	}
	return nil
}

// codecOf picks the codec a fuzzed body is read in.
func codecOf(asMsgpack bool) service.Codec {
	if asMsgpack {
		return service.Msgpack
	}
	return service.JSON
}

// FuzzParseToken: every token ParseToken accepts names a valid group and
// member, a partition within the bounds, a real sequence, and is spelled
// exactly as Token.String spells it (a token has one spelling); every
// other string is ErrBadToken.
func FuzzParseToken(f *testing.F) {
	tok := Token{Group: "tok", Member: "a", Partition: 0, Epoch: 3, Seq: 17, Index: 2}
	f.Add(tok.String())
	f.Add(Token{Group: "g-1_x", Member: "m", Partition: 4096, Epoch: 1<<64 - 1, Seq: 1<<64 - 1, Index: 1 << 20}.String())
	for _, forge := range []func(*Token){
		func(c *Token) { c.Group = "elsewhere" },
		func(c *Token) { c.Member = "b" },
		func(c *Token) { c.Epoch-- },
		func(c *Token) { c.Partition = 3 },
		func(c *Token) { c.Seq += 100 },
		func(c *Token) { c.Partition = 4097 },
		func(c *Token) { c.Seq = 0 },
		func(c *Token) { c.Index = -1 },
		func(c *Token) { c.Group = "a.b" },
	} {
		c := tok
		forge(&c)
		f.Add(c.String())
	}
	f.Add("not a token")
	f.Add("")
	f.Add(strings.Repeat("A", 401))
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseToken(s)
		if err != nil {
			if !errors.Is(err, ErrBadToken) {
				t.Fatalf("ParseToken(%q): %v, want ErrBadToken", s, err)
			}
			return
		}
		switch {
		case !validName(got.Group) || !validName(got.Member):
			t.Fatalf("ParseToken(%q) accepted group %q, member %q", s, got.Group, got.Member)
		case got.Partition < 0 || got.Partition > 4096 || got.Seq == 0 || got.Index < 0:
			t.Fatalf("ParseToken(%q) accepted partition %d, seq %d, index %d", s, got.Partition, got.Seq, got.Index)
		case got.String() != s:
			t.Fatalf("ParseToken(%q) = %+v, which is spelled %q", s, got, got.String())
		}
	})
}

// FuzzAckRequest reads arbitrary consume.<group>.ack bodies as handleAck
// does: every refusal is a bad_request or too_large, every accepted body
// lists at most MaxSettle tokens with nak delays and term reasons within
// their bounds, exactly as asked, and the request forward builds from the
// items reads back to the same items.
func FuzzAckRequest(f *testing.F) {
	tok := Token{Group: "svc", Member: "a", Epoch: 1, Seq: 5}.String()
	for _, s := range []string{
		`{"ack":["` + tok + `","` + tok + `","garbage"],"nak":[{"token":"` + tok + `","delay_ms":0}],"term":[{"token":"` + tok + `","reason":"no use"}]}`,
		`{"ack":["` + tok + `"]}`,
		`{"nak":[{"token":"t","delay_ms":86400000}],"in_progress":["t"]}`,
		`{"nak":[{"token":"t","delay_ms":-5}]}`,
		`{"term":[{"token":"t","reason":"` + strings.Repeat("r", 1025) + `"}]}`,
		`{"ack":["` + strings.Repeat(`t","`, MaxSettle) + `t"]}`,
		``, `null`, `{}`, `{"ack":"tok"}`, `{"ack":[1,2]}`, `[1,2,3]`,
	} {
		f.Add([]byte(s), false)
	}
	good, _ := service.Msgpack.Encode(AckRequest{Ack: []string{tok}, Nak: []NakRequest{{Token: tok, DelayMS: 1500}}})
	f.Add(good, true)
	f.Fuzz(func(t *testing.T, body []byte, asMsgpack bool) {
		c := codecOf(asMsgpack)
		var req AckRequest
		if err := decodeBody(c, body, &req); err != nil {
			servicetest.RequireCode(t, "decode", err, service.CodeBadRequest, service.CodeTooLarge)
			return
		}
		items, err := req.items()
		if err != nil {
			servicetest.RequireCode(t, "items", err, service.CodeBadRequest, service.CodeTooLarge)
			return
		}
		n := len(req.Ack) + len(req.Nak) + len(req.InProgress) + len(req.Term)
		if len(items) != n || n == 0 || n > MaxSettle {
			t.Fatalf("%d tokens gave %d items, want 1 to %d, one each", n, len(items), MaxSettle)
		}
		naks := 0
		for _, it := range items {
			switch it.op {
			case opNak:
				asked := req.Nak[naks].DelayMS
				naks++
				if it.delay < 0 || it.delay > MaxNakDelay || it.delay != time.Duration(asked)*time.Millisecond || it.delay.Milliseconds() != asked {
					t.Fatalf("nak delay_ms %d gave a delay of %s, want 0 to %s, as asked", asked, it.delay, MaxNakDelay)
				}
			case opTerm:
				if len(it.reason) > 1024 {
					t.Fatalf("a term reason of %d bytes accepted", len(it.reason))
				}
			}
		}
		idx := make([]int, len(items))
		for i := range idx {
			idx[i] = i
		}
		b, err := c.Encode(requestOf(items, idx))
		if err != nil {
			t.Fatalf("encode the forwarded request: %v", err)
		}
		var again AckRequest
		if err := decodeBody(c, b, &again); err != nil {
			t.Fatalf("the forwarded request %q does not decode: %v", b, err)
		}
		back, err := again.items()
		if err != nil {
			t.Fatalf("the forwarded request %q is refused: %v", b, err)
		}
		if !reflect.DeepEqual(back, items) {
			t.Fatalf("the forwarded request settles %+v, want %+v", back, items)
		}
	})
}

// FuzzNextRequest reads arbitrary consume.<group>.next bodies as
// handleNext does: every refusal is a bad_request or too_large, and every
// accepted body asks for 1 to MaxNextMax events and a wait of 0 to
// MaxNextWait, exactly the wait_ms it sent.
func FuzzNextRequest(f *testing.F) {
	for _, s := range []string{
		`{"max":1}`, `{"max":10,"wait_ms":300}`, `{"max":1,"wait_ms":100}`, `{"max":1000,"wait_ms":30000}`,
		`{"max":`, `null`, `{"max":"ten"}`, `{"max":-1}`, `{"max":1e9}`, `{"wait_ms":3600000}`, `{"unknown":1}`, `{}`,
	} {
		f.Add([]byte(s), false)
	}
	good, _ := service.Msgpack.Encode(NextRequest{Max: 5, WaitMS: 250})
	f.Add(good, true)
	f.Fuzz(func(t *testing.T, body []byte, asMsgpack bool) {
		c := codecOf(asMsgpack)
		req := NextRequest{Max: DefaultNextMax}
		if err := decodeBody(c, body, &req); err != nil {
			servicetest.RequireCode(t, "decode", err, service.CodeBadRequest, service.CodeTooLarge)
			return
		}
		n, wait, err := req.params()
		if err != nil {
			servicetest.RequireCode(t, "params", err, service.CodeBadRequest)
			return
		}
		if n < 1 || n > MaxNextMax {
			t.Fatalf("max %d gave %d events, want 1 to %d", req.Max, n, MaxNextMax)
		}
		if wait < 0 || wait > MaxNextWait || wait.Milliseconds() != req.WaitMS {
			t.Fatalf("wait_ms %d gave a wait of %s, want 0 to %s, as asked", req.WaitMS, wait, MaxNextWait)
		}
	})
}

// FuzzCreateRequest reads arbitrary consume.<group>.create bodies as
// handleCreate does: every refusal is a bad_request or too_large, every
// accepted body gives a valid configuration, and the GroupInfo answered
// for it, sent back as a create request, asks for the same group.
func FuzzCreateRequest(f *testing.F) {
	for _, s := range []string{
		`{"filter":["events.s.>"],"partitions":2,"max_deliver":2}`, `{"filter":["events.s.>"],"partitions":3}`,
		`{"ack_wait_ms":30000}`, `{"ack_wait_ms":86400000}`, `{"ack_wait_ms":-1}`,
		`null`, `{"partitions":"many"}`, `{"partitions":100000}`, `{"filter":["orders"]}`, "\x00\x01garbage", `{}`,
	} {
		f.Add([]byte(s), false)
	}
	good, _ := service.Msgpack.Encode(CreateRequest{Filter: []string{"events.a.*"}, Partitions: 8, AckWaitMS: 1000})
	f.Add(good, true)
	f.Fuzz(func(t *testing.T, body []byte, asMsgpack bool) {
		c := codecOf(asMsgpack)
		var req CreateRequest
		if err := decodeBody(c, body, &req); err != nil {
			servicetest.RequireCode(t, "decode", err, service.CodeBadRequest, service.CodeTooLarge)
			return
		}
		g, err := req.config("svc")
		if err != nil {
			servicetest.RequireCode(t, "config", err, service.CodeBadRequest)
			return
		}
		if err := g.validate(); err != nil {
			t.Fatalf("accepted an invalid configuration %+v: %v", g, err)
		}
		if req.AckWaitMS != 0 && g.AckWait.Milliseconds() != req.AckWaitMS {
			t.Fatalf("ack_wait_ms %d gave an ack wait of %s", req.AckWaitMS, g.AckWait)
		}
		info := infoOf(g)
		again, err := CreateRequest{Filter: info.Filter, Partitions: info.Partitions, MaxDeliver: info.MaxDeliver, AckWaitMS: info.AckWaitMS}.config("svc")
		if err != nil || !reflect.DeepEqual(again, g) {
			t.Fatalf("the answer %+v asks for %+v (%v), want %+v", info, again, err, g)
		}
	})
}

// FuzzDecodeConfig reads arbitrary values of a group's config key: a
// value it accepts is a configuration CreateGroup would have written
// (partitions, max deliver and ack wait within their bounds, so that no
// reader allocates per a partition count nobody asked for), and it reads
// back the same when written again.
func FuzzDecodeConfig(f *testing.F) {
	for _, g := range []GroupConfig{
		{Name: "g", Partitions: 1, Filter: []string{"events.>"}, MaxDeliver: 5, AckWait: 30 * time.Second},
		{Name: "g", Partitions: 4096, Filter: []string{"events.s.>", "events.t.*"}, MaxDeliver: 1000, AckWait: 24 * time.Hour},
	} {
		b, _ := json.Marshal(g.stored())
		f.Add(b)
	}
	for _, s := range []string{
		`{"partitions":4,"filter":["events.>"]}`, `{"partitions":1099511627776,"filter":["events.>"]}`,
		`{"partitions":-1,"filter":["events.>"]}`, `{"partitions":4,"filter":["orders"]}`,
		`{"partitions":4,"filter":["events.>"],"ack_wait_ms":9223372036854}`, `{"partitions":4}`, `null`, `[]`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := decodeConfig("g", groupKey("g", "config"), b)
		if err != nil {
			return
		}
		if err := g.validate(); err != nil {
			t.Fatalf("config %q accepted as %+v: %v", b, g, err)
		}
		again, _ := json.Marshal(g.stored())
		back, err := decodeConfig("g", groupKey("g", "config"), again)
		if err != nil || !reflect.DeepEqual(back, g) {
			t.Fatalf("config %q read as %+v; written back as %q it reads as %+v (%v)", b, g, again, back, err)
		}
	})
}

// FuzzWireEvent: an event handed out by consume.<group>.next, sent as
// JSON and read back by WireEvent.Event, keeps its data (text or not)
// and position; and a position Event accepts from any answer is written
// the one way the service writes it.
func FuzzWireEvent(f *testing.F) {
	f.Add([]byte(`{"n":1}`), uint64(7), 0, false, "7")
	f.Add([]byte("\xff\x00bin"), uint64(8), 2, true, "8:2")
	f.Add([]byte("three"), uint64(1<<63), 1<<20, true, "18446744073709551615")
	for _, p := range []string{"", "x", "7:", ":1", "+7", "007", "7:-1", "7:+1", "7:1:2", "18446744073709551616"} {
		f.Add([]byte{}, uint64(1), 0, false, p)
	}
	f.Fuzz(func(t *testing.T, data []byte, seq uint64, index int, enveloped bool, position string) {
		if seq > 0 && index >= 0 {
			pos := replicator.Position{Seq: seq, Count: 1}
			if enveloped {
				pos.Index, pos.Count = index, 2
			}
			d := Delivery{Event: replicator.Event{Subject: "events.t", Data: data, Pos: pos}, tok: Token{Group: "g", Member: "m", Seq: seq}}
			b, err := json.Marshal(wire(d))
			if err != nil {
				t.Fatalf("encode %+v: %v", d, err)
			}
			var w WireEvent
			if err := json.Unmarshal(b, &w); err != nil {
				t.Fatalf("answer %q does not decode: %v", b, err)
			}
			ev, err := w.Event()
			if err != nil {
				t.Fatalf("answer %q: %v", b, err)
			}
			if !bytes.Equal(ev.Data, data) || ev.Pos != pos {
				t.Fatalf("event of %q at %+v read back as %q at %+v", data, pos, ev.Data, ev.Pos)
			}
		}
		ev, err := WireEvent{Position: position}.Event()
		if err != nil {
			return
		}
		if ev.Pos.Index < 0 || positionText(ev.Pos) != position {
			t.Fatalf("position %q read as %+v, which is written %q", position, ev.Pos, positionText(ev.Pos))
		}
	})
}
