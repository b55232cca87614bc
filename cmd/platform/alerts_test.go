package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/services/alerting"
	"github.com/platform/platform/streams"
)

// runCmd runs the platform command with args and returns its output.
func runCmd(ctx context.Context, args ...string) (string, error) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func TestAlertsAndSilenceCommands(t *testing.T) {
	c, nc, _ := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, time.Minute)
	server := strings.Join(c.ClientURLs(), ",")

	// Before any alerting instance runs: a clear error.
	_, err := runCmd(ctx, "alerts", "--server", server)
	require.ErrorIs(t, err, alerting.ErrNoService)

	s, err := alerting.New(alerting.Options{Conn: nc, HeartbeatInterval: -1, Logger: clustertest.Logger()})
	require.NoError(t, err)
	go func() { _ = s.Run(ctx) }()
	select {
	case <-s.Ready():
	case <-ctx.Done():
		t.Fatal("alerting not ready")
	}
	_, err = nc.Request(streams.AlertsPostSubject, []byte(`[{"labels":{"alertname":"DiskFull","severity":"critical","instance":"db1"},"annotations":{"summary":"disk full"}},
		{"labels":{"alertname":"DiskFull","severity":"warning","instance":"db2"}}]`), 5*time.Second)
	require.NoError(t, err)

	clustertest.Eventually(t, 10*time.Second, func() error {
		out, err := runCmd(ctx, "alerts", "--server", server)
		if err != nil {
			return err
		}
		if !strings.Contains(out, "ALERTNAME") || !strings.Contains(out, `instance="db1"`) || !strings.Contains(out, "disk full") {
			return fmt.Errorf("table without the posted alerts:\n%s", out)
		}
		return nil
	})
	out, err := runCmd(ctx, "alerts", "--server", server, "--json", "severity=critical")
	require.NoError(t, err)
	var as []alerting.AlertStatus
	require.NoError(t, json.Unmarshal([]byte(out), &as), out)
	require.Len(t, as, 1, "the filter keeps the critical alert only")
	require.Equal(t, "db1", as[0].Labels["instance"])
	require.Equal(t, "active", as[0].Status.State)

	_, err = runCmd(ctx, "alerts", "--server", server, "instance=~(")
	require.ErrorContains(t, err, "bad_request")

	// silence add: the first bare word is the alert name.
	out, err = runCmd(ctx, "silence", "add", "--server", server, "DiskFull", `instance="db1"`, "--author", "ops", "--comment", "replacing the disk", "--duration", "2h")
	require.NoError(t, err)
	id := strings.TrimSpace(out)
	require.NotEmpty(t, id)
	clustertest.Eventually(t, 10*time.Second, func() error {
		out, err := runCmd(ctx, "alerts", "--server", server, "--json", "instance=db1")
		if err != nil {
			return err
		}
		var as []alerting.AlertStatus
		if err := json.Unmarshal([]byte(out), &as); err != nil {
			return err
		}
		if len(as) != 1 || as[0].Status.State != "suppressed" || len(as[0].Status.SilencedBy) != 1 || as[0].Status.SilencedBy[0] != id {
			return fmt.Errorf("db1 not suppressed by %s: %s", id, out)
		}
		return nil
	})

	out, err = runCmd(ctx, "silence", "ls", "--server", server)
	require.NoError(t, err)
	require.Contains(t, out, id)
	require.Contains(t, out, `alertname="DiskFull" instance="db1"`)
	require.Contains(t, out, "replacing the disk")
	require.Contains(t, out, "active")

	out, err = runCmd(ctx, "silence", "expire", "--server", server, id)
	require.NoError(t, err)
	require.Equal(t, "expired "+id+"\n", out)
	out, err = runCmd(ctx, "silence", "ls", "--server", server)
	require.NoError(t, err)
	require.NotContains(t, out, id, "expired silences are hidden")
	out, err = runCmd(ctx, "silence", "ls", "--server", server, "--expired", "--json")
	require.NoError(t, err)
	var ss []alerting.GettableSilence
	require.NoError(t, json.Unmarshal([]byte(out), &ss), out)
	require.Len(t, ss, 1)
	require.Equal(t, alerting.SilenceExpired, ss[0].Status.State)

	_, err = runCmd(ctx, "silence", "expire", "--server", server, "nope")
	require.ErrorContains(t, err, "not_found")
}

func TestSilenceFromFlags(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name       string
		args       []string
		start, end string
		author     string
		comment    string
		want       string // matchers, or the error
		wantEnd    time.Time
	}{
		{"bare alert name", []string{"InstanceDead", "instance=~i.*"}, "", "", "ops", "c", `alertname="InstanceDead" instance=~"i.*"`, now.Add(time.Hour)},
		{"matchers only", []string{`severity!=info`, `service!~"x|y"`}, "", "", "ops", "c", `severity!="info" service!~"x|y"`, now.Add(time.Hour)},
		{"end given", []string{"A"}, "", "2030-01-03T00:00:00Z", "ops", "c", `alertname="A"`, time.Date(2030, 1, 3, 0, 0, 0, 0, time.UTC)},
		{"end before start", []string{"A"}, "", "2029-01-01T00:00:00Z", "ops", "c", "ends", time.Time{}},
		{"bad start", []string{"A"}, "tomorrow", "", "ops", "c", "--start", time.Time{}},
		{"no author: Alertmanager needs none", []string{"A"}, "", "", "", "c", `alertname="A"`, now.Add(time.Hour)},
		{"no comment", []string{"A"}, "", "", "ops", "", "--comment", time.Time{}},
		{"bad matcher", []string{"A", "x=~("}, "", "", "ops", "c", "matcher", time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sl, err := silenceFromFlags(tt.args, tt.start, tt.end, time.Hour, tt.author, tt.comment, now)
			if tt.wantEnd.IsZero() {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("error %v, want one naming %q", err, tt.want)
				}
				return
			}
			require.NoError(t, err)
			if got := matcherString(sl.Matchers); got != tt.want {
				t.Fatalf("matchers %s, want %s", got, tt.want)
			}
			if !sl.EndsAt.Equal(tt.wantEnd) {
				t.Fatalf("ends %v, want %v", sl.EndsAt, tt.wantEnd)
			}
		})
	}
}
