package eventhub_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/eventhub"
	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/messaging"
)

// memLog is an in-memory messaging.Log for the telemetry service.
type memLog struct {
	mu   sync.Mutex
	msgs []*messaging.Message
	next int64
}

func (l *memLog) Append(_ context.Context, msgs []*messaging.Message) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range msgs {
		l.next++
		m.SequenceNumber = l.next
		c := *m
		c.EnqueuedTime = c.EnqueuedTime.Truncate(time.Millisecond)
		l.msgs = append(l.msgs, &c)
	}
	return nil
}

func (l *memLog) List(_ context.Context, f messaging.Filter) ([]*messaging.Message, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*messaging.Message
	for _, m := range l.msgs {
		if m.SequenceNumber >= f.From && f.Match(m) && len(out) < f.Limit {
			out = append(out, m)
		}
	}
	return out, nil
}

func (l *memLog) Trim(_ context.Context, keep int, _ time.Time) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.msgs) - keep
	if n <= 0 {
		return 0, nil
	}
	l.msgs = l.msgs[n:]
	return int64(n), nil
}

func newHub(t *testing.T, partitions int) (*eventhub.Hub, *messaging.Telemetry) {
	t.Helper()
	tel, err := messaging.NewTelemetry(messaging.TelemetryDeps{Log: &memLog{}}, messaging.TelemetryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := eventhub.New(eventhub.Deps{Telemetry: tel, Groups: &memGroups{}}, eventhub.Config{Name: "hub1", Partitions: partitions})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(); tel.Close() })
	return h, tel
}

