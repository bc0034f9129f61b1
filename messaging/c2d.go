package messaging

import (
	"context"
	"github.com/iothub-emulator/iothub-emulator/clock"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/iothub-emulator/iothub-emulator/groupcommit"
	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// Link pushes C2D messages to devices over a live connection; a device
// transport (MQTT, later AMQP) implements it. HTTPS devices poll instead.
type Link interface {
	// Ready reports whether the device has a live connection that takes
	// cloud-to-device messages (on MQTT: subscribed to its C2D topic).
	Ready(deviceID string) bool
	// Deliver hands a locked message to the device's connection. It must
	// not wait on the device's socket (the one delivery worker serves every
	// device): queue the message, or fail. The transport reports the
	// device's acknowledgement with CloudToDevice.Complete and a connection
	// lost before it with CloudToDevice.Release (sent) or Return (never
	// sent).
	Deliver(m *C2DMessage) error
}

// C2DConfig configures the cloud-to-device queue; zero values take the
// hub's defaults.
type C2DConfig struct {
	QueueLimit       int
	DefaultTTL       time.Duration
	MaxTTL           time.Duration
	MaxDeliveryCount int
	LockDuration     time.Duration
	// SweepInterval is how often expiry and lapsed locks are checked; 0
	// means 1 s.
	SweepInterval time.Duration
	// Clock schedules the sweeps; nil means the wall clock. Now, when
	// nil, reads it.
	Clock  clock.Clock
	Now    func() time.Time
	Logger *slog.Logger
}

// CloudToDevice runs the hub's C2D rules over a Queue: queue depth, TTL,
// locks, delivery counts and feedback; it pushes messages to connected
// devices through a Link, in queue order.
type CloudToDevice struct {
	cfg   C2DConfig
	q     Queue
	link  Link
	kicks chan struct{}
	stop  chan struct{}
	done  chan struct{}

	sends     *groupcommit.Batcher[*sendReq]
	completes *groupcommit.Batcher[*completeReq]

	mu      sync.Mutex
	pending map[string]bool // devices to push to
	// fbAdded is closed, and replaced, when feedback records are stored.
	fbAdded chan struct{}
}

// C2DDeps are the C2D queue's collaborators, all required.
type C2DDeps struct {
	Queue Queue
	// Link pushes messages to connected devices.
	Link Link
}

// NewCloudToDevice starts the delivery worker; Close stops it.
func NewCloudToDevice(deps C2DDeps, cfg C2DConfig) (*CloudToDevice, error) {
	if err := iothub.CheckDeps("cloud-to-device", deps); err != nil {
		return nil, err
	}
	if cfg.QueueLimit <= 0 {
		cfg.QueueLimit = DefaultQueueLimit
	}
	if cfg.DefaultTTL <= 0 {
		cfg.DefaultTTL = DefaultTTL
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = MaxTTL
	}
	if cfg.MaxDeliveryCount <= 0 {
		cfg.MaxDeliveryCount = DefaultMaxDeliveryCount
	}
	if cfg.LockDuration <= 0 {
		cfg.LockDuration = DefaultLockDuration
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = time.Second
	}
	cfg.Clock = clock.OrReal(cfg.Clock)
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return cfg.Clock.Now().UTC() }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &CloudToDevice{cfg: cfg, q: deps.Queue, link: deps.Link, kicks: make(chan struct{}, 1), stop: make(chan struct{}),
		done: make(chan struct{}), pending: map[string]bool{}, fbAdded: make(chan struct{})}
	c.sends = groupcommit.New(c.commitSends, groupcommit.Config{Yields: 8})
	c.completes = groupcommit.New(c.commitCompletes, groupcommit.Config{Yields: 8})
	go c.worker()
	return c, nil
}

// closed returns iothub.ErrClosed once Close was called.
func (c *CloudToDevice) closed() error {
	select {
	case <-c.stop:
		return iothub.ErrClosed
	default:
		return nil
	}
}

