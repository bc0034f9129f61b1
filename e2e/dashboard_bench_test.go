package e2e

import (
	"fmt"
	"net/http"
	"sort"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

// BenchmarkDashboard_Pages measures the server time of each dashboard page
// at 10,000 devices: the REST calls a page makes when it loads, one after
// the other (the browser overlaps them, so this is an upper bound),
// recorded in docs/benchmarks.md ("Dashboard"). p50 and p99 per page load.
func BenchmarkDashboard_Pages(b *testing.B) {
	h := hubtest.Start(b, hubtest.WithDataDir(b.TempDir()))
	for i := 0; i < 100; i++ {
		if r := h.Do(b, http.MethodPost, "/devices", bulkBody(fmt.Sprintf("d%d", i), 100)); r.StatusCode != 200 {
			b.Fatalf("%d %s", r.StatusCode, r.Body)
		}
	}
	for i := range 20 {
		h.Do(b, http.MethodPut, fmt.Sprintf("/jobs/v2/bench%d", i), map[string]any{"jobId": fmt.Sprintf("bench%d", i), "type": "scheduleUpdateTwin",
			"queryCondition": fmt.Sprintf("deviceId = 'd%d-0'", i), "updateTwin": map[string]any{"etag": "*", "tags": map[string]any{"n": i}}})
	}
	const list = "SELECT deviceId, status, connectionState, lastActivityTime, cloudToDeviceMessageCount, authenticationType FROM devices"
	query := func(q string, extra ...string) func(b *testing.B) {
		return func(b *testing.B) {
			hs := append([]string{"x-ms-max-item-count: 50"}, extra...)
			if r := h.Do(b, http.MethodPost, "/devices/query", map[string]any{"query": q}, hs...); r.StatusCode != 200 {
				b.Fatalf("%s: %d %s", q, r.StatusCode, r.Body)
			}
		}
	}
	get := func(path string) func(b *testing.B) {
		return func(b *testing.B) {
			if r := h.Do(b, http.MethodGet, path, nil); r.StatusCode != 200 {
				b.Fatalf("%s: %d %s", path, r.StatusCode, r.Body)
			}
		}
	}
	// The continuation of the devices list's first page, for "next page".
	first := h.Do(b, http.MethodPost, "/devices/query", map[string]any{"query": list}, "x-ms-max-item-count: 50")
	next := first.Header.Get("x-ms-continuation")
	pages := []struct {
		name  string
		calls []func(b *testing.B)
	}{
		{"devices", []func(*testing.B){query(list), get("/statistics/devices")}},
		{"devices-next-page", []func(*testing.B){query(list, "x-ms-continuation: "+next)}},
		{"devices-where-connected", []func(*testing.B){query(list + " WHERE connectionState = 'Connected'"), get("/statistics/devices")}},
		{"devices-where-connected-and-enabled", []func(*testing.B){query(list + " WHERE connectionState = 'Connected' AND status = 'enabled'"), get("/statistics/devices")}},
		{"devices-where-tag", []func(*testing.B){query(list + " WHERE tags.site = 'lab'"), get("/statistics/devices")}},
		{"device", []func(*testing.B){get("/devices/d57-42"), get("/twins/d57-42"), get("/devices/d57-42/modules"), get("/_emulator/feedback?deviceId=d57-42")}},
		{"jobs", []func(*testing.B){get("/jobs/v2/query")}},
		{"job-preview-count", []func(*testing.B){query("SELECT COUNT() AS n FROM devices WHERE status = 'enabled'")}},
		{"query-select-star", []func(*testing.B){query("SELECT * FROM devices")}},
		{"query-group-by", []func(*testing.B){query("SELECT connectionState, COUNT() AS n FROM devices GROUP BY connectionState")}},
		{"simulations", []func(*testing.B){get("/_emulator/simulations")}},
	}
	for _, p := range pages {
		b.Run(p.name, func(b *testing.B) {
			lat := make([]time.Duration, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				for _, c := range p.calls {
					c(b)
				}
				lat[i] = time.Since(start)
			}
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
