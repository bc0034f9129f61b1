package amqp

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Frame types (§2.3).
const (
	frameTypeAMQP = 0x00
	frameTypeSASL = 0x01
)

// minMaxFrameSize is the smallest max-frame-size a peer may announce (§2.7.1).
const minMaxFrameSize = 512

// performative is one of the frame bodies below.
type performative interface {
	marshal(b []byte) ([]byte, error)
}

type openFrame struct {
	ContainerID         string
	Hostname            string
	MaxFrameSize        uint32
	ChannelMax          uint16
	IdleTimeout         uint32 // milliseconds; 0 means none
	OutgoingLocales     []Symbol
	IncomingLocales     []Symbol
	OfferedCapabilities []Symbol
	DesiredCapabilities []Symbol
	Properties          Fields
}

type beginFrame struct {
	RemoteChannel       *uint16
	NextOutgoingID      uint32
	IncomingWindow      uint32
	OutgoingWindow      uint32
	HandleMax           uint32
	OfferedCapabilities []Symbol
	DesiredCapabilities []Symbol
	Properties          Fields
}

type attachFrame struct {
	Name                 string
	Handle               uint32
	Role                 Role
	SndSettleMode        *SenderSettleMode
	RcvSettleMode        *ReceiverSettleMode
	Source               *Source
	Target               *Target
	Unsettled            map[any]any
	IncompleteUnsettled  bool
	InitialDeliveryCount *uint32
	MaxMessageSize       uint64
	OfferedCapabilities  []Symbol
	DesiredCapabilities  []Symbol
	Properties           Fields
}

type flowFrame struct {
	NextIncomingID *uint32
	IncomingWindow uint32
	NextOutgoingID uint32
	OutgoingWindow uint32
	Handle         *uint32
	DeliveryCount  *uint32
	LinkCredit     *uint32
	Available      *uint32
	Drain          bool
	Echo           bool
	Properties     Fields
}

type transferFrame struct {
	Handle        uint32
	DeliveryID    *uint32
	DeliveryTag   []byte
	MessageFormat *uint32
	Settled       *bool // nil: not given (continuation frames)
	More          bool
	RcvSettleMode *ReceiverSettleMode
	State         Outcome
	Resume        bool
	Aborted       bool
	Batchable     bool
	Payload       []byte
}

type dispositionFrame struct {
	Role      Role
	First     uint32
	Last      *uint32
	Settled   bool
	State     Outcome
	Batchable bool
}

type detachFrame struct {
	Handle uint32
	Closed bool
	Error  *Error
}

type endFrame struct{ Error *Error }

type closeFrame struct{ Error *Error }

type saslMechanisms struct{ Mechanisms []Symbol }

type saslInit struct {
	Mechanism       Symbol
	InitialResponse []byte
	Hostname        string
}

type saslResponse struct{ Response []byte }

type saslOutcome struct {
	Code           uint8
	AdditionalData []byte
}

// SASL outcome codes (§5.3.3.6).
const (
	saslOK      = 0
	saslAuth    = 1
	saslSys     = 2
	saslSysPerm = 3
	saslSysTemp = 4
)

func appendOptUint(b []byte, v *uint32) []byte {
	if v == nil {
		return appendNull(b)
	}
	return appendUint(b, *v)
}

func appendOptBinary(b []byte, v []byte) []byte {
	if v == nil {
		return appendNull(b)
	}
	return appendVariable(b, typeVbin8, typeVbin32, v)
}

func (f *openFrame) marshal(b []byte) ([]byte, error) {
	return appendComposite(b, codeOpen, 10, func(b []byte) ([]byte, error) {
		b = appendString(b, f.ContainerID)
		b = appendOptString(b, f.Hostname)
		b = appendUint(b, f.MaxFrameSize)
		b = binary.BigEndian.AppendUint16(append(b, typeUshort), f.ChannelMax)
		b = appendUint(b, f.IdleTimeout)
		b = appendSymbolArray(b, f.OutgoingLocales)
		b = appendSymbolArray(b, f.IncomingLocales)
		b = appendSymbolArray(b, f.OfferedCapabilities)
		b = appendSymbolArray(b, f.DesiredCapabilities)
		return appendFields(b, f.Properties)
	})
}

