package console_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/console"
)

// TestPageDocument checks the one document the console serves for its
// pages: the session in it is the caller's (what GET session answers),
// it is never cached, its inline script is the only one the
// Content-Security-Policy allows, and it goes out compressed; the files
// themselves revalidate by ETag.
func TestPageDocument(t *testing.T) {
	users, _ := usersFile(t)
	con, err := console.New(console.Options{Users: users, Ready: func(context.Context) error { return nil }})
	require.NoError(t, err)
	srv := httptest.NewServer(con)
	t.Cleanup(srv.Close)
	c := &client{t: t, srv: srv}

	get := func(path string, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		require.NoError(t, err)
		if c.cookie != nil {
			req.AddCookie(c.cookie)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, string(b)
	}
	sessionIn := func(doc string) map[string]any {
		t.Helper()
		m := regexp.MustCompile(`<script type="application/json" id="console-session">([^<]*)</script>`).FindStringSubmatch(doc)
		require.NotNil(t, m, "the document holds the session")
		var v map[string]any
		require.NoError(t, json.Unmarshal([]byte(m[1]), &v))
		return v
	}

	resp, doc := get("/", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	s := sessionIn(doc)
	require.Equal(t, true, s["auth"])
	require.Equal(t, "", s["user"], "no cookie, no user")
	require.Equal(t, "", s["csrf"], "no cookie, no token")

	// Two inline scripts: first.js, which asks for the page's data at
	// once, and the joined modules; the policy allows those two only.
	scripts := regexp.MustCompile(`(?s)<script(?: type="module")?>(.*?)</script>`).FindAllStringSubmatch(doc, -1)
	require.Len(t, scripts, 2, "two inline scripts")
	require.Contains(t, scripts[0][1], "consoleEarly", "first.js comes first")
	csp := resp.Header.Get("Content-Security-Policy")
	var allowed []string
	for _, s := range scripts {
		sum := sha256.Sum256([]byte(s[1]))
		allowed = append(allowed, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
	}
	require.True(t, strings.HasSuffix(csp, "; script-src 'self' "+strings.Join(allowed, " ")), "policy %q", csp)
	require.NotContains(t, csp, "unsafe-inline'; script", "no inline script but those")
	require.NotContains(t, doc, `src="app.js"`, "nothing else to fetch")
	require.NotContains(t, doc, `src="first.js"`, "nothing else to fetch")
	require.NotContains(t, doc, `href="style.css"`, "nothing else to fetch")

	// A client route is the same document.
	resp, doc = get("/members/svc/a", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	sessionIn(doc)

	require.Equal(t, http.StatusOK, c.login("alice", "admin-secret"))
	_, doc = get("/", nil)
	s = sessionIn(doc)
	require.Equal(t, "alice", s["user"])
	require.Equal(t, "admin", s["role"])
	require.Equal(t, c.csrf, s["csrf"], "the token of the caller's session")

	// The transport would undo gzip itself if it had asked; ask by hand.
	resp, body := get("/", map[string]string{"Accept-Encoding": "gzip"})
	require.Equal(t, "gzip", resp.Header.Get("Content-Encoding"))
	require.Less(t, len(body), len(doc)/2, "compressed")

	resp, js := get("/app.js", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript"), resp.Header.Get("Content-Type"))
	require.Contains(t, js, "import ")
	etag := resp.Header.Get("ETag")
	require.NotEmpty(t, etag)
	resp, _ = get("/app.js", map[string]string{"If-None-Match": etag})
	require.Equal(t, http.StatusNotModified, resp.StatusCode)

	resp, _ = get("/nope.js", nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}
