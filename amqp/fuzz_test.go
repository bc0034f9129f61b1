package amqp

import (
	"testing"
	"time"
)

// seedFrames are frames of every performative as this package encodes them; the committed
// corpus in testdata/fuzz/FuzzFrameDecoder adds the byte stream of a go-amqp client session.
func seedFrames(t testing.TB) [][]byte {
	settled, mode := true, ReceiverSettleSecond
	msg, err := (&Message{
		Header:                &Header{Durable: true, Priority: 4, TTL: time.Second},
		Annotations:           Annotations{"x-opt-offset": "1", "x-opt-enqueued-time": time.UnixMilli(1)},
		Properties:            &Properties{MessageID: UUID{1}, To: "/devices/d/messages/devicebound", ReplyTo: "cbs"},
		ApplicationProperties: map[string]any{"iothub-ack": "full", "n": int32(1), "l": []any{nil, true}},
		Data:                  [][]byte{[]byte("body")},
	}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, p := range []struct {
		typ  byte
		perf performative
	}{
		{frameTypeSASL, &saslMechanisms{Mechanisms: []Symbol{MechanismMSSBCBS, MechanismAnonymous, MechanismPlain}}},
		{frameTypeSASL, &saslInit{Mechanism: MechanismPlain, InitialResponse: []byte("\x00u\x00p"), Hostname: "h"}},
		{frameTypeSASL, &saslOutcome{Code: saslOK}},
		{frameTypeAMQP, &openFrame{ContainerID: "c", Hostname: "localhost", MaxFrameSize: 65536, ChannelMax: 255, IdleTimeout: 60000,
			Properties: Fields{"product": "x"}}},
		{frameTypeAMQP, &beginFrame{NextOutgoingID: 1, IncomingWindow: 5000, OutgoingWindow: 5000, HandleMax: 255}},
		{frameTypeAMQP, &attachFrame{Name: "l", Handle: 1, Role: RoleReceiver, RcvSettleMode: &mode,
			Source: &Source{Address: "hub/ConsumerGroups/$Default/Partitions/0", Filter: map[Symbol]any{
				"apache.org:selector-filter:string": &Described{Descriptor: Symbol("apache.org:selector-filter:string"),
					Value: "amqp.annotation.x-opt-offset > '-1'"}}},
			Target: &Target{Address: "r"}, Properties: Fields{"com.microsoft:epoch": int64(1)}, DesiredCapabilities: []Symbol{"com.microsoft:georeplication"}}},
		{frameTypeAMQP, &flowFrame{NextIncomingID: new(uint32), IncomingWindow: 10, Handle: new(uint32), DeliveryCount: new(uint32), LinkCredit: new(uint32), Drain: true}},
		{frameTypeAMQP, &transferFrame{Handle: 1, DeliveryID: new(uint32), DeliveryTag: []byte{1}, MessageFormat: new(uint32), Settled: &settled, Payload: msg}},
		{frameTypeAMQP, &dispositionFrame{Role: RoleReceiver, First: 1, Settled: true, State: &Rejected{Error: &Error{Condition: ErrCondNotFound, Info: Fields{"a": int32(1)}}}}},
		{frameTypeAMQP, &dispositionFrame{Role: RoleReceiver, First: 1, State: &Modified{DeliveryFailed: true, MessageAnnotations: Annotations{"k": "v"}}}},
		{frameTypeAMQP, &detachFrame{Handle: 1, Closed: true, Error: &Error{Condition: ErrCondLinkRedirect, Info: Fields{"port": int32(5671)}}}},
		{frameTypeAMQP, &endFrame{}},
		{frameTypeAMQP, &closeFrame{Error: &Error{Condition: ErrCondConnectionForced}}},
	} {
		b, err := appendFrame(nil, p.typ, 0, p.perf)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzFrameDecoder feeds arbitrary bytes to the frame decoder: it must never panic or allocate
// beyond its input, and whatever it accepts must encode again and decode to the same frame.
//
//	go test -run XXX -fuzz FuzzFrameDecoder -fuzztime 60s ./amqp/
func FuzzFrameDecoder(f *testing.F) {
	for _, seed := range seedFrames(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for len(b) >= 8 {
			fh, err := parseFrameHeader(b[:8])
			if err != nil || fh.Size > uint32(len(b)) {
				return
			}
			body := b[int(fh.DataOff)*4 : fh.Size]
			b = b[fh.Size:]
			perf, err := parseFrameBody(fh.Type, body)
			if err != nil || perf == nil {
				continue
			}
			if tr, ok := perf.(*transferFrame); ok {
				var m Message
				if m.UnmarshalBinary(tr.Payload) == nil {
					if _, err := m.MarshalBinary(); err != nil {
						t.Fatalf("decoded message does not encode again: %v", err)
					}
				}
			}
			again, err := appendFrame(nil, fh.Type, fh.Channel, perf)
			if err != nil {
				t.Fatalf("decoded %T does not encode again: %v", perf, err)
			}
			if _, err := parseFrameBody(fh.Type, again[8:]); err != nil {
				t.Fatalf("re-encoded %T does not decode: %v", perf, err)
			}
		}
	})
}
