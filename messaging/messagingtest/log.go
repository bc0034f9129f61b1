package messagingtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/messaging"
)

// RunLog runs the messaging.Log suite over the logs newLog makes (empty).
func RunLog(t *testing.T, newLog func(t *testing.T) messaging.Log) {
	ctx := context.Background()
	// fill appends n messages from dev (module "" unless given), one a
	// second from T0 on, in batches of up to 3.
	fill := func(t *testing.T, l messaging.Log, dev, mod string, n int, start time.Time) []*messaging.Message {
		t.Helper()
		var all []*messaging.Message
		for i := 0; i < n; i += 3 {
			var batch []*messaging.Message
			for j := i; j < min(i+3, n); j++ {
				batch = append(batch, &messaging.Message{DeviceID: dev, ModuleID: mod, MessageID: fmt.Sprint(j),
					EnqueuedTime: start.Add(time.Duration(j) * time.Second), Body: []byte(fmt.Sprint(dev, j))})
			}
			if err := l.Append(ctx, batch); err != nil {
				t.Fatal(err)
			}
			all = append(all, batch...)
		}
		return all
	}
	seqs := func(ms []*messaging.Message) string {
		s := ""
		for i, m := range ms {
			if i > 0 {
				s += ","
			}
			s += fmt.Sprint(m.SequenceNumber)
		}
		return s
	}

	t.Run("Append numbers messages in order and keeps every field", func(t *testing.T) {
		l := newLog(t)
		in := &messaging.Message{DeviceID: "d1", ModuleID: "m1", AuthMethod: "sas", GenerationID: "g", Transport: "mqtt",
			MessageID: "mid", CorrelationID: "cid", UserID: "uid", To: "/devices/d1/messages/events", ContentType: "application/json",
			ContentEncoding: "utf-8", CreationTime: T0.Add(-time.Second), ExpiryTime: T0.Add(time.Hour), EnqueuedTime: T0,
			System: map[string]string{"dt-subject": "s"}, Properties: map[string]string{"k": "v"}, Body: []byte(`{"t":1}`)}
		if err := l.Append(ctx, []*messaging.Message{in}); err != nil {
			t.Fatal(err)
		}
		more := fill(t, l, "d2", "", 5, T0)
		if in.SequenceNumber <= 0 || more[0].SequenceNumber <= in.SequenceNumber {
			t.Fatalf("sequence numbers %d then %d", in.SequenceNumber, more[0].SequenceNumber)
		}
		for i := 1; i < len(more); i++ {
			if more[i].SequenceNumber != more[i-1].SequenceNumber+1 {
				t.Fatalf("not consecutive: %s", seqs(more))
			}
		}
		got, err := l.List(ctx, messaging.Filter{DeviceID: "d1", From: 1, Limit: 10})
		if err != nil || len(got) != 1 {
			t.Fatalf("list %v %v", got, err)
		}
		m := got[0]
		if m.SequenceNumber != in.SequenceNumber || m.ModuleID != "m1" || m.AuthMethod != "sas" || m.GenerationID != "g" || m.Transport != "mqtt" ||
			m.MessageID != "mid" || m.CorrelationID != "cid" || m.UserID != "uid" || m.To != in.To || m.ContentType != in.ContentType ||
			m.ContentEncoding != "utf-8" || !m.CreationTime.Equal(in.CreationTime) || !m.ExpiryTime.Equal(in.ExpiryTime) ||
			!m.EnqueuedTime.Equal(T0) || m.System["dt-subject"] != "s" || m.Properties["k"] != "v" || string(m.Body) != `{"t":1}` {
			t.Errorf("stored %+v", m)
		}
	})

	t.Run("List from a sequence number, or the most recent", func(t *testing.T) {
		l := newLog(t)
		d1 := fill(t, l, "d1", "", 5, T0)
		fill(t, l, "d2", "", 2, T0)
		mod := fill(t, l, "d1", "m1", 2, T0)
		for _, tc := range []struct {
			name string
			f    messaging.Filter
			want []*messaging.Message
		}{
			{"from, ascending, limited", messaging.Filter{DeviceID: "d1", From: d1[1].SequenceNumber, Limit: 2}, d1[1:3]},
			{"most recent, oldest first", messaging.Filter{DeviceID: "d1", Limit: 3}, []*messaging.Message{d1[4], mod[0], mod[1]}},
			{"one module", messaging.Filter{DeviceID: "d1", ModuleID: "m1", Limit: 10}, mod},
			{"everything from the start", messaging.Filter{From: 1, Limit: 100}, nil}, // checked by count below
		} {
			got, err := l.List(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if len(got) != 9 {
					t.Errorf("%s: %d messages, want 9", tc.name, len(got))
				}
				continue
			}
			if seqs(got) != seqs(tc.want) {
				t.Errorf("%s: %s, want %s", tc.name, seqs(got), seqs(tc.want))
			}
		}
	})

	t.Run("Trim by count and by age; numbers are never reused", func(t *testing.T) {
		l := newLog(t)
		all := fill(t, l, "d1", "", 10, T0)
		n, err := l.Trim(ctx, 6, time.Time{})
		if err != nil || n != 4 {
			t.Fatalf("trim to 6: %d %v", n, err)
		}
		n, err = l.Trim(ctx, 0, T0.Add(6*time.Second)) // drops those enqueued before T0+6s
		if err != nil || n != 2 {
			t.Fatalf("trim by age: %d %v", n, err)
		}
		got, _ := l.List(ctx, messaging.Filter{From: 1, Limit: 100})
		if seqs(got) != seqs(all[6:]) {
			t.Fatalf("left %s, want %s", seqs(got), seqs(all[6:]))
		}
		if n, err := l.Trim(ctx, 0, T0.Add(time.Hour)); err != nil || n != 4 {
			t.Fatalf("trim everything: %d %v", n, err)
		}
		if n, err := l.Trim(ctx, 5, time.Time{}); err != nil || n != 0 {
			t.Fatalf("trim an empty log: %d %v", n, err)
		}
		next := fill(t, l, "d1", "", 1, T0.Add(time.Hour))
		if next[0].SequenceNumber <= all[9].SequenceNumber {
			t.Fatalf("a number was reused after the log was emptied: %d after %d", next[0].SequenceNumber, all[9].SequenceNumber)
		}
	})
}
