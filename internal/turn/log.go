package turn

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// slogFactory routes pion's logging into slog. pion logs at debug level for
// every relayed packet, so the Enabled check comes before any formatting
// to keep the data path free of Sprintf when debug is off.
type slogFactory struct{ l *slog.Logger }

func (f slogFactory) NewLogger(scope string) logging.LeveledLogger {
	return slogLogger{f.l.With("scope", "pion/"+scope)}
}

type slogLogger struct{ l *slog.Logger }

// pion's trace level has no slog equivalent; it goes below debug.
const levelTrace = slog.LevelDebug - 4

func (s slogLogger) log(level slog.Level, format string, args ...any) {
	ctx := context.Background()
	if !s.l.Enabled(ctx, level) {
		return
	}
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	s.l.Log(ctx, level, msg)
}

func (s slogLogger) Trace(msg string)                  { s.log(levelTrace, "%s", msg) }
func (s slogLogger) Tracef(format string, args ...any) { s.log(levelTrace, format, args...) }
func (s slogLogger) Debug(msg string)                  { s.log(slog.LevelDebug, "%s", msg) }
func (s slogLogger) Debugf(format string, args ...any) { s.log(slog.LevelDebug, format, args...) }

// pion's Info messages ("No Permission or Channel exists", "permission
// denied") fire per packet or request a remote party sends, so anyone who
// can reach a relay port could flood the log; they go to debug.
func (s slogLogger) Info(msg string)                   { s.log(slog.LevelDebug, "%s", msg) }
func (s slogLogger) Infof(format string, args ...any)  { s.log(slog.LevelDebug, format, args...) }
func (s slogLogger) Warn(msg string)                   { s.log(slog.LevelWarn, "%s", msg) }
func (s slogLogger) Warnf(format string, args ...any)  { s.log(slog.LevelWarn, format, args...) }
func (s slogLogger) Error(msg string)                  { s.log(slog.LevelError, "%s", msg) }
func (s slogLogger) Errorf(format string, args ...any) { s.log(slog.LevelError, format, args...) }
