package console

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/pkg/labels"

	"github.com/platform/platform/services/alerting"
)

// Fuzz targets for what the console reads from browsers: the body of
// POST /silences and query parameters. `go test` runs their seeds;
// `go test -fuzz FuzzName` explores.

// requireBadRequest fails unless err is the console's bad request.
func requireBadRequest(t *testing.T, what string, err error) {
	t.Helper()
	var ae *apiError
	if !errors.As(err, &ae) || ae.status != http.StatusBadRequest || ae.code != codeBadRequest {
		t.Fatalf("%s: %v (%T), want a bad request", what, err, err)
	}
}

// FuzzSilenceRequest reads arbitrary POST /silences bodies as
// addSilence does: every refusal is a bad request, and every accepted
// body is one JSON document and makes a silence of 1 to 4096 bytes of matchers (at least one), a
// comment, and an end between minSilence and maxSilence from now, exactly
// as asked; its matchers, written back in amtool's syntax, parse to the
// same matchers.
func FuzzSilenceRequest(f *testing.F) {
	for _, s := range []string{
		`{"matchers":"alertname=\"ConsoleTest\", severity=~\"warn.*\"","duration_ms":3600000,"comment":"console test"}`,
		`{"matchers":"alertname=\"X\"","ends_at":"2030-01-02T03:04:05Z","comment":"c"}`,
		`{"matchers":"alertname=\"X\"","duration_ms":60000,"comment":"c"}`,
		`{"matchers":"alertname=\"X\"","duration_ms":31536000000,"comment":"c"}`,
		`{"matchers":"alertname=\"X\"","duration_ms":3600000,"ends_at":"2030-01-02T03:04:05Z","comment":"c"}`,
		`{"matchers":"a=~\".*\"","duration_ms":3600000,"comment":"c"}`,
		`{"matchers":"","duration_ms":3600000,"comment":"c"}`,
		`{"matchers":"alertname=\"X\"","duration_ms":3600000,"comment":" "}`,
		`{"matchers":"{","duration_ms":3600000,"comment":"c"}`,
		`{"matchers":"alertname=\"X\"","duration_ms":3600000,"comment":"c","by":"me"}`,
		`{"matchers":"alertname=\"X\"","duration_ms":3600000,"comment":"c"} trailing`,
		`null`, ``, `[]`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2029, 6, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		var req silenceRequest
		if err := decodeJSON(body, &req); err != nil {
			requireBadRequest(t, "decode", err)
			return
		}
		if !json.Valid(body) {
			t.Fatalf("body %q is not one JSON document, yet decoded as %+v", body, req)
		}
		matchers, ends, err := req.check(now)
		if err != nil {
			requireBadRequest(t, "check", err)
			return
		}
		switch {
		case len(req.Matchers) == 0 || len(req.Matchers) > maxMatchers || len(matchers) == 0:
			t.Fatalf("matchers %q accepted as %v", req.Matchers, matchers)
		case strings.TrimSpace(req.Comment) == "" || len(req.Comment) > maxComment:
			t.Fatalf("comment of %d bytes accepted", len(req.Comment))
		case ends.Sub(now) < minSilence-time.Second || ends.Sub(now) > maxSilence:
			t.Fatalf("a silence of %s accepted", ends.Sub(now))
		case req.EndsAt != nil && !ends.Equal(*req.EndsAt):
			t.Fatalf("ends_at %s gave an end at %s", req.EndsAt, ends)
		case req.EndsAt == nil && ends.Sub(now) != time.Duration(req.DurationMS)*time.Millisecond ||
			req.EndsAt == nil && ends.Sub(now).Milliseconds() != req.DurationMS:
			t.Fatalf("duration_ms %d gave a silence of %s", req.DurationMS, ends.Sub(now))
		}
		written := make([]string, len(matchers))
		for i, m := range matchers {
			written[i] = amtool(t, m)
		}
		again, err := alerting.MatchersFromStrings(written)
		if err != nil {
			t.Fatalf("matchers %q written back as %q do not parse: %v", req.Matchers, written, err)
		}
		a, _ := json.Marshal(again)
		b, _ := json.Marshal(matchers)
		if string(a) != string(b) {
			t.Fatalf("matchers %q written back as %q parse as %s, want %s", req.Matchers, written, a, b)
		}
	})
}

