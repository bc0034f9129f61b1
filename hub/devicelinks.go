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

func (d deviceMethods) transports() []methods.Transport {
	ts := []methods.Transport{d.h.broker.MethodTransport()}
	if d.h.amqp != nil {
		ts = append(ts, d.h.amqp.MethodTransport())
	}
	return ts
}

func (d deviceMethods) IsOnline(deviceID, moduleID string) bool {
	for _, t := range d.transports() {
		if t.IsOnline(deviceID, moduleID) {
			return true
		}
	}
	return false
}

// SendMethod goes to the transport the device is online on; when it is on
// none, the MQTT broker gives the error.
func (d deviceMethods) SendMethod(deviceID, moduleID string, req methods.DeviceRequest) error {
	ts := d.transports()
	for _, t := range ts {
		if t.IsOnline(deviceID, moduleID) {
			return t.SendMethod(deviceID, moduleID, req)
		}
	}
	return ts[0].SendMethod(deviceID, moduleID, req)
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
