package e2e

import (
	"net/http"
	"testing"
	"time"
)

// BenchmarkConfiguration_10k: one device configuration targeting 10,000
// twins (tags.building = 43), timed from its PUT until GET reports
// appliedCount 10,000, on the emulator binary with its database on disk.
// Recorded in docs/benchmarks.md ("Configurations"). Aim: < 5 s.
func BenchmarkConfiguration_10k(b *testing.B) {
	const n = 10000
	h := startProcess(b)
	seedDevices(b, h, "cfg", n)
	b.ResetTimer()
	for i := range b.N {
		id := "bench-" + string(rune('a'+i%26))
		start := time.Now()
		cfg := map[string]any{
			"targetCondition": "tags.building = 43", "priority": i,
			"content": map[string]any{"deviceContent": map[string]any{"properties.desired.bench": map[string]any{"run": i, "pad": "0123456789abcdef"}}},
		}
		if st := h.do(b, http.MethodPut, "/configurations/"+id, cfg, nil); st != http.StatusOK {
			b.Fatalf("PUT: %d", st)
		}
		for {
			var c struct {
				SystemMetrics struct{ Results map[string]int64 } `json:"systemMetrics"`
			}
			h.do(b, http.MethodGet, "/configurations/"+id, nil, &c)
			if c.SystemMetrics.Results["appliedCount"] == n {
				break
			}
			if time.Since(start) > 5*time.Minute {
				b.Fatalf("appliedCount %d after 5 minutes", c.SystemMetrics.Results["appliedCount"])
			}
			time.Sleep(5 * time.Millisecond) // poll interval
		}
		b.ReportMetric(time.Since(start).Seconds(), "s/10k-twins")
		b.ReportMetric(n/time.Since(start).Seconds(), "twins/s")
	}
}