// amtool writes m in amtool's syntax.
func amtool(t *testing.T, m alerting.Matcher) string {
	t.Helper()
	eq := m.IsEqual == nil || *m.IsEqual
	typ := labels.MatchEqual
	switch {
	case m.IsRegex && eq:
		typ = labels.MatchRegexp
	case m.IsRegex:
		typ = labels.MatchNotRegexp
	case !eq:
		typ = labels.MatchNotEqual
	}
	lm, err := labels.NewMatcher(typ, m.Name, m.Value)
	if err != nil {
		t.Fatalf("accepted matcher %+v does not compile: %v", m, err)
	}
	return lm.String()
}

// FuzzQueryParams reads arbitrary query strings as the console's pages
// do: a number is within its bounds or a bad request, a string within
// its length or a bad request.
func FuzzQueryParams(f *testing.F) {
	for _, s := range []string{
		"limit=100&after=17", "limit=0", "limit=-1", "limit=1001", "index=1048576", "before=18446744073709551615",
		"before=18446744073709551616", "after=-1", "limit=+5", "limit=007", "q=" + strings.Repeat("x", maxParam+1),
		"topic=orders&q=a%20b", "limit=1e3", "limit=%zz", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, query string) {
		r := &http.Request{URL: &url.URL{Path: "/api/events", RawQuery: query}}
		present := func(name string) bool { return r.URL.Query().Get(name) != "" }
		n, err := intParam(r, "limit", 100, 1, maxPage)
		switch {
		case err != nil:
			requireBadRequest(t, "limit", err)
		case !present("limit") && n != 100:
			t.Fatalf("no limit in %q gave %d, want the default", query, n)
		case n < 1 || n > maxPage:
			t.Fatalf("limit in %q gave %d, want 1 to %d", query, n, maxPage)
		}
		if _, ok, err := uintParam(r, "after"); err != nil {
			requireBadRequest(t, "after", err)
		} else if ok != present("after") {
			t.Fatalf("after in %q: ok %v", query, ok)
		}
		s, err := strParam(r, "q", maxParam)
		switch {
		case err != nil:
			requireBadRequest(t, "q", err)
		case len(s) > maxParam || s != r.URL.Query().Get("q"):
			t.Fatalf("q in %q gave %q", query, s)
		}
	})
}

// FuzzLoginRequest reads arbitrary POST /login bodies as handleLogin
// does: every refusal is a bad request, every accepted body is one JSON
// document of at most maxLoginBody bytes naming a user, and the request
// written back as JSON reads the same (or, grown past maxLoginBody by
// JSON's escapes, is refused).
func FuzzLoginRequest(f *testing.F) {
	for _, s := range []string{
		`{"user":"alice","password":"admin-secret"}`, `{"user":"bob","password":"reader-secret"}`,
		`{"user":"reader","password":"SUAM..."}`, `{"user":"alice"}`, `{"password":"x"}`, `{"user":""}`,
		`{"USER":"alice","Password":"p","extra":[1,2]}`, `{"user":"a","user":"b"}`, `{"user":1}`, `null`, ``, `[]`,
		`{"user":"alice","password":"` + strings.Repeat("<", maxLoginBody-40) + `"}`,
		`{"user":"alice","password":"` + strings.Repeat("x", maxLoginBody) + `"}`,
		strings.Repeat("[", maxLoginBody),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeLogin(body)
		if err != nil {
			requireBadRequest(t, "login", err)
			return
		}
		switch {
		case len(body) > maxLoginBody:
			t.Fatalf("a login body of %d bytes accepted", len(body))
		case !json.Valid(body):
			t.Fatalf("body %q is not JSON, yet read as %+v", body, req)
		case req.User == "":
			t.Fatalf("body %q accepted without a user", body)
		}
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("login %+v does not encode: %v", req, err)
		}
		back, err := decodeLogin(again)
		switch {
		case len(again) > maxLoginBody:
			requireBadRequest(t, "login grown past the bound", err)
		case err != nil || back != req:
			t.Fatalf("login %+v written as %s reads as %+v, %v", req, again, back, err)
		}
	})
}
