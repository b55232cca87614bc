package alerting_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/services/alerting"
)

// TestHTTPAPIWithWebConfig serves the API v2 with Alertmanager's web
// config (basic auth over TLS): anonymous silences, silence deletes and
// alerts are refused, the configured user gets through, with a Go client
// and with amtool when it is installed.
func TestHTTPAPIWithWebConfig(t *testing.T) {
	_, nc, _ := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, 2*time.Minute)
	certs := clustertest.NewCerts(t, "alerting")
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	require.NoError(t, err)
	dir := t.TempDir()
	webConfig := filepath.Join(dir, "web.yml")
	require.NoError(t, os.WriteFile(webConfig, []byte(`tls_server_config:
  cert_file: `+certs.Cert+`
  key_file: `+certs.Key+`
basic_auth_users:
  ops: `+string(hash)+"\n"), 0o600))

	s, err := alerting.New(alerting.Options{Conn: nc, HTTPAddr: "127.0.0.1:0", WebConfigFile: webConfig, RequireWebConfig: true,
		HeartbeatInterval: -1, Logger: clustertest.Logger()})
	require.NoError(t, err)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = s.Run(rctx) }()
	select {
	case <-s.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("alerting not ready in 20s")
	}

	ca, err := os.ReadFile(certs.CA)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(ca))
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	base := "https://" + s.HTTPAddr()
	now := time.Now().UTC()
	silence := `{"matchers":[{"name":"alertname","value":"Any","isRegex":false}],"startsAt":"` + now.Format(time.RFC3339) +
		`","endsAt":"` + now.Add(time.Hour).Format(time.RFC3339) + `","createdBy":"test","comment":"web config"}`
	alert := `[{"labels":{"alertname":"Posted","severity":"warning"}}]`
	do := func(method, path, body, user, pass string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		return resp.StatusCode
	}

	// Plain HTTP on the TLS port gets nothing done.
	resp, err := http.Post("http://"+s.HTTPAddr()+"/api/v2/silences", "application/json", strings.NewReader(silence))
	if err == nil {
		require.NotEqual(t, http.StatusOK, resp.StatusCode, "plain HTTP posted a silence")
		resp.Body.Close()
	}
	for _, tc := range []struct{ name, method, path, body, user, pass string }{
		{"anonymous silence", http.MethodPost, "/api/v2/silences", silence, "", ""},
		{"anonymous alerts", http.MethodPost, "/api/v2/alerts", alert, "", ""},
		{"anonymous silence delete", http.MethodDelete, "/api/v2/silence/00000000-0000-0000-0000-000000000000", "", "", ""},
		{"wrong password", http.MethodPost, "/api/v2/silences", silence, "ops", "guess"},
	} {
		if got := do(tc.method, tc.path, tc.body, tc.user, tc.pass); got != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401", tc.name, got)
		}
	}

	// The configured user gets through.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v2/silences", bytes.NewBufferString(silence))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth("ops", "s3cret")
	resp, err = client.Do(req)
	require.NoError(t, err)
	var created struct {
		SilenceID string `json:"silenceID"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&created))
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, http.StatusOK, do(http.MethodPost, "/api/v2/alerts", alert, "ops", "s3cret"), "alerts with basic auth")
	require.Equal(t, http.StatusOK, do(http.MethodDelete, "/api/v2/silence/"+created.SilenceID, "", "ops", "s3cret"), "silence delete with basic auth")

	amtool, err := exec.LookPath("amtool")
	if err != nil {
		t.Log("amtool not installed: skipped its part")
		return
	}
	httpConfig := filepath.Join(dir, "amtool-http.yml")
	writeHTTP := func(pass string) {
		require.NoError(t, os.WriteFile(httpConfig, []byte("basic_auth:\n  username: ops\n  password: "+pass+"\ntls_config:\n  ca_file: "+certs.CA+"\n"), 0o600))
	}
	run := func(args ...string) (string, error) {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(actx, amtool, append([]string{"--alertmanager.url=" + base, "--http.config.file=" + httpConfig}, args...)...).CombinedOutput()
		return string(out), err
	}
	writeHTTP("guess")
	out, err := run("silence", "add", "alertname=Amtool", "--comment=refused", "--author=test", "--duration=1h")
	require.Error(t, err, "amtool with a wrong password added a silence: %s", out)
	writeHTTP("s3cret")
	out, err = run("silence", "add", "alertname=Amtool", "--comment=allowed", "--author=test", "--duration=1h")
	require.NoError(t, err, "amtool silence add: %s", out)
	lines := strings.Fields(out) // a version warning, then the id
	id := lines[len(lines)-1]
	out, err = run("silence", "query", "-q")
	require.NoError(t, err, "amtool silence query: %s", out)
	lines = strings.Fields(out)
	require.Equal(t, id, lines[len(lines)-1], "amtool lists the silence it added: %s", out)
}

// TestHTTPAPIOffLoopbackNeedsWebConfig: with authenticated NATS, an API
// other hosts can reach is refused without a web config, and a bad web
// config file is refused at start.
func TestHTTPAPIOffLoopbackNeedsWebConfig(t *testing.T) {
	_, nc, _ := clustertest.Provisioned(t, 1)
	bad := filepath.Join(t.TempDir(), "web.yml")
	require.NoError(t, os.WriteFile(bad, []byte("basic_auth_users: [not a map\n"), 0o600))
	tests := []struct {
		name      string
		addr, web string
		require   bool
		wantErr   string
	}{
		{"every interface", "0.0.0.0:9093", "", true, "web config"},
		{"no host", ":9093", "", true, "web config"},
		{"a LAN address", "192.0.2.1:9093", "", true, "web config"},
		{"loopback", "127.0.0.1:0", "", true, ""},
		{"localhost", "localhost:0", "", true, ""},
		{"without auth anywhere", "0.0.0.0:0", "", false, ""},
		{"bad web config", "127.0.0.1:0", bad, false, "web config"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := alerting.New(alerting.Options{Conn: nc, HTTPAddr: tc.addr, WebConfigFile: tc.web, RequireWebConfig: tc.require,
				HeartbeatInterval: -1, Logger: clustertest.Logger()})
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}
