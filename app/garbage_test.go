package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/platform/platform/app"
	"github.com/platform/platform/service"
	"github.com/platform/platform/streams"
)

// endpointKind says how an endpoint treats a request body.
type endpointKind int

const (
	decodes endpointKind = iota // decodes a JSON or msgpack document
	ignores                     // takes no parameters: any body it can read is ignored
	opaque                      // stores the body as sent (an event)
	routes                      // relays the body to the endpoint its subject names
)

// endpoints lists every endpoint the platform serves, with how it treats
// bodies and a valid request. A new endpoint must be added here, so the
// garbage test covers it.
var endpoints = map[string]struct {
	kind  endpointKind
	valid string
	// validSubject is where the valid request goes, when not the
	// endpoint's own subject with its wildcard filled in.
	validSubject string
}{
	"admin.status":   {decodes, `{}`, ""},
	"members.list":   {decodes, `{}`, ""},
	"members.status": {ignores, ``, ""},
	"members.get":    {decodes, `{"service":"%s","instance":"%s"}`, ""}, // a member the detector knows
	"txn.get":        {decodes, `{"keys":["garbage.k"]}`, ""},
	"txn.commit":     {decodes, `{"writes":{"garbage.k":"1"}}`, ""},
	"ingest.>":       {opaque, `{"valid":true}`, ""},

	"alerts.post":           {decodes, `[]`, ""},
	"alerts.list":           {decodes, `{}`, ""},
	"alerts.status":         {ignores, ``, ""},
	"alerts.groups":         {ignores, ``, ""},
	"alerts.pending":        {ignores, ``, ""},
	"alerts.reload":         {ignores, ``, ""},
	"alerts.silence.add":    {decodes, silenceJSON, ""},
	"alerts.silence.list":   {ignores, ``, ""},
	"alerts.silence.expire": {decodes, `{"id":"%s"}`, ""}, // a silence made for it

	"balancer.status":  {ignores, ``, ""},
	"balancer.balance": {ignores, ``, ""},
	"route.>":          {routes, `{}`, "route.admin.status"},

	// Group x is created before the garbage is sent.
	"consume.*.next":   {decodes, `{"max":1}`, ""},
	"consume.*.ack":    {decodes, `{"ack":["not-a-token"]}`, ""},
	"consume.*.status": {ignores, ``, ""},
	"consume.*.create": {decodes, `{}`, ""},
}

const silenceJSON = `{"matchers":[{"name":"alertname","value":"GarbageTest","isRegex":false}],` +
	`"endsAt":"2099-01-01T00:00:00Z","createdBy":"garbage test","comment":"garbage test"}`