// Close stores the sends and completions already queued, then stops the
// worker; later calls return iothub.ErrClosed. (Release and Return still
// hand locks back: connections close during a shutdown too.)
func (c *CloudToDevice) Close() {
	c.sends.Close()
	c.completes.Close()
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
}

// Send enqueues a message for a device and pushes it if the device is
// connected. It fills MessageID (a new UUID when empty), To, Ack, the
// enqueued and expiry times. An expiry at or before the Unix epoch counts as
// unset (Go's service SDK always sends one); a later one is capped at MaxTTL.
// Returns 404001 DeviceNotFound, 403004 DeviceMaximumQueueDepthExceeded,
// 413001 MessageTooLarge above 64 KB, 400004 ArgumentInvalid for a bad ack.
func (c *CloudToDevice) Send(ctx context.Context, m *C2DMessage) error {
	wait, err := c.Submit(ctx, m)
	if err != nil {
		return err
	}
	return wait()
}

// Submit is Send in two halves, for transports that pipeline: it checks m
// and queues it behind every message submitted before it, and wait returns
// its outcome. Messages from many callers share one transaction (group
// commit); one caller's messages are stored in submission order.
func (c *CloudToDevice) Submit(ctx context.Context, m *C2DMessage) (wait func() error, err error) {
	size := len(m.Body)
	for k, v := range m.Properties {
		size += len(k) + len(v)
	}
	if size > MaxC2DSize {
		return nil, iothub.Errorf(iothub.MessageTooLarge, "Message size %d bytes exceeds the limit of %d bytes.", size, MaxC2DSize)
	}
	switch m.Ack {
	case "":
		m.Ack = AckNone
	case AckNone, AckPositive, AckNegative, AckFull:
	default:
		return nil, iothub.Errorf(iothub.ArgumentInvalid, "Invalid value '%s' for iothub-ack: use none, positive, negative or full.", m.Ack)
	}
	if m.MessageID == "" {
		m.MessageID = uuid.NewString()
	}
	if m.To == "" {
		m.To = "/devices/" + m.DeviceID + "/messages/devicebound"
	}
	now := c.cfg.Now()
	m.EnqueuedTime = now
	if m.ExpiryTime.Unix() <= 0 {
		m.ExpiryTime = now.Add(c.cfg.DefaultTTL)
	} else if m.ExpiryTime.After(now.Add(c.cfg.MaxTTL)) {
		m.ExpiryTime = now.Add(c.cfg.MaxTTL)
	}
	m.DeliveryCount, m.LockToken, m.LockedUntil = 0, "", time.Time{}
	r := &sendReq{m: m, done: make(chan error, 1)}
	if err := c.sends.Add(ctx, r); err != nil {
		return nil, err
	}
	// Once queued, the outcome comes even if ctx ends: the writer owns r
	// until it answers, and a sender must not see a refusal for a stored
	// message.
	return func() error { return <-r.done }, nil
}

// sendReq is one message waiting for the group commit of Submit.
type sendReq struct {
	m    *C2DMessage
	done chan error
}

