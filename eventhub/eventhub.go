// Package eventhub is the hub's built-in Event Hub-compatible endpoint as a
// domain service: the telemetry log seen as an Event Hub named after the hub,
// split into a fixed number of partitions by device id, with consumer groups,
// partition properties and positioned readers with owner levels (epochs). It
// knows nothing of AMQP: the transport (amqphub) turns link filters into a
// Position and events into messages.
//
// Sequence numbers and offsets are the log's own sequence numbers, so they are
// stable across restarts and retention; within a partition they increase but
// are not dense (the other partitions' events fall between them), which the
// Event Hubs SDKs accept: they only compare and resume from them.
package eventhub

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/messaging"
)

// Defaults of Config.
const (
	DefaultPartitions = 4
	// MaxPartitions is the most partitions an IoT hub's built-in endpoint has.
	MaxPartitions = 32
	// DefaultConsumerGroup exists on every hub and cannot be deleted.
	DefaultConsumerGroup = "$Default"
	// MaxReadersPerPartition is Event Hubs' quota of concurrent readers of one
	// partition in one consumer group.
	MaxReadersPerPartition = 5
	// readPage is how many log rows one read looks at.
	readPage = 1000
	// tailLen is how many of each partition's newest events are kept in
	// memory, so that readers that keep up never go to the log.
	tailLen = 2048
)

// Log is what the endpoint reads: the telemetry log.
type Log interface {
	List(ctx context.Context, f messaging.Filter) ([]*messaging.Message, error)
	Subscribe(f messaging.Filter) *messaging.Subscription
}

// GroupStore keeps the consumer groups besides $Default.
type GroupStore interface {
	ConsumerGroups(ctx context.Context) ([]string, error)
	AddConsumerGroup(ctx context.Context, name string, now time.Time) (created bool, err error)
}

// Deps are the endpoint's collaborators, all required.
type Deps struct {
	Telemetry Log
	Groups    GroupStore
}

// Config configures the endpoint; zero values take the defaults above.
type Config struct {
	// Name is the Event Hub's name (the hub's name).
	Name string
	// Partitions is the fixed partition count.
	Partitions int
	// ConsumerGroups are created at start besides $Default.
	ConsumerGroups []string
	// CreatedAt is reported as the Event Hub's creation time.
	CreatedAt time.Time
	Now       func() time.Time
	Logger    *slog.Logger
}

// Hub is the Event Hub-compatible endpoint.
type Hub struct {
	cfg        Config
	log        Log
	groupStore GroupStore
	stop       chan struct{}
	done       chan struct{}
	once       sync.Once

	mu      sync.Mutex
	groups  map[string]string // lower-case name -> name as created
	parts   []partitionState
	lastSeq int64 // the newest sequence number of the log seen
	ready   chan struct{}
	readers map[readerKey][]*Reader
	closed  bool
}

type partitionState struct {
	lastSeq  int64 // 0: no event seen
	lastTime time.Time
	changed  chan struct{} // closed and replaced when an event arrives
	// tail holds the partition's newest events in sequence order: every
	// event of the partition from sequence number tailFrom on.
	tail     []*messaging.Message
	tailFrom int64
}

// fromTail returns up to max events of the tail from sequence number next
// on; ok is false when the tail does not reach back that far. h.mu is held.
func (st *partitionState) fromTail(next int64, max int) (out []*messaging.Message, ok bool) {
	if st.tailFrom == 0 || next < st.tailFrom {
		return nil, false
	}
	i, _ := slices.BinarySearchFunc(st.tail, next, func(m *messaging.Message, seq int64) int { return cmp.Compare(m.SequenceNumber, seq) })
	end := min(len(st.tail), i+max)
	return slices.Clone(st.tail[i:end]), true
}

func (st *partitionState) append(m *messaging.Message) {
	if st.tailFrom == 0 {
		st.tailFrom = m.SequenceNumber
	}
	st.tail = append(st.tail, m)
	if len(st.tail) > 2*tailLen {
		drop := len(st.tail) - tailLen
		st.tailFrom = st.tail[drop-1].SequenceNumber + 1
		st.tail = slices.Clone(st.tail[drop:])
	}
}

type readerKey struct {
	group     string // lower case
	partition int
}

