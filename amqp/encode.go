package amqp

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// Type constructors (AMQP 1.0 §1.6).
const (
	typeDescribed  = 0x00
	typeNull       = 0x40
	typeBool       = 0x56
	typeTrue       = 0x41
	typeFalse      = 0x42
	typeUbyte      = 0x50
	typeUshort     = 0x60
	typeUint       = 0x70
	typeSmallUint  = 0x52
	typeUint0      = 0x43
	typeUlong      = 0x80
	typeSmallUlong = 0x53
	typeUlong0     = 0x44
	typeByte       = 0x51
	typeShort      = 0x61
	typeInt        = 0x71
	typeSmallInt   = 0x54
	typeLong       = 0x81
	typeSmallLong  = 0x55
	typeFloat      = 0x72
	typeDouble     = 0x82
	typeDecimal32  = 0x74
	typeDecimal64  = 0x84
	typeDecimal128 = 0x94
	typeChar       = 0x73
	typeTimestamp  = 0x83
	typeUUID       = 0x98
	typeVbin8      = 0xa0
	typeVbin32     = 0xb0
	typeStr8       = 0xa1
	typeStr32      = 0xb1
	typeSym8       = 0xa3
	typeSym32      = 0xb3
	typeList0      = 0x45
	typeList8      = 0xc0
	typeList32     = 0xd0
	typeMap8       = 0xc1
	typeMap32      = 0xd1
	typeArray8     = 0xe0
	typeArray32    = 0xf0
)

// Marshal encodes one value in the AMQP type system. Supported Go types: nil, bool, the sized
// integers (int and uint as long and ulong), float32/64, string (str), []byte (binary), Symbol,
// UUID, Char, time.Time (timestamp), Decimal32/64/128, []any (list), map[any]any,
// map[string]any, Fields and Annotations (maps), []Symbol, []string, []int32, []int64, []uint32,
// []uint64, []UUID and []bool (arrays), *Described, *Error, the outcomes, *Source, *Target.
func Marshal(v any) ([]byte, error) { return appendValue(nil, v) }

func appendNull(b []byte) []byte { return append(b, typeNull) }

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, typeTrue)
	}
	return append(b, typeFalse)
}

func appendUint(b []byte, v uint32) []byte {
	switch {
	case v == 0:
		return append(b, typeUint0)
	case v < 256:
		return append(b, typeSmallUint, byte(v))
	}
	return binary.BigEndian.AppendUint32(append(b, typeUint), v)
}

func appendUlong(b []byte, v uint64) []byte {
	switch {
	case v == 0:
		return append(b, typeUlong0)
	case v < 256:
		return append(b, typeSmallUlong, byte(v))
	}
	return binary.BigEndian.AppendUint64(append(b, typeUlong), v)
}

func appendInt(b []byte, v int32) []byte {
	if v >= -128 && v <= 127 {
		return append(b, typeSmallInt, byte(int8(v)))
	}
	return binary.BigEndian.AppendUint32(append(b, typeInt), uint32(v))
}

func appendLong(b []byte, v int64) []byte {
	if v >= -128 && v <= 127 {
		return append(b, typeSmallLong, byte(int8(v)))
	}
	return binary.BigEndian.AppendUint64(append(b, typeLong), uint64(v))
}

func appendVariable(b []byte, small, large byte, s []byte) []byte {
	if len(s) < 256 {
		b = append(b, small, byte(len(s)))
	} else {
		b = binary.BigEndian.AppendUint32(append(b, large), uint32(len(s)))
	}
	return append(b, s...)
}

func appendString(b []byte, s string) []byte {
	if len(s) < 256 {
		b = append(b, typeStr8, byte(len(s)))
	} else {
		b = binary.BigEndian.AppendUint32(append(b, typeStr32), uint32(len(s)))
	}
	return append(b, s...)
}

func appendSymbol(b []byte, s Symbol) []byte {
	if len(s) < 256 {
		b = append(b, typeSym8, byte(len(s)))
	} else {
		b = binary.BigEndian.AppendUint32(append(b, typeSym32), uint32(len(s)))
	}
	return append(b, s...)
}

// appendTimestamp encodes milliseconds since the Unix epoch; the zero time.Time is null.
func appendTimestamp(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return appendNull(b)
	}
	return binary.BigEndian.AppendUint64(append(b, typeTimestamp), uint64(t.UnixMilli()))
}