// commitSends stores a batch of sends in one transaction and answers each.
func (c *CloudToDevice) commitSends(batch []*sendReq) {
	msgs := make([]*C2DMessage, len(batch))
	for i, r := range batch {
		msgs[i] = r.m
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	errs, err := c.q.EnqueueMany(ctx, msgs, c.cfg.QueueLimit)
	cancel()
	if err != nil {
		c.cfg.Logger.Error("store C2D messages", "messages", len(msgs), "error", err)
	}
	for i, r := range batch {
		e := err
		if e == nil {
			e = errs[i]
		}
		if e == nil {
			c.Kick(r.m.DeviceID)
		}
		r.done <- e
	}
}

// Receive locks the device's next message for an HTTPS device (nil when
// there is none).
func (c *CloudToDevice) Receive(ctx context.Context, deviceID string) (*C2DMessage, error) {
	if err := c.closed(); err != nil {
		return nil, err
	}
	now := c.cfg.Now()
	msgs, err := c.q.Lock(ctx, deviceID, now, now.Add(c.cfg.LockDuration), 1)
	if err != nil || len(msgs) == 0 {
		return nil, err
	}
	return msgs[0], nil
}

// Complete settles a delivered message as done (an MQTT PUBACK, an HTTPS
// DELETE). Returns 412002 DeviceMessageLockLost when the lock is gone.
// Completions from many devices share one transaction (group commit).
func (c *CloudToDevice) Complete(ctx context.Context, deviceID, lockToken string) error {
	r := &completeReq{key: LockKey{DeviceID: deviceID, Token: lockToken}, done: make(chan error, 1)}
	if err := c.completes.Add(ctx, r); err != nil {
		return err
	}
	return <-r.done
}

// completeReq is one completion waiting for the group commit of Complete.
type completeReq struct {
	key  LockKey
	done chan error
}

// commitCompletes removes a batch of completed messages in one transaction,
// stores their Success feedback in another, and answers each.
func (c *CloudToDevice) commitCompletes(batch []*completeReq) {
	keys := make([]LockKey, len(batch))
	for i, r := range batch {
		keys[i] = r.key
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msgs, errs, err := c.q.RemoveMany(ctx, keys, c.cfg.Now())
	if err != nil {
		c.cfg.Logger.Error("complete C2D messages", "messages", len(keys), "error", err)
	}
	var done []*C2DMessage
	answers := make([]error, len(batch))
	for i := range batch {
		answers[i] = err
		if answers[i] == nil {
			answers[i] = errs[i]
		}
		if answers[i] == nil {
			done = append(done, msgs[i])
		}
	}
	// The Success feedback is stored before anyone hears of the completion,
	// so a sender that sees its message completed finds its feedback too.
	c.storeFeedback(ctx, FeedbackSuccess, done)
	for i, r := range batch {
		r.done <- answers[i]
	}
}

// Reject dead-letters a delivered message (HTTPS DELETE ?reject).
func (c *CloudToDevice) Reject(ctx context.Context, deviceID, lockToken string) error {
	if err := c.closed(); err != nil {
		return err
	}
	m, err := c.q.Remove(ctx, deviceID, lockToken, c.cfg.Now())
	if err != nil {
		return err
	}
	c.feedback(ctx, FeedbackRejected, m)
	return nil
}

// Abandon puts a delivered message back in the queue, counting a delivery
// (HTTPS POST …/abandon).
func (c *CloudToDevice) Abandon(ctx context.Context, deviceID, lockToken string) error {
	if err := c.closed(); err != nil {
		return err
	}
	return c.unlock(ctx, deviceID, lockToken)
}

// Release returns the messages a lost connection held; each counts as a
// delivery, as a lapsed lock would, but without waiting a minute.
func (c *CloudToDevice) Release(ctx context.Context, deviceID string, lockTokens []string) {
	for _, tok := range lockTokens {
		if err := c.unlock(ctx, deviceID, tok); err != nil && !iothub.Is(err, iothub.DeviceMessageLockLost) {
			c.cfg.Logger.Error("release a C2D lock", "device", deviceID, "error", err)
		}
	}
}

// Return gives back messages that were locked for a connection but never
// sent on it (its outbox closed first): they do not count as a delivery.
func (c *CloudToDevice) Return(ctx context.Context, deviceID string, lockTokens []string) {
	for _, tok := range lockTokens {
		if _, _, err := c.q.Unlock(ctx, deviceID, tok, c.cfg.Now(), false, c.cfg.MaxDeliveryCount); err != nil && !iothub.Is(err, iothub.DeviceMessageLockLost) {
			c.cfg.Logger.Error("return a C2D lock", "device", deviceID, "error", err)
		}
	}
	if len(lockTokens) > 0 {
		c.Kick(deviceID)
	}
}

func (c *CloudToDevice) unlock(ctx context.Context, deviceID, lockToken string) error {
	m, dead, err := c.q.Unlock(ctx, deviceID, lockToken, c.cfg.Now(), true, c.cfg.MaxDeliveryCount)
	if err != nil {
		return err
	}
	if dead {
		c.feedback(ctx, FeedbackDeliveryCountExceeded, m)
	} else {
		c.Kick(deviceID)
	}
	return nil
}

// Purge deletes a device's pending messages and returns how many
// (DELETE /devices/{id}/commands).
func (c *CloudToDevice) Purge(ctx context.Context, deviceID string) (int, error) {
	if err := c.closed(); err != nil {
		return 0, err
	}
	msgs, err := c.q.Purge(ctx, deviceID)
	if err != nil {
		return 0, err
	}
	for _, m := range msgs {
		c.feedback(ctx, FeedbackPurged, m)
	}
	return len(msgs), nil
}

// Pending lists a device's queue.
func (c *CloudToDevice) Pending(ctx context.Context, deviceID string) ([]*C2DMessage, error) {
	return c.q.Pending(ctx, deviceID)
}

// Feedback lists feedback records.
func (c *CloudToDevice) Feedback(ctx context.Context, f FeedbackFilter) ([]*Feedback, error) {
	if f.Limit <= 0 || f.Limit > 10000 {
		f.Limit = 1000
	}
	return c.q.Feedback(ctx, f)
}

func (c *CloudToDevice) feedback(ctx context.Context, status string, m *C2DMessage) {
	c.storeFeedback(ctx, status, []*C2DMessage{m})
}

// feedbackDescriptions are the hub's descriptions of the feedback codes.
var feedbackDescriptions = map[string]string{
	FeedbackSuccess:               "Success",
	FeedbackExpired:               "Message Expired",
	FeedbackDeliveryCountExceeded: "Message delivery count exceeded",
	FeedbackRejected:              "Message rejected",
	FeedbackPurged:                "Message purged",
}

// storeFeedback records status for the messages whose senders asked for it,
// in one transaction, and wakes the feedback receivers.
func (c *CloudToDevice) storeFeedback(ctx context.Context, status string, msgs []*C2DMessage) {
	var fb []*Feedback
	for _, m := range msgs {
		if m.Ack.wants(status) {
			fb = append(fb, &Feedback{OriginalMessageID: m.MessageID, DeviceID: m.DeviceID, DeviceGenerationID: m.GenerationID,
				EnqueuedTime: c.cfg.Now(), StatusCode: status, Description: feedbackDescriptions[status]})
		}
	}
	if len(fb) == 0 {
		return
	}
	if err := c.q.AddFeedback(ctx, fb); err != nil {
		c.cfg.Logger.Error("store C2D feedback", "records", len(fb), "error", err)
		return
	}
	c.signalFeedback()
}

func (c *CloudToDevice) signalFeedback() {
	c.mu.Lock()
	close(c.fbAdded)
	c.fbAdded = make(chan struct{})
	c.mu.Unlock()
}

// FeedbackBatch is what the service-bound feedback receiver gets at once:
// up to MaxFeedbackBatch records, locked under LockToken until settled.
type FeedbackBatch struct {
	LockToken string
	Records   []*Feedback
}

// FeedbackAdded returns a channel that is closed when feedback records are
// stored after the call; receivers wait on it instead of polling.
func (c *CloudToDevice) FeedbackAdded() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fbAdded
}

// NextFeedback locks the oldest unsettled feedback records for a receiver
// (nil when there are none). A batch not settled within the lock duration
// becomes available again, as on the hub.
func (c *CloudToDevice) NextFeedback(ctx context.Context) (*FeedbackBatch, error) {
	now := c.cfg.Now()
	token, fb, err := c.q.LockFeedback(ctx, now, now.Add(c.cfg.LockDuration), MaxFeedbackBatch)
	if err != nil || len(fb) == 0 {
		return nil, err
	}
	return &FeedbackBatch{LockToken: token, Records: fb}, nil
}

// CompleteFeedback removes a delivered batch from the queue (the receiver
// accepted it, or rejected it, which the hub treats as dead-lettering).
// Returns 412002 DeviceMessageLockLost when the lock is gone.
func (c *CloudToDevice) CompleteFeedback(ctx context.Context, lockToken string) error {
	return c.q.SettleFeedback(ctx, lockToken, c.cfg.Now(), true)
}

// AbandonFeedback makes a delivered batch's records available again at once.
func (c *CloudToDevice) AbandonFeedback(ctx context.Context, lockToken string) error {
	if err := c.q.SettleFeedback(ctx, lockToken, c.cfg.Now(), false); err != nil {
		return err
	}
	c.signalFeedback()
	return nil
}

// Kick asks the worker to push the device's deliverable messages, if it is
// connected and subscribed. Connects, subscriptions and sends call it.
func (c *CloudToDevice) Kick(deviceID string) {
	c.mu.Lock()
	c.pending[deviceID] = true
	c.mu.Unlock()
	select {
	case c.kicks <- struct{}{}:
	default:
	}
}

// worker pushes messages one device at a time, so each device's messages go
// out in queue order, and sweeps expiries and lapsed locks.
func (c *CloudToDevice) worker() {
	defer close(c.done)
	sweep := c.cfg.Clock.NewTicker(c.cfg.SweepInterval)
	defer sweep.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-sweep.C():
			c.sweep()
		case <-c.kicks:
		}
		c.mu.Lock()
		devices := c.pending
		c.pending = map[string]bool{}
		c.mu.Unlock()
		var ready []string
		for d := range devices {
			if c.link.Ready(d) {
				ready = append(ready, d)
			}
		}
		for len(ready) > 0 {
			n := min(len(ready), pushChunk)
			c.push(ready[:n])
			ready = ready[n:]
		}
	}
}

