package messaging

import (
	"strings"
	"time"
)

// Hub names of the system properties a device may set. Each device
// transport spells them its own way ("$.mid" on MQTT, "iothub-messageid" on
// HTTPS) and maps them to these names; SetSystem does the rest.
const (
	SysMessageID       = "message-id"
	SysCorrelationID   = "correlation-id"
	SysUserID          = "user-id"
	SysTo              = "to"
	SysContentType     = "content-type"
	SysContentEncoding = "content-encoding"
	SysExpiryTime      = "absolute-expiry-time"
	SysCreationTime    = "iothub-creation-time-utc"
)

// SetSystem sets a device-sent system property by its hub name: the ones
// the message has fields for go there, any other is kept in System.
func (m *Message) SetSystem(name, v string) {
	switch name {
	case SysMessageID:
		m.MessageID = v
	case SysCorrelationID:
		m.CorrelationID = v
	case SysUserID:
		m.UserID = v
	case SysTo:
		m.To = v
	case SysContentType:
		m.ContentType = v
	case SysContentEncoding:
		m.ContentEncoding = v
	case SysExpiryTime:
		m.ExpiryTime = ParseDeviceTime(v)
	case SysCreationTime:
		m.CreationTime = ParseDeviceTime(v)
	default:
		if m.System == nil {
			m.System = map[string]string{}
		}
		m.System[name] = v
	}
}

// SetProperty sets an application property.
func (m *Message) SetProperty(name, v string) {
	if m.Properties == nil {
		m.Properties = map[string]string{}
	}
	m.Properties[name] = v
}

// ParseDeviceTime reads a time a device sent: RFC 3339, or without an
// offset as C# and C send them (UTC). Unparsable gives the zero time.
func ParseDeviceTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(s))
	if err != nil {
		t, err = time.Parse("2006-01-02T15:04:05.999999999", strings.TrimSpace(s))
		if err != nil {
			return time.Time{}
		}
	}
	return t.UTC()
}
