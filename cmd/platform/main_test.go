package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/auth"
	"github.com/platform/platform/cluster"
	"github.com/platform/platform/cluster/clustertest"
)

// buildBinary builds the platform binary once for the exec tests.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "platform")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	busyPort := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)

	badConf := filepath.Join(t.TempDir(), "bad.conf")
	require.NoError(t, os.WriteFile(badConf, []byte("listen: [unterminated\n"), 0o600))
	noJS := filepath.Join(t.TempDir(), "nojs.conf")
	require.NoError(t, os.WriteFile(noJS, []byte("server_name: x\nlisten: 127.0.0.1:-1\n"), 0o600))
	readOnly := filepath.Join(t.TempDir(), "ro")
	require.NoError(t, os.WriteFile(readOnly, []byte("a file, not a directory"), 0o600))

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"run", "--bogus"}, "unknown flag: --bogus"},
		{"two nodes", []string{"run", "--nodes", "2"}, "nodes must be 1 or at least 3"},
		{"bad sync", []string{"run", "--sync", "sometimes"}, `--sync "sometimes"`},
		{"bad log level", []string{"run", "--log-level", "loud"}, "--log-level"},
		{"unknown service", []string{"run", "--services", "nope"}, `unknown service "nope"`},
		{"busy client port", []string{"run", "--nodes", "1", "--http", "", "--client-port", busyPort, "--data-dir", t.TempDir()}, "client port 127.0.0.1:" + busyPort + " is not available"},
		{"busy http port", []string{"run", "--nodes", "1", "--http", "127.0.0.1:" + busyPort, "--client-port", "0", "--data-dir", t.TempDir()}, "http 127.0.0.1:" + busyPort + " is not available"},
		{"bad config", []string{"run", "--config", badConf}, "config " + badConf},
		{"config without jetstream", []string{"run", "--config", noJS}, "jetstream is not enabled"},
		{"missing config", []string{"run", "--config", "/nonexistent/nats.conf"}, "no such file"},
		{"unwritable data dir", []string{"run", "--nodes", "1", "--data-dir", filepath.Join(readOnly, "sub"), "--client-port", "0", "--http", ""}, "is not writable"},
		{"nats with nodes", []string{"run", "--nats", "nats://127.0.0.1:1", "--nodes", "3"}, "cannot be combined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, tt.args...).CombinedOutput()
			var exit *exec.ExitError
			require.True(t, errors.As(err, &exit), "want a non-zero exit, got %v: %s", err, out)
			require.NotEqual(t, 0, exit.ExitCode())
			require.Contains(t, string(out), tt.want)
			require.NotContains(t, string(out), "panic")
		})
	}

	t.Run("sigint exits 0 and restart finds data", func(t *testing.T) {
		dir := t.TempDir()
		cp := clustertest.FreePortRange(t, 1)
		httpPort := clustertest.FreePortRange(t, 1)
		args := []string{"run", "--nodes", "1", "--data-dir", dir, "--client-port", strconv.Itoa(cp),
			"--http", "127.0.0.1:" + strconv.Itoa(httpPort), "--heartbeat", "100ms", "--log-format", "json"}
		for round := range 2 {
			cmd := exec.Command(bin, args...)
			stderr, err := cmd.StderrPipe()
			require.NoError(t, err)
			require.NoError(t, cmd.Start())
			ready := make(chan struct{})
			go func() {
				sc := bufio.NewScanner(stderr)
				for sc.Scan() {
					if strings.Contains(sc.Text(), `"platform ready"`) {
						close(ready)
						break
					}
				}
				for sc.Scan() {
				}
			}()
			select {
			case <-ready:
			case <-time.After(60 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("round %d: not ready within 60s", round)
			}
			resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(httpPort) + "/readyz")
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
			require.NoError(t, cmd.Wait(), "exit status after SIGINT")
		}
		require.DirExists(t, filepath.Join(dir, "n1", "jetstream"))
	})

	t.Run("bench --json prints one result object per line", func(t *testing.T) {
		for _, args := range [][]string{
			{"bench", "--nodes", "1", "--json", "ingest", "--clients", "4", "--events", "20"},
			{"bench", "--nodes", "1", "--json", "publish", "--events", "600"},
			{"bench", "--nodes", "1", "--json", "--quiet", "consume", "--rows", "group-4-ack,fanout-4-raw,fanout-4-decode,reader-ordered", "--events", "2000"},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			out, err := exec.CommandContext(ctx, bin, args...).Output()
			cancel()
			require.NoError(t, err, "%v", args)
			var names []string
			for line := range strings.Lines(strings.TrimSpace(string(out))) {
				var r map[string]any
				require.NoError(t, json.Unmarshal([]byte(line), &r), "line %q", line)
				for _, k := range []string{"name", "events", "seconds", "events_per_sec", "p50_ms", "p95_ms", "p99_ms"} {
					require.Contains(t, r, k, "line %q", line)
				}
				require.Positive(t, r["events_per_sec"], "line %q", line)
				names = append(names, r["name"].(string))
			}
			require.NotEmpty(t, names, "%v", args)
			t.Logf("%v: %v", args[3:], names)
		}
	})

	t.Run("bench election --kill kills a leader's process", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, "bench", "--json", "--quiet", "election", "--kill", "--rounds", "1", "--stop-rounds", "1").Output()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("bench election: %v\nstdout:\n%s\nstderr:\n%s", err, out, exit.Stderr)
		}
		require.NoError(t, err, "%s", out)
		rows := map[string]map[string]any{}
		for line := range strings.Lines(strings.TrimSpace(string(out))) {
			var r map[string]any
			require.NoError(t, json.Unmarshal([]byte(line), &r), "line %q", line)
			rows[r["name"].(string)] = r
		}
		for _, name := range []string{"node kill new leader", "node kill first publish"} {
			require.Contains(t, rows, name, "%s", out)
			require.EqualValues(t, 1, rows[name]["events"], name)
			require.Positive(t, rows[name]["p50_ms"], name)
		}
	})
}