// pushChunk bounds the devices whose messages one transaction locks.
const pushChunk = 256

// push locks the deliverable messages of connected devices in one
// transaction and delivers each device's in queue order.
func (c *CloudToDevice) push(deviceIDs []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := c.cfg.Now()
	locked, err := c.q.LockMany(ctx, deviceIDs, now, now.Add(c.cfg.LockDuration), c.cfg.QueueLimit)
	if err != nil {
		c.cfg.Logger.Error("lock C2D messages", "devices", len(deviceIDs), "error", err)
		return
	}
	for deviceID, msgs := range locked {
		for i, m := range msgs {
			if err := c.link.Deliver(m); err != nil {
				// The connection went away: give the rest back uncounted,
				// they were never sent.
				for _, r := range msgs[i:] {
					_, _, _ = c.q.Unlock(ctx, deviceID, r.LockToken, c.cfg.Now(), false, c.cfg.MaxDeliveryCount)
				}
				break
			}
		}
	}
}

// Sweep applies expiry and lapsed locks now, as the worker does every
// SweepInterval (tests use it with their own clock).
func (c *CloudToDevice) Sweep() {
	c.sweep()
	c.mu.Lock()
	n := len(c.pending)
	c.mu.Unlock()
	if n > 0 {
		select {
		case c.kicks <- struct{}{}:
		default:
		}
	}
}

func (c *CloudToDevice) sweep() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	expired, dead, devices, err := c.q.Sweep(ctx, c.cfg.Now(), c.cfg.MaxDeliveryCount)
	if err != nil {
		c.cfg.Logger.Error("sweep C2D queues", "error", err)
		return
	}
	for _, m := range expired {
		c.feedback(ctx, FeedbackExpired, m)
	}
	for _, m := range dead {
		c.feedback(ctx, FeedbackDeliveryCountExceeded, m)
	}
	c.mu.Lock()
	for _, d := range devices {
		c.pending[d] = true
	}
	c.mu.Unlock()
}