func appendDescriptor(b []byte, code uint64) []byte {
	return appendUlong(append(b, typeDescribed), code)
}

// appendComposite encodes a described list whose fields are produced by fields; the list uses
// list8 when it fits, else list32. Every field is written, nulls included.
func appendComposite(b []byte, code uint64, count int, fields func([]byte) ([]byte, error)) ([]byte, error) {
	b = appendDescriptor(b, code)
	return appendList(b, count, fields)
}

func appendList(b []byte, count int, items func([]byte) ([]byte, error)) ([]byte, error) {
	start := len(b)
	b = append(b, typeList32, 0, 0, 0, 0, 0, 0, 0, 0)
	b, err := items(b)
	if err != nil {
		return b, err
	}
	n := len(b) - start - 9
	if uint64(n)+4 > math.MaxUint32 {
		return b, fmt.Errorf("amqp: list too large")
	}
	if n+1 < 256 && count < 256 { // list8: the size byte covers the count byte and the items
		b[start] = typeList8
		b[start+1] = byte(n + 1)
		b[start+2] = byte(count)
		copy(b[start+3:], b[start+9:])
		return b[:start+3+n], nil
	}
	binary.BigEndian.PutUint32(b[start+1:], uint32(n+4))
	binary.BigEndian.PutUint32(b[start+5:], uint32(count))
	return b, nil
}

func appendMap(b []byte, pairs int, items func([]byte) ([]byte, error)) ([]byte, error) {
	start := len(b)
	b = append(b, typeMap32, 0, 0, 0, 0, 0, 0, 0, 0)
	b, err := items(b)
	if err != nil {
		return b, err
	}
	n := len(b) - start - 9
	if n+1 < 256 && pairs*2 < 256 {
		b[start] = typeMap8
		b[start+1] = byte(n + 1)
		b[start+2] = byte(pairs * 2)
		copy(b[start+3:], b[start+9:])
		return b[:start+3+n], nil
	}
	binary.BigEndian.PutUint32(b[start+1:], uint32(n+4))
	binary.BigEndian.PutUint32(b[start+5:], uint32(pairs*2))
	return b, nil
}

func appendFields(b []byte, m Fields) ([]byte, error) {
	if m == nil {
		return appendNull(b), nil
	}
	return appendMap(b, len(m), func(b []byte) ([]byte, error) {
		var err error
		for k, v := range m {
			b = appendSymbol(b, k)
			if b, err = appendValue(b, v); err != nil {
				return b, err
			}
		}
		return b, nil
	})
}

// appendAnnotations writes string keys as symbols, as annotation keys must be.
func appendAnnotations(b []byte, m Annotations) ([]byte, error) {
	if m == nil {
		return appendNull(b), nil
	}
	return appendMap(b, len(m), func(b []byte) ([]byte, error) {
		var err error
		for k, v := range m {
			switch key := k.(type) {
			case string:
				b = appendSymbol(b, Symbol(key))
			case Symbol:
				b = appendSymbol(b, key)
			case uint64:
				b = appendUlong(b, key)
			default:
				return b, fmt.Errorf("amqp: annotation key %T: want a symbol or ulong", k)
			}
			if b, err = appendValue(b, v); err != nil {
				return b, err
			}
		}
		return b, nil
	})
}

func appendSymbolArray(b []byte, s []Symbol) []byte {
	if s == nil {
		return appendNull(b)
	}
	b, _ = appendArray(b, len(s), typeSym32, func(b []byte) ([]byte, error) {
		for _, v := range s {
			b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		}
		return b, nil
	})
	return b
}

// appendArray writes an array whose elements share one constructor; elements are written by
// items without their constructor.
func appendArray(b []byte, count int, constructor byte, items func([]byte) ([]byte, error)) ([]byte, error) {
	start := len(b)
	b = append(b, typeArray32, 0, 0, 0, 0, 0, 0, 0, 0, constructor)
	b, err := items(b)
	if err != nil {
		return b, err
	}
	binary.BigEndian.PutUint32(b[start+1:], uint32(len(b)-start-5))
	binary.BigEndian.PutUint32(b[start+5:], uint32(count))
	return b, nil
}

func appendValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return appendNull(b), nil
	case bool:
		return appendBool(b, v), nil
	case uint8:
		return append(b, typeUbyte, v), nil
	case uint16:
		return binary.BigEndian.AppendUint16(append(b, typeUshort), v), nil
	case uint32:
		return appendUint(b, v), nil
	case uint64:
		return appendUlong(b, v), nil
	case uint:
		return appendUlong(b, uint64(v)), nil
	case int8:
		return append(b, typeByte, byte(v)), nil
	case int16:
		return binary.BigEndian.AppendUint16(append(b, typeShort), uint16(v)), nil
	case int32:
		return appendInt(b, v), nil
	case int64:
		return appendLong(b, v), nil
	case int:
		return appendLong(b, int64(v)), nil
	case float32:
		return binary.BigEndian.AppendUint32(append(b, typeFloat), math.Float32bits(v)), nil
	case float64:
		return binary.BigEndian.AppendUint64(append(b, typeDouble), math.Float64bits(v)), nil
	case Decimal32:
		return append(append(b, typeDecimal32), v[:]...), nil
	case Decimal64:
		return append(append(b, typeDecimal64), v[:]...), nil
	case Decimal128:
		return append(append(b, typeDecimal128), v[:]...), nil
	case Char:
		return binary.BigEndian.AppendUint32(append(b, typeChar), uint32(v)), nil
	case time.Time:
		return appendTimestamp(b, v), nil
	case UUID:
		return append(append(b, typeUUID), v[:]...), nil
	case []byte:
		if v == nil {
			return appendNull(b), nil
		}
		return appendVariable(b, typeVbin8, typeVbin32, v), nil
	case string:
		if !utf8.ValidString(v) {
			return b, fmt.Errorf("amqp: string is not valid UTF-8")
		}
		return appendString(b, v), nil
	case Symbol:
		return appendSymbol(b, v), nil
	case []any:
		if v == nil {
			return appendNull(b), nil
		}
		if len(v) == 0 {
			return append(b, typeList0), nil
		}
		return appendList(b, len(v), func(b []byte) ([]byte, error) {
			var err error
			for _, item := range v {
				if b, err = appendValue(b, item); err != nil {
					return b, err
				}
			}
			return b, nil
		})
	case map[any]any:
		return appendAnyMap(b, v)
	case map[string]any:
		if v == nil {
			return appendNull(b), nil
		}
		return appendMap(b, len(v), func(b []byte) ([]byte, error) {
			var err error
			for k, x := range v {
				b = appendString(b, k)
				if b, err = appendValue(b, x); err != nil {
					return b, err
				}
			}
			return b, nil
		})
	case map[Symbol]any:
		return appendFields(b, Fields(v))
	case Fields:
		return appendFields(b, v)
	case Annotations:
		return appendAnnotations(b, v)
	case []Symbol:
		return appendSymbolArray(b, v), nil
	case []string:
		if v == nil {
			return appendNull(b), nil
		}
		return appendArray(b, len(v), typeStr32, func(b []byte) ([]byte, error) {
			for _, s := range v {
				b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
				b = append(b, s...)
			}
			return b, nil
		})
	case []int32:
		return appendFixedArray(b, v, typeInt, func(b []byte, x int32) []byte { return binary.BigEndian.AppendUint32(b, uint32(x)) })
	case []int64:
		return appendFixedArray(b, v, typeLong, func(b []byte, x int64) []byte { return binary.BigEndian.AppendUint64(b, uint64(x)) })
	case []uint32:
		return appendFixedArray(b, v, typeUint, binary.BigEndian.AppendUint32)
	case []uint64:
		return appendFixedArray(b, v, typeUlong, binary.BigEndian.AppendUint64)
	case []UUID:
		return appendFixedArray(b, v, typeUUID, func(b []byte, x UUID) []byte { return append(b, x[:]...) })
	case []bool:
		return appendFixedArray(b, v, typeBool, func(b []byte, x bool) []byte {
			if x {
				return append(b, 1)
			}
			return append(b, 0)
		})
	case *Described:
		if v == nil {
			return appendNull(b), nil
		}
		b, err := appendValue(append(b, typeDescribed), v.Descriptor)
		if err != nil {
			return b, err
		}
		return appendValue(b, v.Value)
	case Described:
		return appendValue(b, &v)
	case *Error:
		return appendError(b, v)
	case Outcome:
		return appendOutcome(b, v)
	case *Source:
		return appendSource(b, v)
	case *Target:
		return appendTarget(b, v)
	}
	return b, fmt.Errorf("amqp: cannot encode %T", v)
}