func TestDeployConfigLoads(t *testing.T) {
	// The file's TLS and authorization blocks are active and read their
	// files and keys from the environment.
	certs := clustertest.NewCerts(t, "deploy")
	t.Setenv("PLATFORM_TLS_CERT", certs.Cert)
	t.Setenv("PLATFORM_TLS_KEY", certs.Key)
	t.Setenv("PLATFORM_TLS_CA", certs.CA)
	authDir := t.TempDir()
	usersFile, err := auth.Init(authDir)
	require.NoError(t, err)
	users, err := auth.Load(usersFile)
	require.NoError(t, err)
	roleOf, nameOf := map[string]string{}, map[string]string{}
	for _, u := range users.Users {
		nameOf[u.Nkey] = u.Name
		t.Setenv("PLATFORM_"+strings.ToUpper(map[string]string{
			auth.RoleAdmin: "admin", auth.RoleService: "service", auth.RoleProducer: "producer", auth.RoleReader: "reader",
		}[u.Role])+"_NKEY", u.Nkey)
		roleOf[u.Nkey] = u.Role
	}

	o, err := server.ProcessConfigFile("../../deploy/nats.conf")
	require.NoError(t, err)
	require.True(t, o.JetStream, "jetstream enabled")
	require.True(t, o.SyncAlways, "sync_interval: always")
	require.NotEmpty(t, o.ServerName)
	require.Equal(t, "platform", o.Cluster.Name)
	require.Len(t, o.Routes, 3)
	require.Equal(t, int32(8<<20), o.MaxPayload)
	require.NotEmpty(t, o.StoreDir)
	require.NotNil(t, o.TLSConfig, "client tls block")
	require.Equal(t, tls.RequireAndVerifyClientCert, o.TLSConfig.ClientAuth, "clients verified")
	require.NotNil(t, o.Cluster.TLSConfig, "route tls block")

	// Every role of package auth, with the same permissions.
	require.Len(t, o.Nkeys, len(auth.Roles))
	for _, u := range o.Nkeys {
		role, ok := roleOf[u.Nkey]
		require.True(t, ok, "nkey %s is one of the users", u.Nkey)
		want, err := auth.RolePermissions(role, nameOf[u.Nkey])
		require.NoError(t, err)
		var got auth.Permissions
		if p := u.Permissions; p != nil {
			if p.Publish != nil {
				got.PublishAllow, got.PublishDeny = p.Publish.Allow, p.Publish.Deny
			}
			if p.Subscribe != nil {
				got.SubscribeAllow, got.SubscribeDeny = p.Subscribe.Allow, p.Subscribe.Deny
			}
		}
		require.Equal(t, want, got, "role %s: deploy/nats.conf and package auth agree", role)
	}
}

func TestParseSync(t *testing.T) {
	tests := []struct {
		in      string
		always  bool
		every   time.Duration
		wantErr bool
	}{
		{"always", true, 0, false},
		{"1s", false, time.Second, false},
		{"2m", false, 2 * time.Minute, false},
		{"0s", false, 0, true},
		{"-1s", false, 0, true},
		{"never", false, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var o cluster.Options
			err := parseSync(tt.in, &o)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			if o.SyncAlways != tt.always || o.SyncInterval != tt.every {
				t.Errorf("parseSync(%q) = always %v every %s, want %v %s", tt.in, o.SyncAlways, o.SyncInterval, tt.always, tt.every)
			}
		})
	}
}

// TestRunFlags pins the flags of platform run, the services' own included.
func TestServicesFlag(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"default", nil, []string{"all"}},
		{"list", []string{"--services", "txn,detector"}, []string{"txn", "detector"}},
		{"repeated", []string{"--services", "txn", "--services", "admin,balancer"}, []string{"txn", "admin", "balancer"}},
		{"empty", []string{"--services", ""}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newRunCmd().Flags()
			require.NoError(t, f.Parse(tt.args))
			got, err := f.GetStringSlice("services")
			require.NoError(t, err)
			if !slices.Equal(got, tt.want) {
				t.Errorf("--services %v = %q, want %q", tt.args, got, tt.want)
			}
		})
	}
}

func TestRunFlags(t *testing.T) {
	var got []string
	newRunCmd().Flags().VisitAll(func(f *pflag.Flag) { got = append(got, f.Name) })
	want := []string{
		"alerts-file", "alerts-http", "alerts-web-config", "auth", "balancer-hedge", "balancer-leader-interval", "client-port", "cluster-port", "config", "console", "creds", "data-dir", "heartbeat", "http",
		"inbox-prefix", "ingest-buffer", "ingest-client-rate", "ingest-per-event", "ingest-request-timeout", "ingest-topic-rate", "log-format", "log-level",
		"nats", "nkey", "nodes", "provision-creds", "provision-nkey", "replicas", "restore-from", "services", "sync", "tls-ca", "tls-cert", "tls-key", "tls-verify",
	}
	require.Equal(t, want, got)
}
