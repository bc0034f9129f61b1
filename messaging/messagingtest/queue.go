// Package messagingtest holds the conformance suites of messaging's store
// interfaces, Queue (RunQueue) and Log (RunLog): every implementation
// (messaging/memstore, the SQLite stores) runs them, so the rules in package
// messaging hold whatever stores the messages.
package messagingtest

import (
	"context"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/messaging"
)

// QueueFactory returns an empty queue and a function that registers a
// device (as the registry does) and returns its generation id.
type QueueFactory func(t *testing.T) (q messaging.Queue, addDevice func(deviceID string) (generationID string))

// T0 is the suite's clock origin.
var T0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// RunQueue runs the suite over the queues newQueue makes.
func RunQueue(t *testing.T, newQueue QueueFactory) {
	ctx := context.Background()
	ttl := T0.Add(time.Hour)
	msg := func(dev, id string) *messaging.C2DMessage {
		return &messaging.C2DMessage{DeviceID: dev, MessageID: id, Ack: messaging.AckFull, EnqueuedTime: T0, ExpiryTime: ttl}
	}
	setup := func(t *testing.T, ids ...string) (messaging.Queue, string) {
		t.Helper()
		q, add := newQueue(t)
		gen := add("d1")
		add("d2")
		for _, id := range ids {
			if err := enqueue(ctx, q, msg("d1", id), 50); err != nil {
				t.Fatal(err)
			}
		}
		return q, gen
	}
	ids := func(ms []*messaging.C2DMessage) string {
		s := ""
		for _, m := range ms {
			s += m.MessageID
		}
		return s
	}

	t.Run("Enqueue fills the sequence number and generation id, and keeps every field", func(t *testing.T) {
		q, gen := setup(t)
		in := &messaging.C2DMessage{DeviceID: "d1", MessageID: "m1", To: "/devices/d1/messages/devicebound", CorrelationID: "c",
			UserID: "u", ContentType: "application/json", ContentEncoding: "utf-8", EnqueuedTime: T0, ExpiryTime: ttl,
			Ack: messaging.AckPositive, Properties: map[string]string{"k": "v"}, Body: []byte("hi")}
		if err := enqueue(ctx, q, in, 50); err != nil {
			t.Fatal(err)
		}
		second := msg("d1", "m2")
		if err := enqueue(ctx, q, second, 50); err != nil {
			t.Fatal(err)
		}
		if in.SequenceNumber == 0 || second.SequenceNumber <= in.SequenceNumber || in.GenerationID != gen {
			t.Errorf("seq %d then %d, generation %q (want %q)", in.SequenceNumber, second.SequenceNumber, in.GenerationID, gen)
		}
		p, err := q.Pending(ctx, "d1")
		if err != nil || len(p) != 2 {
			t.Fatalf("pending %v %v", p, err)
		}
		got := p[0]
		if got.MessageID != "m1" || got.To != in.To || got.CorrelationID != "c" || got.UserID != "u" || got.ContentType != in.ContentType ||
			got.ContentEncoding != "utf-8" || got.Ack != messaging.AckPositive || got.Properties["k"] != "v" || string(got.Body) != "hi" ||
			!got.EnqueuedTime.Equal(T0) || !got.ExpiryTime.Equal(ttl) || got.GenerationID != gen || got.SequenceNumber != in.SequenceNumber {
			t.Errorf("stored %+v", got)
		}
	})

	t.Run("Enqueue refuses unknown devices and full queues", func(t *testing.T) {
		q, _ := setup(t, "a", "b")
		if err := enqueue(ctx, q, msg("ghost", "x"), 50); iothub.CodeOf(err) != iothub.DeviceNotFound {
			t.Errorf("unknown device: %v", err)
		}
		if err := enqueue(ctx, q, msg("d1", "c"), 2); iothub.CodeOf(err) != iothub.DeviceMaximumQueueDepthExceeded {
			t.Errorf("full queue: %v", err)
		}
		if err := enqueue(ctx, q, msg("d2", "c"), 2); err != nil {
			t.Errorf("another device's queue: %v", err)
		}
	})

	t.Run("Lock takes deliverable messages in order with fresh tokens", func(t *testing.T) {
		q, _ := setup(t, "a", "b", "c")
		exp := msg("d1", "x")
		exp.ExpiryTime = T0.Add(time.Second)
		if err := enqueue(ctx, q, exp, 50); err != nil {
			t.Fatal(err)
		}
		until := T0.Add(time.Minute)
		first, err := q.Lock(ctx, "d1", T0, until, 1)
		if err != nil || ids(first) != "a" || first[0].LockToken == "" || !first[0].LockedUntil.Equal(until) {
			t.Fatalf("first lock %+v %v", first, err)
		}
		now := T0.Add(2 * time.Second) // x has expired
		rest, err := q.Lock(ctx, "d1", now, until, 10)
		if err != nil || ids(rest) != "bc" || rest[0].LockToken == rest[1].LockToken || rest[0].LockToken == first[0].LockToken {
			t.Fatalf("second lock %+v %v", rest, err)
		}
		if none, err := q.Lock(ctx, "d1", now, until, 10); err != nil || len(none) != 0 {
			t.Fatalf("nothing left to lock: %+v %v", none, err)
		}
	})

	t.Run("Remove needs a live lock of that device", func(t *testing.T) {
		q, _ := setup(t, "a", "b")
		l, _ := q.Lock(ctx, "d1", T0, T0.Add(time.Minute), 2)
		for name, tc := range map[string]struct {
			dev, tok string
			now      time.Time
		}{
			"unknown token": {"d1", "nope", T0},
			"other device":  {"d2", l[0].LockToken, T0},
			"lapsed lock":   {"d1", l[1].LockToken, T0.Add(time.Minute)},
		} {
			if _, err := q.Remove(ctx, tc.dev, tc.tok, tc.now); iothub.CodeOf(err) != iothub.DeviceMessageLockLost {
				t.Errorf("%s: %v", name, err)
			}
		}
		m, err := q.Remove(ctx, "d1", l[0].LockToken, T0)
		if err != nil || m.MessageID != "a" {
			t.Fatalf("remove %+v %v", m, err)
		}
		if _, err := q.Remove(ctx, "d1", l[0].LockToken, T0); iothub.CodeOf(err) != iothub.DeviceMessageLockLost {
			t.Errorf("second remove: %v", err)
		}
		if p, _ := q.Pending(ctx, "d1"); ids(p) != "b" {
			t.Errorf("pending %s", ids(p))
		}
	})

	t.Run("Unlock returns the message, counting a delivery when asked, and dead-letters at the maximum", func(t *testing.T) {
		q, _ := setup(t, "a")
		lock := func() string {
			l, err := q.Lock(ctx, "d1", T0, T0.Add(time.Minute), 1)
			if err != nil || len(l) != 1 {
				t.Fatalf("lock %+v %v", l, err)
			}
			return l[0].LockToken
		}
		m, dead, err := q.Unlock(ctx, "d1", lock(), T0, false, 2)
		if err != nil || dead || m.DeliveryCount != 0 {
			t.Fatalf("uncounted unlock %+v %v %v", m, dead, err)
		}
		m, dead, err = q.Unlock(ctx, "d1", lock(), T0, true, 2)
		if err != nil || dead || m.DeliveryCount != 1 {
			t.Fatalf("counted unlock %+v %v %v", m, dead, err)
		}
		if p, _ := q.Pending(ctx, "d1"); len(p) != 1 || p[0].DeliveryCount != 1 || p[0].LockToken != "" {
			t.Fatalf("back in the queue: %+v", p)
		}
		m, dead, err = q.Unlock(ctx, "d1", lock(), T0, true, 2)
		if err != nil || !dead || m.MessageID != "a" {
			t.Fatalf("last delivery %+v %v %v", m, dead, err)
		}
		if p, _ := q.Pending(ctx, "d1"); len(p) != 0 {
			t.Fatalf("a dead-lettered message stayed: %+v", p)
		}
		if _, _, err := q.Unlock(ctx, "d1", "nope", T0, true, 2); iothub.CodeOf(err) != iothub.DeviceMessageLockLost {
			t.Errorf("unknown token: %v", err)
		}
	})

	t.Run("Purge empties one device's queue", func(t *testing.T) {
		q, _ := setup(t, "a", "b")
		if err := enqueue(ctx, q, msg("d2", "z"), 50); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Purge(ctx, "ghost"); iothub.CodeOf(err) != iothub.DeviceNotFound {
			t.Errorf("unknown device: %v", err)
		}
		got, err := q.Purge(ctx, "d1")
		if err != nil || len(got) != 2 {
			t.Fatalf("purge %+v %v", got, err)
		}
		if p, _ := q.Pending(ctx, "d1"); len(p) != 0 {
			t.Errorf("left %d", len(p))
		}
		if p, _ := q.Pending(ctx, "d2"); ids(p) != "z" {
			t.Errorf("another device's queue purged: %s", ids(p))
		}
	})

	t.Run("Sweep deletes expired messages and ends lapsed locks", func(t *testing.T) {
		q, _ := setup(t)
		short := msg("d1", "e") // expires
		short.ExpiryTime = T0.Add(30 * time.Second)
		for _, m := range []*messaging.C2DMessage{short, msg("d1", "l"), msg("d2", "k"), msg("d2", "n")} {
			if err := enqueue(ctx, q, m, 50); err != nil {
				t.Fatal(err)
			}
		}
		// l and k get locks that lapse; k is at its last delivery.
		if _, err := q.Lock(ctx, "d1", T0.Add(40*time.Second), T0.Add(time.Minute), 1); err != nil {
			t.Fatal(err)
		}
		kl, _ := q.Lock(ctx, "d2", T0, T0.Add(time.Minute), 1)
		if _, _, err := q.Unlock(ctx, "d2", kl[0].LockToken, T0, true, 10); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Lock(ctx, "d2", T0, T0.Add(time.Minute), 1); err != nil {
			t.Fatal(err)
		}
		expired, dead, devices, err := q.Sweep(ctx, T0.Add(2*time.Minute), 2)
		if err != nil {
			t.Fatal(err)
		}
		if ids(expired) != "e" || ids(dead) != "k" || len(devices) != 1 || devices[0] != "d1" {
			t.Fatalf("expired %s dead %s devices %v", ids(expired), ids(dead), devices)
		}
		p, _ := q.Pending(ctx, "d1")
		if ids(p) != "l" || p[0].LockToken != "" || p[0].DeliveryCount != 1 {
			t.Errorf("d1 after the sweep: %+v", p)
		}
		if p, _ := q.Pending(ctx, "d2"); ids(p) != "n" {
			t.Errorf("d2 after the sweep: %s", ids(p))
		}
		if e, d, dv, err := q.Sweep(ctx, T0.Add(2*time.Minute), 2); err != nil || len(e)+len(d)+len(dv) != 0 {
			t.Errorf("a second sweep found %d %d %v %v", len(e), len(d), dv, err)
		}
	})

	t.Run("ReleaseAll ends every lock without counting", func(t *testing.T) {
		q, _ := setup(t, "a", "b")
		if _, err := q.Lock(ctx, "d1", T0, T0.Add(time.Minute), 2); err != nil {
			t.Fatal(err)
		}
		if err := q.ReleaseAll(ctx); err != nil {
			t.Fatal(err)
		}
		p, _ := q.Pending(ctx, "d1")
		for _, m := range p {
			if m.LockToken != "" || m.DeliveryCount != 0 {
				t.Errorf("after ReleaseAll: %+v", m)
			}
		}
		if l, _ := q.Lock(ctx, "d1", T0, T0.Add(time.Minute), 5); ids(l) != "ab" {
			t.Errorf("lockable again: %s", ids(l))
		}
	})

	t.Run("EnqueueMany refuses entries alone and counts the batch against the limit", func(t *testing.T) {
		q, _ := setup(t, "a")
		errs, err := q.EnqueueMany(ctx, []*messaging.C2DMessage{msg("d1", "b"), msg("ghost", "x"), msg("d1", "c"), msg("d2", "z")}, 2)
		if err != nil || len(errs) != 4 {
			t.Fatalf("EnqueueMany: %v %v", errs, err)
		}
		if errs[0] != nil || iothub.CodeOf(errs[1]) != iothub.DeviceNotFound ||
			iothub.CodeOf(errs[2]) != iothub.DeviceMaximumQueueDepthExceeded || errs[3] != nil {
			t.Errorf("per-entry errors %v", errs)
		}
		if p, _ := q.Pending(ctx, "d1"); ids(p) != "ab" {
			t.Errorf("d1 holds %s", ids(p))
		}
	})

	t.Run("LockMany and RemoveMany work per device and per lock", func(t *testing.T) {
		q, _ := setup(t, "a", "b")
		if err := enqueue(ctx, q, msg("d2", "z"), 50); err != nil {
			t.Fatal(err)
		}
		locked, err := q.LockMany(ctx, []string{"d1", "d2", "ghost"}, T0, T0.Add(time.Minute), 1)
		if err != nil || len(locked) != 2 || ids(locked["d1"]) != "a" || ids(locked["d2"]) != "z" {
			t.Fatalf("LockMany %v %v", locked, err)
		}
		keys := []messaging.LockKey{{DeviceID: "d1", Token: locked["d1"][0].LockToken}, {DeviceID: "d1", Token: "nope"},
			{DeviceID: "d1", Token: locked["d2"][0].LockToken}, {DeviceID: "d2", Token: locked["d2"][0].LockToken}}
		msgs, errs, err := q.RemoveMany(ctx, keys, T0)
		if err != nil || msgs[0].MessageID != "a" || msgs[3].MessageID != "z" || errs[0] != nil || errs[3] != nil ||
			iothub.CodeOf(errs[1]) != iothub.DeviceMessageLockLost || iothub.CodeOf(errs[2]) != iothub.DeviceMessageLockLost {
			t.Fatalf("RemoveMany %v %v %v", msgs, errs, err)
		}
		if p, _ := q.Pending(ctx, "d1"); ids(p) != "b" {
			t.Errorf("d1 holds %s", ids(p))
		}
	})

	t.Run("feedback is a queue for the service: lock, settle, abandon", func(t *testing.T) {
		q, _ := setup(t)
		var fb []*messaging.Feedback
		for i := range 3 {
			fb = append(fb, &messaging.Feedback{OriginalMessageID: string(rune('a' + i)), DeviceID: "d1", EnqueuedTime: T0, StatusCode: messaging.FeedbackSuccess})
		}
		if err := q.AddFeedback(ctx, fb); err != nil {
			t.Fatal(err)
		}
		tok, got, err := q.LockFeedback(ctx, T0, T0.Add(time.Minute), 2)
		if err != nil || tok == "" || len(got) != 2 || got[0].OriginalMessageID != "a" || got[1].OriginalMessageID != "b" {
			t.Fatalf("first lock %q %+v %v", tok, got, err)
		}
		tok2, got2, err := q.LockFeedback(ctx, T0, T0.Add(time.Minute), 5)
		if err != nil || tok2 == tok || len(got2) != 1 || got2[0].OriginalMessageID != "c" {
			t.Fatalf("second lock %q %+v %v", tok2, got2, err)
		}
		if err := q.SettleFeedback(ctx, tok, T0, true); err != nil {
			t.Fatal(err)
		}
		if err := q.SettleFeedback(ctx, tok, T0, true); iothub.CodeOf(err) != iothub.DeviceMessageLockLost {
			t.Errorf("settle twice: %v", err)
		}
		if err := q.SettleFeedback(ctx, tok2, T0, false); err != nil { // abandon: c is available again
			t.Fatal(err)
		}
		tok3, got3, err := q.LockFeedback(ctx, T0, T0.Add(time.Minute), 5)
		if err != nil || tok3 == "" || len(got3) != 1 || got3[0].OriginalMessageID != "c" {
			t.Fatalf("after settle and abandon %q %+v %v", tok3, got3, err)
		}
		// A lapsed lock frees its records; nothing left after c is settled.
		if tok4, got4, err := q.LockFeedback(ctx, T0.Add(2*time.Minute), T0.Add(3*time.Minute), 5); err != nil || len(got4) != 1 || tok4 == "" {
			t.Fatalf("after the lock lapsed %q %+v %v", tok4, got4, err)
		} else if err := q.SettleFeedback(ctx, tok4, T0.Add(2*time.Minute), true); err != nil {
			t.Fatal(err)
		}
		if tok5, got5, err := q.LockFeedback(ctx, T0.Add(2*time.Minute), T0.Add(3*time.Minute), 5); err != nil || tok5 != "" || len(got5) != 0 {
			t.Fatalf("an empty feedback queue: %q %+v %v", tok5, got5, err)
		}
		// Feedback still lists settled records.
		if all, _ := q.Feedback(ctx, messaging.FeedbackFilter{Limit: 10}); len(all) != 3 {
			t.Errorf("Feedback lists %d records, want 3", len(all))
		}
	})

	t.Run("feedback is numbered and filtered", func(t *testing.T) {
		q, gen := setup(t)
		var fb []*messaging.Feedback
		for i, dev := range []string{"d1", "d2", "d1", "d1"} {
			fb = append(fb, &messaging.Feedback{OriginalMessageID: string(rune('a' + i)), DeviceID: dev, DeviceGenerationID: gen,
				EnqueuedTime: T0, StatusCode: messaging.FeedbackSuccess, Description: "Success"})
		}
		if err := q.AddFeedback(ctx, fb); err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(fb); i++ {
			if fb[i].Sequence <= fb[i-1].Sequence {
				t.Fatalf("sequences %d then %d", fb[i-1].Sequence, fb[i].Sequence)
			}
		}
		all, err := q.Feedback(ctx, messaging.FeedbackFilter{Limit: 100})
		if err != nil || len(all) != 4 || all[0].OriginalMessageID != "a" || all[0].StatusCode != messaging.FeedbackSuccess ||
			!all[0].EnqueuedTime.Equal(T0) || all[0].DeviceGenerationID != gen {
			t.Fatalf("all feedback %+v %v", all, err)
		}
		d1, _ := q.Feedback(ctx, messaging.FeedbackFilter{DeviceID: "d1", From: fb[1].Sequence, Limit: 1})
		if len(d1) != 1 || d1[0].OriginalMessageID != "c" {
			t.Fatalf("d1 from the second record, one: %+v", d1)
		}
	})
}

// enqueue stores one message through EnqueueMany.
func enqueue(ctx context.Context, q messaging.Queue, m *messaging.C2DMessage, limit int) error {
	errs, err := q.EnqueueMany(ctx, []*messaging.C2DMessage{m}, limit)
	if err != nil {
		return err
	}
	return errs[0]
}
