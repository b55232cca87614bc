package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/app"
	"github.com/platform/platform/cluster/clustertest"
)

// buildVersioned builds the binary with its version set at build time.
func buildVersioned(t *testing.T, v string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "platform")
	ldflags := "-X github.com/platform/platform/internal/version.version=" + v
	out, err := exec.Command("go", "build", "-ldflags", ldflags, "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// TestVersionSetAtBuildTime checks that the version given to the linker is
// what `platform version` prints and what every service instance reports
// in $SRV.INFO (what `nats micro ls` shows), here against a stock server.
func TestVersionSetAtBuildTime(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	const v = "2.3.4-rc.1"
	bin := buildVersioned(t, "v"+v)
	out, err := exec.Command(bin, "version").Output()
	require.NoError(t, err)
	first, _, _ := strings.Cut(string(out), "\n")
	require.True(t, strings.HasPrefix(first, "platform "+v+" (go"), "first line of `platform version`: %q", first)

	srv := clustertest.StartStock(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run", "--nats", srv.URL(), "--http", "", "--heartbeat", "100ms")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	nc, err := nats.Connect(srv.URL())
	require.NoError(t, err)
	defer nc.Close()
	want := map[string]bool{}
	for _, s := range app.ServiceNames() {
		want["platform-"+s] = true
	}
	clustertest.Eventually(t, 60*time.Second, func() error {
		infos, err := srvInfo(nc, 500*time.Millisecond)
		if err != nil {
			return err
		}
		got := map[string]bool{}
		for _, in := range infos {
			if in.Version != v {
				return fmt.Errorf("%s %s reports version %q, want %q", in.Name, in.ID, in.Version, v)
			}
			got[in.Name] = true
		}
		for name := range want {
			if !got[name] {
				return fmt.Errorf("no $SRV.INFO answer from %s yet (got %v)", name, got)
			}
		}
		return nil
	})
}

func TestRunRefusesVersionNotSemver(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildVersioned(t, "nightly")
	out, err := exec.Command(bin, "run", "--nats", "nats://127.0.0.1:1", "--http", "").CombinedOutput()
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "want a non-zero exit, got %v: %s", err, out)
	require.Contains(t, string(out), `version "nightly" (set at build time) is not a semantic version`)
}

// srvInfo collects the $SRV.INFO answers that arrive within wait.
func srvInfo(nc *nats.Conn, wait time.Duration) ([]micro.Info, error) {
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest("$SRV.INFO", inbox, nil); err != nil {
		return nil, err
	}
	var out []micro.Info
	for {
		m, err := sub.NextMsg(wait)
		if errors.Is(err, nats.ErrTimeout) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var in micro.Info
		if err := json.Unmarshal(m.Data, &in); err != nil {
			return nil, fmt.Errorf("$SRV.INFO answer %q: %w", m.Data, err)
		}
		out = append(out, in)
	}
}