func appendFixedArray[T any](b []byte, v []T, constructor byte, item func([]byte, T) []byte) ([]byte, error) {
	if v == nil {
		return appendNull(b), nil
	}
	return appendArray(b, len(v), constructor, func(b []byte) ([]byte, error) {
		for _, x := range v {
			b = item(b, x)
		}
		return b, nil
	})
}

func appendAnyMap(b []byte, m map[any]any) ([]byte, error) {
	if m == nil {
		return appendNull(b), nil
	}
	return appendMap(b, len(m), func(b []byte) ([]byte, error) {
		var err error
		for k, v := range m {
			if b, err = appendValue(b, k); err != nil {
				return b, err
			}
			if b, err = appendValue(b, v); err != nil {
				return b, err
			}
		}
		return b, nil
	})
}

func appendOptString(b []byte, s string) []byte {
	if s == "" {
		return appendNull(b)
	}
	return appendString(b, s)
}

func appendOptSymbol(b []byte, s Symbol) []byte {
	if s == "" {
		return appendNull(b)
	}
	return appendSymbol(b, s)
}

func appendError(b []byte, e *Error) ([]byte, error) {
	if e == nil {
		return appendNull(b), nil
	}
	return appendComposite(b, codeError, 3, func(b []byte) ([]byte, error) {
		b = appendSymbol(b, e.Condition)
		b = appendOptString(b, e.Description)
		return appendFields(b, e.Info)
	})
}

func appendOutcome(b []byte, o Outcome) ([]byte, error) {
	switch o := o.(type) {
	case nil:
		return appendNull(b), nil
	case *Accepted:
		return appendComposite(b, codeAccepted, 0, func(b []byte) ([]byte, error) { return b, nil })
	case *Released:
		return appendComposite(b, codeReleased, 0, func(b []byte) ([]byte, error) { return b, nil })
	case *Rejected:
		return appendComposite(b, codeRejected, 1, func(b []byte) ([]byte, error) { return appendError(b, o.Error) })
	case *Modified:
		return appendComposite(b, codeModified, 3, func(b []byte) ([]byte, error) {
			b = appendBool(b, o.DeliveryFailed)
			b = appendBool(b, o.UndeliverableHere)
			return appendAnnotations(b, o.MessageAnnotations)
		})
	case *received:
		return appendComposite(b, codeReceived, 2, func(b []byte) ([]byte, error) {
			return appendUlong(appendUint(b, o.SectionNumber), o.SectionOffset), nil
		})
	}
	return b, fmt.Errorf("amqp: unknown outcome %T", o)
}

func appendSource(b []byte, s *Source) ([]byte, error) {
	if s == nil {
		return appendNull(b), nil
	}
	return appendComposite(b, codeSource, 11, func(b []byte) ([]byte, error) {
		var err error
		b = appendOptString(b, s.Address)
		b = appendUint(b, s.Durable)
		b = appendOptSymbol(b, s.ExpiryPolicy)
		b = appendUint(b, s.Timeout)
		b = appendBool(b, s.Dynamic)
		if b, err = appendFields(b, s.DynamicNodeProperties); err != nil {
			return b, err
		}
		b = appendOptSymbol(b, s.DistributionMode)
		if s.Filter == nil {
			b = appendNull(b)
		} else if b, err = appendFields(b, Fields(s.Filter)); err != nil {
			return b, err
		}
		if b, err = appendOutcome(b, s.DefaultOutcome); err != nil {
			return b, err
		}
		b = appendSymbolArray(b, s.Outcomes)
		return appendSymbolArray(b, s.Capabilities), nil
	})
}

func appendTarget(b []byte, t *Target) ([]byte, error) {
	if t == nil {
		return appendNull(b), nil
	}
	return appendComposite(b, codeTarget, 7, func(b []byte) ([]byte, error) {
		var err error
		b = appendOptString(b, t.Address)
		b = appendUint(b, t.Durable)
		b = appendOptSymbol(b, t.ExpiryPolicy)
		b = appendUint(b, t.Timeout)
		b = appendBool(b, t.Dynamic)
		if b, err = appendFields(b, t.DynamicNodeProperties); err != nil {
			return b, err
		}
		return appendSymbolArray(b, t.Capabilities), nil
	})
}
