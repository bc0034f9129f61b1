package hub

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

func openTestHub(t *testing.T) *Hub {
	t.Helper()
	h, err := Open(context.Background(), Config{
		Hostname: "localhost", InMemory: true,
		MQTTSAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func health(t *testing.T, h *Hub) int {
	t.Helper()
	resp, err := http.Get("http://" + h.Addr("http") + "/_emulator/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A listener that stops accepting for good shows in the health endpoint
// (issue #13: 1883 was closed while health said ok).
func TestHealth_ReportsDeadListener(t *testing.T) {
	h := openTestHub(t)
	if got := health(t, h); got != http.StatusOK {
		t.Fatalf("health = %d", got)
	}
	// Close the MQTT socket under the broker, as a fatal accept error would.
	_ = h.listener["mqtt"].(*limitListener).Listener.Close()
	for range 500 {
		if len(h.DeadListeners()) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := h.DeadListeners(); len(got) != 1 || got[0] != "mqtt" {
		t.Fatalf("dead listeners %v", got)
	}
	if got := health(t, h); got != http.StatusServiceUnavailable {
		t.Errorf("health = %d with a dead listener, want 503", got)
	}
}

// HTTP connections cannot idle or dribble headers forever.
func TestHTTPServers_HaveTimeouts(t *testing.T) {
	h := openTestHub(t)
	if len(h.servers) != 2 {
		t.Fatalf("%d servers", len(h.servers))
	}
	for _, s := range h.servers {
		if s.IdleTimeout <= 0 || s.ReadHeaderTimeout <= 0 {
			t.Errorf("server timeouts: idle %v, read header %v", s.IdleTimeout, s.ReadHeaderTimeout)
		}
	}
}

// Two emulators on one data directory would serve diverging state: the
// second fails at once and says why (issue #13).
func TestOpen_DataDirLocked(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Hostname: "localhost", DataDir: dir, HTTPAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	h, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "in use by another emulator") {
		t.Errorf("second Open: %v", err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	// Closing releases it.
	h2, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	h2.Close()
}

// The hub raises its soft open-file limit to the hard limit, whatever it
// was started with (issue 22: 100,000 connections need as many files).
func TestRaiseOpenFileLimit(t *testing.T) {
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	if orig.Max < 1024 {
		t.Fatalf("hard open-file limit %d is too low to test with", orig.Max)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig) })
	lowered := syscall.Rlimit{Cur: 512, Max: orig.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lowered); err != nil {
		t.Fatal(err)
	}
	got, err := raiseOpenFileLimit()
	if err != nil {
		t.Fatal(err)
	}
	var now syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now); err != nil {
		t.Fatal(err)
	}
	if got != orig.Max || now.Cur != orig.Max || now.Max != orig.Max {
		t.Fatalf("after raising: returned %d, limit %d/%d; want the hard limit %d", got, now.Cur, now.Max, orig.Max)
	}
	for _, c := range []struct {
		openFiles uint64
		want      int
	}{{20000, 20000 - fdReserve}, {1024, 1024 - fdReserve}, {100, 64}, {0, 100000}, {^uint64(0), 100000}} {
		if got := defaultMaxConnections(c.openFiles); got != c.want {
			t.Errorf("defaultMaxConnections(%d) = %d, want %d", c.openFiles, got, c.want)
		}
	}
}
