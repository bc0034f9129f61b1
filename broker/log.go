package broker

import (
	"context"
	"log/slog"
)

// quietHandler raises the floor of mochi's own logs to Warn: its per-listener
// and per-hook Info lines are noise next to the hub's banner; the hook logs
// the connection events users care about.
type quietHandler struct{ slog.Handler }

func (q quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && q.Handler.Enabled(ctx, l)
}
func (q quietHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return quietHandler{q.Handler.WithAttrs(a)}
}
func (q quietHandler) WithGroup(n string) slog.Handler { return quietHandler{q.Handler.WithGroup(n)} }
