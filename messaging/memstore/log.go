package memstore

import (
	"context"
	"maps"
	"sync"
	"time"

	"github.com/iothub-emulator/iothub-emulator/messaging"
)

// Log is an in-memory messaging.Log.
type Log struct {
	mu   sync.Mutex
	msgs []*messaging.Message // ascending sequence numbers
	last int64                // the last number handed out, never reused
}

var _ messaging.Log = (*Log)(nil)

// NewLog returns an empty Log.
func NewLog() *Log { return &Log{} }

func cloneMessage(m *messaging.Message) *messaging.Message {
	c := *m
	c.System, c.Properties = maps.Clone(m.System), maps.Clone(m.Properties)
	c.Body = append([]byte{}, m.Body...)
	return &c
}

func (l *Log) Append(_ context.Context, msgs []*messaging.Message) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range msgs {
		l.last++
		m.SequenceNumber = l.last
		c := cloneMessage(m)
		c.EnqueuedTime = ms(m.EnqueuedTime)
		l.msgs = append(l.msgs, c)
	}
	return nil
}

func (l *Log) List(_ context.Context, f messaging.Filter) ([]*messaging.Message, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var match []*messaging.Message
	for _, m := range l.msgs {
		if f.Match(m) && m.SequenceNumber >= f.From {
			match = append(match, m)
		}
	}
	if f.From > 0 {
		match = match[:min(len(match), f.Limit)]
	} else {
		match = match[max(0, len(match)-f.Limit):] // the most recent Limit
	}
	out := make([]*messaging.Message, 0, len(match))
	for _, m := range match {
		out = append(out, cloneMessage(m))
	}
	return out, nil
}

func (l *Log) Trim(_ context.Context, keep int, cutoff time.Time) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.msgs) == 0 {
		return 0, nil
	}
	before := len(l.msgs)
	newest := l.msgs[len(l.msgs)-1].SequenceNumber
	var drop int64 // drop sequence numbers up to this
	if keep > 0 {
		drop = newest - int64(keep)
	}
	if !cutoff.IsZero() {
		// Enqueued times grow with the sequence number: the old ones are a prefix.
		for _, m := range l.msgs {
			if m.EnqueuedTime.Before(cutoff) {
				drop = max(drop, m.SequenceNumber)
			}
		}
	}
	i := 0
	for i < len(l.msgs) && l.msgs[i].SequenceNumber <= drop {
		i++
	}
	l.msgs = append([]*messaging.Message(nil), l.msgs[i:]...)
	return int64(before - len(l.msgs)), nil
}
