package amqphub

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/iothub-emulator/iothub-emulator/amqp"
	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/messaging"
)

// serveDevicebound takes C2D messages from a back end's sender link and
// queues each through the C2D service: accepted once stored, rejected with
// the hub's error (unknown device, queue full, too large) otherwise. The
// link reads on while earlier messages are being stored, so the messages of
// many deliveries share a commit; they are submitted, and stored, in the
// order they arrived. The engine's credit and unsettled bounds limit how
// many deliveries wait at once.
func (cs *connState) serveDevicebound(l *amqp.Link) {
	serveSubmissions(l, cs.submitC2D, func(err error) {
		cs.srv.log.Info("a pre-settled C2D message was refused", "error", err)
	})
}

// submitC2D queues one C2D message through the C2D service.
func (cs *connState) submitC2D(ctx context.Context, m *amqp.Message) (func() error, error) {
	c, err := c2dMessage(m, cs.srv.cfg.Now())
	if err != nil {
		return nil, err
	}
	if err := cs.srv.deps.Admission.AdmitC2DSend(); err != nil {
		return nil, err // 429001: the service SDKs' throttling error
	}
	sctx, cancel := context.WithTimeout(ctx, cs.srv.cfg.SendTimeout)
	defer cancel()
	return cs.srv.deps.C2D.Submit(sctx, c)
}

// c2dMessage reads a C2D message as the SDKs send it (protocol digest
// §3.12): to = /devices/{id}/messages/devicebound, the message properties,
// iothub-ack and the other application properties, one data section (or an
// amqp-value string) as the body. A header TTL stands in for a missing
// absolute-expiry-time.
func c2dMessage(m *amqp.Message, now time.Time) (*messaging.C2DMessage, error) {
	p := m.Properties
	if p == nil || p.To == "" {
		return nil, iothub.Errorf(iothub.ArgumentInvalid, "The message has no 'to' property: address it to /devices/{deviceId}/messages/devicebound.")
	}
	deviceID, err := deviceOf(p.To)
	if err != nil {
		return nil, err
	}
	c := &messaging.C2DMessage{
		DeviceID: deviceID, To: p.To, MessageID: idString(p.MessageID), CorrelationID: idString(p.CorrelationID),
		UserID: string(p.UserID), ContentType: string(p.ContentType), ContentEncoding: string(p.ContentEncoding),
		ExpiryTime: p.AbsoluteExpiryTime,
	}
	if m.Header != nil && m.Header.TTL > 0 && c.ExpiryTime.Unix() <= 0 {
		c.ExpiryTime = now.Add(m.Header.TTL)
	}
	for k, v := range m.ApplicationProperties {
		s := propString(v)
		if k == "iothub-ack" {
			c.Ack = messaging.Ack(s)
			continue
		}
		if c.Properties == nil {
			c.Properties = map[string]string{}
		}
		c.Properties[k] = s
	}
	switch {
	case len(m.Data) > 0:
		for _, d := range m.Data {
			c.Body = append(c.Body, d...)
		}
	case m.HasValue:
		switch v := m.Value.(type) {
		case string:
			c.Body = []byte(v)
		case []byte:
			c.Body = v
		case nil:
		default:
			return nil, iothub.Errorf(iothub.ArgumentInvalid, "The message body must be data or a string, not %T.", v)
		}
	}
	return c, nil
}

// deviceOf reads the device id of a C2D address. The hub has no C2D queue
// for modules, so the module form is refused.
func deviceOf(to string) (string, error) {
	parts := strings.Split(strings.Trim(to, "/"), "/")
	switch {
	case len(parts) == 4 && parts[0] == "devices" && parts[1] != "" && parts[2] == "messages" && strings.EqualFold(parts[3], "devicebound"):
		return parts[1], nil
	case len(parts) == 6 && parts[0] == "devices" && parts[2] == "modules" && parts[4] == "messages" && strings.EqualFold(parts[5], "devicebound"):
		return "", iothub.Errorf(iothub.ArgumentInvalid, "Cloud-to-device messages to modules are not supported: %s", to)
	}
	return "", iothub.Errorf(iothub.ArgumentInvalid, "Invalid 'to' address %q: use /devices/{deviceId}/messages/devicebound.", to)
}

// idString renders a message-id or correlation-id of any AMQP id type.
func idString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case uint64:
		return strconv.FormatUint(x, 10)
	case amqp.UUID:
		return x.String()
	case []byte:
		return hex.EncodeToString(x)
	}
	return fmt.Sprint(v)
}

// propString renders an application property value; the hub's C2D
// properties are strings, the SDKs send strings.
func propString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case amqp.Symbol:
		return string(x)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}