func (f *beginFrame) marshal(b []byte) ([]byte, error) {
	return appendComposite(b, codeBegin, 8, func(b []byte) ([]byte, error) {
		if f.RemoteChannel == nil {
			b = appendNull(b)
		} else {
			b = binary.BigEndian.AppendUint16(append(b, typeUshort), *f.RemoteChannel)
		}
		b = appendUint(b, f.NextOutgoingID)
		b = appendUint(b, f.IncomingWindow)
		b = appendUint(b, f.OutgoingWindow)
		b = appendUint(b, f.HandleMax)
		b = appendSymbolArray(b, f.OfferedCapabilities)
		b = appendSymbolArray(b, f.DesiredCapabilities)
		return appendFields(b, f.Properties)
	})
}

func (f *attachFrame) marshal(b []byte) ([]byte, error) {
	return appendComposite(b, codeAttach, 14, func(b []byte) ([]byte, error) {
		var err error
		b = appendString(b, f.Name)
		b = appendUint(b, f.Handle)
		b = appendBool(b, bool(f.Role))
		if f.SndSettleMode == nil {
			b = appendNull(b)
		} else {
			b = append(b, typeUbyte, byte(*f.SndSettleMode))
		}
		if f.RcvSettleMode == nil {
			b = appendNull(b)
		} else {
			b = append(b, typeUbyte, byte(*f.RcvSettleMode))
		}
		if b, err = appendSource(b, f.Source); err != nil {
			return b, err
		}
		if b, err = appendTarget(b, f.Target); err != nil {
			return b, err
		}
		if b, err = appendAnyMap(b, f.Unsettled); err != nil {
			return b, err
		}
		b = appendBool(b, f.IncompleteUnsettled)
		b = appendOptUint(b, f.InitialDeliveryCount)
		if f.MaxMessageSize == 0 {
			b = appendNull(b)
		} else {
			b = appendUlong(b, f.MaxMessageSize)
		}
		b = appendSymbolArray(b, f.OfferedCapabilities)
		b = appendSymbolArray(b, f.DesiredCapabilities)
		return appendFields(b, f.Properties)
	})
}

func (f *flowFrame) marshal(b []byte) ([]byte, error) {
	return appendComposite(b, codeFlow, 11, func(b []byte) ([]byte, error) {
		b = appendOptUint(b, f.NextIncomingID)
		b = appendUint(b, f.IncomingWindow)
		b = appendUint(b, f.NextOutgoingID)
		b = appendUint(b, f.OutgoingWindow)
		b = appendOptUint(b, f.Handle)
		b = appendOptUint(b, f.DeliveryCount)
		b = appendOptUint(b, f.LinkCredit)
		b = appendOptUint(b, f.Available)
		b = appendBool(b, f.Drain)
		b = appendBool(b, f.Echo)
		return appendFields(b, f.Properties)
	})
}

func (f *transferFrame) marshal(b []byte) ([]byte, error) {
	b, err := appendComposite(b, codeTransfer, 11, func(b []byte) ([]byte, error) {
		var err error
		b = appendUint(b, f.Handle)
		b = appendOptUint(b, f.DeliveryID)
		b = appendOptBinary(b, f.DeliveryTag)
		b = appendOptUint(b, f.MessageFormat)
		if f.Settled == nil {
			b = appendNull(b)
		} else {
			b = appendBool(b, *f.Settled)
		}
		b = appendBool(b, f.More)
		if f.RcvSettleMode == nil {
			b = appendNull(b)
		} else {
			b = append(b, typeUbyte, byte(*f.RcvSettleMode))
		}
		if b, err = appendOutcome(b, f.State); err != nil {
			return b, err
		}
		b = appendBool(b, f.Resume)
		b = appendBool(b, f.Aborted)
		return appendBool(b, f.Batchable), nil
	})
	return append(b, f.Payload...), err
}

func (f *dispositionFrame) marshal(b []byte) ([]byte, error) {
	return appendComposite(b, codeDisposition, 6, func(b []byte) ([]byte, error) {
		var err error
		b = appendBool(b, bool(f.Role))
		b = appendUint(b, f.First)
		b = appendOptUint(b, f.Last)
		b = appendBool(b, f.Settled)
		if b, err = appendOutcome(b, f.State); err != nil {
			return b, err
		}
		return appendBool(b, f.Batchable), nil
	})
}

func (f *detachFrame) marshal(b []byte) ([]byte, error) {
	return appendComposite(b, codeDetach, 3, func(b []byte) ([]byte, error) {
		b = appendUint(b, f.Handle)
		b = appendBool(b, f.Closed)
		return appendError(b, f.Error)
	})
}

func (f *endFrame) marshal(b []byte) ([]byte, error) {
	return appendComposite(b, codeEnd, 1, func(b []byte) ([]byte, error) { return appendError(b, f.Error) })
}