// New starts following the log; Close stops it.
func New(deps Deps, cfg Config) (*Hub, error) {
	if err := iothub.CheckDeps("eventhub", deps); err != nil {
		return nil, err
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = DefaultPartitions
	}
	if cfg.Partitions < 1 || cfg.Partitions > MaxPartitions {
		return nil, fmt.Errorf("eventhub: partition count %d outside 1..%d", cfg.Partitions, MaxPartitions)
	}
	if cfg.Name == "" {
		return nil, errors.New("eventhub: a name is required")
	}
	if cfg.Now == nil {
		// wall clock: the default when no clock is given; the hub passes its own.
		cfg.Now = func() time.Time { return time.Now().UTC() }
	}
	if cfg.CreatedAt.IsZero() {
		cfg.CreatedAt = cfg.Now()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Hub{cfg: cfg, log: deps.Telemetry, groupStore: deps.Groups, stop: make(chan struct{}), done: make(chan struct{}),
		groups: map[string]string{strings.ToLower(DefaultConsumerGroup): DefaultConsumerGroup},
		parts:  make([]partitionState, cfg.Partitions), ready: make(chan struct{}), readers: map[readerKey][]*Reader{}}
	for i := range h.parts {
		h.parts[i].changed = make(chan struct{})
	}
	stored, err := deps.Groups.ConsumerGroups(context.Background())
	if err != nil {
		return nil, fmt.Errorf("eventhub: read the consumer groups: %w", err)
	}
	for _, g := range stored {
		h.groups[strings.ToLower(g)] = g
	}
	for _, g := range cfg.ConsumerGroups {
		if _, err := h.CreateConsumerGroup(context.Background(), g); err != nil {
			return nil, err
		}
	}
	go h.follow()
	return h, nil
}

// Close stops following the log and ends every reader.
func (h *Hub) Close() error {
	h.once.Do(func() { close(h.stop) })
	<-h.done
	h.mu.Lock()
	h.closed = true
	var rs []*Reader
	for _, list := range h.readers {
		rs = append(rs, list...)
	}
	h.mu.Unlock()
	for _, r := range rs {
		r.end(iothub.ErrClosed)
	}
	return nil
}

// Name is the Event Hub's name.
func (h *Hub) Name() string { return h.cfg.Name }

// PartitionCount is the fixed number of partitions.
func (h *Hub) PartitionCount() int { return h.cfg.Partitions }

// PartitionIDs are "0" to "n-1".
func (h *Hub) PartitionIDs() []string {
	ids := make([]string, h.cfg.Partitions)
	for i := range ids {
		ids[i] = strconv.Itoa(i)
	}
	return ids
}

// CreatedAt is the Event Hub's creation time.
func (h *Hub) CreatedAt() time.Time { return h.cfg.CreatedAt }

// PartitionOf is the partition of a device's events: FNV-1a of the device id,
// so the same device always lands on the same partition (the hub's own hash
// is not public).
func PartitionOf(deviceID string, partitions int) int {
	f := fnv.New32a()
	f.Write([]byte(deviceID))
	return int(f.Sum32() % uint32(partitions))
}

// Partition is the partition of a device's events on this hub.
func (h *Hub) Partition(deviceID string) int { return PartitionOf(deviceID, h.cfg.Partitions) }

// ParsePartition reads a partition id.
func (h *Hub) ParsePartition(id string) (int, error) {
	p, err := strconv.Atoi(id)
	if err != nil || p < 0 || p >= h.cfg.Partitions || strconv.Itoa(p) != id {
		return 0, &NotFoundError{What: "partition", Name: id}
	}
	return p, nil
}

// NotFoundError is an unknown partition or consumer group.
type NotFoundError struct{ What, Name string }

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("The messaging entity's %s '%s' could not be found.", e.What, e.Name)
}

// validGroupName follows Event Hubs' rule for consumer group names: 1 to 50
// letters, digits, periods, hyphens and underscores, starting and ending with
// a letter or digit ($Default is the only exception).
func validGroupName(name string) bool {
	if len(name) < 1 || len(name) > 50 {
		return false
	}
	for i, c := range name {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || i == len(name)-1 || !strings.ContainsRune("._-", c)) {
			return false
		}
	}
	return true
}

// CreateConsumerGroup adds a consumer group and stores it; it reports false
// when it existed already (names compare case-insensitively). An invalid
// name is an ArgumentInvalid error.
func (h *Hub) CreateConsumerGroup(ctx context.Context, name string) (bool, error) {
	if !strings.EqualFold(name, DefaultConsumerGroup) && !validGroupName(name) {
		return false, iothub.Errorf(iothub.ArgumentInvalid, "Consumer group name '%s' is invalid: use 1 to 50 letters, digits, periods, hyphens and underscores, starting and ending with a letter or digit.", name)
	}
	if h.HasConsumerGroup(name) {
		return false, nil
	}
	created, err := h.groupStore.AddConsumerGroup(ctx, name, h.cfg.Now())
	if err != nil {
		return false, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.groups[strings.ToLower(name)]; ok {
		return false, nil
	}
	h.groups[strings.ToLower(name)] = name
	return created, nil
}

// ConsumerGroups lists the consumer groups by name.
func (h *Hub) ConsumerGroups() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.groups))
	for _, g := range h.groups {
		out = append(out, g)
	}
	sort.Strings(out)
	return out
}

// HasConsumerGroup reports whether the group exists (case-insensitively).
func (h *Hub) HasConsumerGroup(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.groups[strings.ToLower(name)]
	return ok
}

