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
	"github.com/iothub-emulator/iothub-emulator/messaging/memstore"
)

// clock is a manual clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// link is a fake device connection: Ready when online, and every pushed
// message arrives on delivered (or fails when broken).
type link struct {
	mu        sync.Mutex
	online    map[string]bool
	broken    bool
	delivered chan *messaging.C2DMessage
}

func (l *link) Ready(deviceID string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.online[deviceID]
}

func (l *link) Deliver(m *messaging.C2DMessage) error {
	l.mu.Lock()
	broken := l.broken
	l.mu.Unlock()
	if broken {
		return errors.New("connection lost")
	}
	l.delivered <- m
	return nil
}

type c2dFixture struct {
	c    *messaging.CloudToDevice
	q    *memstore.Queue
	clk  *clock
	link *link
}

func newC2D(t *testing.T, cfg messaging.C2DConfig) *c2dFixture {
	t.Helper()
	f := &c2dFixture{q: memstore.New(), clk: &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)},
		link: &link{online: map[string]bool{}, delivered: make(chan *messaging.C2DMessage, 100)}}
	f.q.AddDevice("d1", "gen1")
	cfg.Now = f.clk.Now
	cfg.SweepInterval = time.Hour // the tests sweep themselves
	c, err := messaging.NewCloudToDevice(messaging.C2DDeps{Queue: f.q, Link: f.link}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	f.c = c
	return f
}

