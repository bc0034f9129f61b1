package messaging

import (
	"context"
	"github.com/iothub-emulator/iothub-emulator/clock"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iothub-emulator/iothub-emulator/groupcommit"
	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// Defaults of TelemetryConfig.
const (
	DefaultTelemetryMaxBatch     = 1000
	DefaultTelemetryQueueLen     = 4096
	DefaultTelemetryQueuedBytes  = 32 << 20
	DefaultTelemetryTrimInterval = 10 * time.Second
)

// TelemetryDeps are the telemetry log's collaborators, all required.
type TelemetryDeps struct {
	Log Log
}

// TelemetryConfig configures the telemetry log; zero values take the
// defaults above.
type TelemetryConfig struct {
	// RetentionCount keeps at most this many messages (0: unbounded).
	RetentionCount int
	// RetentionAge drops messages older than this (0: kept until the count
	// bound removes them).
	RetentionAge time.Duration
	// MaxBatch caps the messages written in one transaction.
	MaxBatch int
	// QueueLen bounds the messages waiting for the writer.
	QueueLen int
	// MaxQueuedBytes bounds the size of the messages queued by Enqueue
	// (QoS 0) and not yet stored; Enqueue waits while it is reached. Send
	// needs no such bound: each sender waits for its own message.
	MaxQueuedBytes int64
	// TrimInterval is how often retention runs.
	TrimInterval time.Duration
	// Clock schedules retention; nil means the wall clock. Now, when nil,
	// reads it.
	Clock  clock.Clock
	Now    func() time.Time
	Logger *slog.Logger
}

// Telemetry receives device-to-cloud messages and makes them durable with
// group commit: Send waits until its message's batch is committed, and the
// one writer takes everything queued meanwhile into its next transaction.
// So an acknowledgement always means "stored", and under load many messages
// share one commit. Readers follow the log with List and Subscribe.
type Telemetry struct {
	cfg    TelemetryConfig
	log    Log
	writes *groupcommit.Batcher[*appendReq]
	queued *byteBudget
	stop   chan struct{} // closed by Close
	done   chan struct{} // closed when the retention loop has stopped
	once   sync.Once

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
	async bool  // Enqueue: nobody waits on done; the writer recycles it
	size  int64 // held from queued while async
	done  chan error
}

var reqPool = sync.Pool{New: func() any { return &appendReq{done: make(chan error, 1)} }}

// NewTelemetry starts the writer and the retention loop; Close stops them.
func NewTelemetry(deps TelemetryDeps, cfg TelemetryConfig) (*Telemetry, error) {
	if err := iothub.CheckDeps("telemetry", deps); err != nil {
		return nil, err
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultTelemetryMaxBatch
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = DefaultTelemetryQueueLen
	}
	if cfg.MaxQueuedBytes <= 0 {
		cfg.MaxQueuedBytes = DefaultTelemetryQueuedBytes
	}
	if cfg.TrimInterval <= 0 {
		cfg.TrimInterval = DefaultTelemetryTrimInterval
	}
	cfg.Clock = clock.OrReal(cfg.Clock)
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return cfg.Clock.Now().UTC() }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := &Telemetry{cfg: cfg, log: deps.Log, queued: newByteBudget(cfg.MaxQueuedBytes),
		stop: make(chan struct{}), done: make(chan struct{}), subs: map[*Subscription]struct{}{}}
	// Commits cost the same for 1 and for 100 rows, and under load every
	// publisher waiting for its ack is a goroutine about to queue: yielding
	// to them before a commit took batches from 3-5 messages to hundreds.
	// An idle hub pays one Gosched per message.
	t.writes = groupcommit.New(t.commit, groupcommit.Config{MaxBatch: cfg.MaxBatch, QueueLen: cfg.QueueLen, Yields: 8})
	go t.retention()
	return t, nil
}

// ErrClosed is returned by Send and Enqueue after Close.
var ErrClosed = iothub.ErrClosed

