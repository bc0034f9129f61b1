package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/twins"
)

// Twin store benchmarks without a transport, recorded in docs/benchmarks.md
// ("Twins and jobs, round two"): what one reported patch and one job twin
// update cost in the store, on an on-disk database seeded like
// BenchmarkQueryStore's.

// cpuTime is the process's CPU time so far. The benchmarks report it per
// operation next to the rate: on a shared machine the rate follows the
// load, the CPU time much less.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type nopNotifier struct{}

func (nopNotifier) DesiredChanged(twins.Key, map[string]any, int64) {}

func benchTwinService(b *testing.B, n int) *twins.Service {
	b.Helper()
	db := openTestDB(b, filepath.Join(b.TempDir(), "hub.db"))
	seedTwins(b, db, n)
	store := NewTwinStore(db)
	b.Cleanup(store.Close)
	svc, err := twins.NewService(twins.Deps{Store: store, Notifier: nopNotifier{}}, twins.Config{})
	if err != nil {
		b.Fatal(err)
	}
	return svc
}

// BenchmarkTwinStore_Reported: 1,000 devices each sending reported patches
// one after the other, as BenchmarkTwins_Reported (e2e) does over MQTT.
func BenchmarkTwinStore_Reported(b *testing.B) {
	const devices = 1000
	svc := benchTwinService(b, devices)
	ctx := context.Background()
	per := max(b.N/devices, 1)
	b.ResetTimer()
	cpu := cpuTime()
	var wg sync.WaitGroup
	for i := range devices {
		key := twins.Key{DeviceID: fmt.Sprintf("dev%06d", i)}
		wg.Go(func() {
			for k := range per {
				if _, err := svc.PatchReported(ctx, key, map[string]any{"temp": int64(k), "fw": fmt.Sprintf("1.%d", i%5)}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(per*devices)/b.Elapsed().Seconds(), "patches/s")
	b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/float64(per*devices), "cpu-µs/patch")
}

// BenchmarkTwinStore_PatchMany: the desired patch of a scheduleUpdateTwin
// job applied in the job runner's chunks.
func BenchmarkTwinStore_PatchMany(b *testing.B) {
	const devices, chunk = 10000, 128
	svc := benchTwinService(b, devices)
	ctx := context.Background()
	patch := twins.ServicePatch{Desired: map[string]any{"building": int64(43), "floor": int64(3)}}
	b.ResetTimer()
	cpu := cpuTime()
	done := 0
	for done < b.N {
		keys := make([]twins.Key, 0, chunk)
		for len(keys) < chunk && done+len(keys) < b.N {
			keys = append(keys, twins.Key{DeviceID: fmt.Sprintf("dev%06d", (done+len(keys))%devices)})
		}
		errs, err := svc.PatchMany(ctx, keys, patch)
		if err != nil {
			b.Fatal(err)
		}
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
		done += len(keys)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "twins/s")
	b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/float64(b.N), "cpu-µs/twin")
}