func (f *closeFrame) marshal(b []byte) ([]byte, error) {
	return appendComposite(b, codeClose, 1, func(b []byte) ([]byte, error) { return appendError(b, f.Error) })
}

func (f *saslMechanisms) marshal(b []byte) ([]byte, error) {
	return appendComposite(b, codeSASLMechanisms, 1, func(b []byte) ([]byte, error) {
		return appendSymbolArray(b, f.Mechanisms), nil
	})
}

func (f *saslInit) marshal(b []byte) ([]byte, error) {
	return appendComposite(b, codeSASLInit, 3, func(b []byte) ([]byte, error) {
		b = appendSymbol(b, f.Mechanism)
		b = appendOptBinary(b, f.InitialResponse)
		return appendOptString(b, f.Hostname), nil
	})
}

func (f *saslResponse) marshal(b []byte) ([]byte, error) {
	return appendComposite(b, codeSASLResponse, 1, func(b []byte) ([]byte, error) {
		return appendOptBinary(b, f.Response), nil
	})
}

func (f *saslOutcome) marshal(b []byte) ([]byte, error) {
	return appendComposite(b, codeSASLOutcome, 2, func(b []byte) ([]byte, error) {
		b = append(b, typeUbyte, f.Code)
		return appendOptBinary(b, f.AdditionalData), nil
	})
}

// appendFrame writes a whole frame: header, performative and (for transfers) payload.
func appendFrame(b []byte, frameType byte, channel uint16, p performative) ([]byte, error) {
	start := len(b)
	b = append(b, 0, 0, 0, 0, 2, frameType, byte(channel>>8), byte(channel))
	b, err := p.marshal(b)
	if err != nil {
		return b[:start], err
	}
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b, nil
}

// frameHeader is the fixed 8-byte part of a frame.
type frameHeader struct {
	Size    uint32
	DataOff uint8
	Type    uint8
	Channel uint16
}

func parseFrameHeader(h []byte) (frameHeader, error) {
	fh := frameHeader{
		Size:    binary.BigEndian.Uint32(h),
		DataOff: h[4],
		Type:    h[5],
		Channel: binary.BigEndian.Uint16(h[6:]),
	}
	if fh.Size < 8 || fh.DataOff < 2 || uint32(fh.DataOff)*4 > fh.Size {
		return fh, &Error{Condition: ErrCondFramingError, Description: fmt.Sprintf("bad frame header (size %d, doff %d)", fh.Size, fh.DataOff)}
	}
	return fh, nil
}

// parseFrameBody decodes the performative of a frame body (the bytes after the extended
// header); an empty body is a heartbeat and returns nil.
func parseFrameBody(frameType byte, body []byte) (performative, error) {
	if len(body) == 0 {
		return nil, nil
	}
	d := decoder{b: body}
	c, err := d.byte()
	if err != nil {
		return nil, err
	}
	if c != typeDescribed {
		return nil, errors.New("amqp: frame body is not a described type")
	}
	descV, err := d.value()
	if err != nil {
		return nil, err
	}
	code, ok := descV.(uint64)
	if !ok {
		return nil, fmt.Errorf("amqp: performative descriptor %v is not a code", descV)
	}
	lv, err := d.value()
	if err != nil {
		return nil, err
	}
	list, ok := lv.([]any)
	if !ok {
		return nil, fmt.Errorf("amqp: performative 0x%x is not a list", code)
	}
	f := fieldList(list)
	if frameType == frameTypeSASL {
		switch code {
		case codeSASLInit:
			var p saslInit
			if p.Mechanism, err = f.symbol(0, "mechanism"); err != nil {
				return nil, err
			}
			if p.InitialResponse, err = f.binary(1, "initial-response"); err != nil {
				return nil, err
			}
			p.Hostname, err = f.string(2, "hostname")
			return &p, err
		case codeSASLResponse:
			var p saslResponse
			p.Response, err = f.binary(0, "response")
			return &p, err
		case codeSASLMechanisms:
			var p saslMechanisms
			p.Mechanisms, err = f.symbols(0, "sasl-server-mechanisms")
			return &p, err
		case codeSASLOutcome:
			var p saslOutcome
			if p.Code, err = f.uint8(0, "code", 0); err != nil {
				return nil, err
			}
			p.AdditionalData, err = f.binary(1, "additional-data")
			return &p, err
		}
		return nil, fmt.Errorf("amqp: unexpected SASL frame 0x%x", code)
	}
	switch code {
	case codeOpen:
		return parseOpen(f)
	case codeBegin:
		return parseBegin(f)
	case codeAttach:
		return parseAttach(f)
	case codeFlow:
		return parseFlow(f)
	case codeTransfer:
		p, err := parseTransfer(f)
		if err != nil {
			return nil, err
		}
		p.Payload = d.b
		return p, nil
	case codeDisposition:
		return parseDisposition(f)
	case codeDetach:
		var p detachFrame
		if p.Handle, err = f.uint32(0, "handle", 0); err != nil {
			return nil, err
		}
		if p.Closed, err = f.bool(1, "closed"); err != nil {
			return nil, err
		}
		p.Error, err = f.error(2, "error")
		return &p, err
	case codeEnd:
		e, err := f.error(0, "error")
		return &endFrame{Error: e}, err
	case codeClose:
		e, err := f.error(0, "error")
		return &closeFrame{Error: e}, err
	}
	return nil, fmt.Errorf("amqp: unknown performative 0x%x", code)
}

