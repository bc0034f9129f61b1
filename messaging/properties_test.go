package messaging

import (
	"testing"
	"time"
)

func TestMessage_SetSystem(t *testing.T) {
	var m Message
	for name, v := range map[string]string{
		SysMessageID: "m1", SysCorrelationID: "c1", SysUserID: "u1", SysTo: "/x", SysContentType: "application/json",
		SysContentEncoding: "utf-8", SysExpiryTime: "2030-01-01T00:00:00.000Z", SysCreationTime: "2021-04-21T11:30:16",
		"iothub-outputname": "out1",
	} {
		m.SetSystem(name, v)
	}
	if m.MessageID != "m1" || m.CorrelationID != "c1" || m.UserID != "u1" || m.To != "/x" ||
		m.ContentType != "application/json" || m.ContentEncoding != "utf-8" {
		t.Errorf("fields: %+v", m)
	}
	if !m.ExpiryTime.Equal(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("expiry %v", m.ExpiryTime)
	}
	// C# and C send creation times without an offset: UTC.
	if !m.CreationTime.Equal(time.Date(2021, 4, 21, 11, 30, 16, 0, time.UTC)) {
		t.Errorf("creation %v", m.CreationTime)
	}
	if len(m.System) != 1 || m.System["iothub-outputname"] != "out1" {
		t.Errorf("System = %v, want only the property without a field", m.System)
	}
	if !ParseDeviceTime("not a time").IsZero() {
		t.Error("an unparsable time should be zero")
	}
}
