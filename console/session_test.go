package console_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/platform/platform/auth"
	"github.com/platform/platform/console"
)

// usersFile writes a users file with a plain-password admin, a bcrypt
// reader and nkey users from auth init, and loads it; it returns the
// reader nkey user's seed too.
func usersFile(t *testing.T) (*auth.File, string) {
	t.Helper()
	dir := t.TempDir()
	path, err := auth.Init(dir)
	require.NoError(t, err)
	var f auth.File
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &f))
	hash, err := bcrypt.GenerateFromPassword([]byte("reader-secret"), bcrypt.MinCost)
	require.NoError(t, err)
	f.Users = append(f.Users, auth.User{Name: "alice", Role: auth.RoleAdmin, Password: "admin-secret"},
		auth.User{Name: "bob", Role: auth.RoleReader, Password: string(hash)})
	b, err = json.Marshal(f)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, b, 0o600))
	loaded, err := auth.Load(path)
	require.NoError(t, err)
	seed, err := os.ReadFile(filepath.Join(dir, "reader.nk"))
	require.NoError(t, err)
	return loaded, strings.TrimSpace(string(seed))
}

type client struct {
	t      *testing.T
	srv    *httptest.Server
	cookie *http.Cookie
	csrf   string
}

func (c *client) do(method, path, body string, hdr map[string]string) (*http.Response, map[string]any) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.srv.URL+"/console/api/"+path, strings.NewReader(body))
	require.NoError(c.t, err)
	if c.cookie != nil {
		req.AddCookie(c.cookie)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.srv.Client().Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	var v map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return resp, v
}

func (c *client) login(user, password string) int {
	c.t.Helper()
	b, _ := json.Marshal(map[string]string{"user": user, "password": password})
	resp, v := c.do(http.MethodPost, "login", string(b), nil)
	if resp.StatusCode == http.StatusOK {
		for _, ck := range resp.Cookies() {
			if ck.Name == "platform_console" {
				c.cookie = ck
				require.True(c.t, ck.HttpOnly, "HttpOnly")
				require.Equal(c.t, http.SameSiteStrictMode, ck.SameSite, "SameSite=Strict")
			}
		}
		c.csrf, _ = v["csrf"].(string)
		require.NotEmpty(c.t, c.csrf)
	}
	return resp.StatusCode
}

// TestLoginRolesAndCSRF checks what the server enforces, before any
// platform is reached: logins against the users file, the reader role
// refused every change, and changes refused without the session's CSRF
// token or from another origin.
func TestLoginRolesAndCSRF(t *testing.T) {
	users, readerSeed := usersFile(t)
	c, err := console.New(console.Options{Users: users, Ready: func(context.Context) error { return nil }})
	require.NoError(t, err)
	srv := httptest.NewServer(c)
	defer srv.Close()
	silence := `{"matchers":"alertname=\"X\"","duration_ms":3600000,"comment":"c"}`

	anon := &client{t: t, srv: srv}
	resp, v := anon.do(http.MethodGet, "overview", "", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "no session: %v", v)
	resp, v = anon.do(http.MethodGet, "session", "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, true, v["auth"])
	require.Equal(t, "", v["csrf"])
	for _, bad := range [][2]string{{"alice", "wrong"}, {"nobody", "admin-secret"}, {"bob", "admin-secret"}, {"reader", "SUAnotaseed"}, {"alice", ""}} {
		require.Equal(t, http.StatusUnauthorized, anon.login(bad[0], bad[1]), "login %s/%s", bad[0], bad[1])
	}
	resp, _ = anon.do(http.MethodPost, "login", `{"user":"alice","password":"admin-secret"}`, map[string]string{"Sec-Fetch-Site": "cross-site"})
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "cross-site login")

	reader := &client{t: t, srv: srv}
	require.Equal(t, http.StatusOK, reader.login("bob", "reader-secret"))
	_, v = reader.do(http.MethodGet, "session", "", nil)
	require.Equal(t, "reader", v["role"])
	require.Equal(t, false, v["can_write"])
	resp, _ = reader.do(http.MethodGet, "overview", "", nil)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "a reader reads (the platform is not connected here)")
	resp, v = reader.do(http.MethodPost, "silences", silence, map[string]string{"X-CSRF-Token": reader.csrf})
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "reader creates a silence: %v", v)
	resp, _ = reader.do(http.MethodPost, "silences/abc/expire", "", map[string]string{"X-CSRF-Token": reader.csrf})
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "reader expires a silence")

	nkeyUser := &client{t: t, srv: srv}
	require.Equal(t, http.StatusOK, nkeyUser.login("reader", readerSeed), "an nkey user logs in with its seed")

	admin := &client{t: t, srv: srv}
	require.Equal(t, http.StatusOK, admin.login("alice", "admin-secret"))
	resp, v = admin.do(http.MethodPost, "silences", silence, nil)
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "no CSRF token: %v", v)
	resp, _ = admin.do(http.MethodPost, "silences", silence, map[string]string{"X-CSRF-Token": reader.csrf})
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "another session's CSRF token")
	resp, _ = admin.do(http.MethodPost, "silences", silence, map[string]string{"X-CSRF-Token": admin.csrf, "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "cross-site POST")
	resp, v = admin.do(http.MethodPost, "silences", silence, map[string]string{"X-CSRF-Token": admin.csrf})
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "admin passes every check (the platform is not connected here): %v", v)

	resp, _ = admin.do(http.MethodPost, "logout", "", map[string]string{"X-CSRF-Token": admin.csrf})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, _ = admin.do(http.MethodGet, "overview", "", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "after logout")
}

// TestWithoutAuthOnlyLoopback checks that without a users file the
// console answers loopback clients only.
func TestWithoutAuthOnlyLoopback(t *testing.T) {
	c, err := console.New(console.Options{Ready: func(context.Context) error { return nil }})
	require.NoError(t, err)
	for _, tc := range []struct {
		name   string
		remote string
		want   int
	}{
		{"loopback v4", "127.0.0.1:5555", http.StatusOK},
		{"loopback v6", "[::1]:5555", http.StatusOK},
		{"another host", "10.1.2.3:5555", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/console/api/session", nil)
			req.RemoteAddr = tc.remote
			w := httptest.NewRecorder()
			c.ServeHTTP(w, req)
			require.Equal(t, tc.want, w.Code, w.Body.String())
		})
	}
}
