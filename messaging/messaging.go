// Package messaging holds the hub's two message paths: device-to-cloud
// telemetry, kept in a bounded durable log that service-side readers follow,
// and cloud-to-device messages, kept in a per-device queue with locks,
// delivery counts, expiry and feedback. It knows nothing of MQTT, HTTP, AMQP
// or SQL: transports turn their wire forms into Message and C2DMessage, and
// call Telemetry and CloudToDevice. An AMQP front (the Event Hub-compatible
// endpoint and service-side C2D send and feedback links) is meant to sit
// beside the REST one, calling the same methods.
package messaging

import (
	"context"
	"time"
)

// Hub limits (protocol digest §8).
const (
	// MaxTelemetrySize bounds a device-to-cloud message: body plus properties.
	MaxTelemetrySize = 256 * 1024
	// MaxListLimit bounds how many stored messages one List returns
	// (emulator-only: /_emulator/messages?limit=).
	MaxListLimit = 10000
	// MaxC2DSize bounds a cloud-to-device message.
	MaxC2DSize = 64 * 1024
	// DefaultQueueLimit is the number of C2D messages a device may have pending.
	DefaultQueueLimit = 50
	// DefaultTTL and MaxTTL bound a C2D message's life.
	DefaultTTL = time.Hour
	MaxTTL     = 48 * time.Hour
	// DefaultMaxDeliveryCount is how many deliveries a C2D message gets.
	DefaultMaxDeliveryCount = 10
	// DefaultLockDuration is how long a delivered C2D message stays invisible
	// waiting for completion; the hub's value, not configurable there. A
	// delivered feedback batch is locked as long.
	DefaultLockDuration = time.Minute
	// MaxFeedbackBatch is the most feedback records one batch holds.
	MaxFeedbackBatch = 64
)

// AuthMethodProperty is the iothub-connection-auth-method property the hub
// stamps on the message: a JSON document in a string, naming the sender's
// scope (device or module) and credential type.
func (m *Message) AuthMethodProperty() string {
	scope, typ := "device", "sas"
	if m.ModuleID != "" {
		scope = "module"
	}
	if m.AuthMethod == "x509" {
		typ = "x509Certificate"
	}
	return `{"scope":"` + scope + `","type":"` + typ + `","issuer":"iothub","acceptingIpFilterRule":null}`
}

// Message is a device-to-cloud message as the hub stores it. The named
// fields are the AMQP message properties the hub sets on the Event Hub side;
// System holds the other system properties by the hub's names
// (dt-subject, dt-dataschema, iothub-outputname, iothub-interface-id, …).
type Message struct {
	// SequenceNumber orders the log; it never goes backwards, also across
	// restarts and trims.
	SequenceNumber int64
	EnqueuedTime   time.Time
	// DeviceID and ModuleID are the sender's identity
	// (iothub-connection-device-id, iothub-connection-module-id).
	DeviceID, ModuleID string
	// AuthMethod is "sas" or "x509" (iothub-connection-auth-method).
	AuthMethod string
	// GenerationID is the sender's generation id
	// (iothub-connection-auth-generation-id).
	GenerationID string
	// Transport is how it arrived: "mqtt", "mqtt-ws", "https", "amqp". An
	// emulator extra, shown by the emulator's API.
	Transport string

	MessageID, CorrelationID, UserID, To string
	ContentType, ContentEncoding         string
	// CreationTime and ExpiryTime are zero when the device did not set them.
	CreationTime, ExpiryTime time.Time

	System     map[string]string
	Properties map[string]string
	Body       []byte
}

// Size is what the hub counts against the 256 KB limit: the body and the
// properties' names and values.
func (m *Message) Size() int {
	n := len(m.Body) + len(m.MessageID) + len(m.CorrelationID) + len(m.UserID) + len(m.To) + len(m.ContentType) + len(m.ContentEncoding)
	for k, v := range m.Properties {
		n += len(k) + len(v)
	}
	for k, v := range m.System {
		n += len(k) + len(v)
	}
	return n
}

// Filter selects messages of the log.
type Filter struct {
	// DeviceID, when set, keeps one device's messages (and its modules').
	DeviceID string
	// ModuleID, when set with DeviceID, keeps one module's.
	ModuleID string
	// From keeps messages whose sequence number is at least From. When zero,
	// List returns the most recent Limit messages.
	From int64
	// Limit caps the number returned (a default applies when zero).
	Limit int
}

// Match reports whether m passes the device and module filter.
func (f Filter) Match(m *Message) bool {
	if f.DeviceID != "" && m.DeviceID != f.DeviceID {
		return false
	}
	if f.ModuleID != "" && m.ModuleID != f.ModuleID {
		return false
	}
	return true
}

// Log is the durable telemetry log.
type Log interface {
	// Append stores msgs in one transaction, in order, assigning each its
	// SequenceNumber. Either all are stored or none.
	Append(ctx context.Context, msgs []*Message) error
	// List returns messages in ascending sequence order.
	List(ctx context.Context, f Filter) ([]*Message, error)
	// Trim keeps at most keep messages (0: no count bound) and drops those
	// enqueued before cutoff (zero: no age bound). It returns how many went.
	Trim(ctx context.Context, keep int, cutoff time.Time) (int64, error)
}

// Ack is what feedback a C2D sender asked for (iothub-ack).
type Ack string

const (
	AckNone     Ack = "none"
	AckPositive Ack = "positive"
	AckNegative Ack = "negative"
	AckFull     Ack = "full"
)

