package eventhub

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/messaging"
)

// PositionKind says where a reader starts.
type PositionKind int

const (
	// Latest starts after the newest event: only events stored from now on.
	Latest PositionKind = iota
	// Earliest starts at the oldest retained event.
	Earliest
	// SequenceNumber starts at (Inclusive) or after Sequence; offsets are
	// the same numbers, so an offset position is a sequence one.
	SequenceNumber
	// EnqueuedTime starts at the first event enqueued after Time (or at it,
	// when Inclusive), compared in milliseconds.
	EnqueuedTime
)

// Position is where a reader starts.
type Position struct {
	Kind      PositionKind
	Sequence  int64
	Time      time.Time
	Inclusive bool
}

// Owner identifies a reader: its name (for error messages) and, for an
// exclusive reader, its owner level (epoch).
type Owner struct {
	Name  string
	Epoch *int64
}

func (o Owner) epochText() string {
	if o.Epoch == nil {
		return "null"
	}
	return fmt.Sprint(*o.Epoch)
}

// StolenError ends or refuses a reader because of another one's owner level:
// Event Hubs' ReceiverDisconnected (amqp:link:stolen on the wire).
type StolenError struct{ Message string }

func (e *StolenError) Error() string { return e.Message }

// QuotaError refuses a reader above MaxReadersPerPartition.
type QuotaError struct{ Message string }

func (e *QuotaError) Error() string { return e.Message }

// Reader reads one partition for one consumer group from a position on.
type Reader struct {
	h     *Hub
	key   readerKey
	owner Owner
	next  int64 // the next sequence number to look at
	done  chan struct{}
	once  sync.Once
	err   error
}

// Done is closed when the reader was ended by another owner or by Close; Err
// tells why.
func (r *Reader) Done() <-chan struct{} { return r.done }

// Err is why the reader ended (a *StolenError, or iothub.ErrClosed).
func (r *Reader) Err() error {
	r.h.mu.Lock()
	defer r.h.mu.Unlock()
	return r.err
}

func (r *Reader) end(err error) {
	r.once.Do(func() {
		r.h.mu.Lock()
		r.err = err
		r.h.mu.Unlock()
		close(r.done)
	})
}

// OpenReader attaches a reader of partition id for group at pos. An owner
// with an epoch takes the partition from every reader of a lower epoch (and
// from readers without one), which end with a *StolenError; it is refused
// when a reader of a higher epoch holds it. A reader without an epoch is
// refused while an epoch reader holds the partition, and above the quota of
// five readers.
func (h *Hub) OpenReader(ctx context.Context, group, id string, pos Position, owner Owner) (*Reader, error) {
	p, err := h.ParsePartition(id)
	if err != nil {
		return nil, err
	}
	if !h.HasConsumerGroup(group) {
		return nil, &NotFoundError{What: "consumer group", Name: group}
	}
	if err := h.waitReady(ctx); err != nil {
		return nil, err
	}
	next, err := h.resolve(ctx, p, pos)
	if err != nil {
		return nil, err
	}
	r := &Reader{h: h, key: readerKey{strings.ToLower(group), p}, owner: owner, next: next, done: make(chan struct{})}
	var stolen []*Reader
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, iothub.ErrClosed
	}
	current := h.readers[r.key]
	for _, o := range current {
		switch {
		case o.owner.Epoch != nil && (owner.Epoch == nil || *o.owner.Epoch > *owner.Epoch):
			h.mu.Unlock()
			return nil, &StolenError{Message: fmt.Sprintf("Receiver '%s' with epoch '%s' cannot be created because a receiver '%s' with a higher epoch of '%d' already holds partition '%s' of consumer group '%s'.",
				owner.Name, owner.epochText(), o.owner.Name, *o.owner.Epoch, id, group)}
		case owner.Epoch != nil && (o.owner.Epoch == nil || *o.owner.Epoch < *owner.Epoch):
			stolen = append(stolen, o)
		}
	}
	if len(stolen) == 0 && len(current) >= MaxReadersPerPartition {
		h.mu.Unlock()
		return nil, &QuotaError{Message: fmt.Sprintf("Exceeded the maximum number of allowed receivers per partition in a consumer group which is %d. Partition: %s, consumer group: %s.", MaxReadersPerPartition, id, group)}
	}
	kept := current[:0:0]
	for _, o := range current {
		if !contains(stolen, o) {
			kept = append(kept, o)
		}
	}
	h.readers[r.key] = append(kept, r)
	h.mu.Unlock()
	for _, o := range stolen {
		o.end(&StolenError{Message: fmt.Sprintf("New receiver '%s' with higher epoch of '%s' is created hence current receiver '%s' with epoch '%s' is getting disconnected. If you are recreating the receiver, make sure a higher epoch is used.",
			owner.Name, owner.epochText(), o.owner.Name, o.owner.epochText())})
	}
	return r, nil
}

func contains(rs []*Reader, r *Reader) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

// Close detaches the reader.
func (r *Reader) Close() {
	h := r.h
	h.mu.Lock()
	list := h.readers[r.key]
	for i, o := range list {
		if o == r {
			h.readers[r.key] = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(h.readers[r.key]) == 0 {
		delete(h.readers, r.key)
	}
	h.mu.Unlock()
	r.end(iothub.ErrClosed)
}

// resolve turns a position into the first sequence number to look at.
func (h *Hub) resolve(ctx context.Context, p int, pos Position) (int64, error) {
	switch pos.Kind {
	case Earliest:
		return 1, nil
	case SequenceNumber:
		if pos.Inclusive {
			return max(pos.Sequence, 1), nil
		}
		return max(pos.Sequence+1, 1), nil
	case EnqueuedTime:
		t := pos.Time.UTC().Truncate(time.Millisecond)
		m, err := h.scan(ctx, p, 1, 0, func(m *messaging.Message) bool {
			et := m.EnqueuedTime.UTC().Truncate(time.Millisecond)
			return et.After(t) || pos.Inclusive && et.Equal(t)
		})
		if err != nil || m == nil {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.lastSeq + 1, err
		}
		return m.SequenceNumber, nil
	default:
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.lastSeq + 1, nil
	}
}

// Next returns up to max events of the partition, waiting until there is at
// least one, ctx ends, or the reader ends.
func (r *Reader) Next(ctx context.Context, max int) ([]*messaging.Message, error) {
	h := r.h
	if max <= 0 {
		max = 1
	}
	for {
		h.mu.Lock()
		st := &h.parts[r.key.partition]
		changed, last := st.changed, st.lastSeq
		out, inTail := st.fromTail(r.next, max)
		h.mu.Unlock()
		if inTail {
			if len(out) > 0 {
				r.next = out[len(out)-1].SequenceNumber + 1
				return out, nil
			}
			last = 0 // nothing newer: wait
		}
		for r.next <= last && len(out) < max {
			page, err := h.log.List(ctx, messaging.Filter{From: r.next, Limit: readPage})
			if err != nil {
				return nil, err
			}
			if len(page) == 0 {
				break
			}
			for _, m := range page {
				if len(out) == max {
					break
				}
				r.next = m.SequenceNumber + 1
				if h.Partition(m.DeviceID) == r.key.partition {
					out = append(out, m)
				}
			}
		}
		if len(out) > 0 {
			return out, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-r.done:
			return nil, r.Err()
		}
	}
}

// Readers counts the readers attached, over every partition and group.
func (h *Hub) Readers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, list := range h.readers {
		n += len(list)
	}
	return n
}
