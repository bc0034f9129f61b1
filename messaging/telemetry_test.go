package messaging_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/messaging"
)

// gatedLog is an in-memory Log whose Append waits for a token on gate (when
// gate is set) after reporting on started that it began.
type gatedLog struct {
	gate    chan struct{}
	started chan struct{}
	mu      sync.Mutex
	stored  []*messaging.Message
	fail    error
}

func (l *gatedLog) Append(_ context.Context, msgs []*messaging.Message) error {
	if l.started != nil {
		l.started <- struct{}{}
	}
	if l.gate != nil {
		<-l.gate
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail != nil {
		return l.fail
	}
	for _, m := range msgs {
		m.SequenceNumber = int64(len(l.stored) + 1)
		l.stored = append(l.stored, m)
	}
	return nil
}

func (l *gatedLog) List(context.Context, messaging.Filter) ([]*messaging.Message, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*messaging.Message(nil), l.stored...), nil
}

func (l *gatedLog) Trim(context.Context, int, time.Time) (int64, error) { return 0, nil }

func (l *gatedLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.stored)
}

func newTelemetry(t *testing.T, l messaging.Log, cfg messaging.TelemetryConfig) *messaging.Telemetry {
	t.Helper()
	tel, err := messaging.NewTelemetry(messaging.TelemetryDeps{Log: l}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tel.Close)
	return tel
}

func msg(dev string, bodyBytes int) *messaging.Message {
	return &messaging.Message{DeviceID: dev, Body: []byte(strings.Repeat("x", bodyBytes))}
}

func TestNewTelemetryNeedsALog(t *testing.T) {
	if _, err := messaging.NewTelemetry(messaging.TelemetryDeps{}, messaging.TelemetryConfig{}); err == nil || !strings.Contains(err.Error(), "Log") {
		t.Fatalf("NewTelemetry without a Log = %v", err)
	}
}

func TestTelemetry_SendIsAnsweredAfterItsCommit(t *testing.T) {
	l := &gatedLog{}
	tel := newTelemetry(t, l, messaging.TelemetryConfig{})
	sub := tel.Subscribe(messaging.Filter{DeviceID: "d1"})
	for _, m := range []*messaging.Message{msg("d1", 10), msg("d2", 10), msg("d1", 20)} {
		if err := tel.Send(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		if m.SequenceNumber == 0 || m.EnqueuedTime.IsZero() {
			t.Fatalf("Send returned before the message was stored: %+v", m)
		}
	}
	if l.count() != 3 {
		t.Fatalf("stored %d, want 3", l.count())
	}
	for _, want := range []int64{1, 3} {
		if got := <-sub.C(); got.SequenceNumber != want {
			t.Fatalf("subscriber got seq %d, want %d (d1 only)", got.SequenceNumber, want)
		}
	}
}

func TestTelemetry_Rejects(t *testing.T) {
	tel := newTelemetry(t, &gatedLog{}, messaging.TelemetryConfig{})
	big := msg("d1", messaging.MaxTelemetrySize+1)
	for name, send := range map[string]func(context.Context, *messaging.Message) error{"Send": tel.Send, "Enqueue": tel.Enqueue} {
		if err := send(context.Background(), big); iothub.CodeOf(err) != iothub.MessageTooLarge {
			t.Errorf("%s of %d bytes = %v, want 413001", name, big.Size(), err)
		}
	}
}

func TestTelemetry_AStoreFailureReachesTheSender(t *testing.T) {
	tel := newTelemetry(t, &gatedLog{fail: errors.New("disk full")}, messaging.TelemetryConfig{})
	if err := tel.Send(context.Background(), msg("d1", 1)); err == nil || err.Error() != "disk full" {
		t.Fatalf("Send over a failing log = %v", err)
	}
}

// After Close, Send and Enqueue return ErrClosed at once instead of
// blocking (they used to wait forever for a writer that was gone).
func TestTelemetry_CallsAfterCloseReturnErrClosed(t *testing.T) {
	tel := newTelemetry(t, &gatedLog{}, messaging.TelemetryConfig{})
	tel.Close()
	tel.Close() // twice is harmless
	for name, send := range map[string]func(context.Context, *messaging.Message) error{"Send": tel.Send, "Enqueue": tel.Enqueue} {
		if err := send(context.Background(), msg("d1", 1)); !errors.Is(err, iothub.ErrClosed) || iothub.CodeOf(err) != iothub.ServiceUnavailable {
			t.Errorf("%s after Close = %v, want ErrClosed (503001)", name, err)
		}
	}
}

// Close stores what was accepted before it: nothing acknowledged or queued
// is dropped by a shutdown.
func TestTelemetry_CloseStoresWhatIsQueued(t *testing.T) {
	l := &gatedLog{gate: make(chan struct{}), started: make(chan struct{}, 100)}
	tel := newTelemetry(t, l, messaging.TelemetryConfig{MaxBatch: 4})
	for range 10 {
		if err := tel.Enqueue(context.Background(), msg("d1", 100)); err != nil {
			t.Fatal(err)
		}
	}
	closed := make(chan struct{})
	go func() { tel.Close(); close(closed) }()
	close(l.gate)
	<-closed
	if l.count() != 10 {
		t.Fatalf("stored %d of 10 queued messages", l.count())
	}
}

// The QoS 0 queue is bounded by bytes as well as by count: with the writer
// stuck, Enqueue accepts up to MaxQueuedBytes and then waits (here: gives up
// with its context), and it accepts again once the writer catches up.
func TestTelemetry_EnqueueIsBoundedByBytes(t *testing.T) {
	l := &gatedLog{gate: make(chan struct{}), started: make(chan struct{}, 100)}
	tel := newTelemetry(t, l, messaging.TelemetryConfig{MaxQueuedBytes: 1000, QueueLen: 1000})
	ended, cancel := context.WithCancel(context.Background())
	cancel() // Enqueue may still take free room, but must not wait for any

	accepted := 0
	var err error
	for range 100 {
		if err = tel.Enqueue(ended, msg("d1", 100)); err != nil {
			break
		}
		accepted++
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Enqueue past the byte bound = %v, want it to wait (and give up with its context)", err)
	}
	if accepted != 10 { // 10 × 100 bytes fill 1000; the count bound (1000) is far
		t.Fatalf("accepted %d messages of 100 bytes under a 1000-byte bound, want 10", accepted)
	}
	// Let the writer store everything; the room comes back.
	close(l.gate)
	if err := tel.Enqueue(context.Background(), msg("d1", 100)); err != nil {
		t.Fatalf("Enqueue after the writer caught up: %v", err)
	}
	if err := tel.Send(context.Background(), msg("d1", 1)); err != nil { // orders after the Enqueues
		t.Fatal(err)
	}
	if l.count() != 12 {
		t.Fatalf("stored %d, want 12", l.count())
	}
}

// Sends larger than the whole byte bound still go through when nothing
// else is queued, as the hub accepts any message up to 256 KB.
func TestTelemetry_AMessageLargerThanTheByteBoundStillPasses(t *testing.T) {
	l := &gatedLog{}
	tel := newTelemetry(t, l, messaging.TelemetryConfig{MaxQueuedBytes: 10})
	for range 3 {
		if err := tel.Enqueue(context.Background(), msg("d1", 100)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tel.Send(context.Background(), msg("d1", 1)); err != nil {
		t.Fatal(err)
	}
	if l.count() != 4 {
		t.Fatalf("stored %d, want 4", l.count())
	}
}
