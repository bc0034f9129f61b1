package amqphub

import (
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/amqp"
	"github.com/iothub-emulator/iothub-emulator/eventhub"
	"github.com/iothub-emulator/iothub-emulator/messaging"
)

func TestLinkPosition(t *testing.T) {
	filter := func(expr string) *amqp.Source {
		return &amqp.Source{Filter: map[amqp.Symbol]any{selectorFilter: &amqp.Described{Descriptor: selectorFilterCode, Value: expr}}}
	}
	ms := time.UnixMilli(1700000000123)
	for _, c := range []struct {
		name string
		src  *amqp.Source
		want eventhub.Position
		bad  bool
	}{
		{"no source", nil, eventhub.Position{Kind: eventhub.Earliest}, false},
		{"no filter", &amqp.Source{}, eventhub.Position{Kind: eventhub.Earliest}, false},
		{"earliest offset", filter("amqp.annotation.x-opt-offset > '-1'"), eventhub.Position{Kind: eventhub.Earliest}, false},
		{"latest", filter("amqp.annotation.x-opt-offset > '@latest'"), eventhub.Position{Kind: eventhub.Latest}, false},
		{"offset inclusive", filter("amqp.annotation.x-opt-offset >= '42'"), eventhub.Position{Kind: eventhub.SequenceNumber, Sequence: 42, Inclusive: true}, false},
		{"sequence", filter("amqp.annotation.x-opt-sequence-number > '7'"), eventhub.Position{Kind: eventhub.SequenceNumber, Sequence: 7}, false},
		{"enqueued time", filter("amqp.annotation.x-opt-enqueued-time > '1700000000123'"), eventhub.Position{Kind: eventhub.EnqueuedTime, Time: ms}, false},
		{"legacy enqueued time", filter("amqp.annotation.x-opt-enqueuedtimeutc >= '1700000000123'"), eventhub.Position{Kind: eventhub.EnqueuedTime, Time: ms, Inclusive: true}, false},
		{"symbol descriptor", &amqp.Source{Filter: map[amqp.Symbol]any{"f": &amqp.Described{Descriptor: selectorFilter, Value: "amqp.annotation.x-opt-sequence-number >= '3'"}}},
			eventhub.Position{Kind: eventhub.SequenceNumber, Sequence: 3, Inclusive: true}, false},
		{"unknown field", filter("amqp.annotation.x-opt-foo > '1'"), eventhub.Position{}, true},
		{"not a number", filter("amqp.annotation.x-opt-offset > 'abc'"), eventhub.Position{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := linkPosition(c.src)
			if (err != nil) != c.bad {
				t.Fatalf("error %v", err)
			}
			if !c.bad && (got.Kind != c.want.Kind || got.Sequence != c.want.Sequence || got.Inclusive != c.want.Inclusive || !got.Time.Equal(c.want.Time)) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestEventMessageCarriesTheHubsAnnotations(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	src := messagingMessage(now)
	m := eventMessage(&src)
	want := map[any]any{
		amqp.Symbol("x-opt-sequence-number"): int64(12), amqp.Symbol("x-opt-offset"): "12", amqp.Symbol("iothub-message-source"): "Telemetry",
		amqp.Symbol("iothub-connection-device-id"): "d1", amqp.Symbol("iothub-connection-module-id"): "m1",
		amqp.Symbol("iothub-connection-auth-generation-id"): "g1", amqp.Symbol("dt-subject"): "s",
		amqp.Symbol("iothub-connection-auth-method"): `{"scope":"module","type":"x509Certificate","issuer":"iothub","acceptingIpFilterRule":null}`,
	}
	for k, v := range want {
		if m.Annotations[k] != v {
			t.Errorf("%v = %v, want %v", k, m.Annotations[k], v)
		}
	}
	if m.Annotations[amqp.Symbol("x-opt-enqueued-time")] != now || m.Annotations[amqp.Symbol("iothub-enqueuedtime")] != now {
		t.Errorf("enqueued times %v", m.Annotations)
	}
	if string(m.Data[0]) != "body" || m.ApplicationProperties["k"] != "v" || m.Properties.MessageID != "mid" ||
		m.Properties.CorrelationID != "cid" || string(m.Properties.UserID) != "uid" || m.Properties.ContentType != "application/json" || m.Properties.ContentEncoding != "utf-8" {
		t.Errorf("message %+v %+v", m, m.Properties)
	}
}

func messagingMessage(now time.Time) messaging.Message {
	return messaging.Message{SequenceNumber: 12, EnqueuedTime: now, DeviceID: "d1", ModuleID: "m1", AuthMethod: "x509", GenerationID: "g1",
		MessageID: "mid", CorrelationID: "cid", UserID: "uid", ContentType: "application/json", ContentEncoding: "utf-8",
		System: map[string]string{"dt-subject": "s"}, Properties: map[string]string{"k": "v"}, Body: []byte("body")}
}