func send(t *testing.T, tel *messaging.Telemetry, device string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := tel.Send(context.Background(), &messaging.Message{DeviceID: device, Body: []byte(device)}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPartitionOfIsStableAndSpread(t *testing.T) {
	seen := map[int]bool{}
	for _, id := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "dev1", "dev2", "thermostat"} {
		p := eventhub.PartitionOf(id, 4)
		if p != eventhub.PartitionOf(id, 4) || p < 0 || p > 3 {
			t.Fatalf("partition of %s: %d", id, p)
		}
		seen[p] = true
	}
	if len(seen) < 3 {
		t.Fatalf("11 devices on %d partitions only", len(seen))
	}
}

func TestPartitionPropertiesAndReaders(t *testing.T) {
	h, tel := newHub(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Two devices on different partitions.
	a, b := "a", ""
	for _, id := range []string{"b", "c", "d", "e", "f"} {
		if h.Partition(id) != h.Partition(a) {
			b = id
			break
		}
	}
	pa := h.Partition(a)
	empty, err := h.PartitionProperties(ctx, "1")
	if err != nil || !empty.IsEmpty || empty.LastSequenceNumber != -1 || empty.LastOffset != "-1" {
		t.Fatalf("empty partition: %+v %v", empty, err)
	}
	send(t, tel, a, 2)
	send(t, tel, b, 1)
	send(t, tel, a, 1)
	pid := []string{"0", "1"}[pa]
	checkEventually(t, func() bool {
		p, _ := h.PartitionProperties(ctx, pid)
		return p.LastSequenceNumber == 4
	})
	p, err := h.PartitionProperties(ctx, pid)
	if err != nil || p.IsEmpty || p.BeginSequenceNumber != 1 || p.LastOffset != "4" || p.LastEnqueuedTime.IsZero() {
		t.Fatalf("partition properties %+v %v", p, err)
	}
	for _, c := range []struct {
		name string
		pos  eventhub.Position
		want []int64
	}{
		{"earliest", eventhub.Position{Kind: eventhub.Earliest}, []int64{1, 2, 4}},
		{"after 1", eventhub.Position{Kind: eventhub.SequenceNumber, Sequence: 1}, []int64{2, 4}},
		{"from 2", eventhub.Position{Kind: eventhub.SequenceNumber, Sequence: 2, Inclusive: true}, []int64{2, 4}},
		{"after 2, skipping the other partition", eventhub.Position{Kind: eventhub.SequenceNumber, Sequence: 2}, []int64{4}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := h.OpenReader(ctx, "$default", pid, c.pos, eventhub.Owner{Name: c.name})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			var got []int64
			for len(got) < len(c.want) {
				evs, err := r.Next(ctx, 10)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range evs {
					got = append(got, e.SequenceNumber)
				}
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Fatalf("got %v, want %v", got, c.want)
				}
			}
		})
	}
	// Latest waits for the next event of its partition.
	r, err := h.OpenReader(ctx, "$Default", pid, eventhub.Position{Kind: eventhub.Latest}, eventhub.Owner{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	send(t, tel, b, 1)
	send(t, tel, a, 1)
	evs, err := r.Next(ctx, 10)
	if err != nil || len(evs) != 1 || evs[0].SequenceNumber != 6 {
		t.Fatalf("latest: %v %v", evs, err)
	}
}

func TestOwnerLevels(t *testing.T) {
	h, _ := newHub(t, 1)
	ctx := context.Background()
	epoch := func(n int64) eventhub.Owner { return eventhub.Owner{Name: "r", Epoch: &n} }
	plain, err := h.OpenReader(ctx, "$Default", "0", eventhub.Position{}, eventhub.Owner{Name: "plain"})
	if err != nil {
		t.Fatal(err)
	}
	one, err := h.OpenReader(ctx, "$Default", "0", eventhub.Position{}, epoch(1))
	if err != nil {
		t.Fatal(err)
	}
	var stolen *eventhub.StolenError
	if <-plain.Done(); !errors.As(plain.Err(), &stolen) {
		t.Fatalf("the reader without epoch: %v", plain.Err())
	}
	for _, o := range []eventhub.Owner{{Name: "plain"}, epoch(0)} {
		if _, err := h.OpenReader(ctx, "$Default", "0", eventhub.Position{}, o); !errors.As(err, &stolen) {
			t.Fatalf("owner %v: %v, want refused", o, err)
		}
	}
	same, err := h.OpenReader(ctx, "$Default", "0", eventhub.Position{}, epoch(1))
	if err != nil {
		t.Fatalf("the same epoch again: %v", err)
	}
	two, err := h.OpenReader(ctx, "$Default", "0", eventhub.Position{}, epoch(2))
	if err != nil {
		t.Fatal(err)
	}
	<-one.Done()
	<-same.Done()
	if !errors.As(one.Err(), &stolen) || !errors.As(same.Err(), &stolen) {
		t.Fatalf("lower epochs: %v, %v", one.Err(), same.Err())
	}
	// Other groups and partitions are not affected; unknown ones are refused.
	if _, err := h.OpenReader(ctx, "other", "0", eventhub.Position{}, eventhub.Owner{}); err == nil {
		t.Fatal("unknown consumer group accepted")
	}
	if _, err := h.OpenReader(ctx, "$Default", "1", eventhub.Position{}, eventhub.Owner{}); err == nil {
		t.Fatal("unknown partition accepted")
	}
	if _, err := h.CreateConsumerGroup(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	var readers []*eventhub.Reader
	for i := 0; i < eventhub.MaxReadersPerPartition; i++ {
		r, err := h.OpenReader(ctx, "other", "0", eventhub.Position{}, eventhub.Owner{})
		if err != nil {
			t.Fatal(err)
		}
		readers = append(readers, r)
	}
	var quota *eventhub.QuotaError
	if _, err := h.OpenReader(ctx, "OTHER", "0", eventhub.Position{}, eventhub.Owner{}); !errors.As(err, &quota) {
		t.Fatalf("sixth reader: %v", err)
	}
	readers[0].Close()
	if _, err := h.OpenReader(ctx, "other", "0", eventhub.Position{}, eventhub.Owner{}); err != nil {
		t.Fatalf("after a close: %v", err)
	}
	h.Close()
	if <-two.Done(); !errors.Is(two.Err(), iothub.ErrClosed) {
		t.Fatalf("after Close: %v", two.Err())
	}
}

func TestConsumerGroupNames(t *testing.T) {
	h, _ := newHub(t, 1)
	for name, ok := range map[string]bool{"a": true, "group_1.x-y": true, "-a": false, "a-": false, "": false, "a b": false,
		"$Default": true, "01234567890123456789012345678901234567890123456789": true, "012345678901234567890123456789012345678901234567890": false} {
		_, err := h.CreateConsumerGroup(context.Background(), name)
		if (err == nil) != ok {
			t.Errorf("%q: %v", name, err)
		}
	}
}

func checkEventually(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// memGroups is an in-memory eventhub.GroupStore.
type memGroups struct {
	mu     sync.Mutex
	groups []string
}

func (m *memGroups) ConsumerGroups(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.groups...), nil
}

func (m *memGroups) AddConsumerGroup(_ context.Context, name string, _ time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.groups = append(m.groups, name)
	return true, nil
}
