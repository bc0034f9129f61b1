// Package groupcommit is the hub's one way to make many small writes share
// a transaction: callers queue items, and one writer goroutine hands every
// item queued while the previous commit ran to the next commit call. Under
// load, a thousand devices share a commit instead of queueing one commit
// each for SQLite's single writer; when idle, an item is committed at once.
//
// The telemetry log, the SQLite twin store and the jobs runner use it. It
// knows nothing of what a commit does: how a caller learns its item's
// outcome (a channel in the item, a shared error) is the caller's business.
package groupcommit

import (
	"context"
	"runtime"
	"sync"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// Config bounds a Batcher.
type Config struct {
	// QueueLen bounds the items waiting for the writer; Add blocks while
	// the queue is full, which slows producers down instead of growing
	// memory. 0 means MaxBatch.
	QueueLen int
	// MaxBatch bounds the items of one commit; 0 means 256.
	MaxBatch int
	// Yields lets goroutines that are ready to run go first, up to this
	// many times before a commit, as long as that brings more items. It
	// pays where producers are many and each waits for its commit (devices
	// waiting for a PUBACK): without it batches stay at a handful of items.
	// 0 commits what is queued right away.
	Yields int
}

// Batcher queues items and commits them in batches from one goroutine.
type Batcher[T any] struct {
	commit func(batch []T)
	cfg    Config
	queue  chan T

	// mu orders Add against Close: Add holds it shared while it queues, so
	// once Close holds it, no Add is in flight and every queued item is in
	// the channel for the writer's last drain.
	mu     sync.RWMutex
	closed bool
	stop   chan struct{}
	done   chan struct{}
}

// New starts the writer. commit is called from one goroutine only, never
// with an empty batch; the slice is reused after it returns.
func New[T any](commit func(batch []T), cfg Config) *Batcher[T] {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 256
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = cfg.MaxBatch
	}
	b := &Batcher[T]{commit: commit, cfg: cfg, queue: make(chan T, cfg.QueueLen), stop: make(chan struct{}), done: make(chan struct{})}
	go b.writer()
	return b
}

// Add queues item for the next commit. It returns iothub.ErrClosed after
// Close, and ctx's error if ctx ends while the queue is full; otherwise the
// item will be committed, also if Close is called right after.
func (b *Batcher[T]) Add(ctx context.Context, item T) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return iothub.ErrClosed
	}
	select {
	case b.queue <- item:
		return nil
	default:
	}
	select {
	case b.queue <- item:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops accepting items, commits those already queued and waits for
// the writer to finish. Later calls return at once.
func (b *Batcher[T]) Close() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.stop)
	}
	b.mu.Unlock()
	<-b.done
}

func (b *Batcher[T]) writer() {
	defer close(b.done)
	batch := make([]T, 0, b.cfg.MaxBatch)
	for {
		select {
		case first := <-b.queue:
			batch = append(batch[:0], first)
		case <-b.stop:
			// No Add is in flight any more (Close holds mu when it closes
			// stop): what is queued now is all there will be.
			for {
				batch = batch[:0]
				b.drain(&batch)
				if len(batch) == 0 {
					return
				}
				b.commit(batch)
			}
		}
		for yields := 0; len(batch) < b.cfg.MaxBatch && yields < b.cfg.Yields; yields++ {
			n := len(batch)
			b.drain(&batch)
			if len(batch) == n && yields > 0 {
				break
			}
			runtime.Gosched()
		}
		b.drain(&batch)
		b.commit(batch)
		clear(batch) // drop references to committed items
	}
}

// drain moves queued items into batch, up to MaxBatch, without waiting.
func (b *Batcher[T]) drain(batch *[]T) {
	for len(*batch) < b.cfg.MaxBatch {
		select {
		case it := <-b.queue:
			*batch = append(*batch, it)
		default:
			return
		}
	}
}
