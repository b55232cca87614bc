package alerting

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/pkg/labels"

	"github.com/platform/platform/service"
)

// Fuzz targets for what alerting reads from clients: the bodies of
// alerts.post (and alerts.fanout) and alerts.silence-add, silences in KV
// SILENCES, and matchers in amtool's syntax. `go test` runs their seeds;
// `go test -fuzz FuzzName` explores.

func fuzzCodec(asMsgpack bool) service.Codec {
	if asMsgpack {
		return service.Msgpack
	}
	return service.JSON
}

func requireBadRequest(t *testing.T, what string, err error) {
	t.Helper()
	var se *service.Error
	if !errors.As(err, &se) || (se.Code != service.CodeBadRequest && se.Code != service.CodeTooLarge) {
		t.Fatalf("%s: %v (%T), want a bad_request or too_large *service.Error", what, err, err)
	}
}

// FuzzPostAlerts reads arbitrary alerts.post bodies as the endpoint
// does: every accepted alert has an alertname and valid labels, and what
// PostAlerts hands on to the other instances (alerts.fanout) is read back
// there as the same alerts, byte for byte, and accepted.
func FuzzPostAlerts(f *testing.F) {
	for _, s := range []string{
		`[{"labels":{"alertname":"Grp","service":"api","instance":"a1","severity":"warning"},"annotations":{"summary":"one"},"startsAt":"2025-03-01T12:00:00Z"}]`,
		`[{"labels":{"alertname":"A"},"startsAt":"2025-03-01T12:00:00Z","endsAt":"2025-03-01T13:00:00Z","generatorURL":"http://x"}]`,
		`[{"labels":{"alertname":"A"},"startsAt":"2025-03-01T12:00:00Z","endsAt":"2025-03-01T11:00:00Z"}]`,
		`[{"labels":{"service":"api"}}]`, `[{"labels":{"alertname":""}}]`, `[{"labels":{}}]`, `[{"labels":{"a b":"x","alertname":"A"}}]`,
		`[]`, `null`, `{}`, ``, `[{"labels":{"alertname":"A"},"extra":1}]`,
	} {
		f.Add([]byte(s), false)
	}
	good, _ := service.Msgpack.Encode([]PostableAlert{{Labels: map[string]string{"alertname": "A", "team": "db"}, StartsAt: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}})
	f.Add(good, true)
	// JSON cannot write a year past 9999; msgpack can carry one.
	far, _ := service.Msgpack.Encode([]PostableAlert{{Labels: map[string]string{"alertname": "A"}, StartsAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}})
	f.Add(far, true)
	// Nor can it carry bytes that are not UTF-8.
	latin, _ := service.Msgpack.Encode([]PostableAlert{{Labels: map[string]string{"alertname": "A", "city": "Z\xfcrich"}}})
	f.Add(latin, true)
	f.Fuzz(func(t *testing.T, body []byte, asMsgpack bool) {
		var as []PostableAlert
		if err := fuzzCodec(asMsgpack).Decode(body, &as); err != nil {
			requireBadRequest(t, "decode", err)
			return
		}
		if checkAlerts(as) != nil {
			return
		}
		for i, a := range as {
			if a.Labels["alertname"] == "" {
				t.Fatalf("alert %d accepted without an alertname: %+v", i, a)
			}
		}
		fanout, err := json.Marshal(as)
		if err != nil {
			t.Fatalf("encode the fanout of %+v: %v", as, err)
		}
		var heard []PostableAlert
		if err := service.JSON.DecodeLenient(fanout, &heard); err != nil {
			t.Fatalf("fanout %q does not decode: %v", fanout, err)
		}
		if err := checkAlerts(heard); err != nil {
			t.Fatalf("fanout %q refused by the other instances: %v", fanout, err)
		}
		if len(heard) != len(as) {
			t.Fatalf("%d alerts handed on, %d heard", len(as), len(heard))
		}
		for i, a := range as {
			h := heard[i]
			if !maps.Equal(h.Labels, a.Labels) || !maps.Equal(h.Annotations, a.Annotations) || h.GeneratorURL != a.GeneratorURL ||
				!h.StartsAt.Equal(a.StartsAt) || !h.EndsAt.Equal(a.EndsAt) {
				t.Fatalf("alert %+v heard on the fanout as %+v", a, h)
			}
		}
	})
}

