package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/services/consume"
)

// TestConsumeCommand: platform consume creates the group with its
// filter, prints the group's events like platform tail and acknowledges
// them, so a second run prints only what came since.
func TestConsumeCommand(t *testing.T) {
	c, nc, js := clustertest.Provisioned(t, 1)
	s, err := consume.NewService(consume.ServiceOptions{Conn: nc, TTL: 2 * time.Second, Tick: 100 * time.Millisecond, HeartbeatInterval: -1, Logger: clustertest.Logger()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-s.Ready()

	pctx := clustertest.Context(t, 30*time.Second)
	for _, subj := range []string{"events.cli.a", "events.other", "events.cli.b"} {
		_, err := js.Publish(pctx, subj, []byte("payload "+subj))
		require.NoError(t, err)
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := newConsumeCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs(append(args, "--server", c.ClientURLs()[0]))
		require.NoError(t, cmd.ExecuteContext(clustertest.Context(t, 60*time.Second)), "platform consume %s", args)
		return out.String()
	}
	got := run("clig", "--filter", "events.cli.>", "--partitions", "2", "--count", "2")
	want := "1 events.cli.a payload events.cli.a\n3 events.cli.b payload events.cli.b\n"
	if lines := strings.Split(strings.TrimSpace(got), "\n"); len(lines) != 2 || !strings.Contains(want, lines[0]) || !strings.Contains(want, lines[1]) {
		t.Errorf("platform consume printed\n%s\nwant the two events.cli events as platform tail prints them:\n%s", got, want)
	}
	_, err = js.Publish(pctx, "events.cli.c", []byte("later"))
	require.NoError(t, err)
	if got := run("clig", "--count", "1"); got != "4 events.cli.c later\n" {
		t.Errorf("second run printed %q, want only the event published since", got)
	}
	cmd := newConsumeCmd()
	cmd.SetArgs([]string{"clig", "--partitions", "3", "--server", c.ClientURLs()[0]})
	cmd.SetOut(&bytes.Buffer{})
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	if err := cmd.ExecuteContext(pctx); err == nil || !strings.Contains(err.Error(), "conflict") {
		t.Errorf("consuming with another partition count: %v, want a conflict", err)
	}
}