func (f *c2dFixture) send(t *testing.T, m *messaging.C2DMessage) {
	t.Helper()
	if err := f.c.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

func (f *c2dFixture) feedback(t *testing.T) string {
	t.Helper()
	fb, err := f.c.Feedback(context.Background(), messaging.FeedbackFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, r := range fb {
		s = append(s, r.OriginalMessageID+":"+r.StatusCode)
	}
	return strings.Join(s, " ")
}

func TestNewCloudToDeviceNeedsItsDependencies(t *testing.T) {
	if _, err := messaging.NewCloudToDevice(messaging.C2DDeps{Queue: memstore.New()}, messaging.C2DConfig{}); err == nil || !strings.Contains(err.Error(), "Link") {
		t.Fatalf("NewCloudToDevice without a Link = %v", err)
	}
}

func TestCloudToDevice_SendRules(t *testing.T) {
	ctx := context.Background()
	f := newC2D(t, messaging.C2DConfig{QueueLimit: 2})
	for _, tc := range []struct {
		name string
		m    messaging.C2DMessage
		want iothub.Code
	}{
		{"unknown device", messaging.C2DMessage{DeviceID: "ghost"}, iothub.DeviceNotFound},
		{"bad ack", messaging.C2DMessage{DeviceID: "d1", Ack: "sometimes"}, iothub.ArgumentInvalid},
		{"over 64 KB", messaging.C2DMessage{DeviceID: "d1", Body: make([]byte, messaging.MaxC2DSize+1)}, iothub.MessageTooLarge},
		{"properties count", messaging.C2DMessage{DeviceID: "d1", Body: make([]byte, messaging.MaxC2DSize-1), Properties: map[string]string{"k": "v"}}, iothub.MessageTooLarge},
	} {
		m := tc.m
		if err := f.c.Send(ctx, &m); iothub.CodeOf(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}

	now := f.clk.Now()
	plain := &messaging.C2DMessage{DeviceID: "d1"}
	f.send(t, plain)
	if plain.MessageID == "" || plain.To != "/devices/d1/messages/devicebound" || plain.Ack != messaging.AckNone ||
		!plain.EnqueuedTime.Equal(now) || !plain.ExpiryTime.Equal(now.Add(messaging.DefaultTTL)) || plain.GenerationID != "gen1" {
		t.Errorf("defaults: %+v", plain)
	}
	far := &messaging.C2DMessage{DeviceID: "d1", MessageID: "far", ExpiryTime: now.Add(100 * time.Hour)}
	f.send(t, far)
	if !far.ExpiryTime.Equal(now.Add(messaging.MaxTTL)) {
		t.Errorf("an expiry beyond 48 h is capped: %v", far.ExpiryTime)
	}
	if err := f.c.Send(ctx, &messaging.C2DMessage{DeviceID: "d1"}); iothub.CodeOf(err) != iothub.DeviceMaximumQueueDepthExceeded {
		t.Errorf("third message over a queue limit of 2: %v", err)
	}
}

// An HTTPS device's message: a lapsed lock counts a delivery, the last
// delivery dead-letters it, an expiry removes it; feedback follows each
// sender's ack.
func TestCloudToDevice_LocksExpiryAndFeedback(t *testing.T) {
	ctx := context.Background()
	f := newC2D(t, messaging.C2DConfig{MaxDeliveryCount: 2})
	f.send(t, &messaging.C2DMessage{DeviceID: "d1", MessageID: "a", Ack: messaging.AckFull})
	f.send(t, &messaging.C2DMessage{DeviceID: "d1", MessageID: "b", Ack: messaging.AckNegative, ExpiryTime: f.clk.Now().Add(time.Minute)})

	for i := range 2 {
		m, err := f.c.Receive(ctx, "d1")
		if err != nil || m == nil || m.MessageID != "a" || m.DeliveryCount != i {
			t.Fatalf("receive %d: %+v %v", i, m, err)
		}
		f.clk.Add(messaging.DefaultLockDuration + time.Second)
		f.c.Sweep()
		if err := f.c.Complete(ctx, "d1", m.LockToken); !iothub.Is(err, iothub.DeviceMessageLockLost) {
			t.Errorf("complete after the lock lapsed: %v", err)
		}
	}
	if m, err := f.c.Receive(ctx, "d1"); m != nil || err != nil {
		t.Fatalf("receive from an empty queue: %+v %v", m, err)
	}
	if got, want := f.feedback(t), "b:Expired a:DeliveryCountExceeded"; got != want {
		t.Errorf("feedback %q, want %q", got, want)
	}
}

func TestCloudToDevice_Settlement(t *testing.T) {
	ctx := context.Background()
	f := newC2D(t, messaging.C2DConfig{MaxDeliveryCount: 3})
	for _, m := range []struct {
		id  string
		ack messaging.Ack
	}{{"done", messaging.AckPositive}, {"rejected", messaging.AckFull}, {"abandoned", messaging.AckFull}, {"quiet", messaging.AckNegative}} {
		f.send(t, &messaging.C2DMessage{DeviceID: "d1", MessageID: m.id, Ack: m.ack})
	}
	next := func() *messaging.C2DMessage {
		t.Helper()
		m, err := f.c.Receive(ctx, "d1")
		if err != nil || m == nil {
			t.Fatalf("receive: %+v %v", m, err)
		}
		return m
	}
	if err := f.c.Complete(ctx, "d1", next().LockToken); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Reject(ctx, "d1", next().LockToken); err != nil {
		t.Fatal(err)
	}
	ab := next()
	if err := f.c.Abandon(ctx, "d1", ab.LockToken); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Abandon(ctx, "d1", ab.LockToken); !iothub.Is(err, iothub.DeviceMessageLockLost) {
		t.Errorf("abandon twice: %v", err)
	}
	// The abandoned message is first again, counted once.
	if again := next(); again.MessageID != "abandoned" || again.DeliveryCount != 1 {
		t.Errorf("after abandon: %+v", again)
	}
	n, err := f.c.Purge(ctx, "d1")
	if err != nil || n != 2 {
		t.Fatalf("purge: %d %v", n, err)
	}
	// positive wants Success only, full wants all, negative wants all but
	// Success: "quiet" was purged, which its sender hears of.
	if got, want := f.feedback(t), "done:Success rejected:Rejected abandoned:Purged quiet:Purged"; got != want {
		t.Errorf("feedback %q, want %q", got, want)
	}
	if _, err := f.c.Purge(ctx, "ghost"); !iothub.Is(err, iothub.DeviceNotFound) {
		t.Errorf("purge of an unknown device: %v", err)
	}
}

// A connected device gets its messages pushed in queue order; a connection
// lost before the acknowledgement gives them back, counted.
func TestCloudToDevice_PushToConnectedDevices(t *testing.T) {
	ctx := context.Background()
	f := newC2D(t, messaging.C2DConfig{})
	f.send(t, &messaging.C2DMessage{DeviceID: "d1", MessageID: "queued"}) // before the device connects
	f.link.mu.Lock()
	f.link.online["d1"] = true
	f.link.mu.Unlock()
	f.c.Kick("d1") // the broker kicks on connect and subscribe
	first := <-f.link.delivered
	f.send(t, &messaging.C2DMessage{DeviceID: "d1", MessageID: "live"})
	second := <-f.link.delivered
	if first.MessageID != "queued" || second.MessageID != "live" || first.LockToken == "" {
		t.Fatalf("pushed %q then %q", first.MessageID, second.MessageID)
	}
	if err := f.c.Complete(ctx, "d1", first.LockToken); err != nil {
		t.Fatal(err)
	}
	// The connection drops before acknowledging "live": it is released,
	// counted, and pushed again when the device is back.
	f.link.mu.Lock()
	f.link.online["d1"] = false
	f.link.mu.Unlock()
	f.c.Release(ctx, "d1", []string{second.LockToken})
	p, _ := f.c.Pending(ctx, "d1")
	if len(p) != 1 || p[0].MessageID != "live" || p[0].DeliveryCount != 1 || p[0].LockToken != "" {
		t.Fatalf("after the connection was lost: %+v", p)
	}
	f.link.mu.Lock()
	f.link.online["d1"] = true
	f.link.mu.Unlock()
	f.c.Kick("d1")
	if again := <-f.link.delivered; again.MessageID != "live" || again.DeliveryCount != 1 {
		t.Fatalf("pushed again: %+v", again)
	}
}

func TestCloudToDevice_CallsAfterCloseReturnErrClosed(t *testing.T) {
	ctx := context.Background()
	f := newC2D(t, messaging.C2DConfig{})
	f.c.Close()
	f.c.Close() // twice is harmless
	_, recvErr := f.c.Receive(ctx, "d1")
	_, purgeErr := f.c.Purge(ctx, "d1")
	for name, err := range map[string]error{
		"Send":     f.c.Send(ctx, &messaging.C2DMessage{DeviceID: "d1"}),
		"Receive":  recvErr,
		"Complete": f.c.Complete(ctx, "d1", "tok"),
		"Reject":   f.c.Reject(ctx, "d1", "tok"),
		"Abandon":  f.c.Abandon(ctx, "d1", "tok"),
		"Purge":    purgeErr,
	} {
		if !errors.Is(err, iothub.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}