// Send stores m durably, stamping its enqueued time and sequence number.
// Returns 413001 MessageTooLarge above 256 KB, ErrClosed after Close.
func (t *Telemetry) Send(ctx context.Context, m *Message) error {
	r, err := t.enqueue(ctx, m, false)
	if err != nil {
		return err
	}
	// Once queued, wait for the outcome even if ctx ends: the writer owns r
	// until it answers (Close commits what was queued), and the device must
	// not see an ack for a lost write.
	err = <-r.done
	r.m = nil
	reqPool.Put(r)
	return err
}

// Submit queues m as Send does and returns at once; wait returns Send's
// outcome. A transport that acknowledges each message once it is stored
// (AMQP settles a transfer) reads on while earlier messages are committed:
// messages of one caller are stored in call order and share commits. wait
// must be called exactly once.
func (t *Telemetry) Submit(ctx context.Context, m *Message) (wait func() error, err error) {
	r, err := t.enqueue(ctx, m, false)
	if err != nil {
		return nil, err
	}
	return func() error {
		err := <-r.done
		r.m = nil
		reqPool.Put(r)
		return err
	}, nil
}

// Enqueue queues m for storage without waiting for its commit: for
// messages nobody acknowledges (MQTT QoS 0). Messages go through the same
// queue and writer as Send's, so what one caller enqueues and sends is
// stored in call order, and a later Send returns only once every message
// the caller enqueued before it is stored too. The queue is bounded by
// count and by bytes: Enqueue blocks while either bound is reached, which
// slows the sender down instead of growing memory. A failed write is
// logged; there is nobody to tell. Returns 413001 MessageTooLarge above
// 256 KB, as Send does, and ErrClosed after Close.
func (t *Telemetry) Enqueue(ctx context.Context, m *Message) error {
	_, err := t.enqueue(ctx, m, true)
	return err
}

func (t *Telemetry) enqueue(ctx context.Context, m *Message, async bool) (*appendReq, error) {
	size := m.Size()
	if size > MaxTelemetrySize {
		return nil, iothub.Errorf(iothub.MessageTooLarge, "Message size %d bytes exceeds the limit of %d bytes.", size, MaxTelemetrySize)
	}
	r := reqPool.Get().(*appendReq)
	r.m, r.async, r.size = m, async, 0
	if async {
		if err := t.queued.acquire(ctx, int64(size), t.stop); err != nil {
			r.m = nil
			reqPool.Put(r)
			return nil, err
		}
		r.size = int64(size)
	}
	if err := t.writes.Add(ctx, r); err != nil {
		t.queued.release(r.size)
		r.m = nil
		reqPool.Put(r)
		return nil, err
	}
	return r, nil
}

// Close stores what is queued, stops the writer and the retention loop and
// ends the subscriptions. Later calls of Send and Enqueue return ErrClosed
// at once.
func (t *Telemetry) Close() {
	t.once.Do(func() { close(t.stop) }) // first: Enqueues waiting for bytes give up
	t.writes.Close()
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

func (t *Telemetry) retention() {
	defer close(t.done)
	tick := t.cfg.Clock.NewTicker(t.cfg.TrimInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C():
			t.trim()
		case <-t.stop:
			return
		}
	}
}

func (t *Telemetry) commit(batch []*appendReq) {
	msgs := make([]*Message, len(batch))
	for i, r := range batch {
		msgs[i] = r.m
	}
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
			t.queued.release(r.size)
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

// byteBudget bounds the bytes of messages queued and not yet stored.
type byteBudget struct {
	mu    sync.Mutex
	used  int64
	max   int64
	freed chan struct{} // closed and replaced by every release
}

func newByteBudget(max int64) *byteBudget {
	return &byteBudget{max: max, freed: make(chan struct{})}
}

// acquire takes n bytes, waiting while they do not fit. A message larger
// than the whole budget still goes through when nothing else is queued.
func (b *byteBudget) acquire(ctx context.Context, n int64, stop <-chan struct{}) error {
	for {
		b.mu.Lock()
		if b.used == 0 || b.used+n <= b.max {
			b.used += n
			b.mu.Unlock()
			return nil
		}
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			return ErrClosed
		}
	}
}

func (b *byteBudget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}
