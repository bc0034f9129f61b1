package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// runRegistry fills a registry through the bulk REST API (POST /devices,
// 100 entries a request, as the hub allows), then times indexed queries and
// restarts of the emulator over that database.
func runRegistry(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("registry", flag.ExitOnError)
	var ef emulatorFlags
	ef.register(fs)
	devices := fs.Int("devices", 1_000_000, "identities to import")
	clients := fs.Int("clients", 4, "bulk requests in flight at once")
	tags := fs.Bool("tags", true, "give every device tags (site: one of 1,000 values, floor) so a tag query has something to find")
	queries := fs.Int("queries", 20, "runs of each query after its first")
	restarts := fs.Int("restarts", 5, "restarts timed after the import")
	_ = fs.Parse(args)

	tmp, err := os.MkdirTemp("", "iothub-loadgen-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	e, err := newEmulator(ctx, ef, tmp)
	if err != nil {
		return err
	}
	defer e.kill()
	took, err := e.start()
	if err != nil {
		return err
	}
	have, err := deviceCount(ctx, e)
	if err != nil {
		return err
	}
	fmt.Printf("emulator ready in %s with %d devices; RSS %d MB\n", took.Round(time.Millisecond), have, e.rssKB()/1024)

	if have < *devices {
		if err := bulkImport(ctx, e, have, *devices, *clients, *tags, true); err != nil {
			return err
		}
		begin := time.Now()
		if have, err = deviceCount(ctx, e); err != nil {
			return err
		}
		fmt.Printf("GET /statistics/devices: %s\n", time.Since(begin).Round(10*time.Microsecond))
		fmt.Printf("devices in the registry: %d; database %d MB; RSS %d MB\n", have, dirSize(e.dataDir)>>20, e.rssKB()/1024)
	}

	qs := []string{
		"SELECT * FROM devices WHERE deviceId = '" + devID(have/2) + "'",
		"SELECT * FROM devices WHERE status = 'disabled'",
	}
	if *tags {
		qs = append(qs, "SELECT * FROM devices WHERE tags.site = 'site-43'", "SELECT deviceId FROM devices WHERE tags.floor = 7 AND status = 'enabled'")
	}
	for _, q := range qs {
		if err := timeQuery(ctx, e, q, *queries); err != nil {
			return err
		}
	}

	// Restarts: exec until the health endpoint answers, with this database.
	var ready []time.Duration
	for i := 0; i < *restarts && ctx.Err() == nil; i++ {
		if err := e.stop(); err != nil {
			return err
		}
		d, err := e.start()
		if err != nil {
			return err
		}
		ready = append(ready, d)
	}
	if len(ready) > 0 {
		slices.Sort(ready)
		fmt.Printf("restart with %d devices, exec to healthy (%d runs): min %s, median %s, max %s; RSS after start %d MB\n", have, len(ready),
			ready[0].Round(time.Millisecond), ready[len(ready)/2].Round(time.Millisecond), ready[len(ready)-1].Round(time.Millisecond), e.rssKB()/1024)
		// Queries right after a restart: no cache is warm, indexes persist.
		for _, q := range qs {
			if err := timeQuery(ctx, e, q, 0); err != nil {
				return err
			}
		}
	}
	return e.stop()
}

// deviceCount reads /statistics/devices.
func deviceCount(ctx context.Context, e *emulator) (int, error) {
	st, b, _, err := e.do(ctx, http.MethodGet, "/statistics/devices", nil)
	if err != nil {
		return 0, err
	}
	if st != http.StatusOK {
		return 0, fmt.Errorf("statistics: %d %s", st, b)
	}
	var s struct{ TotalDeviceCount int }
	if err := json.Unmarshal(b, &s); err != nil {
		return 0, err
	}
	return s.TotalDeviceCount, nil
}

// bulkImport creates devices [from, to) with `clients` bulk requests in
// flight; with someDisabled every 100th device is disabled (a status query
// then has something to find).
func bulkImport(ctx context.Context, e *emulator, from, to, clients int, tags, someDisabled bool) error {
	const batch = 100
	begin := time.Now()
	emuCPU, ownCPU := cpuTime(e.cmd.Process.Pid), cpuTime(os.Getpid())
	next := make(chan int)
	var done atomic.Int64
	var wg sync.WaitGroup
	var errOnce sync.Once
	var firstErr error
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for start := range next {
				entries := make([]map[string]any, 0, batch)
				for i := start; i < min(to, start+batch); i++ {
					status := "enabled"
					if someDisabled && i%100 == 99 {
						status = "disabled"
					}
					en := map[string]any{"id": devID(i), "importMode": "create", "status": status,
						"authentication": map[string]any{"type": "sas", "symmetricKey": map[string]any{"primaryKey": deviceKey, "secondaryKey": deviceKey}}}
					if tags {
						en["tags"] = map[string]any{"site": fmt.Sprintf("site-%d", i%1000), "floor": i % 20}
					}
					entries = append(entries, en)
				}
				body, _ := json.Marshal(entries)
				st, b, _, err := e.do(ctx, http.MethodPost, "/devices", body)
				if err == nil && st != http.StatusOK {
					err = fmt.Errorf("bulk create at %d: %d %s", start, st, b)
				}
				if err == nil {
					var res struct {
						IsSuccessful bool
						Errors       []json.RawMessage
					}
					if json.Unmarshal(b, &res) != nil || !res.IsSuccessful {
						err = fmt.Errorf("bulk create at %d: %s", start, b)
					}
				}
				if err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				done.Add(int64(min(to, start+batch) - start))
			}
		}()
	}
	ticker := time.NewTicker(10 * time.Second)
	defer ticker.Stop()
	go func() {
		for range ticker.C {
			n := done.Load()
			fmt.Printf("  %d devices, %.0f/s, RSS %d MB\n", n, float64(n)/time.Since(begin).Seconds(), e.rssKB()/1024)
		}
	}()
