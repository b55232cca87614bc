package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
)

// serverLogger routes an embedded server's log lines through slog. Server
// notices (dozens per node at start) are logged at debug level so that the
// platform's own log shows one line per component; warnings and errors
// keep their level. The
// server calls Fatalf when it cannot continue (a port in use, for example);
// that is recorded, not turned into os.Exit, so Start can return it.
type serverLogger struct {
	log *slog.Logger

	mu    sync.Mutex
	fatal error
}

func newServerLogger(l *slog.Logger, node string) *serverLogger {
	return &serverLogger{log: l.With("node", node)}
}

func (l *serverLogger) emit(level slog.Level, format string, v []any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, v...))
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