// FuzzSilence reads arbitrary alerts.silence-add bodies and KV SILENCES
// values: a silence that compiles has at least one matcher, each with a
// name, at least one that does not match the empty label (so it cannot
// mute everything), and an end after its start; stored and read back
// from KV it compiles to the same matchers.
func FuzzSilence(f *testing.F) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	isEqual := false
	for _, sl := range []Silence{
		{ID: "s1", Matchers: []Matcher{{Name: "alertname", Value: "InstanceDead"}, {Name: "instance", Value: "a.*", IsRegex: true}}, StartsAt: t0, EndsAt: t0.Add(time.Hour), CreatedBy: "me", Comment: "c"},
		{ID: "s2", Matchers: []Matcher{{Name: "a", Value: ".*", IsRegex: true}}, StartsAt: t0, EndsAt: t0.Add(time.Hour), CreatedBy: "me"},
		{Matchers: []Matcher{{Name: "service", Value: "web", IsEqual: &isEqual}}, EndsAt: t0.Add(time.Hour), Comment: "c"},
		{Matchers: []Matcher{{Name: "service", Value: "web"}}, StartsAt: t0.Add(time.Hour), EndsAt: t0, Comment: "c"},
		{Matchers: []Matcher{{Name: "", Value: "web"}}, EndsAt: t0.Add(time.Hour), Comment: "c"},
		{Matchers: []Matcher{{Name: "x", Value: "(", IsRegex: true}}, EndsAt: t0.Add(time.Hour), Comment: "c"},
		// JSON cannot write a year past 9999; msgpack can carry one.
		{Matchers: []Matcher{{Name: "a", Value: "b"}}, StartsAt: t0, EndsAt: time.Date(20000, 1, 1, 0, 0, 0, 0, time.UTC), Comment: "c"},
	} {
		b, _ := json.Marshal(sl)
		f.Add(b, false)
		m, _ := service.Msgpack.Encode(sl)
		f.Add(m, true)
	}
	f.Add([]byte(`{"matchers":[{"name":"alertname","value":"X","isRegex":false}],"endsAt":"2030-01-01T00:00:00Z","createdBy":"a","comment":"c"}`), false)
	f.Add([]byte(`{"matchers":[],"endsAt":"2030-01-01T00:00:00Z"}`), false)
	f.Add([]byte(`null`), false)
	f.Fuzz(func(t *testing.T, body []byte, asMsgpack bool) {
		var sl Silence
		if err := fuzzCodec(asMsgpack).Decode(body, &sl); err != nil {
			requireBadRequest(t, "decode", err)
			// What the endpoint refuses may still be a KV value,
			// which is read leniently: check that reading too.
			sl = Silence{}
			if asMsgpack || json.Unmarshal(body, &sl) != nil {
				return
			}
		}
		ms, err := sl.compile()
		if err != nil {
			return
		}
		switch {
		case len(sl.Matchers) == 0 || len(ms) != len(sl.Matchers):
			t.Fatalf("silence %+v compiled to %d matchers", sl, len(ms))
		case !sl.EndsAt.After(sl.StartsAt):
			t.Fatalf("silence from %s to %s accepted", sl.StartsAt, sl.EndsAt)
		case !slices.ContainsFunc(ms, func(m *labels.Matcher) bool { return !m.Matches("") }):
			t.Fatalf("silence %v matches the empty label set", ms)
		}
		for _, m := range sl.Matchers {
			if m.Name == "" {
				t.Fatalf("matcher without a name accepted: %+v", m)
			}
		}
		sl.UpdatedAt = t0 // as AddSilence sets it before storing
		stored, err := json.Marshal(sl)
		if err != nil {
			t.Fatalf("encode silence %+v: %v", sl, err)
		}
		var back Silence
		if err := json.Unmarshal(stored, &back); err != nil {
			t.Fatalf("stored silence %q does not decode: %v", stored, err)
		}
		ms2, err := back.compile()
		if err != nil {
			t.Fatalf("stored silence %q refused: %v", stored, err)
		}
		if ms.String() != ms2.String() {
			t.Fatalf("stored silence matches %s, want %s", ms2, ms)
		}
	})
}

// FuzzMatchersFromStrings parses arbitrary matchers in amtool's syntax:
// what parses, written back in amtool's syntax, parses to the same
// matchers.
func FuzzMatchersFromStrings(f *testing.F) {
	for _, s := range []string{
		`alertname="InstanceDead"`, `instance=~"a.*"`, `service!="x"`, `a!~"b|c"`,
		`{alertname="X", severity=~"crit.*"}`, `alertname="ConsoleTest", severity=~"warn.*"`,
		`a=`, `{`, `"a"="b"`, `a="\"quoted\""`, `a=~"("`, `ünicode="x"`, ``,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := MatchersFromStrings([]string{s})
		if err != nil {
			return
		}
		written := make([]string, len(ms))
		for i, m := range ms {
			lm, err := labels.NewMatcher(m.matchType(), m.Name, m.Value)
			if err != nil {
				t.Fatalf("%q parsed to %+v, which does not compile: %v", s, m, err)
			}
			written[i] = lm.String()
		}
		again, err := MatchersFromStrings(written)
		if err != nil {
			t.Fatalf("%q written back as %q does not parse: %v", s, written, err)
		}
		a, _ := json.Marshal(again)
		b, _ := json.Marshal(ms)
		if string(a) != string(b) {
			t.Fatalf("%q written back as %q parses as %s, want %s", s, written, a, b)
		}
	})
}