feed:
	for start := from; start < to; start += batch {
		select {
		case next <- start:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	d := time.Since(begin)
	n := float64(to - from)
	emuCPU, ownCPU = cpuTime(e.cmd.Process.Pid)-emuCPU, cpuTime(os.Getpid())-ownCPU
	fmt.Printf("imported %d devices in %s: %.0f devices/s (%d requests of %d in flight, tags %v)\n",
		to-from, d.Round(time.Millisecond), n/d.Seconds(), clients, batch, tags)
	fmt.Printf("CPU: emulator %s (%.1f µs per device), load generator %s (%.1f µs per device)\n",
		emuCPU.Round(10*time.Millisecond), float64(emuCPU.Microseconds())/n, ownCPU.Round(10*time.Millisecond), float64(ownCPU.Microseconds())/n)
	return nil
}

// timeQuery runs q (first page of 100) once, then runs more times, and
// prints the first run and the percentiles of the others.
func timeQuery(ctx context.Context, e *emulator, q string, runs int) error {
	body, _ := json.Marshal(map[string]any{"query": q})
	once := func() (time.Duration, int, error) {
		begin := time.Now()
		st, b, _, err := e.do(ctx, http.MethodPost, "/devices/query", body)
		d := time.Since(begin)
		if err != nil {
			return 0, 0, err
		}
		if st != http.StatusOK {
			return 0, 0, fmt.Errorf("query %q: %d %s", q, st, b)
		}
		var items []json.RawMessage
		if err := json.Unmarshal(b, &items); err != nil {
			return 0, 0, err
		}
		return d, len(items), nil
	}
	first, n, err := once()
	if err != nil {
		return err
	}
	if n == 0 {
		return errors.New("query " + q + " found nothing")
	}
	if runs == 0 {
		fmt.Printf("query %q: %s (%d items)\n", q, first.Round(time.Microsecond*10), n)
		return nil
	}
	ds := make([]time.Duration, runs)
	for i := range ds {
		if ds[i], _, err = once(); err != nil {
			return err
		}
	}
	slices.Sort(ds)
	fmt.Printf("query %q: first %s, then p50 %s, max %s over %d runs (%d items)\n", q, first.Round(10*time.Microsecond),
		ds[len(ds)/2].Round(10*time.Microsecond), ds[len(ds)-1].Round(10*time.Microsecond), runs, n)
	return nil
}