// wants reports whether a sender with this ack mode gets a record of status.
func (a Ack) wants(status string) bool {
	switch a {
	case AckFull:
		return true
	case AckPositive:
		return status == FeedbackSuccess
	case AckNegative:
		return status != FeedbackSuccess
	}
	return false
}

// C2DMessage is a cloud-to-device message in a device's queue.
type C2DMessage struct {
	SequenceNumber int64
	DeviceID       string
	// GenerationID is the device's generation id when the message was
	// enqueued, for feedback records.
	GenerationID string

	MessageID, To, CorrelationID, UserID string
	ContentType, ContentEncoding         string
	EnqueuedTime, ExpiryTime             time.Time
	Ack                                  Ack
	// DeliveryCount counts deliveries that ended without completion: lock
	// expiries, abandons and connections lost before the PUBACK.
	DeliveryCount int
	// LockToken and LockedUntil are set while the message is delivered and
	// not yet settled (the hub's Invisible state).
	LockToken   string
	LockedUntil time.Time

	Properties map[string]string
	Body       []byte
}

// Feedback status codes (digest §3.12).
const (
	FeedbackSuccess               = "Success"
	FeedbackExpired               = "Expired"
	FeedbackDeliveryCountExceeded = "DeliveryCountExceeded"
	FeedbackRejected              = "Rejected"
	FeedbackPurged                = "Purged"
)

// Feedback is one delivery outcome record for a sender that asked for it.
type Feedback struct {
	// Sequence orders feedback records (an emulator extra).
	Sequence           int64
	OriginalMessageID  string
	DeviceID           string
	DeviceGenerationID string
	EnqueuedTime       time.Time
	StatusCode         string
	Description        string
}

// LockKey names a delivered message by its device and lock token.
type LockKey struct{ DeviceID, Token string }

// FeedbackFilter selects feedback records.
type FeedbackFilter struct {
	DeviceID string
	From     int64
	Limit    int
}

// Queue is the durable store of C2D messages and feedback. Methods that take
// a lock token return 412002 DeviceMessageLockLost when the token does not
// hold a live lock on a message of that device.
type Queue interface {
	// EnqueueMany appends msgs, in order, to their devices' queues in one
	// transaction and fills each one's SequenceNumber and GenerationID.
	// errs[i] refuses msgs[i] alone: 404001 DeviceNotFound when its device
	// does not exist, 403004 DeviceMaximumQueueDepthExceeded when the device
	// already has limit messages pending (counting those stored before it in
	// msgs). err fails the whole batch: nothing is stored.
	EnqueueMany(ctx context.Context, msgs []*C2DMessage, limit int) (errs []error, err error)
	// Lock locks up to n of the device's deliverable messages (unlocked,
	// unexpired) in sequence order until until, each with a fresh token.
	Lock(ctx context.Context, deviceID string, now, until time.Time, n int) ([]*C2DMessage, error)
	// LockMany is Lock for several devices in one transaction; devices with
	// nothing deliverable are absent from the result.
	LockMany(ctx context.Context, deviceIDs []string, now, until time.Time, n int) (map[string][]*C2DMessage, error)
	// Remove deletes the message locked by token (complete, reject).
	Remove(ctx context.Context, deviceID, token string, now time.Time) (*C2DMessage, error)
	// RemoveMany is Remove for several locks in one transaction: msgs[i] is
	// what keys[i] removed, or errs[i] says why not (412002); err fails the
	// whole batch.
	RemoveMany(ctx context.Context, keys []LockKey, now time.Time) (msgs []*C2DMessage, errs []error, err error)
	// Unlock ends the lock held by token and, with count, counts a delivery;
	// a message whose count reaches maxDelivery is deleted and returned with
	// dead set.
	Unlock(ctx context.Context, deviceID, token string, now time.Time, count bool, maxDelivery int) (m *C2DMessage, dead bool, err error)
	// Purge deletes every pending message of the device.
	Purge(ctx context.Context, deviceID string) ([]*C2DMessage, error)
	// Pending lists the device's queue in order.
	Pending(ctx context.Context, deviceID string) ([]*C2DMessage, error)
	// Sweep deletes expired messages (returned in expired), ends lapsed locks
	// counting a delivery (dead-lettering as Unlock does) and returns the
	// devices that have deliverable messages again.
	Sweep(ctx context.Context, now time.Time, maxDelivery int) (expired, dead []*C2DMessage, devices []string, err error)
	// ReleaseAll ends every lock without counting; no connection survives a
	// restart.
	ReleaseAll(ctx context.Context) error
	// AddFeedback stores records, filling their Sequence.
	AddFeedback(ctx context.Context, fb []*Feedback) error
	// Feedback lists records in ascending order, settled or not.
	Feedback(ctx context.Context, f FeedbackFilter) ([]*Feedback, error)
	// LockFeedback locks up to n unsettled records that no live lock holds,
	// oldest first, under one fresh token until until. It returns no token
	// and no records when none is available.
	LockFeedback(ctx context.Context, now, until time.Time, n int) (token string, fb []*Feedback, err error)
	// SettleFeedback ends the lock held by token: with remove the records
	// leave the queue (Feedback still lists them), without they become
	// available again. Returns 412002 DeviceMessageLockLost when token holds
	// no live lock.
	SettleFeedback(ctx context.Context, token string, now time.Time, remove bool) error
}
