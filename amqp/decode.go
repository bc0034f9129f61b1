package amqp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// errShort is returned when the input ends inside a value.
var errShort = errors.New("amqp: truncated value")

// maxDepth bounds nesting so hostile input cannot exhaust the stack.
const maxDepth = 32

// decoder reads AMQP values from a byte slice. Every length is checked against what remains, so
// a hostile length never allocates more than the input holds.
type decoder struct {
	b     []byte
	depth int
}

// Unmarshal decodes one value; the Go types are those Marshal accepts (lists as []any, maps as
// map[any]any, arrays of symbols and strings as []Symbol and []string, other arrays as []any,
// described values this package knows as their types and others as *Described).
func Unmarshal(b []byte) (any, error) {
	d := decoder{b: b}
	v, err := d.value()
	if err != nil {
		return nil, err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("amqp: %d trailing bytes", len(d.b))
	}
	return v, nil
}

func (d *decoder) byte() (byte, error) {
	if len(d.b) < 1 {
		return 0, errShort
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c, nil
}

func (d *decoder) next(n int) ([]byte, error) {
	if n < 0 || len(d.b) < n {
		return nil, errShort
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s, nil
}

func (d *decoder) u32() (uint32, error) {
	s, err := d.next(4)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(s), nil
}

func (d *decoder) value() (any, error) {
	c, err := d.byte()
	if err != nil {
		return nil, err
	}
	return d.valueOf(c)
}

// valueOf decodes the value whose constructor c has already been read.
func (d *decoder) valueOf(c byte) (any, error) {
	if c == typeDescribed {
		return d.described()
	}
	return d.primitive(c)
}

func (d *decoder) described() (any, error) {
	d.depth++
	defer func() { d.depth-- }()
	if d.depth > maxDepth {
		return nil, errors.New("amqp: values nested too deeply")
	}
	desc, err := d.value()
	if err != nil {
		return nil, err
	}
	code, isCode := desc.(uint64)
	if !isCode {
		if s, ok := desc.(Symbol); ok {
			if c, ok := symbolDescriptors[s]; ok {
				code, isCode = c, true
			}
		}
	}
	val, err := d.value()
	if err != nil {
		return nil, err
	}
	if isCode {
		if conv, ok := describedTypes[code]; ok {
			fields, isList := val.([]any)
			if !isList && val != nil {
				return nil, fmt.Errorf("amqp: described type 0x%x is not a list", code)
			}
			return conv(fields)
		}
	}
	return &Described{Descriptor: desc, Value: val}, nil
}

func (d *decoder) primitive(c byte) (any, error) {
	switch c {
	case typeNull:
		return nil, nil
	case typeTrue:
		return true, nil
	case typeFalse:
		return false, nil
	case typeBool:
		v, err := d.byte()
		if err != nil {
			return nil, err
		}
		switch v {
		case 0:
			return false, nil
		case 1:
			return true, nil
		}
		return nil, fmt.Errorf("amqp: invalid boolean 0x%x", v)
	case typeUbyte:
		return d.byte()
	case typeUshort:
		s, err := d.next(2)
		if err != nil {
			return nil, err
		}
		return binary.BigEndian.Uint16(s), nil
	case typeUint0:
		return uint32(0), nil
	case typeSmallUint:
		v, err := d.byte()
		return uint32(v), err
	case typeUint:
		return d.u32()
	case typeUlong0:
		return uint64(0), nil
	case typeSmallUlong:
		v, err := d.byte()
		return uint64(v), err
	case typeUlong:
		s, err := d.next(8)
		if err != nil {
			return nil, err
		}
		return binary.BigEndian.Uint64(s), nil
	case typeByte:
		v, err := d.byte()
		return int8(v), err
	case typeShort:
		s, err := d.next(2)
		if err != nil {
			return nil, err
		}
		return int16(binary.BigEndian.Uint16(s)), nil
	case typeSmallInt:
		v, err := d.byte()
		return int32(int8(v)), err
	case typeInt:
		v, err := d.u32()
		return int32(v), err
	case typeSmallLong:
		v, err := d.byte()
		return int64(int8(v)), err
	case typeLong, typeTimestamp, typeDouble:
		s, err := d.next(8)
		if err != nil {
			return nil, err
		}
		v := binary.BigEndian.Uint64(s)
		switch c {
		case typeLong:
			return int64(v), nil
		case typeDouble:
			return math.Float64frombits(v), nil
		}
		return time.UnixMilli(int64(v)).UTC(), nil
	case typeFloat:
		v, err := d.u32()
		return math.Float32frombits(v), err
	case typeChar:
		v, err := d.u32()
		return Char(v), err
	case typeDecimal32:
		s, err := d.next(4)
		var v Decimal32
		copy(v[:], s)
		return v, err
	case typeDecimal64:
		s, err := d.next(8)
		var v Decimal64
		copy(v[:], s)
		return v, err
	case typeDecimal128:
		s, err := d.next(16)
		var v Decimal128
		copy(v[:], s)
		return v, err
	case typeUUID:
		s, err := d.next(16)
		var v UUID
		copy(v[:], s)
		return v, err
	case typeVbin8, typeVbin32:
		s, err := d.variable(c == typeVbin32)
		if err != nil {
			return nil, err
		}
		return append([]byte{}, s...), nil
	case typeStr8, typeStr32:
		s, err := d.variable(c == typeStr32)
		if err != nil {
			return nil, err
		}
		if !utf8.Valid(s) {
			return nil, errors.New("amqp: string is not valid UTF-8")
		}
		return string(s), nil
	case typeSym8, typeSym32:
		s, err := d.variable(c == typeSym32)
		if err != nil {
			return nil, err
		}
		if v, ok := commonSymbols[string(s)]; ok { // no allocation for the usual keys
			return v, nil
		}
		return Symbol(s), nil
	case typeList0:
		return []any{}, nil
	case typeList8, typeList32:
		return d.list(c == typeList32)
	case typeMap8, typeMap32:
		return d.mapValue(c == typeMap32)
	case typeArray8, typeArray32:
		return d.array(c == typeArray32)
	}
	return nil, fmt.Errorf("amqp: unknown type constructor 0x%02x", c)
}

func (d *decoder) variable(wide bool) ([]byte, error) {
	var n uint32
	if wide {
		v, err := d.u32()
		if err != nil {
			return nil, err
		}
		n = v
	} else {
		v, err := d.byte()
		if err != nil {
			return nil, err
		}
		n = uint32(v)
	}
	if uint64(n) > uint64(len(d.b)) {
		return nil, errShort
	}
	return d.next(int(n))
}

// compound reads the size and count of a list, map or array and returns a decoder over its
// body.
func (d *decoder) compound(wide bool) (decoder, uint32, error) {
	body, err := d.variable(wide)
	if err != nil {
		return decoder{}, 0, err
	}
	sub := decoder{b: body, depth: d.depth + 1}
	if sub.depth > maxDepth {
		return sub, 0, errors.New("amqp: values nested too deeply")
	}
	var count uint32
	if wide {
		count, err = sub.u32()
	} else {
		var c byte
		c, err = sub.byte()
		count = uint32(c)
	}
	if err != nil {
		return sub, 0, err
	}
	// Each element takes at least one byte, so a count above the body size is a lie.
	if uint64(count) > uint64(len(sub.b))+1 && count > 0 {
		return sub, 0, fmt.Errorf("amqp: count %d exceeds the %d bytes left", count, len(sub.b))
	}
	return sub, count, nil
}

func (d *decoder) list(wide bool) (any, error) {
	sub, count, err := d.compound(wide)
	if err != nil {
		return nil, err
	}
	out := make([]any, 0, count)
	for i := uint32(0); i < count; i++ {
		v, err := sub.value()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if len(sub.b) != 0 {
		return nil, errors.New("amqp: list size does not match its elements")
	}
	return out, nil
}

func (d *decoder) mapValue(wide bool) (any, error) {
	sub, count, err := d.compound(wide)
	if err != nil {
		return nil, err
	}
	if count%2 != 0 {
		return nil, errors.New("amqp: map with an odd element count")
	}
	out := make(map[any]any, count/2)
	for i := uint32(0); i < count; i += 2 {
		k, err := sub.value()
		if err != nil {
			return nil, err
		}
		v, err := sub.value()
		if err != nil {
			return nil, err
		}
		if !hashable(k) {
			return nil, fmt.Errorf("amqp: map key of type %T", k)
		}
		out[k] = v
	}
	if len(sub.b) != 0 {
		return nil, errors.New("amqp: map size does not match its elements")
	}
	return out, nil
}

func hashable(k any) bool {
	switch k.(type) {
	case []any, map[any]any, []byte, []Symbol, []string, *Described, Fields, Annotations, []UUID:
		return false
	}
	switch k.(type) {
	case nil, bool, uint8, uint16, uint32, uint64, int8, int16, int32, int64, float32, float64,
		string, Symbol, UUID, Char, time.Time, Decimal32, Decimal64, Decimal128:
		return true
	}
	return false
}

func (d *decoder) array(wide bool) (any, error) {
	sub, count, err := d.compound(wide)
	if err != nil {
		return nil, err
	}
	c, err := sub.byte()
	if err != nil {
		return nil, err
	}
	var desc any
	if c == typeDescribed {
		if desc, err = sub.value(); err != nil {
			return nil, err
		}
		if c, err = sub.byte(); err != nil {
			return nil, err
		}
	}
	switch c {
	case typeSym8, typeSym32:
		if desc == nil {
			out := make([]Symbol, 0, count)
			for i := uint32(0); i < count; i++ {
				s, err := sub.variable(c == typeSym32)
				if err != nil {
					return nil, err
				}
				out = append(out, Symbol(s))
			}
			return out, sub.end()
		}
	case typeStr8, typeStr32:
		if desc == nil {
			out := make([]string, 0, count)
			for i := uint32(0); i < count; i++ {
				s, err := sub.variable(c == typeStr32)
				if err != nil {
					return nil, err
				}
				if !utf8.Valid(s) {
					return nil, errors.New("amqp: string is not valid UTF-8")
				}
				out = append(out, string(s))
			}
			return out, sub.end()
		}
	case typeDescribed:
		return nil, errors.New("amqp: invalid array element constructor")
	case typeNull, typeTrue, typeFalse, typeUint0, typeUlong0, typeList0:
		// Zero-width elements would let a tiny array claim billions of items.
		if count > 1<<16 {
			return nil, errors.New("amqp: array of zero-width elements too long")
		}
	}
	out := make([]any, 0, min(count, 1024))
	for i := uint32(0); i < count; i++ {
		v, err := sub.primitive(c)
		if err != nil {
			return nil, err
		}
		if desc != nil {
			v = &Described{Descriptor: desc, Value: v}
		}
		out = append(out, v)
	}
	return out, sub.end()
}

func (d *decoder) end() error {
	if len(d.b) != 0 {
		return errors.New("amqp: compound size does not match its elements")
	}
	return nil
}

// commonSymbols holds, already boxed, the symbols that arrive on every message or link, so
// decoding them allocates nothing.
var commonSymbols = func() map[string]any {
	m := map[string]any{}
	for _, s := range []Symbol{
		"iothub-connection-device-id", "iothub-connection-module-id", "iothub-connection-auth-method",
		"iothub-connection-auth-generation-id", "iothub-enqueuedtime", "iothub-message-source", "iothub-ack",
		"x-opt-sequence-number", "x-opt-offset", "x-opt-enqueued-time", "x-opt-partition-key", "x-opt-lock-token",
		"com.microsoft:client-version", "com.microsoft:channel-correlation-id", "com.microsoft:api-version",
		"com.microsoft:receiver-name", "com.microsoft:epoch", "com.microsoft:timeout", "com.microsoft:georeplication",
		"com.microsoft:enable-receiver-runtime-metric", "apache.org:selector-filter:string",
		"application/json", "utf-8", "operation", "resource", "version", "status",
		MechanismMSSBCBS, MechanismAnonymous, MechanismPlain, MechanismExternal,
		"product", "version", "platform", "framework", "user-agent",
	} {
		m[string(s)] = s
	}
	return m
}()

// Field conversions for composite types: a field that is absent or null takes its default; a
// field of the wrong type is a decode error.

type fieldList []any

func (f fieldList) at(i int) any {
	if i < len(f) {
		return f[i]
	}
	return nil
}

func badField(name string, v any) error {
	return &Error{Condition: ErrCondDecodeError, Description: fmt.Sprintf("field %s: unexpected %T", name, v)}
}

func (f fieldList) uint32(i int, name string, def uint32) (uint32, error) {
	switch v := f.at(i).(type) {
	case nil:
		return def, nil
	case uint32:
		return v, nil
	case uint8:
		return uint32(v), nil
	case uint16:
		return uint32(v), nil
	default:
		return 0, badField(name, v)
	}
}

func (f fieldList) optUint32(i int, name string) (*uint32, error) {
	if f.at(i) == nil {
		return nil, nil
	}
	v, err := f.uint32(i, name, 0)
	return &v, err
}

func (f fieldList) uint64(i int, name string, def uint64) (uint64, error) {
	switch v := f.at(i).(type) {
	case nil:
		return def, nil
	case uint64:
		return v, nil
	case uint32:
		return uint64(v), nil
	default:
		return 0, badField(name, v)
	}
}

func (f fieldList) uint16(i int, name string, def uint16) (uint16, error) {
	switch v := f.at(i).(type) {
	case nil:
		return def, nil
	case uint16:
		return v, nil
	case uint8:
		return uint16(v), nil
	default:
		return 0, badField(name, v)
	}
}

func (f fieldList) uint8(i int, name string, def uint8) (uint8, error) {
	switch v := f.at(i).(type) {
	case nil:
		return def, nil
	case uint8:
		return v, nil
	default:
		return 0, badField(name, v)
	}
}

func (f fieldList) bool(i int, name string) (bool, error) {
	switch v := f.at(i).(type) {
	case nil:
		return false, nil
	case bool:
		return v, nil
	default:
		return false, badField(name, v)
	}
}

func (f fieldList) string(i int, name string) (string, error) {
	switch v := f.at(i).(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	default:
		return "", badField(name, v)
	}
}

func (f fieldList) symbol(i int, name string) (Symbol, error) {
	switch v := f.at(i).(type) {
	case nil:
		return "", nil
	case Symbol:
		return v, nil
	case string: // some clients send a string where a symbol belongs (content-type)
		return Symbol(v), nil
	default:
		return "", badField(name, v)
	}
}

func (f fieldList) binary(i int, name string) ([]byte, error) {
	switch v := f.at(i).(type) {
	case nil:
		return nil, nil
	case []byte:
		return v, nil
	default:
		return nil, badField(name, v)
	}
}

// symbols accepts an array of symbols or a single symbol (multiple="true" fields).
func (f fieldList) symbols(i int, name string) ([]Symbol, error) {
	switch v := f.at(i).(type) {
	case nil:
		return nil, nil
	case Symbol:
		return []Symbol{v}, nil
	case []Symbol:
		return v, nil
	case []any:
		if len(v) == 0 {
			return []Symbol{}, nil
		}
	}
	return nil, badField(name, f.at(i))
}

func toFields(name string, v any) (Fields, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case map[any]any:
		out := make(Fields, len(v))
		for k, val := range v {
			s, ok := k.(Symbol)
			if !ok {
				return nil, badField(name+" key", k)
			}
			out[s] = val
		}
		return out, nil
	}
	return nil, badField(name, v)
}

func (f fieldList) fields(i int, name string) (Fields, error) { return toFields(name, f.at(i)) }

func toAnnotations(name string, v any) (Annotations, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case map[any]any:
		for k := range v {
			switch k.(type) {
			case Symbol, uint64, int64: // int64: go-amqp writes numeric keys as long
			default:
				return nil, badField(name+" key", k)
			}
		}
		return Annotations(v), nil
	}
	return nil, badField(name, v)
}

func (f fieldList) error(i int, name string) (*Error, error) {
	switch v := f.at(i).(type) {
	case nil:
		return nil, nil
	case *Error:
		return v, nil
	default:
		return nil, badField(name, v)
	}
}

func (f fieldList) state(i int, name string) (Outcome, error) {
	switch v := f.at(i).(type) {
	case nil:
		return nil, nil
	case Outcome:
		return v, nil
	default:
		return nil, badField(name, v)
	}
}

// Descriptor codes (§ 2.7, 2.8, 3.2, 3.4, 3.5, 5.3).
const (
	codeOpen        = 0x10
	codeBegin       = 0x11
	codeAttach      = 0x12
	codeFlow        = 0x13
	codeTransfer    = 0x14
	codeDisposition = 0x15
	codeDetach      = 0x16
	codeEnd         = 0x17
	codeClose       = 0x18
	codeError       = 0x1d

	codeReceived = 0x23
	codeAccepted = 0x24
	codeRejected = 0x25
	codeReleased = 0x26
	codeModified = 0x27
	codeSource   = 0x28
	codeTarget   = 0x29

	codeSASLMechanisms = 0x40
	codeSASLInit       = 0x41
	codeSASLChallenge  = 0x42
	codeSASLResponse   = 0x43
	codeSASLOutcome    = 0x44

	codeHeader                = 0x70
	codeDeliveryAnnotations   = 0x71
	codeMessageAnnotations    = 0x72
	codeProperties            = 0x73
	codeApplicationProperties = 0x74
	codeData                  = 0x75
	codeAMQPSequence          = 0x76
	codeAMQPValue             = 0x77
	codeFooter                = 0x78
)

var symbolDescriptors = map[Symbol]uint64{
	"amqp:error:list":    codeError,
	"amqp:received:list": codeReceived,
	"amqp:accepted:list": codeAccepted,
	"amqp:rejected:list": codeRejected,
	"amqp:released:list": codeReleased,
	"amqp:modified:list": codeModified,
	"amqp:source:list":   codeSource,
	"amqp:target:list":   codeTarget,
}

// describedTypes maps the composite types that appear inside performatives to their decoders.
var describedTypes map[uint64]func(fieldList) (any, error)

func init() {
	describedTypes = map[uint64]func(fieldList) (any, error){
		codeError:    func(f fieldList) (any, error) { return decodeError(f) },
		codeAccepted: func(fieldList) (any, error) { return &Accepted{}, nil },
		codeReleased: func(fieldList) (any, error) { return &Released{}, nil },
		codeRejected: func(f fieldList) (any, error) {
			e, err := f.error(0, "rejected.error")
			return &Rejected{Error: e}, err
		},
		codeModified: func(f fieldList) (any, error) {
			var m Modified
			var err error
			if m.DeliveryFailed, err = f.bool(0, "delivery-failed"); err != nil {
				return nil, err
			}
			if m.UndeliverableHere, err = f.bool(1, "undeliverable-here"); err != nil {
				return nil, err
			}
			m.MessageAnnotations, err = toAnnotations("message-annotations", f.at(2))
			return &m, err
		},
		codeReceived: func(f fieldList) (any, error) {
			var r received
			var err error
			if r.SectionNumber, err = f.uint32(0, "section-number", 0); err != nil {
				return nil, err
			}
			r.SectionOffset, err = f.uint64(1, "section-offset", 0)
			return &r, err
		},
		codeSource: func(f fieldList) (any, error) { return decodeSource(f) },
		codeTarget: func(f fieldList) (any, error) { return decodeTarget(f) },
	}
}

func decodeError(f fieldList) (*Error, error) {
	var e Error
	var err error
	if e.Condition, err = f.symbol(0, "error.condition"); err != nil {
		return nil, err
	}
	if e.Description, err = f.string(1, "error.description"); err != nil {
		return nil, err
	}
	e.Info, err = f.fields(2, "error.info")
	return &e, err
}

func decodeSource(f fieldList) (*Source, error) {
	var s Source
	var err error
	if s.Address, err = f.addressString(0, "source.address"); err != nil {
		return nil, err
	}
	if s.Durable, err = f.uint32(1, "source.durable", 0); err != nil {
		return nil, err
	}
	if s.ExpiryPolicy, err = f.symbol(2, "source.expiry-policy"); err != nil {
		return nil, err
	}
	if s.Timeout, err = f.uint32(3, "source.timeout", 0); err != nil {
		return nil, err
	}
	if s.Dynamic, err = f.bool(4, "source.dynamic"); err != nil {
		return nil, err
	}
	if s.DynamicNodeProperties, err = f.fields(5, "source.dynamic-node-properties"); err != nil {
		return nil, err
	}
	if s.DistributionMode, err = f.symbol(6, "source.distribution-mode"); err != nil {
		return nil, err
	}
	if filter, err := f.fields(7, "source.filter"); err != nil {
		return nil, err
	} else if filter != nil {
		s.Filter = map[Symbol]any(filter)
	}
	if s.DefaultOutcome, err = f.state(8, "source.default-outcome"); err != nil {
		return nil, err
	}
	if s.Outcomes, err = f.symbols(9, "source.outcomes"); err != nil {
		return nil, err
	}
	s.Capabilities, err = f.symbols(10, "source.capabilities")
	return &s, err
}

func decodeTarget(f fieldList) (*Target, error) {
	var t Target
	var err error
	if t.Address, err = f.addressString(0, "target.address"); err != nil {
		return nil, err
	}
	if t.Durable, err = f.uint32(1, "target.durable", 0); err != nil {
		return nil, err
	}
	if t.ExpiryPolicy, err = f.symbol(2, "target.expiry-policy"); err != nil {
		return nil, err
	}
	if t.Timeout, err = f.uint32(3, "target.timeout", 0); err != nil {
		return nil, err
	}
	if t.Dynamic, err = f.bool(4, "target.dynamic"); err != nil {
		return nil, err
	}
	if t.DynamicNodeProperties, err = f.fields(5, "target.dynamic-node-properties"); err != nil {
		return nil, err
	}
	t.Capabilities, err = f.symbols(6, "target.capabilities")
	return &t, err
}

// addressString accepts the address as a string or a symbol (some clients send either).
func (f fieldList) addressString(i int, name string) (string, error) {
	switch v := f.at(i).(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	case Symbol:
		return string(v), nil
	default:
		return "", badField(name, v)
	}
}
