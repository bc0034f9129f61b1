package hub

import (
	"github.com/iothub-emulator/iothub-emulator/messaging"
	"github.com/iothub-emulator/iothub-emulator/methods"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// Devices connect over MQTT (the broker) or AMQP (amqphub); both implement
// the domain's device-connection interfaces, and these composites ask each
// in turn, so the invoker, the twin service and the C2D queue reach a
// device whichever transport it uses. The AMQP server is built after the
// services it calls, hence the lookup through the hub.

type deviceMethods struct{ h *Hub }

// online is the transport that has the device online, if any; MQTT is
// asked first. (No slice of transports: this runs twice per method call.)
func (d deviceMethods) online(deviceID, moduleID string) (methods.Transport, bool) {
	if t := d.h.broker.MethodTransport(); t.IsOnline(deviceID, moduleID) {
		return t, true
	}
	if d.h.amqp != nil {
		if t := d.h.amqp.MethodTransport(); t.IsOnline(deviceID, moduleID) {
			return t, true
		}
	}
	return nil, false
}

func (d deviceMethods) IsOnline(deviceID, moduleID string) bool {
	_, ok := d.online(deviceID, moduleID)
	return ok
}

// SendMethod goes to the transport the device is online on; when it is on
// none, the MQTT broker gives the error.
func (d deviceMethods) SendMethod(deviceID, moduleID string, req methods.DeviceRequest) error {
	if t, ok := d.online(deviceID, moduleID); ok {
		return t.SendMethod(deviceID, moduleID, req)
	}
	return d.h.broker.MethodTransport().SendMethod(deviceID, moduleID, req)
}

// SendMethodNeverBlocks: both transports only queue the request on the
// device's bounded outbox (broker.Send, amqphub's msgOutbox.push), so the
// invoker sends on the caller's goroutine.
func (deviceMethods) SendMethodNeverBlocks() {}

var _ methods.NonBlockingTransport = deviceMethods{}

type deviceDesired struct{ h *Hub }

func (d deviceDesired) DesiredChanged(key twins.Key, patch map[string]any, version int64) {
	d.h.broker.DesiredNotifier().DesiredChanged(key, patch, version)
	if d.h.amqp != nil {
		d.h.amqp.DesiredNotifier().DesiredChanged(key, copyPatch(patch), version)
	}
}

// copyPatch gives the second notifier its own copy, as the Notifier
// contract promises each one.
func copyPatch(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			v = copyPatch(sub)
		}
		out[k] = v
	}
	return out
}

type deviceC2D struct{ h *Hub }

func (d deviceC2D) links() []messaging.Link {
	ls := []messaging.Link{d.h.broker.C2DLink()}
	if d.h.amqp != nil {
		ls = append(ls, d.h.amqp.C2DLink())
	}
	return ls
}

func (d deviceC2D) Ready(deviceID string) bool {
	for _, l := range d.links() {
		if l.Ready(deviceID) {
			return true
		}
	}
	return false
}

func (d deviceC2D) Deliver(m *messaging.C2DMessage) error {
	ls := d.links()
	for _, l := range ls {
		if l.Ready(m.DeviceID) {
			return l.Deliver(m)
		}
	}
	return ls[0].Deliver(m)
}
