package amqp

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// MarshalBinary encodes the message's sections in the order of §3.2. Message sections drop
// trailing null fields, as every client does.
func (m *Message) MarshalBinary() ([]byte, error) { return m.appendBinary(nil) }

func (m *Message) appendBinary(b []byte) ([]byte, error) {
	var err error
	if h := m.Header; h != nil {
		b, _ = appendComposite(b, codeHeader, 5, func(b []byte) ([]byte, error) {
			b = appendBool(b, h.Durable)
			b = append(b, typeUbyte, h.Priority)
			if h.TTL > 0 {
				b = appendUint(b, uint32(h.TTL/time.Millisecond))
			} else {
				b = appendNull(b)
			}
			b = appendBool(b, h.FirstAcquirer)
			return appendUint(b, h.DeliveryCount), nil
		})
	}
	if m.DeliveryAnnotations != nil {
		if b, err = appendAnnotations(appendDescriptor(b, codeDeliveryAnnotations), m.DeliveryAnnotations); err != nil {
			return b, err
		}
	}
	if m.Annotations != nil {
		if b, err = appendAnnotations(appendDescriptor(b, codeMessageAnnotations), m.Annotations); err != nil {
			return b, err
		}
	}
	if m.Properties != nil {
		if b, err = appendProperties(b, m.Properties); err != nil {
			return b, err
		}
	}
	if m.ApplicationProperties != nil {
		if b, err = appendValue(appendDescriptor(b, codeApplicationProperties), m.ApplicationProperties); err != nil {
			return b, err
		}
	}
	switch {
	case len(m.Data) > 0:
		for _, d := range m.Data {
			if d == nil {
				d = []byte{}
			}
			b = appendVariable(appendDescriptor(b, codeData), typeVbin8, typeVbin32, d)
		}
	case m.Value != nil || m.HasValue:
		if b, err = appendValue(appendDescriptor(b, codeAMQPValue), m.Value); err != nil {
			return b, err
		}
	case len(m.Sequence) > 0:
		for _, s := range m.Sequence {
			if s == nil {
				s = []any{}
			}
			if b, err = appendValue(appendDescriptor(b, codeAMQPSequence), s); err != nil {
				return b, err
			}
		}
	}
	if m.Footer != nil {
		if b, err = appendAnnotations(appendDescriptor(b, codeFooter), m.Footer); err != nil {
			return b, err
		}
	}
	return b, nil
}

// appendProperties writes the properties section up to its last field that is set, without
// boxing each field.
func appendProperties(b []byte, p *Properties) ([]byte, error) {
	set := [13]bool{p.MessageID != nil, p.UserID != nil, p.To != "", p.Subject != "", p.ReplyTo != "",
		p.CorrelationID != nil, p.ContentType != "", p.ContentEncoding != "", !p.AbsoluteExpiryTime.IsZero(),
		!p.CreationTime.IsZero(), p.GroupID != "", p.GroupSequence != nil, p.ReplyToGroupID != ""}
	n := len(set)
	for n > 0 && !set[n-1] {
		n--
	}
	for _, s := range [...]string{p.To, p.Subject, p.ReplyTo, p.GroupID, p.ReplyToGroupID} {
		if !utf8.ValidString(s) {
			return b, fmt.Errorf("amqp: message property %q is not valid UTF-8", s)
		}
	}
	return appendComposite(b, codeProperties, n, func(b []byte) ([]byte, error) {
		var err error
		for i := 0; i < n; i++ {
			if !set[i] {
				b = appendNull(b)
				continue
			}
			switch i {
			case 0:
				b, err = appendValue(b, p.MessageID)
			case 1:
				b = appendVariable(b, typeVbin8, typeVbin32, p.UserID)
			case 2:
				b = appendString(b, p.To)
			case 3:
				b = appendString(b, p.Subject)
			case 4:
				b = appendString(b, p.ReplyTo)
			case 5:
				b, err = appendValue(b, p.CorrelationID)
			case 6:
				b = appendSymbol(b, p.ContentType)
			case 7:
				b = appendSymbol(b, p.ContentEncoding)
			case 8:
				b = appendTimestamp(b, p.AbsoluteExpiryTime)
			case 9:
				b = appendTimestamp(b, p.CreationTime)
			case 10:
				b = appendString(b, p.GroupID)
			case 11:
				b = appendUint(b, *p.GroupSequence)
			case 12:
				b = appendString(b, p.ReplyToGroupID)
			}
			if err != nil {
				return b, err
			}
		}
		return b, nil
	})
}

