package messaging

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// TelemetryConfig configures the telemetry log.
type TelemetryConfig struct {
	// RetentionCount keeps at most this many messages (0: unbounded).
	RetentionCount int
	// RetentionAge drops messages older than this (0: kept until the count
	// bound removes them).
	RetentionAge time.Duration
	// MaxBatch caps the messages written in one transaction.
	MaxBatch int
	// TrimInterval is how often retention runs; 0 means 10 s.
	TrimInterval time.Duration
	Now          func() time.Time
	Logger       *slog.Logger
}

// Telemetry receives device-to-cloud messages and makes them durable with
// group commit: Send waits until its message's batch is committed, and the
// one writer takes everything queued meanwhile into its next transaction.
// So an acknowledgement always means "stored", and under load many messages
// share one commit. Readers follow the log with List and Subscribe.
type Telemetry struct {
	cfg  TelemetryConfig
	log  Log
	reqs chan *appendReq
	stop chan struct{}
	done chan struct{}

	mu   sync.Mutex
	subs map[*Subscription]struct{}

	batches, messages, commitNanos atomic.Int64
}

// TelemetryStats shows group commit at work: how many transactions stored
// how many messages, and the time spent in them (the rest of the writer's
// time it waits for messages).
type TelemetryStats struct {
	Batches, Messages int64
	CommitTime        time.Duration
}

// Stats reports the writer's counters since start.
func (t *Telemetry) Stats() TelemetryStats {
	return TelemetryStats{Batches: t.batches.Load(), Messages: t.messages.Load(), CommitTime: time.Duration(t.commitNanos.Load())}
}

type appendReq struct {
	m     *Message
	async bool // Enqueue: nobody waits on done; the writer recycles it
	done  chan error
}

var reqPool = sync.Pool{New: func() any { return &appendReq{done: make(chan error, 1)} }}

// NewTelemetry starts the writer; Close stops it.
func NewTelemetry(l Log, cfg TelemetryConfig) *Telemetry {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 1000
	}
	if cfg.TrimInterval <= 0 {
		cfg.TrimInterval = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return time.Now().UTC() }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := &Telemetry{cfg: cfg, log: l, reqs: make(chan *appendReq, 4096), stop: make(chan struct{}), done: make(chan struct{}),
		subs: map[*Subscription]struct{}{}}
	go t.writer()
	return t
}

// ErrClosed is returned by Send after Close.
var ErrClosed = errors.New("the telemetry log is closed")

// Send stores m durably, stamping its enqueued time and sequence number.
// Returns 413001 MessageTooLarge above 256 KB.
func (t *Telemetry) Send(ctx context.Context, m *Message) error {
	r, err := t.enqueue(ctx, m, false)
	if err != nil {
		return err
	}
	// Once queued, wait for the outcome even if ctx ends: the writer owns r
	// until it answers, and the device must not see an ack for a lost write.
	err = <-r.done
	r.m = nil
	reqPool.Put(r)
	return err
}

// Enqueue queues m for storage without waiting for its commit: for
// messages nobody acknowledges (MQTT QoS 0). Messages go through the same
// queue and writer as Send's, so what one caller enqueues and sends is
// stored in call order, and a later Send returns only once every message
// the caller enqueued before it is stored too. The queue is bounded:
// Enqueue blocks while it is full, which slows the sender down instead of
// growing memory. A failed write is logged; there is nobody to tell.
// Returns 413001 MessageTooLarge above 256 KB, as Send does.
func (t *Telemetry) Enqueue(ctx context.Context, m *Message) error {
	_, err := t.enqueue(ctx, m, true)
	return err
}

func (t *Telemetry) enqueue(ctx context.Context, m *Message, async bool) (*appendReq, error) {
	if m.Size() > MaxTelemetrySize {
		return nil, iothub.Errorf(iothub.MessageTooLarge, "Message size %d bytes exceeds the limit of %d bytes.", m.Size(), MaxTelemetrySize)
	}
	r := reqPool.Get().(*appendReq)
	r.m, r.async = m, async
	select {
	case t.reqs <- r:
		return r, nil
	case <-t.stop:
	case <-ctx.Done():
		r.m = nil
		reqPool.Put(r)
		return nil, ctx.Err()
	}
	r.m = nil
	reqPool.Put(r)
	return nil, ErrClosed
}

// Close stops the writer after it has answered every queued Send.
func (t *Telemetry) Close() {
	select {
	case <-t.stop:
	default:
		close(t.stop)
	}
	<-t.done
	t.EndSubscriptions()
}

// EndSubscriptions closes every live feed (not as lagged), so streaming
// readers finish before a shutdown waits for them.
func (t *Telemetry) EndSubscriptions() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for s := range t.subs {
		delete(t.subs, s)
		close(s.c)
	}
}

