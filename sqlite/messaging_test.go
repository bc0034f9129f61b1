package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/messaging"
	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/sqlite"
)

func openDB(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestTelemetry_GroupCommitAndRetention(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	tel, err := messaging.NewTelemetry(messaging.TelemetryDeps{Log: newMessageLog(t, db)}, messaging.TelemetryConfig{RetentionCount: 50, MaxBatch: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Close()
	sub := tel.Subscribe(messaging.Filter{DeviceID: "d3"})
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := &messaging.Message{DeviceID: fmt.Sprintf("d%d", i%4), Properties: map[string]string{"i": fmt.Sprint(i)}, Body: []byte("x")}
			if err := tel.Send(ctx, m); err != nil {
				t.Error(err)
			}
			if m.SequenceNumber == 0 {
				t.Error("no sequence number after Send")
			}
		}()
	}
	wg.Wait()
	all, err := tel.List(ctx, messaging.Filter{From: 1, Limit: 1000})
	if err != nil || len(all) != 200 {
		t.Fatalf("listed %d, %v", len(all), err)
	}
	for i, m := range all {
		if m.SequenceNumber != int64(i+1) {
			t.Fatalf("message %d has sequence number %d", i, m.SequenceNumber)
		}
	}
	for range 50 {
		if m := <-sub.C(); m.DeviceID != "d3" {
			t.Fatalf("subscription got %s", m.DeviceID)
		}
	}
	tel.Trim()
	rest, _ := tel.List(ctx, messaging.Filter{From: 1})
	if len(rest) != 50 || rest[0].SequenceNumber != 151 {
		t.Fatalf("after trim: %d messages from %d", len(rest), rest[0].SequenceNumber)
	}
	// Retention empties the table; numbers still go on.
	if _, err := newMessageLog(t, db).Trim(ctx, 0, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	m := &messaging.Message{DeviceID: "d0"}
	if err := tel.Send(ctx, m); err != nil || m.SequenceNumber != 201 {
		t.Fatalf("after emptying: seq %d, %v", m.SequenceNumber, err)
	}
	big := &messaging.Message{DeviceID: "d0", Body: make([]byte, messaging.MaxTelemetrySize+1)}
	if err := tel.Send(ctx, big); !iothub.Is(err, iothub.MessageTooLarge) {
		t.Errorf("large message: %v", err)
	}
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestCloudToDevice_LocksExpiryAndFeedback(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	reg, err := registry.NewService(registry.Deps{Store: &sqlite.RegistryStore{DB: db}, Sessions: noSessions{}, Twins: noTwins{}}, registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Create(ctx, &registry.Identity{DeviceID: "d1", Auth: registry.Authentication{Type: registry.AuthSAS}}); err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	q := &sqlite.C2DQueue{DB: db}
	c, err := messaging.NewCloudToDevice(messaging.C2DDeps{Queue: q, Link: offlineLink{}}, messaging.C2DConfig{Now: clk.Now, MaxDeliveryCount: 2, SweepInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	send := func(id string, ttl time.Duration) {
		t.Helper()
		m := &messaging.C2DMessage{DeviceID: "d1", MessageID: id, Ack: messaging.AckFull}
		if ttl > 0 {
			m.ExpiryTime = clk.Now().Add(ttl)
		}
		if err := c.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	send("a", 0)
	send("b", time.Minute)
	if id, _ := reg.Get(ctx, "d1", ""); id.CloudToDeviceMessageCount != 2 {
		t.Errorf("count %d", id.CloudToDeviceMessageCount)
	}

	// A lapsed lock counts a delivery; the second one dead-letters "a".
	for i := range 2 {
		m, err := c.Receive(ctx, "d1")
		if err != nil || m == nil || m.MessageID != "a" || m.DeliveryCount != i {
			t.Fatalf("receive %d: %+v %v", i, m, err)
		}
		clk.Add(messaging.DefaultLockDuration + time.Second)
		_, _, _, err = q.Sweep(ctx, clk.Now(), 2)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := c.Complete(ctx, "d1", m.LockToken); !iothub.Is(err, iothub.DeviceMessageLockLost) {
				t.Errorf("complete after the lock lapsed: %v", err)
			}
		}
	}
	// "b" expired meanwhile (the sweep deleted it), so the queue is empty.
	if m, err := c.Receive(ctx, "d1"); m != nil || err != nil {
		t.Fatalf("receive from an empty queue: %+v %v", m, err)
	}
	if id, _ := reg.Get(ctx, "d1", ""); id.CloudToDeviceMessageCount != 0 {
		t.Errorf("count %d", id.CloudToDeviceMessageCount)
	}
	// The service's own sweep writes feedback for expiries.
	send("c", time.Second)
	clk.Add(2 * time.Second)
	expired, _, _, err := q.Sweep(ctx, clk.Now(), 2)
	if err != nil || len(expired) != 1 || expired[0].MessageID != "c" {
		t.Fatalf("expired %+v %v", expired, err)
	}

	if err := c.Send(ctx, &messaging.C2DMessage{DeviceID: "d1", Ack: "sometimes"}); !iothub.Is(err, iothub.ArgumentInvalid) {
		t.Errorf("bad ack: %v", err)
	}
	if err := c.Send(ctx, &messaging.C2DMessage{DeviceID: "nope"}); !iothub.Is(err, iothub.DeviceNotFound) {
		t.Errorf("unknown device: %v", err)
	}
	// Deleting the device deletes its queue.
	send("d", 0)
	if err := reg.Delete(ctx, "d1", "", "*"); err != nil {
		t.Fatal(err)
	}
	if p, _ := c.Pending(ctx, "d1"); len(p) != 0 {
		t.Errorf("queue of a deleted device: %d", len(p))
	}
}

// Batches above one multi-row INSERT are split into full statements and a
// remainder; every row keeps its own values and sequence number.
func TestMessageLog_AppendChunks(t *testing.T) {
	ctx := context.Background()
	log := newMessageLog(t, openDB(t))
	seq := int64(0)
	for _, n := range []int{1, 63, 64, 65, 128, 150} {
		msgs := make([]*messaging.Message, n)
		for i := range msgs {
			msgs[i] = &messaging.Message{DeviceID: fmt.Sprintf("d%d", n), MessageID: fmt.Sprint(i), Body: []byte(fmt.Sprint(n, "/", i)),
				EnqueuedTime: time.Now()}
		}
		if err := log.Append(ctx, msgs); err != nil {
			t.Fatalf("append %d: %v", n, err)
		}
		got, err := log.List(ctx, messaging.Filter{DeviceID: fmt.Sprintf("d%d", n), From: 1, Limit: 1000})
		if err != nil || len(got) != n {
			t.Fatalf("append %d: listed %d, %v", n, len(got), err)
		}
		for i, m := range got {
			seq++
			if m.SequenceNumber != seq || msgs[i].SequenceNumber != seq || m.MessageID != fmt.Sprint(i) || string(m.Body) != fmt.Sprint(n, "/", i) {
				t.Fatalf("append %d: row %d is seq %d (%d) mid %q body %q", n, i, m.SequenceNumber, msgs[i].SequenceNumber, m.MessageID, m.Body)
			}
		}
	}
}

// Enqueue does not wait, but keeps the caller's order, and a later Send
// returns only once the enqueued messages before it are stored.
func TestTelemetry_EnqueueThenSend(t *testing.T) {
	ctx := context.Background()
	tel, err := messaging.NewTelemetry(messaging.TelemetryDeps{Log: newMessageLog(t, openDB(t))}, messaging.TelemetryConfig{MaxBatch: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Close()
	var wg sync.WaitGroup
	for d := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				if err := tel.Enqueue(ctx, &messaging.Message{DeviceID: fmt.Sprint("d", d), MessageID: fmt.Sprint(i)}); err != nil {
					t.Error(err)
				}
			}
			if err := tel.Send(ctx, &messaging.Message{DeviceID: fmt.Sprint("d", d), MessageID: "last"}); err != nil {
				t.Error(err)
			}
			got, err := tel.List(ctx, messaging.Filter{DeviceID: fmt.Sprint("d", d), From: 1, Limit: 1000})
			if err != nil || len(got) != 101 {
				t.Errorf("d%d: listed %d after Send, %v", d, len(got), err)
				return
			}
			for i, m := range got[:100] {
				if m.MessageID != fmt.Sprint(i) {
					t.Errorf("d%d: message %d is %q", d, i, m.MessageID)
					return
				}
			}
		}()
	}
	wg.Wait()
	big := &messaging.Message{DeviceID: "d0", Body: make([]byte, messaging.MaxTelemetrySize+1)}
	if err := tel.Enqueue(ctx, big); !iothub.Is(err, iothub.MessageTooLarge) {
		t.Fatalf("enqueue of a too large message: %v", err)
	}
}

// offlineLink is a C2D link whose devices are never connected: they poll
// over HTTPS.
type offlineLink struct{}

func (offlineLink) Ready(string) bool                   { return false }
func (offlineLink) Deliver(*messaging.C2DMessage) error { return errors.New("not connected") }

type noSessions struct{}

func (noSessions) CloseSession(string, string, bool) {}

type noTwins struct{}

func (noTwins) MergeTwin(context.Context, string, string, string, map[string]any, map[string]any) error {
	return nil
}

func newMessageLog(t *testing.T, db *sqlite.DB) *sqlite.MessageLog {
	t.Helper()
	l, err := sqlite.NewMessageLog(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
