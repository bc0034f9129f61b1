package broker

import (
	"strconv"

	"github.com/iothub-emulator/iothub-emulator/messaging"
	"github.com/iothub-emulator/iothub-emulator/methods"
	"github.com/iothub-emulator/iothub-emulator/twins"
	"github.com/iothub-emulator/iothub-emulator/wire"
)

// The filters a device subscribes to for twin responses, desired-property
// notifications and method requests (digest §1.8, §1.9).
const (
	twinResponseFilter = "$iothub/twin/res/#"
	desiredFilter      = "$iothub/twin/PATCH/properties/desired/#"
	methodsFilter      = "$iothub/methods/POST/#"
)

// The broker implements what the domain needs from a device connection
// (methods.Transport, twins.Notifier, messaging.Link) over MQTT; these
// encode the hub's topics and payloads. None waits on a socket: each
// queues on the connection's outbox.

// MethodTransport reaches devices for direct methods: a device is online
// for methods when its live connection holds $iothub/methods/POST/#.
func (b *Broker) MethodTransport() methods.Transport { return methodLink{b} }

// DesiredNotifier publishes desired-property changes to the twin's device
// when it is connected and subscribed.
func (b *Broker) DesiredNotifier() twins.Notifier { return desiredLink{b} }

// C2DLink pushes C2D messages to subscribed devices.
func (b *Broker) C2DLink() messaging.Link { return c2dLink{b} }

type methodLink struct{ b *Broker }

func (l methodLink) IsOnline(deviceID, moduleID string) bool {
	return l.b.IsSubscribed(deviceID, moduleID, methodsFilter)
}

// SendMethod publishes the request; the topic must end exactly with
// /?$rid={rid}: C# takes the rid from the fifth segment after "?$rid="
// (digest §1.9).
func (l methodLink) SendMethod(deviceID, moduleID string, req methods.DeviceRequest) error {
	return l.b.Send(deviceID, moduleID, "$iothub/methods/POST/"+req.MethodName+"/?$rid="+req.RID, req.Payload)
}

type desiredLink struct{ b *Broker }

func (l desiredLink) DesiredChanged(key twins.Key, patch map[string]any, version int64) {
	if !l.b.IsSubscribed(key.DeviceID, key.ModuleID, desiredFilter) {
		return
	}
	_ = l.b.Send(key.DeviceID, key.ModuleID, "$iothub/twin/PATCH/properties/desired/?$version="+strconv.FormatInt(version, 10),
		wire.DesiredPatch(patch, version))
}

type c2dLink struct{ b *Broker }

func (l c2dLink) Ready(deviceID string) bool            { return l.b.C2DReady(deviceID) }
func (l c2dLink) Deliver(m *messaging.C2DMessage) error { return l.b.DeliverC2D(m) }
