package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// serverLogger routes an embedded server's log lines through slog. Server
// notices (dozens per node at start) are logged at debug level so that the
// platform's own log shows one line per component; warnings and errors
// keep their level, except the few that every in-process cluster start
// produces while its nodes come up side by side (see startupNoise). The
// server calls Fatalf when it cannot continue (a port in use, for example);
// that is recorded, not turned into os.Exit, so Start can return it.
type serverLogger struct {
	log *slog.Logger
	// startingUntil ends the start-up window in which startupNoise is
	// logged at debug level (zero: never).
	startingUntil time.Time
	// stopping is set while the whole cluster shuts down in order; then
	// shutdownNoise is logged at debug level.
	stopping atomic.Bool

	mu    sync.Mutex
	fatal error
}

func newServerLogger(l *slog.Logger, node string) *serverLogger {
	return &serverLogger{log: l.With("node", node)}
}

// startupNoise are the servers' messages that are expected while nodes of
// one process start side by side: a node dials a sibling whose route port
// is not open yet, and JetStream waits for routes and a meta leader. Past
// the start-up window they keep their level, as a peer that stays
// unreachable is worth an error.
var startupNoise = []string{
	"Error trying to connect to route",
	"Waiting for routing to be established",
	"JetStream has not established contact with a meta leader",
}

// shutdownNoise are the messages of an orderly shutdown of every node of
// the process: each node snapshots its meta layer, and a node still
// writing to a sibling that just closed finds the pipe broken.
var shutdownNoise = []string{
	"Metalayer blocking snapshot",
	"broken pipe",
	"connection reset by peer",
}

func (l *serverLogger) emit(level slog.Level, format string, v []any) {
	var noise []string
	switch {
	case level <= slog.LevelInfo:
	case l.stopping.Load():
		noise = shutdownNoise
	case !l.startingUntil.IsZero() && time.Now().Before(l.startingUntil):
		noise = startupNoise
	}
	if noise == nil && !l.log.Enabled(context.Background(), level) {
		return
	}
	msg := fmt.Sprintf(format, v...)
	for _, p := range noise {
		if strings.Contains(msg, p) {
			level = slog.LevelDebug
			break
		}
	}
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	l.log.Log(context.Background(), level, msg)
}

func (l *serverLogger) Noticef(format string, v ...any) { l.emit(slog.LevelDebug, format, v) }
func (l *serverLogger) Warnf(format string, v ...any)   { l.emit(slog.LevelWarn, format, v) }
func (l *serverLogger) Errorf(format string, v ...any)  { l.emit(slog.LevelError, format, v) }
func (l *serverLogger) Debugf(format string, v ...any)  { l.emit(slog.LevelDebug-2, format, v) }
func (l *serverLogger) Tracef(format string, v ...any)  { l.emit(slog.LevelDebug-4, format, v) }

func (l *serverLogger) Fatalf(format string, v ...any) {
	err := fmt.Errorf(format, v...)
	l.mu.Lock()
	if l.fatal == nil {
		l.fatal = err
	}
	l.mu.Unlock()
	l.log.Error("embedded server failed", "err", err)
}

func (l *serverLogger) fatalErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatal
}