// TestGarbageToEverySubject sends malformed requests to every endpoint of
// every service (found through $SRV.INFO) and to the heartbeat subjects:
// each gets the error code its kind of endpoint owes it (never internal),
// a valid request to the same endpoint still succeeds after each, and
// every service still answers at the end.
func TestGarbageToEverySubject(t *testing.T) {
	p := startApp(t, embedded(t, 1, t.TempDir()))
	nc, _ := connect(t, p.app.Cluster().ClientURLs())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	infos := serviceInfos(t, nc)
	require.Len(t, infos, len(app.ServiceNames()), "one instance of every service")

	// Over every endpoint's body limit, under the server's max payload.
	huge := []byte(strings.Repeat("x", 5<<20))
	garbage := []struct {
		name, contentType string
		body              []byte
		// want is the code per kind of endpoint ("" = success); several
		// codes separated by | are each acceptable.
		want map[endpointKind]string
	}{
		// Garbage to route.<subject> names no endpoint: not_found.
		{"broken json", "", []byte(`{"a":`), map[endpointKind]string{decodes: "bad_request", ignores: "", opaque: "", routes: "not_found"}},
		{"binary", "", []byte{0, 1, 2, 0xff, 0xfe}, map[endpointKind]string{decodes: "bad_request", ignores: "", opaque: "", routes: "not_found"}},
		{"wrong content type", "image/png", []byte("\x89PNG"), map[endpointKind]string{decodes: "unsupported_media_type", ignores: "unsupported_media_type", opaque: "", routes: "not_found"}},
		{"bad msgpack", service.ContentTypeMsgpack, []byte{0xc1, 0xc1}, map[endpointKind]string{decodes: "bad_request", ignores: "", opaque: "", routes: "not_found"}},
		{"huge", "", huge, map[endpointKind]string{decodes: "too_large", ignores: "too_large", opaque: "too_large", routes: "too_large"}},
		// An endpoint with a small body limit refuses it by size first.
		{"deep nesting", "", []byte(strings.Repeat("[", 10000)), map[endpointKind]string{decodes: "bad_request|too_large", ignores: "", opaque: "", routes: "not_found"}},
		{"json huge number", "", []byte(`{"limit":1e400,"reads":{"k":18446744073709551616}}`), map[endpointKind]string{decodes: "bad_request", ignores: "", opaque: "", routes: "not_found"}},
	}
	// Msgpack length bombs: a few bytes announcing 2^32-1 elements or
	// bytes, at the top and under the field names the endpoints decode.
	// Each once killed the whole process with a fatal out-of-memory.
	for _, b := range lengthBombs() {
		garbage = append(garbage, struct {
			name, contentType string
			body              []byte
			want              map[endpointKind]string
		}{"msgpack " + b.name, service.ContentTypeMsgpack, b.body,
			map[endpointKind]string{decodes: "bad_request|too_large", ignores: "", opaque: "", routes: "not_found"}})
	}
	request := func(subject, contentType string, body []byte) (code string, m *nats.Msg) {
		t.Helper()
		m = nats.NewMsg(subject)
		m.Data = body
		if contentType != "" {
			m.Header.Set(service.ContentTypeHeader, contentType)
		}
		resp, err := nc.RequestMsgWithContext(ctx, m)
		require.NoError(t, err, "%s: no answer", subject)
		return errorCode(t, resp), resp
	}
	if code, resp := request(streams.ConsumeSubject("x", "create"), "", []byte(`{}`)); code != "" {
		t.Fatalf("create consumer group x: %s", resp.Data)
	}
	for _, info := range infos {
		for _, ep := range info.Endpoints {
			// inst.<service>.<instance>.<subject> is the same endpoint
			// addressed to this instance.
			base := ep.Subject
			if _, _, sub, err := streams.ParseInstanceSubject(ep.Subject); err == nil {
				base = sub
			}
			want, ok := endpoints[base]
			require.True(t, ok, "endpoint %s of %s is not in the garbage test's table", ep.Subject, info.Name)
			subject := strings.NewReplacer(">", "garbage.test", "*", "x").Replace(ep.Subject)
			validSubject := subject
			if want.validSubject != "" {
				validSubject = strings.Replace(ep.Subject, base, want.validSubject, 1)
			}
			for _, g := range garbage {
				code, resp := request(subject, g.contentType, g.body)
				if !slices.Contains(strings.Split(g.want[want.kind], "|"), code) {
					t.Errorf("%s %s: %s: got code %q, want %q (%.120s)", info.Name, subject, g.name, code, g.want[want.kind], resp.Data)
				}
				if code == "" && want.kind == opaque {
					var ack struct {
						Seq uint64 `json:"seq" msgpack:"seq"`
					}
					require.NoError(t, decodeAnswer(resp, &ack), "%s: %s: ack", subject, g.name)
					require.NotZero(t, ack.Seq, "%s: %s: an accepted event is stored", subject, g.name)
				}
				valid := want.valid
				if base == "alerts.silence.expire" {
					_, made := request("alerts.silence.add", "", []byte(silenceJSON))
					var sl struct {
						ID string `json:"silenceID"`
					}
					require.NoError(t, json.Unmarshal(made.Data, &sl), "%s", made.Data)
					valid = fmt.Sprintf(valid, sl.ID)
				}
				if base == "members.get" {
					var m struct {
						Members []struct{ Service, Instance string } `json:"members"`
					}
					require.Eventually(t, func() bool {
						_, got := request("members.list", "", []byte(`{"limit":1}`))
						return json.Unmarshal(got.Data, &m) == nil && len(m.Members) == 1
					}, 20*time.Second, 50*time.Millisecond, "a member in the detector's view")
					valid = fmt.Sprintf(valid, m.Members[0].Service, m.Members[0].Instance)
				}
				code, resp = request(validSubject, "", []byte(valid))
				require.Empty(t, code, "%s: a valid request after %s: %s", subject, g.name, resp.Data)
			}
		}
	}
	for _, subject := range []string{"hb.x", "hb.a.b.c.d", "hb.svc.inst"} {
		for _, g := range garbage {
			m := nats.NewMsg(subject)
			m.Data = g.body
			if g.contentType != "" {
				m.Header.Set(service.ContentTypeHeader, g.contentType)
			}
			require.NoError(t, nc.PublishMsg(m))
		}
	}
	require.NoError(t, nc.FlushWithContext(ctx))

	// The refused bodies are counted, per endpoint and codec.
	_, metrics := httpGet(t, "http://"+p.app.HTTPAddr()+"/metrics")
	for _, series := range []string{
		`platform_service_bad_bodies_total{codec="msgpack",endpoint="post",service="alerting"}`,
		`platform_service_bad_bodies_total{codec="msgpack",endpoint="commit",service="txn"}`,
		`platform_service_bad_bodies_total{codec="json",endpoint="commit",service="txn"}`,
	} {
		require.Contains(t, metrics, series, "bad bodies are counted")
	}

	instances := pingFor(t, nc, len(app.ServiceNames()))
	require.Len(t, instances, len(app.ServiceNames()), "every service still answers: %v", instances)
	resp, err := nc.Request(streams.AdminStatusSubject, nil, 5*time.Second)
	require.NoError(t, err)
	require.Empty(t, resp.Header.Get("Nats-Service-Error-Code"), string(resp.Data))
}

