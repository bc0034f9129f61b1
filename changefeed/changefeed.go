// Package changefeed is a bounded, in-memory feed of recent changes that any
// number of readers follow at their own pace without ever blocking the
// writer: the feed keeps the newest Capacity items, each reader holds a
// cursor, and a reader that fell behind the oldest kept item is told so (it
// then reloads what it shows instead of replaying). Live views (the
// dashboard's connection-state and job-progress streams) use it.
package changefeed

import "sync"

// Feed holds the newest items published. The zero value is not usable; use
// New.
type Feed[T any] struct {
	mu    sync.Mutex
	buf   []T    // ring of the newest items
	next  uint64 // cursor of the next item published
	wake  chan struct{}
	limit int
}

// New returns a feed that keeps the newest capacity items (at least 1).
func New[T any](capacity int) *Feed[T] {
	capacity = max(capacity, 1)
	return &Feed[T]{buf: make([]T, 0, capacity), wake: make(chan struct{}), limit: capacity}
}

// Publish appends v, dropping the oldest item when full, and wakes every
// reader. It never blocks on readers.
func (f *Feed[T]) Publish(v T) {
	f.mu.Lock()
	if len(f.buf) < f.limit {
		f.buf = append(f.buf, v)
	} else {
		f.buf[int(f.next%uint64(f.limit))] = v
	}
	f.next++
	close(f.wake)
	f.wake = make(chan struct{})
	f.mu.Unlock()
}

// Cursor returns the cursor of the next item to be published (a reader
// starting now) and a channel closed at the next Publish.
func (f *Feed[T]) Cursor() (uint64, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.next, f.wake
}

// Since returns the items published from cursor on (oldest first), the
// cursor to pass next time, whether items were lost because the reader fell
// more than the capacity behind, and a channel closed at the next Publish.
func (f *Feed[T]) Since(cursor uint64) (items []T, next uint64, lost bool, wake <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	oldest := f.next - uint64(len(f.buf))
	if cursor < oldest {
		lost, cursor = true, oldest
	}
	if cursor > f.next {
		cursor = f.next
	}
	for c := cursor; c < f.next; c++ {
		if len(f.buf) < f.limit {
			items = append(items, f.buf[c])
		} else {
			items = append(items, f.buf[int(c%uint64(f.limit))])
		}
	}
	return items, f.next, lost, f.wake
}