// UnmarshalBinary decodes an encoded message (the payload of a transfer).
func (m *Message) UnmarshalBinary(b []byte) error {
	*m = Message{}
	d := decoder{b: b}
	last := uint64(0)
	for len(d.b) > 0 {
		c, err := d.byte()
		if err != nil {
			return err
		}
		if c != typeDescribed {
			return errors.New("amqp: message section is not a described type")
		}
		desc, err := d.value()
		if err != nil {
			return err
		}
		code, ok := desc.(uint64)
		if !ok {
			return fmt.Errorf("amqp: message section descriptor %v", desc)
		}
		if code < last || (code == last && code != codeData && code != codeAMQPSequence) {
			return fmt.Errorf("amqp: message section 0x%x out of order", code)
		}
		last = code
		v, err := d.value()
		if err != nil {
			return err
		}
		if err := m.setSection(code, v); err != nil {
			return err
		}
	}
	return nil
}

func (m *Message) setSection(code uint64, v any) error {
	var err error
	switch code {
	case codeHeader:
		f, ok := v.([]any)
		if !ok {
			return badField("header", v)
		}
		l := fieldList(f)
		h := &Header{}
		if h.Durable, err = l.bool(0, "durable"); err != nil {
			return err
		}
		if h.Priority, err = l.uint8(1, "priority", 4); err != nil {
			return err
		}
		ttl, err := l.uint32(2, "ttl", 0)
		if err != nil {
			return err
		}
		h.TTL = time.Duration(ttl) * time.Millisecond
		if h.FirstAcquirer, err = l.bool(3, "first-acquirer"); err != nil {
			return err
		}
		if h.DeliveryCount, err = l.uint32(4, "delivery-count", 0); err != nil {
			return err
		}
		m.Header = h
	case codeDeliveryAnnotations:
		m.DeliveryAnnotations, err = toAnnotations("delivery-annotations", v)
	case codeMessageAnnotations:
		m.Annotations, err = toAnnotations("message-annotations", v)
	case codeFooter:
		m.Footer, err = toAnnotations("footer", v)
	case codeProperties:
		f, ok := v.([]any)
		if !ok {
			return badField("properties", v)
		}
		m.Properties, err = decodeProperties(fieldList(f))
	case codeApplicationProperties:
		switch mv := v.(type) {
		case nil:
		case map[any]any:
			m.ApplicationProperties = make(map[string]any, len(mv))
			for k, val := range mv {
				s, ok := k.(string)
				if !ok {
					return badField("application-properties key", k)
				}
				m.ApplicationProperties[s] = val
			}
		default:
			return badField("application-properties", v)
		}
	case codeData:
		bin, ok := v.([]byte)
		if !ok {
			return badField("data", v)
		}
		m.Data = append(m.Data, bin)
	case codeAMQPValue:
		m.Value, m.HasValue = v, true
	case codeAMQPSequence:
		l, ok := v.([]any)
		if !ok {
			return badField("amqp-sequence", v)
		}
		m.Sequence = append(m.Sequence, l)
	default:
		return fmt.Errorf("amqp: unknown message section 0x%x", code)
	}
	return err
}

func messageID(name string, v any) (any, error) {
	switch v.(type) {
	case nil, string, uint64, UUID, []byte:
		return v, nil
	}
	return nil, badField(name, v)
}

func decodeProperties(l fieldList) (*Properties, error) {
	p := &Properties{}
	var err error
	if p.MessageID, err = messageID("message-id", l.at(0)); err != nil {
		return nil, err
	}
	if p.UserID, err = l.binary(1, "user-id"); err != nil {
		return nil, err
	}
	if p.To, err = l.addressString(2, "to"); err != nil {
		return nil, err
	}
	if p.Subject, err = l.string(3, "subject"); err != nil {
		return nil, err
	}
	if p.ReplyTo, err = l.addressString(4, "reply-to"); err != nil {
		return nil, err
	}
	if p.CorrelationID, err = messageID("correlation-id", l.at(5)); err != nil {
		return nil, err
	}
	if p.ContentType, err = l.symbol(6, "content-type"); err != nil {
		return nil, err
	}
	if p.ContentEncoding, err = l.symbol(7, "content-encoding"); err != nil {
		return nil, err
	}
	if p.AbsoluteExpiryTime, err = l.timestamp(8, "absolute-expiry-time"); err != nil {
		return nil, err
	}
	if p.CreationTime, err = l.timestamp(9, "creation-time"); err != nil {
		return nil, err
	}
	if p.GroupID, err = l.string(10, "group-id"); err != nil {
		return nil, err
	}
	if p.GroupSequence, err = l.optUint32(11, "group-sequence"); err != nil {
		return nil, err
	}
	p.ReplyToGroupID, err = l.string(12, "reply-to-group-id")
	return p, err
}

func (f fieldList) timestamp(i int, name string) (time.Time, error) {
	switch v := f.at(i).(type) {
	case nil:
		return time.Time{}, nil
	case time.Time:
		return v, nil
	default:
		return time.Time{}, badField(name, v)
	}
}