// lengthBomb is a msgpack body that announces far more than it holds.
type lengthBomb struct {
	name string
	body []byte
}

// lengthBombs returns length bombs alone and as the value of the fields
// alerts.silence.add (matchers) and txn.commit (writes) decode; the
// package tests of service and msgpackscan cover every other shape.
func lengthBombs() []lengthBomb {
	array32 := []byte{0xdd, 0xff, 0xff, 0xff, 0xff}
	map32 := []byte{0xdf, 0xff, 0xff, 0xff, 0xff}
	field := func(name string, v []byte) []byte {
		return append(append([]byte{0x81, 0xa0 | byte(len(name))}, name...), v...)
	}
	return []lengthBomb{
		{"array32", array32},
		{"map32", map32},
		{"bin32", []byte{0xc6, 0xff, 0xff, 0xff, 0xff}},
		{"ext32", []byte{0xc9, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"array of map32", append([]byte{0x91}, map32...)},
		{"nesting of 100k", []byte(strings.Repeat("\x91", 100_000))},
		{"matchers array32", field("matchers", array32)},
		{"writes map32", field("writes", map32)},
	}
}

// errorCode returns the platform error code of an answer, "" for a
// success; the micro error header and the body's code must agree.
func errorCode(t *testing.T, resp *nats.Msg) string {
	t.Helper()
	status := resp.Header.Get("Nats-Service-Error-Code")
	if status == "" {
		return ""
	}
	var body struct {
		Error struct {
			Code string `json:"code" msgpack:"code"`
		} `json:"error" msgpack:"error"`
	}
	require.NoError(t, decodeAnswer(resp, &body), "error body %q", resp.Data)
	require.NotEmpty(t, body.Error.Code, "error %s without a code: %q", status, resp.Data)
	return body.Error.Code
}

// decodeAnswer decodes an answer in the codec its Content-Type names,
// leniently (answers may carry more fields than the test reads).
func decodeAnswer(resp *nats.Msg, v any) error {
	if resp.Header.Get(service.ContentTypeHeader) == service.ContentTypeMsgpack {
		return msgpack.Unmarshal(resp.Data, v)
	}
	return json.Unmarshal(resp.Data, v)
}

func serviceInfos(t *testing.T, nc *nats.Conn) []micro.Info {
	t.Helper()
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	require.NoError(t, err)
	defer sub.Unsubscribe()
	require.NoError(t, nc.PublishRequest("$SRV.INFO", inbox, nil))
	var infos []micro.Info
	for {
		m, err := sub.NextMsg(300 * time.Millisecond)
		if err != nil {
			return infos
		}
		var info micro.Info
		require.NoError(t, json.Unmarshal(m.Data, &info))
		infos = append(infos, info)
	}
}
