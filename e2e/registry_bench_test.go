package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/hub"
	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

// Registry benchmarks, recorded in docs/benchmarks.md ("Device registry").
// They run against a hub with its database on disk, over HTTPS, as a client
// would. No test asserts on timings.

func BenchmarkRegistry_CreateSingle(b *testing.B) {
	h := hubtest.Start(b, hubtest.WithDataDir(b.TempDir()))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := h.Do(b, http.MethodPut, fmt.Sprintf("/devices/d%d", i), map[string]any{})
		if r.StatusCode != 200 {
			b.Fatalf("%d %s", r.StatusCode, r.Body)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "devices/s")
}

// bulkBody is a POST /devices body creating n devices from prefix.
func bulkBody(prefix string, n int) []byte {
	entries := make([]map[string]any, n)
	for j := range entries {
		entries[j] = map[string]any{"id": fmt.Sprintf("%s-%d", prefix, j), "importMode": "create", "status": "enabled"}
	}
	body, _ := json.Marshal(entries)
	return body
}

func BenchmarkRegistry_BulkCreate100(b *testing.B) {
	h := hubtest.Start(b, hubtest.WithDataDir(b.TempDir()))
	bodies := make([][]byte, b.N)
	for i := range bodies {
		bodies[i] = bulkBody(fmt.Sprintf("b%d", i), 100)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := h.Do(b, http.MethodPost, "/devices", bodies[i]); r.StatusCode != 200 {
			b.Fatalf("%d %s", r.StatusCode, r.Body)
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "devices/s")
}

// BenchmarkRegistry_Get measures GET /devices/{id} on a registry of 10,000
// devices and reports p50 and p99 latency.
func BenchmarkRegistry_Get(b *testing.B) {
	h := hubtest.Start(b, hubtest.WithDataDir(b.TempDir()))
	for i := 0; i < 100; i++ {
		h.Do(b, http.MethodPost, "/devices", bulkBody(fmt.Sprintf("g%d", i), 100))
	}
	lat := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		r := h.Do(b, http.MethodGet, fmt.Sprintf("/devices/g%d-%d", i%100, (i/100)%100), nil)
		lat[i] = time.Since(start)
		if r.StatusCode != 200 {
			b.Fatalf("%d %s", r.StatusCode, r.Body)
		}
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkRegistry_BulkImport100k imports 100,000 devices through 1,000
// bulk requests of 100 into an empty hub; run it with -benchtime=1x.
func BenchmarkRegistry_BulkImport100k(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		h := hubtest.Start(b, hubtest.WithDataDir(b.TempDir()))
		bodies := make([][]byte, 1000)
		for j := range bodies {
			bodies[j] = bulkBody(fmt.Sprintf("i%d", j), 100)
		}
		b.StartTimer()
		start := time.Now()
		for _, body := range bodies {
			if r := h.Do(b, http.MethodPost, "/devices", body); r.StatusCode != 200 {
				b.Fatalf("%d %s", r.StatusCode, r.Body)
			}
		}
		b.ReportMetric(time.Since(start).Seconds(), "s/100k")
		b.StopTimer()
		var st map[string]int
		h.Do(b, http.MethodGet, "/statistics/devices", nil).JSON(b, &st)
		if st["totalDeviceCount"] != 100000 {
			b.Fatalf("statistics %v", st)
		}
	}
}

// BenchmarkRegistry_Seed100k starts a hub whose seed file names 100,000
// devices (generated keys, no twin contents); run it with -benchtime=1x.
func BenchmarkRegistry_Seed100k(b *testing.B) {
	devices := make([]map[string]any, 100000)
	for i := range devices {
		devices[i] = map[string]any{"id": fmt.Sprintf("s%d", i)}
	}
	body, _ := json.Marshal(map[string]any{"devices": devices})
	path := filepath.Join(b.TempDir(), "seed.json")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		cfg := hub.Config{DataDir: b.TempDir(), HTTPAddr: "127.0.0.1:0", SeedFile: path, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		start := time.Now()
		h, err := hub.Open(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s/100k")
		if len(h.Seeded) != 100000 {
			b.Fatalf("seeded %d", len(h.Seeded))
		}
		h.Close()
	}
}
