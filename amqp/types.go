package amqp

import (
	"encoding/hex"
	"fmt"
	"time"
)

// Symbol is the AMQP symbol type: an ASCII name such as a condition or an annotation key.
type Symbol string

// UUID is the AMQP uuid type (RFC 4122 byte order).
type UUID [16]byte

// String formats the UUID in its canonical 8-4-4-4-12 form.
func (u UUID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

// Char is the AMQP char type: one UTF-32 code point.
type Char rune

// Decimal32, Decimal64 and Decimal128 carry IEEE 754 decimal values as their raw bytes; nothing in
// the hub interprets them, they only have to survive a round trip.
type (
	Decimal32  [4]byte
	Decimal64  [8]byte
	Decimal128 [16]byte
)

// Described is a value with a descriptor (a Symbol or a uint64 code) the codec does not map to a
// type of its own, e.g. a selector filter.
type Described struct {
	Descriptor any
	Value      any
}

// Annotations are message annotations, delivery annotations and the footer: keys are Symbols (a
// string key is encoded as a symbol) or uint64.
type Annotations map[any]any

// Fields is the AMQP "fields" type: a map with symbol keys (link and connection properties,
// error info).
type Fields map[Symbol]any

// Role is a link end's role. The engine is always the server end, so a link whose Role is
// RoleReceiver carries messages from the peer to the engine (use Link.Receive), and one whose Role
// is RoleSender carries messages to the peer (use Link.Send).
type Role bool

const (
	RoleSender   Role = false
	RoleReceiver Role = true
)

func (r Role) String() string {
	if r == RoleReceiver {
		return "receiver"
	}
	return "sender"
}

// SenderSettleMode is a link's snd-settle-mode.
type SenderSettleMode uint8

const (
	SenderSettleUnsettled SenderSettleMode = 0
	SenderSettleSettled   SenderSettleMode = 1
	SenderSettleMixed     SenderSettleMode = 2
)

// ReceiverSettleMode is a link's rcv-settle-mode.
type ReceiverSettleMode uint8

const (
	ReceiverSettleFirst  ReceiverSettleMode = 0
	ReceiverSettleSecond ReceiverSettleMode = 1
)

// Condition is an AMQP error condition.
type Condition = Symbol

// The error conditions of the AMQP 1.0 specification (§2.8.15 to §2.8.18).
const (
	ErrCondInternalError         Condition = "amqp:internal-error"
	ErrCondNotFound              Condition = "amqp:not-found"
	ErrCondUnauthorizedAccess    Condition = "amqp:unauthorized-access"
	ErrCondDecodeError           Condition = "amqp:decode-error"
	ErrCondResourceLimitExceeded Condition = "amqp:resource-limit-exceeded"
	ErrCondNotAllowed            Condition = "amqp:not-allowed"
	ErrCondInvalidField          Condition = "amqp:invalid-field"
	ErrCondNotImplemented        Condition = "amqp:not-implemented"
	ErrCondResourceLocked        Condition = "amqp:resource-locked"
	ErrCondPreconditionFailed    Condition = "amqp:precondition-failed"
	ErrCondResourceDeleted       Condition = "amqp:resource-deleted"
	ErrCondIllegalState          Condition = "amqp:illegal-state"
	ErrCondFrameSizeTooSmall     Condition = "amqp:frame-size-too-small"

	ErrCondConnectionForced   Condition = "amqp:connection:forced"
	ErrCondFramingError       Condition = "amqp:connection:framing-error"
	ErrCondConnectionRedirect Condition = "amqp:connection:redirect"

	ErrCondWindowViolation  Condition = "amqp:session:window-violation"
	ErrCondErrantLink       Condition = "amqp:session:errant-link"
	ErrCondHandleInUse      Condition = "amqp:session:handle-in-use"
	ErrCondUnattachedHandle Condition = "amqp:session:unattached-handle"

	ErrCondDetachForced          Condition = "amqp:link:detach-forced"
	ErrCondTransferLimitExceeded Condition = "amqp:link:transfer-limit-exceeded"
	ErrCondMessageSizeExceeded   Condition = "amqp:link:message-size-exceeded"
	ErrCondLinkRedirect          Condition = "amqp:link:redirect"
	ErrCondStolen                Condition = "amqp:link:stolen"
)

// Error is an AMQP error (§2.8.14): it travels in detach, end, close and the rejected outcome.
type Error struct {
	Condition   Condition
	Description string
	Info        Fields
}

func (e *Error) Error() string {
	if e.Description == "" {
		return string(e.Condition)
	}
	return fmt.Sprintf("%s: %s", e.Condition, e.Description)
}

// Errorf returns an *Error with the condition and a formatted description.
func Errorf(cond Condition, format string, args ...any) *Error {
	return &Error{Condition: cond, Description: fmt.Sprintf(format, args...)}
}

// Outcome is a terminal delivery state: *Accepted, *Rejected, *Released or *Modified.
type Outcome interface {
	outcomeCode() uint64
}

// Accepted is the accepted outcome.
type Accepted struct{}

// Rejected is the rejected outcome, with the reason.
type Rejected struct{ Error *Error }

// Released is the released outcome: the message was not processed and may be redelivered.
type Released struct{}

// Modified is the modified outcome.
type Modified struct {
	DeliveryFailed     bool
	UndeliverableHere  bool
	MessageAnnotations Annotations
}

func (*Accepted) outcomeCode() uint64 { return codeAccepted }
func (*Rejected) outcomeCode() uint64 { return codeRejected }
func (*Released) outcomeCode() uint64 { return codeReleased }
func (*Modified) outcomeCode() uint64 { return codeModified }

// received is the non-terminal received delivery state; it is decoded so that a peer sending it
// is not a decode error, and otherwise ignored.
type received struct {
	SectionNumber uint32
	SectionOffset uint64
}

func (*received) outcomeCode() uint64 { return codeReceived }

// Source is a link source (§3.5.3). Every field is encoded, as some clients require.
type Source struct {
	Address               string // empty: null
	Durable               uint32
	ExpiryPolicy          Symbol
	Timeout               uint32
	Dynamic               bool
	DynamicNodeProperties Fields
	DistributionMode      Symbol
	Filter                map[Symbol]any // values are usually *Described
	DefaultOutcome        Outcome
	Outcomes              []Symbol
	Capabilities          []Symbol
}

// Target is a link target (§3.5.4). Every field is encoded, as some clients require.
type Target struct {
	Address               string // empty: null
	Durable               uint32
	ExpiryPolicy          Symbol
	Timeout               uint32
	Dynamic               bool
	DynamicNodeProperties Fields
	Capabilities          []Symbol
}

// Header is the message header section.
type Header struct {
	Durable       bool
	Priority      uint8 // 4 when absent
	TTL           time.Duration
	FirstAcquirer bool
	DeliveryCount uint32
}

// Properties is the message properties section. Zero values are absent on the wire.
type Properties struct {
	MessageID          any // string, uint64, UUID or []byte
	UserID             []byte
	To                 string
	Subject            string
	ReplyTo            string
	CorrelationID      any // string, uint64, UUID or []byte
	ContentType        Symbol
	ContentEncoding    Symbol
	AbsoluteExpiryTime time.Time
	CreationTime       time.Time
	GroupID            string
	GroupSequence      *uint32
	ReplyToGroupID     string
}

// Message is an AMQP message: the sections of §3.2. Its body is exactly one of Data (one or more
// data sections), Value (amqp-value; set HasValue for a null value) or Sequence.
type Message struct {
	Header                *Header
	DeliveryAnnotations   Annotations
	Annotations           Annotations
	Properties            *Properties
	ApplicationProperties map[string]any
	Data                  [][]byte
	Value                 any
	HasValue              bool
	Sequence              [][]any
	Footer                Annotations

	// Format is the transfer's message-format; 0 for a standard message. Azure's batched
	// sends use 0x80013700 (the body's data sections each hold an encoded message).
	Format uint32
}

// GetData returns the first data section, or nil.
func (m *Message) GetData() []byte {
	if len(m.Data) == 0 {
		return nil
	}
	return m.Data[0]
}

// BatchMessageFormat is the message-format Azure clients use for a batch: each data section of
// the body is an encoded message (see Message.Batch).
const BatchMessageFormat uint32 = 0x80013700

// Batch decodes the messages of a batched transfer (Format == BatchMessageFormat): one per data
// section.
func (m *Message) Batch() ([]*Message, error) {
	out := make([]*Message, 0, len(m.Data))
	for _, d := range m.Data {
		inner := new(Message)
		if err := inner.UnmarshalBinary(d); err != nil {
			return nil, err
		}
		out = append(out, inner)
	}
	return out, nil
}
