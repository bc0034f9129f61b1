package amqp_test

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	goamqp "github.com/Azure/go-amqp"

	"github.com/iothub-emulator/iothub-emulator/amqp"
)

func TestPrimitiveRoundTrips(t *testing.T) {
	ts := time.UnixMilli(1764412800123).UTC()
	u := amqp.UUID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	long := strings.Repeat("x", 300)
	for _, v := range []any{
		nil, true, false,
		uint8(0), uint8(255), uint16(65535), uint32(0), uint32(200), uint32(1 << 30), uint64(0), uint64(255), uint64(1 << 40),
		int8(-128), int16(-300), int32(-1), int32(100000), int64(-5), int64(math.MinInt64),
		float32(1.5), math.Pi, amqp.Char('é'), ts, u,
		amqp.Decimal32{1, 2, 3, 4}, amqp.Decimal64{1, 2, 3, 4, 5, 6, 7, 8}, amqp.Decimal128{15: 1},
		[]byte{}, []byte("bin"), []byte(long), "", "str", long, amqp.Symbol("sym"), amqp.Symbol(long),
		[]any{}, []any{"a", int32(1), nil, []any{true}}, map[any]any{"k": "v", amqp.Symbol("s"): uint64(1), int32(3): []any{}},
		[]amqp.Symbol{"a", "b"}, []string{"x", long}, []any{int32(1), int32(2)}, []any{},
		&amqp.Described{Descriptor: amqp.Symbol("apache.org:selector-filter:string"), Value: "amqp.annotation.x-opt-offset > '-1'"},
		&amqp.Described{Descriptor: uint64(0x0000468C00000004), Value: "f"},
		&amqp.Error{Condition: amqp.ErrCondLinkRedirect, Description: "d", Info: amqp.Fields{"port": int32(5671)}},
	} {
		b, err := amqp.Marshal(v)
		if err != nil {
			t.Fatalf("marshal %T %v: %v", v, v, err)
		}
		got, err := amqp.Unmarshal(b)
		if err != nil {
			t.Fatalf("unmarshal %T %v (% x): %v", v, v, b, err)
		}
		if !reflect.DeepEqual(got, v) {
			t.Errorf("round trip %T: got %#v, want %#v", v, got, v)
		}
	}
	// Typed arrays decode as lists of the element type.
	for _, tc := range []struct {
		in   any
		want any
	}{
		{[]int32{1, -2}, []any{int32(1), int32(-2)}},
		{[]int64{1 << 40}, []any{int64(1 << 40)}},
		{[]uint32{7}, []any{uint32(7)}},
		{[]uint64{7}, []any{uint64(7)}},
		{[]bool{true, false}, []any{true, false}},
		{[]amqp.UUID{u}, []any{u}},
		{amqp.Fields{"a": int32(1)}, map[any]any{amqp.Symbol("a"): int32(1)}},
		{map[string]any{"a": "b"}, map[any]any{"a": "b"}},
		{amqp.Annotations{"x-opt-offset": "5"}, map[any]any{amqp.Symbol("x-opt-offset"): "5"}},
	} {
		b, err := amqp.Marshal(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := amqp.Unmarshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%T: got %#v, want %#v", tc.in, got, tc.want)
		}
	}
}

func TestDecodeRejectsMalformedInput(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":                {},
		"unknown constructor":  {0x01},
		"truncated uint":       {0x70, 0, 0},
		"string past the end":  {0xa1, 10, 'a'},
		"str32 huge length":    {0xb1, 0xff, 0xff, 0xff, 0xff, 'a'},
		"list count too large": {0xd0, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff},
		"map odd count":        {0xc1, 2, 1, 0x40},
		"invalid utf8":         {0xa1, 1, 0xff},
		"bad boolean":          {0x56, 7},
		"trailing bytes":       {0x40, 0x40},
		"deep nesting":         append(repeatBytes([]byte{0x00, 0x53, 0x01}, 100), 0x40),
		"zero-width array":     {0xf0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x40},
	} {
		if v, err := amqp.Unmarshal(b); err == nil {
			t.Errorf("%s: decoded %#v, want an error", name, v)
		}
	}
}

