package groupcommit_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/groupcommit"
)

// BenchmarkBatcher: parallel producers that each wait for their item's
// commit (as devices wait for a PUBACK), over a commit that costs a fixed
// 200 µs whatever its size, like a small SQLite transaction. It reports how
// many items share a commit.
func BenchmarkBatcher(b *testing.B) {
	for _, yields := range []int{0, 8} {
		b.Run(map[int]string{0: "yields=0", 8: "yields=8"}[yields], func(b *testing.B) {
			type item struct{ done chan struct{} }
			var commits atomic.Int64
			bt := groupcommit.New(func(batch []item) {
				time.Sleep(200 * time.Microsecond)
				commits.Add(1)
				for _, it := range batch {
					close(it.done)
				}
			}, groupcommit.Config{MaxBatch: 1000, QueueLen: 4096, Yields: yields})
			defer bt.Close()
			b.SetParallelism(64)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					it := item{done: make(chan struct{})}
					if err := bt.Add(context.Background(), it); err != nil {
						b.Error(err)
						return
					}
					<-it.done
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/float64(commits.Load()), "items/commit")
		})
	}
}
