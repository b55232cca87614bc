package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestServerLoggerQuietsExpectedNoise(t *testing.T) {
	var buf bytes.Buffer
	l := newServerLogger(slog.New(slog.NewTextHandler(&buf, nil)), "n1")
	lines := func() string { s := buf.String(); buf.Reset(); return s }

	// Without a start-up window every error keeps its level.
	l.Errorf("Error trying to connect to route (attempt %v): %v", 1, "connection refused")
	require.Contains(t, lines(), "level=ERROR")

	l.startingUntil = time.Now().Add(time.Minute)
	l.Errorf("Error trying to connect to route (attempt %v): %v", 1, "connection refused")
	l.Warnf("%s", "Waiting for routing to be established...")
	require.Empty(t, lines(), "start-up noise is debug")
	l.Errorf("Error flushing: %v", "broken pipe")
	require.Contains(t, lines(), "level=ERROR", "only start-up noise is quieted while starting")
	l.Noticef("Server is ready")
	require.Empty(t, lines(), "notices are debug")

	l.startingUntil = time.Now().Add(-time.Second)
	l.Errorf("Error trying to connect to route (attempt %v): %v", 1, "connection refused")
	require.Contains(t, lines(), "level=ERROR", "past the window a refused route is an error")

	l.stopping.Store(true)
	l.Errorf("Error flushing: writev tcp 127.0.0.1:6222->127.0.0.1:3: %s", "writev: broken pipe")
	l.Warnf("%s", "Metalayer blocking snapshot took 0.002s")
	require.Empty(t, lines(), "shutdown noise is debug")
	l.Errorf("Error writing to disk: %s", "no space left on device")
	out := lines()
	require.Contains(t, out, "level=ERROR")
	require.True(t, strings.Contains(out, "no space left"), out)
}