func repeatBytes(b []byte, n int) []byte {
	var out []byte
	for i := 0; i < n; i++ {
		out = append(out, b...)
	}
	return out
}

// canonical renders a value decoded by either library in one comparable form.
func canonical(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case goamqp.Symbol:
		return "sym:" + string(v)
	case amqp.Symbol:
		return "sym:" + string(v)
	case goamqp.UUID:
		return fmt.Sprintf("uuid:%x", [16]byte(v))
	case amqp.UUID:
		return fmt.Sprintf("uuid:%x", [16]byte(v))
	case time.Time:
		return fmt.Sprintf("ts:%d", v.UnixMilli())
	case goamqp.Annotations:
		// go-amqp hands annotation keys (symbols on the wire) back as strings.
		m := map[any]any{}
		for k, x := range v {
			if s, ok := k.(string); ok {
				k = amqp.Symbol(s)
			}
			m[k] = x
		}
		return canonicalMap(m)
	case amqp.Annotations:
		// String keys are written as symbols.
		return canonical(goamqp.Annotations(v))
	case map[any]any:
		return canonicalMap(v)
	case map[string]any:
		m := map[any]any{}
		for k, x := range v {
			m[k] = x
		}
		return canonicalMap(m)
	case []any:
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = canonical(x)
		}
		return "[" + strings.Join(parts, ",") + "]"
	case []goamqp.Symbol:
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = canonical(x)
		}
		return "[" + strings.Join(parts, ",") + "]"
	case []amqp.Symbol:
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = canonical(x)
		}
		return "[" + strings.Join(parts, ",") + "]"
	case []string:
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = canonical(x)
		}
		return "[" + strings.Join(parts, ",") + "]"
	case []int32:
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = canonical(x)
		}
		return "[" + strings.Join(parts, ",") + "]"
	case []byte:
		return fmt.Sprintf("bin:%x", v)
	}
	return fmt.Sprintf("%T:%v", v, v)
}