// PartitionProperties are what $management READ com.microsoft:partition
// returns. An empty partition has -1 for its numbers and "-1" as offset.
type PartitionProperties struct {
	ID                  string
	BeginSequenceNumber int64
	LastSequenceNumber  int64
	LastOffset          string
	LastEnqueuedTime    time.Time
	IsEmpty             bool
}

// PartitionProperties describes one partition.
func (h *Hub) PartitionProperties(ctx context.Context, id string) (PartitionProperties, error) {
	p, err := h.ParsePartition(id)
	if err != nil {
		return PartitionProperties{}, err
	}
	if err := h.waitReady(ctx); err != nil {
		return PartitionProperties{}, err
	}
	h.mu.Lock()
	last, lastTime := h.parts[p].lastSeq, h.parts[p].lastTime
	h.mu.Unlock()
	props := PartitionProperties{ID: id, BeginSequenceNumber: -1, LastSequenceNumber: -1, LastOffset: "-1", IsEmpty: true}
	if last == 0 {
		return props, nil
	}
	// The first retained event of the partition: retention moves it, so it
	// is looked up rather than remembered.
	first, err := h.scan(ctx, p, 1, last, func(*messaging.Message) bool { return true })
	if err != nil {
		return props, err
	}
	if first == nil {
		return props, nil // trimmed away
	}
	return PartitionProperties{ID: id, BeginSequenceNumber: first.SequenceNumber, LastSequenceNumber: last,
		LastOffset: strconv.FormatInt(last, 10), LastEnqueuedTime: lastTime}, nil
}

// LastEnqueued is the partition's newest event (sequence 0 when none): the
// runtime metric a receiver may ask for.
func (h *Hub) LastEnqueued(p int) (seq int64, t time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.parts[p].lastSeq, h.parts[p].lastTime
}

// scan returns the first event of partition p from sequence number from on
// (up to and including until, when > 0) that ok accepts, or nil.
func (h *Hub) scan(ctx context.Context, p int, from, until int64, ok func(*messaging.Message) bool) (*messaging.Message, error) {
	for {
		page, err := h.log.List(ctx, messaging.Filter{From: max(from, 1), Limit: readPage})
		if err != nil {
			return nil, err
		}
		for _, m := range page {
			if until > 0 && m.SequenceNumber > until {
				return nil, nil
			}
			if h.Partition(m.DeviceID) == p && ok(m) {
				return m, nil
			}
		}
		if len(page) < readPage {
			return nil, nil
		}
		from = page[len(page)-1].SequenceNumber + 1
	}
}

func (h *Hub) waitReady(ctx context.Context) error {
	select {
	case <-h.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-h.stop:
		return iothub.ErrClosed
	}
}

// follow keeps the partitions' newest sequence numbers: first from the whole
// log, then from its live feed, catching up through the log whenever the feed
// ends for lagging behind.
func (h *Hub) follow() {
	defer close(h.done)
	readyOnce := sync.Once{}
	var next int64 = 1
	for {
		sub := h.log.Subscribe(messaging.Filter{})
		n, err := h.catchUp(next)
		if err != nil {
			sub.Cancel()
			h.cfg.Logger.Error("event hub: reading the telemetry log", "error", err)
			select {
			case <-time.After(time.Second): // wall clock: a retry of a failed read, paced for the machine
				continue
			case <-h.stop:
				return
			}
		}
		next = n
		readyOnce.Do(func() { close(h.ready) })
	live:
		for {
			select {
			case m, ok := <-sub.C():
				if !ok {
					if !sub.Lagged() {
						<-h.stop // the log closed; wait for our own Close
						return
					}
					break live
				}
				if m.SequenceNumber >= next {
					h.observe([]*messaging.Message{m})
					next = m.SequenceNumber + 1
				}
			case <-h.stop:
				sub.Cancel()
				return
			}
		}
	}
}

// catchUp reads the log from sequence number from to its end, and returns the
// next sequence number to expect.
func (h *Hub) catchUp(from int64) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for {
		page, err := h.log.List(ctx, messaging.Filter{From: from, Limit: readPage})
		if err != nil {
			return from, err
		}
		if len(page) > 0 {
			h.observe(page)
			from = page[len(page)-1].SequenceNumber + 1
		}
		if len(page) < readPage {
			return from, nil
		}
	}
}

func (h *Hub) observe(msgs []*messaging.Message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	woken := make([]bool, len(h.parts))
	for _, m := range msgs {
		p := h.Partition(m.DeviceID)
		st := &h.parts[p]
		if m.SequenceNumber <= st.lastSeq {
			continue
		}
		st.lastSeq, st.lastTime = m.SequenceNumber, m.EnqueuedTime.UTC().Truncate(time.Millisecond)
		st.append(m)
		h.lastSeq = max(h.lastSeq, m.SequenceNumber)
		woken[p] = true
	}
	for p, w := range woken {
		if w {
			close(h.parts[p].changed)
			h.parts[p].changed = make(chan struct{})
		}
	}
}
