package sqlite_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/messaging"
	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/sqlite"
)

// The service-bound feedback queue: batches of at most 64 records, locked
// while a receiver holds them, gone once completed (yet still listed),
// back at once when abandoned, back after a lapsed lock.
func TestCloudToDevice_FeedbackQueue(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	clk := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	q := &sqlite.C2DQueue{DB: db}
	c, err := messaging.NewCloudToDevice(messaging.C2DDeps{Queue: q, Link: offlineLink{}}, messaging.C2DConfig{Now: clk.Now, SweepInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	added := c.FeedbackAdded()
	var recs []*messaging.Feedback
	for i := range 70 {
		recs = append(recs, &messaging.Feedback{OriginalMessageID: fmt.Sprint("m", i), DeviceID: "d1", EnqueuedTime: clk.Now(), StatusCode: messaging.FeedbackSuccess})
	}
	if err := q.AddFeedback(ctx, recs); err != nil {
		t.Fatal(err)
	}

	first, err := c.NextFeedback(ctx)
	if err != nil || first == nil || len(first.Records) != messaging.MaxFeedbackBatch || first.Records[0].OriginalMessageID != "m0" {
		t.Fatalf("first batch: %+v %v", first, err)
	}
	second, err := c.NextFeedback(ctx)
	if err != nil || second == nil || len(second.Records) != 6 || second.Records[0].OriginalMessageID != "m64" {
		t.Fatalf("second batch: %+v %v", second, err)
	}
	if b, err := c.NextFeedback(ctx); b != nil || err != nil {
		t.Fatalf("everything is locked, got %+v %v", b, err)
	}

	// Abandon: the records come back and wake the waiters.
	if err := c.AbandonFeedback(ctx, second.LockToken); err != nil {
		t.Fatal(err)
	}
	select {
	case <-added:
	default:
		t.Error("abandoning did not signal FeedbackAdded")
	}
	again, err := c.NextFeedback(ctx)
	if err != nil || again == nil || len(again.Records) != 6 || again.LockToken == second.LockToken {
		t.Fatalf("after abandon: %+v %v", again, err)
	}
	if err := c.CompleteFeedback(ctx, second.LockToken); !iothub.Is(err, iothub.DeviceMessageLockLost) {
		t.Errorf("complete with an abandoned token: %v", err)
	}
	if err := c.CompleteFeedback(ctx, again.LockToken); err != nil {
		t.Fatal(err)
	}

	// A lapsed lock gives the first batch back; its old token is dead.
	clk.Add(messaging.DefaultLockDuration + time.Second)
	if err := c.CompleteFeedback(ctx, first.LockToken); !iothub.Is(err, iothub.DeviceMessageLockLost) {
		t.Errorf("complete after the lock lapsed: %v", err)
	}
	relocked, err := c.NextFeedback(ctx)
	if err != nil || relocked == nil || len(relocked.Records) != 64 {
		t.Fatalf("after the lock lapsed: %+v %v", relocked, err)
	}
	if err := c.CompleteFeedback(ctx, relocked.LockToken); err != nil {
		t.Fatal(err)
	}
	if b, err := c.NextFeedback(ctx); b != nil || err != nil {
		t.Fatalf("queue should be empty: %+v %v", b, err)
	}
	// Settled records are still listed for the emulator's API.
	if all, err := c.Feedback(ctx, messaging.FeedbackFilter{}); err != nil || len(all) != 70 {
		t.Fatalf("listed %d, %v", len(all), err)
	}
}

// One EnqueueMany transaction counts the messages it stores against the
// queue limit and refuses messages one by one.
func TestC2DQueue_EnqueueManyRefusesPerMessage(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	reg, err := registry.NewService(registry.Deps{Store: &sqlite.RegistryStore{DB: db}, Sessions: noSessions{}, Twins: noTwins{}}, registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Create(ctx, &registry.Identity{DeviceID: "d1", Auth: registry.Authentication{Type: registry.AuthSAS}}); err != nil {
		t.Fatal(err)
	}
	q := &sqlite.C2DQueue{DB: db}
	msgs := []*messaging.C2DMessage{{DeviceID: "d1", MessageID: "a"}, {DeviceID: "nobody", MessageID: "b"}, {DeviceID: "d1", MessageID: "c"}, {DeviceID: "d1", MessageID: "d"}}
	errs, err := q.EnqueueMany(ctx, msgs, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := []iothub.Code{0, iothub.DeviceNotFound, 0, iothub.DeviceMaximumQueueDepthExceeded}
	for i, e := range errs {
		if got := iothub.CodeOf(e); (e == nil) != (want[i] == 0) || (e != nil && got != want[i]) {
			t.Errorf("message %s: %v, want %v", msgs[i].MessageID, e, want[i])
		}
	}
	if msgs[0].SequenceNumber == 0 || msgs[2].SequenceNumber <= msgs[0].SequenceNumber || msgs[0].GenerationID == "" {
		t.Errorf("stored messages %+v %+v", msgs[0], msgs[2])
	}
	if p, _ := q.Pending(ctx, "d1"); len(p) != 2 || p[0].MessageID != "a" || p[1].MessageID != "c" {
		t.Errorf("pending %v", p)
	}
}

// LockMany and RemoveMany: one transaction for many devices and locks,
// each device's messages in order, a stale lock refused alone.
func TestC2DQueue_LockManyRemoveMany(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	reg, err := registry.NewService(registry.Deps{Store: &sqlite.RegistryStore{DB: db}, Sessions: noSessions{}, Twins: noTwins{}}, registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"d1", "d2", "d3"} {
		if _, err := reg.Create(ctx, &registry.Identity{DeviceID: id, Auth: registry.Authentication{Type: registry.AuthSAS}}); err != nil {
			t.Fatal(err)
		}
	}
	q := &sqlite.C2DQueue{DB: db}
	now := time.Now()
	var msgs []*messaging.C2DMessage
	for _, k := range []string{"d1:a", "d2:b", "d1:c"} {
		msgs = append(msgs, &messaging.C2DMessage{DeviceID: k[:2], MessageID: k[3:], ExpiryTime: now.Add(time.Hour)})
	}
	if _, err := q.EnqueueMany(ctx, msgs, 50); err != nil {
		t.Fatal(err)
	}
	locked, err := q.LockMany(ctx, []string{"d1", "d2", "d3"}, now, now.Add(time.Minute), 50)
	if err != nil {
		t.Fatal(err)
	}
	if len(locked) != 2 || len(locked["d1"]) != 2 || locked["d1"][0].MessageID != "a" || locked["d1"][1].MessageID != "c" || len(locked["d2"]) != 1 {
		t.Fatalf("locked %v", locked)
	}
	keys := []messaging.LockKey{{DeviceID: "d1", Token: locked["d1"][1].LockToken}, {DeviceID: "d2", Token: "stale"}, {DeviceID: "d2", Token: locked["d2"][0].LockToken}}
	removed, errs, err := q.RemoveMany(ctx, keys, now)
	if err != nil {
		t.Fatal(err)
	}
	if removed[0] == nil || removed[0].MessageID != "c" || !iothub.Is(errs[1], iothub.DeviceMessageLockLost) || removed[2] == nil || removed[2].MessageID != "b" {
		t.Errorf("removed %v, errors %v", removed, errs)
	}
	if p, _ := q.Pending(ctx, "d1"); len(p) != 1 || p[0].MessageID != "a" {
		t.Errorf("d1 pending %v", p)
	}
}
