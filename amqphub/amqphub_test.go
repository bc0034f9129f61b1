package amqphub

import (
	"errors"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/amqp"
	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/messaging"
)

func TestNodeAddress(t *testing.T) {
	for in, want := range map[string]string{
		"/messages/devicebound":                        nodeDevicebound,
		"amqps://localhost/messages/devicebound":       nodeDevicebound, // Python
		"AMQPS://Hub.Local:5671/messages/devicebound/": nodeDevicebound,
		"/messages/serviceBound/feedback":              nodeFeedback,
		"/messages/servicebound/feedback":              nodeFeedback,
		"/messages/serviceBound/filenotifications":     nodeFileNotifications,
		"$cbs":                             nodeCBS,
		"amqps://localhost":                "",
		"/messages/devicebound/../../$cbs": "messages/devicebound/../../$cbs",
		"wss://localhost:443/$iothub/websocket/whatever/x": "$iothub/websocket/whatever/x",
	} {
		if got := nodeAddress(in); got != want {
			t.Errorf("nodeAddress(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestC2DMessageFromAMQP(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	uuid := amqp.UUID{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0}
	to := "/devices/dev1/messages/devicebound"
	for _, tc := range []struct {
		name string
		in   *amqp.Message
		want messaging.C2DMessage
		code iothub.Code
	}{
		{"Node: string ids, data body, ack and properties",
			&amqp.Message{Properties: &amqp.Properties{To: to, MessageID: "m1", CorrelationID: "c1", UserID: []byte("me"), ContentType: "application/json",
				ContentEncoding: "utf-8", AbsoluteExpiryTime: now.Add(time.Minute)}, ApplicationProperties: map[string]any{"iothub-ack": "full", "k": "v", "n": int32(3)},
				Data: [][]byte{[]byte("hel"), []byte("lo")}},
			messaging.C2DMessage{DeviceID: "dev1", To: to, MessageID: "m1", CorrelationID: "c1", UserID: "me", ContentType: "application/json", ContentEncoding: "utf-8",
				ExpiryTime: now.Add(time.Minute), Ack: messaging.AckFull, Properties: map[string]string{"k": "v", "n": "3"}, Body: []byte("hello")}, 0},
		{"uuid and ulong ids, string value body, header TTL",
			&amqp.Message{Header: &amqp.Header{TTL: time.Hour}, Properties: &amqp.Properties{To: to, MessageID: uuid, CorrelationID: uint64(7)}, Value: "text", HasValue: true},
			messaging.C2DMessage{DeviceID: "dev1", To: to, MessageID: "12345678-9abc-def0-1234-56789abcdef0", CorrelationID: "7", ExpiryTime: now.Add(time.Hour), Body: []byte("text")}, 0},
		{"no properties", &amqp.Message{Data: [][]byte{nil}}, messaging.C2DMessage{}, iothub.ArgumentInvalid},
		{"module address", &amqp.Message{Properties: &amqp.Properties{To: "/devices/d/modules/m/messages/devicebound"}}, messaging.C2DMessage{}, iothub.ArgumentInvalid},
		{"other address", &amqp.Message{Properties: &amqp.Properties{To: "/devices/d/messages/events"}}, messaging.C2DMessage{}, iothub.ArgumentInvalid},
		{"map body", &amqp.Message{Properties: &amqp.Properties{To: to}, Value: map[string]any{}, HasValue: true}, messaging.C2DMessage{}, iothub.ArgumentInvalid},
	} {
		got, err := c2dMessage(tc.in, now)
		if tc.code != 0 {
			if iothub.CodeOf(err) != tc.code {
				t.Errorf("%s: error %v, want %v", tc.name, err, tc.code)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		w := tc.want
		if got.DeviceID != w.DeviceID || got.To != w.To || got.MessageID != w.MessageID || got.CorrelationID != w.CorrelationID || got.UserID != w.UserID ||
			got.ContentType != w.ContentType || got.ContentEncoding != w.ContentEncoding || !got.ExpiryTime.Equal(w.ExpiryTime) || got.Ack != w.Ack ||
			string(got.Body) != string(w.Body) || len(got.Properties) != len(w.Properties) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, w)
		}
		for k, v := range w.Properties {
			if got.Properties[k] != v {
				t.Errorf("%s: property %s = %q, want %q", tc.name, k, got.Properties[k], v)
			}
		}
	}
}

func TestAMQPErrorConditions(t *testing.T) {
	for _, tc := range []struct {
		err  error
		cond amqp.Condition
	}{
		{iothub.Errorf(iothub.DeviceNotFound, "x"), amqp.ErrCondNotFound},
		{iothub.Errorf(iothub.DeviceMaximumQueueDepthExceeded, "x"), amqp.ErrCondResourceLimitExceeded},
		{iothub.Errorf(iothub.MessageTooLarge, "x"), amqp.ErrCondMessageSizeExceeded},
		{iothub.Errorf(iothub.ArgumentInvalid, "x"), "com.microsoft:argument-error"},
		{iothub.Errorf(iothub.IotHubUnauthorizedAccess, "x"), amqp.ErrCondUnauthorizedAccess},
		{errors.New("disk on fire"), amqp.ErrCondInternalError},
	} {
		got := amqpError(tc.err)
		if got.Condition != tc.cond || got.Info["com.microsoft:tracking-id"] == nil {
			t.Errorf("%v: %+v, want %s", tc.err, got, tc.cond)
		}
	}
	if d := amqpError(errors.New("disk on fire")).Description; d != "ErrorCode:ServerError;"+iothub.MessageOf(errors.New("x")) {
		t.Errorf("an internal error leaks its text: %q", d)
	}
	if d := amqpError(iothub.Errorf(iothub.DeviceNotFound, "Device d1 not registered")).Description; d != "ErrorCode:DeviceNotFound;Device d1 not registered" {
		t.Errorf("description %q", d)
	}
}
