package hubtest

import (
	"io"
	"log/slog"
	"os"
	"testing"
)

// discardLogger keeps test output quiet unless IOTHUB_EMULATOR_TEST_LOG is
// set, in which case the hub logs to stderr.
func discardLogger(testing.TB) *slog.Logger {
	if os.Getenv("IOTHUB_EMULATOR_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
