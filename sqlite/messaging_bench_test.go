package sqlite

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/messaging"
)

// BenchmarkMessageLog_Append stores telemetry as the telemetry writer does:
// batches of one group commit (32 messages: QoS 1 with 100 devices waiting;
// 1,000: QoS 0), from 100 devices, 256-byte bodies, in an on-disk database.
// It reports the stored bytes per message (database and WAL files).
//
//	go test ./sqlite -run '^$' -bench MessageLog_Append -benchtime 3000x
func BenchmarkMessageLog_Append(b *testing.B) {
	for _, batch := range []int{32, 1000} {
		b.Run("batch"+strconv.Itoa(batch), func(b *testing.B) {
			ctx := context.Background()
			path := filepath.Join(b.TempDir(), "hub.db")
			db := openTestDB(b, path)
			log, err := NewMessageLog(ctx, db)
			if err != nil {
				b.Fatal(err)
			}
			body := make([]byte, 256)
			for i := range body {
				body[i] = byte('a' + i%26)
			}
			msgs := make([]*messaging.Message, batch)
			b.ResetTimer()
			for i := range b.N {
				now := time.Now()
				for j := range msgs {
					msgs[j] = &messaging.Message{DeviceID: "bench" + strconv.Itoa((i*batch+j)%100), Body: body,
						AuthMethod: "sas", GenerationID: "638680000000000000", Transport: "mqtt", EnqueuedTime: now}
				}
				if err := log.Append(ctx, msgs); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/msg")
			var pages, size int64
			if err := db.Reader().QueryRowContext(ctx, `SELECT page_count, page_size FROM pragma_page_count(), pragma_page_size()`).Scan(&pages, &size); err == nil {
				b.ReportMetric(float64(pages*size)/float64(b.N*batch), "dbB/msg")
			}
		})
	}
}