func (t *Telemetry) writer() {
	defer close(t.done)
	batch := make([]*appendReq, 0, t.cfg.MaxBatch)
	msgs := make([]*Message, 0, t.cfg.MaxBatch)
	trim := time.NewTicker(t.cfg.TrimInterval)
	defer trim.Stop()
	for {
		var first *appendReq
		select {
		case first = <-t.reqs:
		case <-trim.C:
			t.trim()
			continue
		case <-t.stop:
			// Answer what is still queued, then stop.
			for {
				select {
				case r := <-t.reqs:
					t.commit([]*appendReq{r}, []*Message{r.m})
				default:
					return
				}
			}
		}
		batch = append(batch[:0], first)
		// Take what is queued; then let the goroutines that are ready to
		// run (connections with a publish read and about to queue it) go
		// first, as long as that brings more. Commits cost the same for 1
		// and for 100 rows, and under load every publisher waiting for its
		// ack is one of these: without the yield, batches stayed at 3 to 5
		// messages. An idle hub pays one Gosched per message.
		for yields := 0; len(batch) < t.cfg.MaxBatch && yields < maxYields; yields++ {
			n := len(batch)
			t.drain(&batch)
			if len(batch) == n && yields > 0 {
				break
			}
			runtime.Gosched()
		}
		t.drain(&batch)
		msgs = msgs[:0]
		for _, r := range batch {
			msgs = append(msgs, r.m)
		}
		t.commit(batch, msgs)
	}
}

// maxYields bounds how often the writer yields before one commit.
const maxYields = 8

// drain moves queued requests into batch, up to MaxBatch, without waiting.
func (t *Telemetry) drain(batch *[]*appendReq) {
	for len(*batch) < t.cfg.MaxBatch {
		select {
		case r := <-t.reqs:
			*batch = append(*batch, r)
		default:
			return
		}
	}
}

func (t *Telemetry) commit(batch []*appendReq, msgs []*Message) {
	now := t.cfg.Now()
	start := time.Now()
	for _, m := range msgs {
		m.EnqueuedTime = now
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err := t.log.Append(ctx, msgs)
	cancel()
	t.commitNanos.Add(int64(time.Since(start)))
	if err != nil {
		t.cfg.Logger.Error("telemetry batch not stored", "messages", len(msgs), "error", err)
	}
	if err == nil {
		t.batches.Add(1)
		t.messages.Add(int64(len(msgs)))
		t.publish(msgs)
	}
	for _, r := range batch {
		if r.async {
			r.m = nil
			reqPool.Put(r)
			continue
		}
		r.done <- err
	}
}

func (t *Telemetry) trim() {
	var cutoff time.Time
	if t.cfg.RetentionAge > 0 {
		cutoff = t.cfg.Now().Add(-t.cfg.RetentionAge)
	}
	if t.cfg.RetentionCount <= 0 && cutoff.IsZero() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := t.log.Trim(ctx, t.cfg.RetentionCount, cutoff); err != nil {
		t.cfg.Logger.Error("telemetry retention", "error", err)
	}
}

// Trim applies retention now (tests and the shutdown path use it).
func (t *Telemetry) Trim() { t.trim() }

// List returns stored messages; see Filter.
func (t *Telemetry) List(ctx context.Context, f Filter) ([]*Message, error) {
	if f.Limit <= 0 || f.Limit > 10000 {
		f.Limit = 1000
	}
	return t.log.List(ctx, f)
}

// Subscription is a live feed of newly stored messages.
type Subscription struct {
	c      chan *Message
	filter Filter
	t      *Telemetry
	lagged bool
}

// C delivers messages in sequence order. It is closed when the
// subscription ends: by Cancel, by Close, or because the reader fell more
// than the buffer behind (Lagged then reports true; resume with List from
// the last sequence number seen).
func (s *Subscription) C() <-chan *Message { return s.c }

// Lagged reports whether the feed ended because the reader was too slow.
func (s *Subscription) Lagged() bool {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	return s.lagged
}

// Cancel ends the subscription.
func (s *Subscription) Cancel() {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	if _, ok := s.t.subs[s]; ok {
		delete(s.t.subs, s)
		close(s.c)
	}
}

// Subscribe follows messages stored from now on that pass f (From and Limit
// are ignored). To read history and then follow without a gap, subscribe
// first, then List, and skip live messages already listed.
func (t *Telemetry) Subscribe(f Filter) *Subscription {
	s := &Subscription{c: make(chan *Message, 4096), filter: f, t: t}
	t.mu.Lock()
	t.subs[s] = struct{}{}
	t.mu.Unlock()
	return s
}

func (t *Telemetry) publish(msgs []*Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for s := range t.subs {
		for _, m := range msgs {
			if !s.filter.Match(m) {
				continue
			}
			select {
			case s.c <- m:
			default:
				s.lagged = true
				delete(t.subs, s)
				close(s.c)
			}
			if s.lagged {
				break
			}
		}
	}
}
