package methods

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
)

// echoTransport answers every request at once from another goroutine, as a
// device on a live connection would, so the benchmark measures the Invoker's
// own cost: rid, tables, timers and the hand-off between goroutines.
type echoTransport struct {
	inv *Invoker
	ch  chan [3]string
}

func (e *echoTransport) IsOnline(string, string) bool { return true }

// SendMethod queues and never waits, as the hub's transports do.
func (e *echoTransport) SendMethod(d, m string, req DeviceRequest) error {
	select {
	case e.ch <- [3]string{d, req.RID, string(req.Payload)}:
		return nil
	default:
		return errors.New("echo transport: queue full")
	}
}

func (e *echoTransport) SendMethodNeverBlocks() {}

func (e *echoTransport) serve() {
	for r := range e.ch {
		e.inv.Deliver(r[0], "", r[1], 200, []byte(r[2]))
	}
}

// BenchmarkInvoker_RoundTrip: go test ./methods -run '^$' -bench Invoker
func BenchmarkInvoker_RoundTrip(b *testing.B) {
	for _, devices := range []int{1, 1000} {
		b.Run(fmt.Sprintf("devices=%d", devices), func(b *testing.B) {
			tr := &echoTransport{ch: make(chan [3]string, 1024)}
			inv := &Invoker{Transport: tr, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			tr.inv = inv
			for range 2 {
				go tr.serve()
			}
			defer close(tr.ch)
			ids := make([]string, devices)
			for i := range ids {
				ids[i] = fmt.Sprintf("dev%d", i)
			}
			b.SetParallelism(50) // 100 concurrent callers on 2 CPUs
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i++
					_, err := inv.Invoke(context.Background(), Request{DeviceID: ids[i%devices], MethodName: "echo", Payload: []byte(`{"n":1}`)})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