func parseOpen(f fieldList) (*openFrame, error) {
	var p openFrame
	var err error
	if p.ContainerID, err = f.string(0, "container-id"); err != nil {
		return nil, err
	}
	if p.Hostname, err = f.string(1, "hostname"); err != nil {
		return nil, err
	}
	if p.MaxFrameSize, err = f.uint32(2, "max-frame-size", 0xffffffff); err != nil {
		return nil, err
	}
	if p.ChannelMax, err = f.uint16(3, "channel-max", 0xffff); err != nil {
		return nil, err
	}
	if p.IdleTimeout, err = f.uint32(4, "idle-time-out", 0); err != nil {
		return nil, err
	}
	if p.OutgoingLocales, err = f.symbols(5, "outgoing-locales"); err != nil {
		return nil, err
	}
	if p.IncomingLocales, err = f.symbols(6, "incoming-locales"); err != nil {
		return nil, err
	}
	if p.OfferedCapabilities, err = f.symbols(7, "offered-capabilities"); err != nil {
		return nil, err
	}
	if p.DesiredCapabilities, err = f.symbols(8, "desired-capabilities"); err != nil {
		return nil, err
	}
	p.Properties, err = f.fields(9, "properties")
	return &p, err
}

func parseBegin(f fieldList) (*beginFrame, error) {
	var p beginFrame
	var err error
	if f.at(0) != nil {
		rc, err := f.uint16(0, "remote-channel", 0)
		if err != nil {
			return nil, err
		}
		p.RemoteChannel = &rc
	}
	if p.NextOutgoingID, err = f.uint32(1, "next-outgoing-id", 0); err != nil {
		return nil, err
	}
	if p.IncomingWindow, err = f.uint32(2, "incoming-window", 0); err != nil {
		return nil, err
	}
	if p.OutgoingWindow, err = f.uint32(3, "outgoing-window", 0); err != nil {
		return nil, err
	}
	if p.HandleMax, err = f.uint32(4, "handle-max", 0xffffffff); err != nil {
		return nil, err
	}
	if p.OfferedCapabilities, err = f.symbols(5, "offered-capabilities"); err != nil {
		return nil, err
	}
	if p.DesiredCapabilities, err = f.symbols(6, "desired-capabilities"); err != nil {
		return nil, err
	}
	p.Properties, err = f.fields(7, "properties")
	return &p, err
}

