package detector

import (
	"strings"
	"testing"

	"github.com/platform/platform/membership"
	"github.com/platform/platform/service"
	"github.com/platform/platform/service/servicetest"
)

// Fuzz targets for what the detector reads from clients: the bodies of
// members.list and members.get. `go test` runs their seeds;
// `go test -fuzz FuzzName` explores.

// codecOf picks the codec a fuzzed body is read in.
func codecOf(asMsgpack bool) service.Codec {
	if asMsgpack {
		return service.Msgpack
	}
	return service.JSON
}

// decoder decodes body in c as Request.Decode does.
func decoder(c service.Codec, body []byte) func(any) error {
	return func(v any) error { return c.Decode(body, v) }
}

// FuzzMembersRequest reads arbitrary members.list bodies as
// handleMembers does: every refusal is a bad_request or too_large, every
// accepted body asks for a valid service name (or all), one of the four
// states (or all) and a limit of at least 1; the request written back in
// either codec reads the same.
func FuzzMembersRequest(f *testing.F) {
	for _, s := range []string{
		`{"service":"demo"}`, `{"service":"detector-scale","state":"alive","limit":1}`, `{"state":"left","limit":5}`,
		``, "  \n", `{}`, `null`, `{"state":"gone"}`, `{"limit":-3}`, `{"limit":1e30}`, `{"limit":"ten"}`,
		`{"unknown":1}`, `{"service":"demo"} {}`, `{"service":"a.b"}`, `{"service":"` + strings.Repeat("s", 257) + `"}`, strings.Repeat("[", 100000),
	} {
		f.Add([]byte(s), false)
	}
	good, _ := service.Msgpack.Encode(membersRequest{Service: "demo", State: membership.Suspect, Limit: 7})
	f.Add(good, true)
	// A msgpack string announcing 4 GiB in five bytes.
	f.Add([]byte{0x81, 0xa7, 's', 'e', 'r', 'v', 'i', 'c', 'e', 0xdb, 0xff, 0xff, 0xff, 0xff}, true)
	f.Fuzz(func(t *testing.T, body []byte, asMsgpack bool) {
		c := codecOf(asMsgpack)
		req, err := decodeMembers(body, decoder(c, body))
		if err != nil {
			servicetest.RequireCode(t, "members", err, service.CodeBadRequest, service.CodeTooLarge)
			return
		}
		if req.Service != "" && !membership.ValidToken(req.Service) {
			t.Fatalf("body %q accepted for service %q", body, req.Service)
		}
		switch req.State {
		case "", membership.Alive, membership.Suspect, membership.Dead, membership.Left:
		default:
			t.Fatalf("body %q accepted with state %q", body, req.State)
		}
		if req.Limit < 1 {
			t.Fatalf("body %q accepted with limit %d", body, req.Limit)
		}
		for _, w := range []service.Codec{service.JSON, service.Msgpack} {
			again, err := w.Encode(req)
			if err != nil {
				t.Fatalf("accepted request %+v does not encode in %s: %v", req, w, err)
			}
			back, err := decodeMembers(again, decoder(w, again))
			if err != nil || back != req {
				t.Fatalf("request %+v written in %s as %q reads as %+v, %v", req, w, again, back, err)
			}
		}
	})
}

// FuzzGetRequest reads arbitrary members.get bodies as handleGet does:
// every refusal is a bad_request or too_large, every accepted body names
// a valid service and instance, and the request written back in either
// codec reads the same.
func FuzzGetRequest(f *testing.F) {
	for _, s := range []string{
		`{"service":"demo","instance":"ok"}`, `{"service":"platform-txn","instance":"ABC_123=/-"}`,
		`{"service":"demo"}`, `{"service":"a.b","instance":"c"}`, `{"service":"demo","instance":"*"}`,
		`{"service":"demo","instance":"ok","x":1}`, ``, `null`, `{}`, `"demo.ok"`,
	} {
		f.Add([]byte(s), false)
	}
	good, _ := service.Msgpack.Encode(getRequest{Service: "demo", Instance: "ok"})
	f.Add(good, true)
	// A msgpack map announcing 2^32-1 entries in five bytes.
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff}, true)
	f.Fuzz(func(t *testing.T, body []byte, asMsgpack bool) {
		c := codecOf(asMsgpack)
		req, err := decodeGet(decoder(c, body))
		if err != nil {
			servicetest.RequireCode(t, "get", err, service.CodeBadRequest, service.CodeTooLarge)
			return
		}
		if !membership.ValidToken(req.Service) || !membership.ValidToken(req.Instance) {
			t.Fatalf("body %q accepted for service %q, instance %q", body, req.Service, req.Instance)
		}
		for _, w := range []service.Codec{service.JSON, service.Msgpack} {
			again, err := w.Encode(req)
			if err != nil {
				t.Fatalf("accepted request %+v does not encode in %s: %v", req, w, err)
			}
			back, err := decodeGet(decoder(w, again))
			if err != nil || back != req {
				t.Fatalf("request %+v written in %s as %q reads as %+v, %v", req, w, again, back, err)
			}
		}
	})
}