func canonicalMap(m map[any]any) string {
	parts := make([]string, 0, len(m))
	for k, v := range m {
		parts = append(parts, canonical(k)+"="+canonical(v))
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

func strp(s string) *string { return &s }

// appValues covers every type the two libraries share in application properties.
func appValues() map[string]any {
	return map[string]any{
		"bool": true, "ubyte": uint8(200), "ushort": uint16(60000), "uint": uint32(1 << 31), "ulong": uint64(1 << 63),
		"byte": int8(-7), "short": int16(-30000), "int": int32(-100000), "long": int64(-1 << 50),
		"float": float32(2.5), "double": 1e100, "string": "héllo", "long-string": strings.Repeat("s", 400),
		"binary": []byte{0, 1, 2}, "timestamp": time.UnixMilli(1764412800123).UTC(),
		"null": nil,
	}
}

func TestOurMessagesDecodeWithGoAMQP(t *testing.T) {
	u := amqp.UUID{0xde, 0xad, 15: 0xef}
	ts := time.UnixMilli(1764412800456).UTC()
	seq := uint32(9)
	ours := &amqp.Message{
		Header:              &amqp.Header{Durable: true, Priority: 7, TTL: 90 * time.Second, FirstAcquirer: true, DeliveryCount: 3},
		DeliveryAnnotations: amqp.Annotations{"x-opt-lock-token": u},
		Annotations: amqp.Annotations{"iothub-connection-device-id": "dev1", "x-opt-sequence-number": int64(42),
			"x-opt-offset": "42", "x-opt-enqueued-time": ts, uint64(5): "numeric key"},
		Properties: &amqp.Properties{MessageID: "mid", UserID: []byte("hub"), To: "/devices/d/messages/devicebound", Subject: "s",
			ReplyTo: "rt", CorrelationID: u, ContentType: "application/json", ContentEncoding: "utf-8",
			AbsoluteExpiryTime: ts, CreationTime: ts, GroupID: "g", GroupSequence: &seq, ReplyToGroupID: "rg"},
		ApplicationProperties: appValues(),
		Data:                  [][]byte{[]byte("part1"), make([]byte, 70000)},
		Footer:                amqp.Annotations{"f": "v"},
	}
	b, err := ours.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var theirs goamqp.Message
	if err := theirs.UnmarshalBinary(b); err != nil {
		t.Fatalf("go-amqp cannot decode our message: %v", err)
	}
	h := theirs.Header
	if h == nil || !h.Durable || h.Priority != 7 || h.TTL != 90*time.Second || !h.FirstAcquirer || h.DeliveryCount != 3 {
		t.Errorf("header %+v", h)
	}
	p := theirs.Properties
	if p == nil || p.MessageID != "mid" || string(p.UserID) != "hub" || *p.To != "/devices/d/messages/devicebound" || *p.Subject != "s" ||
		*p.ReplyTo != "rt" || canonical(p.CorrelationID) != canonical(u) || *p.ContentType != "application/json" ||
		*p.ContentEncoding != "utf-8" || !p.AbsoluteExpiryTime.Equal(ts) || !p.CreationTime.Equal(ts) || *p.GroupID != "g" ||
		*p.GroupSequence != 9 || *p.ReplyToGroupID != "rg" {
		t.Errorf("properties %+v", p)
	}
	if got, want := canonical(theirs.ApplicationProperties), canonical(ours.ApplicationProperties); got != want {
		t.Errorf("application properties\n got %s\nwant %s", got, want)
	}
	if got, want := canonical(theirs.Annotations), canonical(ours.Annotations); got != want {
		t.Errorf("annotations\n got %s\nwant %s", got, want)
	}
	if got, want := canonical(theirs.DeliveryAnnotations), canonical(ours.DeliveryAnnotations); got != want {
		t.Errorf("delivery annotations\n got %s\nwant %s", got, want)
	}
	if got, want := canonical(theirs.Footer), canonical(ours.Footer); got != want {
		t.Errorf("footer %s, want %s", got, want)
	}
	if len(theirs.Data) != 2 || string(theirs.Data[0]) != "part1" || len(theirs.Data[1]) != 70000 {
		t.Errorf("data sections %d", len(theirs.Data))
	}

	for _, body := range []*amqp.Message{
		{Value: map[string]any{"partition_ids": []string{"0", "1"}, "partition_count": int32(2), "created_at": ts}},
		{Value: nil, HasValue: true},
		{Sequence: [][]any{{"a", int32(1)}, {}}},
	} {
		b, err := body.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var m goamqp.Message
		if err := m.UnmarshalBinary(b); err != nil {
			t.Fatalf("go-amqp: %v", err)
		}
		if canonical(m.Value) != canonical(body.Value) || canonical(m.Sequence) != canonical(body.Sequence) {
			t.Errorf("body: go-amqp decoded value %s sequence %v, want %s %v", canonical(m.Value), m.Sequence, canonical(body.Value), body.Sequence)
		}
	}
}

func TestGoAMQPMessagesDecodeWithOurs(t *testing.T) {
	u := goamqp.UUID{1, 15: 2}
	ts := time.UnixMilli(1764412800789).UTC()
	seq := uint32(4)
	theirs := &goamqp.Message{
		Header:              &goamqp.MessageHeader{Durable: true, Priority: 2, TTL: time.Minute, DeliveryCount: 1},
		DeliveryAnnotations: goamqp.Annotations{"d": int64(1)},
		Annotations:         goamqp.Annotations{"x-opt-partition-key": "pk", "iothub-enqueuedtime": ts, 9: u},
		Properties: &goamqp.MessageProperties{MessageID: uint64(12), UserID: []byte("u"), To: strp("to"), Subject: strp("sub"),
			ReplyTo: strp("cbs"), CorrelationID: "c", ContentType: strp("text/plain"), ContentEncoding: strp("gzip"),
			AbsoluteExpiryTime: &ts, CreationTime: &ts, GroupID: strp("g"), GroupSequence: &seq, ReplyToGroupID: strp("r")},
		ApplicationProperties: appValues(),
		Data:                  [][]byte{[]byte("payload")},
		Footer:                goamqp.Annotations{"f": int32(1)},
	}
	b, err := theirs.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var ours amqp.Message
	if err := ours.UnmarshalBinary(b); err != nil {
		t.Fatalf("cannot decode go-amqp's message: %v", err)
	}
	// Compare with what go-amqp itself decodes (it writes string keys as symbols, int as long).
	theirs = new(goamqp.Message)
	if err := theirs.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	h := ours.Header
	if h == nil || !h.Durable || h.Priority != 2 || h.TTL != time.Minute || h.DeliveryCount != 1 {
		t.Errorf("header %+v", h)
	}
	p := ours.Properties
	if p == nil || p.MessageID != uint64(12) || string(p.UserID) != "u" || p.To != "to" || p.Subject != "sub" || p.ReplyTo != "cbs" ||
		p.CorrelationID != "c" || p.ContentType != "text/plain" || p.ContentEncoding != "gzip" || !p.AbsoluteExpiryTime.Equal(ts) ||
		!p.CreationTime.Equal(ts) || p.GroupID != "g" || *p.GroupSequence != 4 || p.ReplyToGroupID != "r" {
		t.Errorf("properties %+v", p)
	}
	if got, want := canonical(ours.ApplicationProperties), canonical(theirs.ApplicationProperties); got != want {
		t.Errorf("application properties\n got %s\nwant %s", got, want)
	}
	if got, want := canonical(ours.Annotations), canonical(theirs.Annotations); got != want {
		t.Errorf("annotations\n got %s\nwant %s", got, want)
	}
	if got, want := canonical(ours.DeliveryAnnotations), canonical(theirs.DeliveryAnnotations); got != want {
		t.Errorf("delivery annotations %s, want %s", got, want)
	}
	if got, want := canonical(ours.Footer), canonical(theirs.Footer); got != want {
		t.Errorf("footer %s, want %s", got, want)
	}
	if string(ours.GetData()) != "payload" {
		t.Errorf("data %q", ours.GetData())
	}

	for _, body := range []*goamqp.Message{
		{Value: map[string]any{"operation": "READ", "n": int32(1), "list": []any{"x", uint8(1)}}},
		{Value: []goamqp.Symbol{"a", "b"}},
		{Sequence: [][]any{{"a", int32(1)}}},
	} {
		b, err := body.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var m amqp.Message
		if err := m.UnmarshalBinary(b); err != nil {
			t.Fatalf("ours: %v", err)
		}
		if canonical(m.Value) != canonical(body.Value) || canonical(m.Sequence) != canonical(body.Sequence) {
			t.Errorf("body: decoded %s %v, want %s %v", canonical(m.Value), m.Sequence, canonical(body.Value), body.Sequence)
		}
	}
}

func TestBatchedMessagesUnpack(t *testing.T) {
	var data [][]byte
	for i := 0; i < 3; i++ {
		inner := &goamqp.Message{Data: [][]byte{{byte(i)}}, ApplicationProperties: map[string]any{"i": int32(i)}}
		b, err := inner.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, b)
	}
	batch := &amqp.Message{Format: amqp.BatchMessageFormat, Data: data}
	msgs, err := batch.Batch()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3 || msgs[2].GetData()[0] != 2 || msgs[2].ApplicationProperties["i"] != int32(2) {
		t.Fatalf("batch %+v", msgs)
	}
}