func parseAttach(f fieldList) (*attachFrame, error) {
	var p attachFrame
	var err error
	if p.Name, err = f.string(0, "name"); err != nil {
		return nil, err
	}
	if p.Handle, err = f.uint32(1, "handle", 0); err != nil {
		return nil, err
	}
	role, err := f.bool(2, "role")
	if err != nil {
		return nil, err
	}
	p.Role = Role(role)
	if f.at(3) != nil {
		m, err := f.uint8(3, "snd-settle-mode", 0)
		if err != nil || m > 2 {
			return nil, badField("snd-settle-mode", f.at(3))
		}
		mode := SenderSettleMode(m)
		p.SndSettleMode = &mode
	}
	if f.at(4) != nil {
		m, err := f.uint8(4, "rcv-settle-mode", 0)
		if err != nil || m > 1 {
			return nil, badField("rcv-settle-mode", f.at(4))
		}
		mode := ReceiverSettleMode(m)
		p.RcvSettleMode = &mode
	}
	switch v := f.at(5).(type) {
	case nil:
	case *Source:
		p.Source = v
	default:
		return nil, badField("source", v)
	}
	switch v := f.at(6).(type) {
	case nil:
	case *Target:
		p.Target = v
	default:
		return nil, badField("target", v)
	}
	switch v := f.at(7).(type) {
	case nil:
	case map[any]any:
		p.Unsettled = v
	default:
		return nil, badField("unsettled", v)
	}
	if p.IncompleteUnsettled, err = f.bool(8, "incomplete-unsettled"); err != nil {
		return nil, err
	}
	if p.InitialDeliveryCount, err = f.optUint32(9, "initial-delivery-count"); err != nil {
		return nil, err
	}
	if p.MaxMessageSize, err = f.uint64(10, "max-message-size", 0); err != nil {
		return nil, err
	}
	if p.OfferedCapabilities, err = f.symbols(11, "offered-capabilities"); err != nil {
		return nil, err
	}
	if p.DesiredCapabilities, err = f.symbols(12, "desired-capabilities"); err != nil {
		return nil, err
	}
	p.Properties, err = f.fields(13, "properties")
	return &p, err
}

func parseFlow(f fieldList) (*flowFrame, error) {
	var p flowFrame
	var err error
	if p.NextIncomingID, err = f.optUint32(0, "next-incoming-id"); err != nil {
		return nil, err
	}
	if p.IncomingWindow, err = f.uint32(1, "incoming-window", 0); err != nil {
		return nil, err
	}
	if p.NextOutgoingID, err = f.uint32(2, "next-outgoing-id", 0); err != nil {
		return nil, err
	}
	if p.OutgoingWindow, err = f.uint32(3, "outgoing-window", 0); err != nil {
		return nil, err
	}
	if p.Handle, err = f.optUint32(4, "handle"); err != nil {
		return nil, err
	}
	if p.DeliveryCount, err = f.optUint32(5, "delivery-count"); err != nil {
		return nil, err
	}
	if p.LinkCredit, err = f.optUint32(6, "link-credit"); err != nil {
		return nil, err
	}
	if p.Available, err = f.optUint32(7, "available"); err != nil {
		return nil, err
	}
	if p.Drain, err = f.bool(8, "drain"); err != nil {
		return nil, err
	}
	if p.Echo, err = f.bool(9, "echo"); err != nil {
		return nil, err
	}
	p.Properties, err = f.fields(10, "properties")
	return &p, err
}

func parseTransfer(f fieldList) (*transferFrame, error) {
	var p transferFrame
	var err error
	if p.Handle, err = f.uint32(0, "handle", 0); err != nil {
		return nil, err
	}
	if p.DeliveryID, err = f.optUint32(1, "delivery-id"); err != nil {
		return nil, err
	}
	if p.DeliveryTag, err = f.binary(2, "delivery-tag"); err != nil {
		return nil, err
	}
	if p.MessageFormat, err = f.optUint32(3, "message-format"); err != nil {
		return nil, err
	}
	if f.at(4) != nil {
		s, err := f.bool(4, "settled")
		if err != nil {
			return nil, err
		}
		p.Settled = &s
	}
	if p.More, err = f.bool(5, "more"); err != nil {
		return nil, err
	}
	if f.at(6) != nil {
		m, err := f.uint8(6, "rcv-settle-mode", 0)
		if err != nil || m > 1 {
			return nil, badField("rcv-settle-mode", f.at(6))
		}
		mode := ReceiverSettleMode(m)
		p.RcvSettleMode = &mode
	}
	if p.State, err = f.state(7, "state"); err != nil {
		return nil, err
	}
	if p.Resume, err = f.bool(8, "resume"); err != nil {
		return nil, err
	}
	if p.Aborted, err = f.bool(9, "aborted"); err != nil {
		return nil, err
	}
	p.Batchable, err = f.bool(10, "batchable")
	return &p, err
}

func parseDisposition(f fieldList) (*dispositionFrame, error) {
	var p dispositionFrame
	role, err := f.bool(0, "role")
	if err != nil {
		return nil, err
	}
	p.Role = Role(role)
	if p.First, err = f.uint32(1, "first", 0); err != nil {
		return nil, err
	}
	if p.Last, err = f.optUint32(2, "last"); err != nil {
		return nil, err
	}
	if p.Settled, err = f.bool(3, "settled"); err != nil {
		return nil, err
	}
	if p.State, err = f.state(4, "state"); err != nil {
		return nil, err
	}
	p.Batchable, err = f.bool(5, "batchable")
	return &p, err
}
