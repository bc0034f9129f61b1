package messaging

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

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
	Now           func() time.Time
	Logger        *slog.Logger
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

	mu      sync.Mutex
	pending map[string]bool // devices to push to
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
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return time.Now().UTC() }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &CloudToDevice{cfg: cfg, q: deps.Queue, link: deps.Link, kicks: make(chan struct{}, 1), stop: make(chan struct{}),
		done: make(chan struct{}), pending: map[string]bool{}}
	go c.worker()
	return c, nil
}

// Close stops the worker.
func (c *CloudToDevice) Close() {
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
	size := len(m.Body)
	for k, v := range m.Properties {
		size += len(k) + len(v)
	}
	if size > MaxC2DSize {
		return iothub.Errorf(iothub.MessageTooLarge, "Message size %d bytes exceeds the limit of %d bytes.", size, MaxC2DSize)
	}
	switch m.Ack {
	case "":
		m.Ack = AckNone
	case AckNone, AckPositive, AckNegative, AckFull:
	default:
		return iothub.Errorf(iothub.ArgumentInvalid, "Invalid value '%s' for iothub-ack: use none, positive, negative or full.", m.Ack)
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
	if err := c.q.Enqueue(ctx, m, c.cfg.QueueLimit); err != nil {
		return err
	}
	c.Kick(m.DeviceID)
	return nil
}

// Receive locks the device's next message for an HTTPS device (nil when
// there is none).
func (c *CloudToDevice) Receive(ctx context.Context, deviceID string) (*C2DMessage, error) {
	now := c.cfg.Now()
	msgs, err := c.q.Lock(ctx, deviceID, now, now.Add(c.cfg.LockDuration), 1)
	if err != nil || len(msgs) == 0 {
		return nil, err
	}
	return msgs[0], nil
}

// Complete settles a delivered message as done (an MQTT PUBACK, an HTTPS
// DELETE). Returns 412002 DeviceMessageLockLost when the lock is gone.
func (c *CloudToDevice) Complete(ctx context.Context, deviceID, lockToken string) error {
	m, err := c.q.Remove(ctx, deviceID, lockToken, c.cfg.Now())
	if err != nil {
		return err
	}
	c.feedback(ctx, FeedbackSuccess, m)
	return nil
}

// Reject dead-letters a delivered message (HTTPS DELETE ?reject).
func (c *CloudToDevice) Reject(ctx context.Context, deviceID, lockToken string) error {
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
	if !m.Ack.wants(status) {
		return
	}
	desc := map[string]string{
		FeedbackSuccess:               "Success",
		FeedbackExpired:               "Message Expired",
		FeedbackDeliveryCountExceeded: "Message delivery count exceeded",
		FeedbackRejected:              "Message rejected",
		FeedbackPurged:                "Message purged",
	}[status]
	fb := &Feedback{OriginalMessageID: m.MessageID, DeviceID: m.DeviceID, DeviceGenerationID: m.GenerationID,
		EnqueuedTime: c.cfg.Now(), StatusCode: status, Description: desc}
	if err := c.q.AddFeedback(ctx, []*Feedback{fb}); err != nil {
		c.cfg.Logger.Error("store C2D feedback", "device", m.DeviceID, "error", err)
	}
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
	sweep := time.NewTicker(c.cfg.SweepInterval)
	defer sweep.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-sweep.C:
			c.sweep()
		case <-c.kicks:
		}
		c.mu.Lock()
		devices := c.pending
		c.pending = map[string]bool{}
		c.mu.Unlock()
		for d := range devices {
			c.push(d)
		}
	}
}

func (c *CloudToDevice) push(deviceID string) {
	if !c.link.Ready(deviceID) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := c.cfg.Now()
	msgs, err := c.q.Lock(ctx, deviceID, now, now.Add(c.cfg.LockDuration), c.cfg.QueueLimit)
	if err != nil {
		c.cfg.Logger.Error("lock C2D messages", "device", deviceID, "error", err)
		return
	}
	for i, m := range msgs {
		if err := c.link.Deliver(m); err != nil {
			// The connection went away: give the rest back uncounted, they
			// were never sent.
			for _, r := range msgs[i:] {
				_, _, _ = c.q.Unlock(ctx, deviceID, r.LockToken, c.cfg.Now(), false, c.cfg.MaxDeliveryCount)
			}
			return
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
