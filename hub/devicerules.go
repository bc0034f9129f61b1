package hub

import (
	"context"

	"github.com/iothub-emulator/iothub-emulator/amqphub"
	"github.com/iothub-emulator/iothub-emulator/broker"
	"github.com/iothub-emulator/iothub-emulator/faults"
	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/messaging"
	"github.com/iothub-emulator/iothub-emulator/throttling"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// The rules every device transport shares, in one place: injected faults
// (the fault service) and the tier's throttles (--sku) come before the
// domain services, whether the device speaks MQTT (wire.go) or AMQP
// (amqphub, through deviceRules).

// admitTelemetry decides a device's telemetry message before it is stored:
// an error fault in force refuses it, fault properties put a new fault in
// force, and beyond the tier's budget the send is held (shaped), then
// refused.
func (h *Hub) admitTelemetry(ctx context.Context, deviceID, moduleID string, props map[string]string) error {
	if err := h.Faults.CallError(faults.RouteTelemetry, deviceID); err != nil {
		return err
	}
	if _, err := h.Faults.FromMessage(deviceID, moduleID, props); err != nil {
		h.log.Info("fault properties ignored", "device", deviceID, "module", moduleID, "error", err)
	}
	return h.throttle.Shape(ctx, throttling.DeviceToCloud)
}

// admitTwin decides a device's own twin read or reported-property update:
// a delayTwinUpdate fault holds it, an error fault for all of the device's
// operations refuses it, the tier's twin budget may refuse it.
func (h *Hub) admitTwin(ctx context.Context, deviceID, moduleID string, op throttling.Operation) error {
	if err := h.Faults.HoldTwin(ctx, deviceID, moduleID); err != nil {
		return err
	}
	if err := h.Faults.CallError("", deviceID); err != nil {
		return err
	}
	return h.throttle.Allow(op)
}

// deliverMethodResponse hands a device's method response to the invoker, or
// holds it while a delayMethodResponse fault says so.
func (h *Hub) deliverMethodResponse(deviceID, moduleID, rid string, status int, body []byte) {
	deliver := func() { h.Methods.Deliver(deviceID, moduleID, rid, status, body) }
	if !h.Faults.HoldMethodResponse(deviceID, moduleID, deliver) {
		deliver()
	}
}

// admitDeviceConnection refuses a device's new connection while an
// injected fault says so, or when the tier's new-connection budget is used
// up (503001: the SDKs back off and retry).
func (h *Hub) admitDeviceConnection(deviceID, moduleID string) error {
	if err := h.Faults.ConnectError(deviceID, moduleID); err != nil {
		return err
	}
	if err := h.throttle.Allow(throttling.NewConnections); err != nil {
		return iothub.Errorf(iothub.ServiceUnavailable, "%s", iothub.MessageOf(err))
	}
	return nil
}

// deviceRules gives the AMQP transport the hub's services under these
// rules (amqphub.TelemetrySink, DeviceTwins, DeviceMethods, Admission).
type deviceRules struct{ h *Hub }

var (
	_ amqphub.TelemetrySink = deviceRules{}
	_ amqphub.DeviceTwins   = deviceRules{}
	_ amqphub.DeviceMethods = deviceRules{}
	_ amqphub.Admission     = deviceRules{}
)

func (r deviceRules) Submit(ctx context.Context, m *messaging.Message) (func() error, error) {
	if err := r.h.admitTelemetry(ctx, m.DeviceID, m.ModuleID, m.Properties); err != nil {
		return nil, err
	}
	return r.h.Telemetry.Submit(ctx, m)
}

func (r deviceRules) Get(ctx context.Context, key twins.Key) (*twins.Twin, error) {
	if err := r.h.admitTwin(ctx, key.DeviceID, key.ModuleID, throttling.TwinReads); err != nil {
		return nil, err
	}
	return r.h.Twins.Get(ctx, key)
}

func (r deviceRules) PatchReported(ctx context.Context, key twins.Key, patch map[string]any) (int64, error) {
	if err := r.h.admitTwin(ctx, key.DeviceID, key.ModuleID, throttling.TwinUpdates); err != nil {
		return 0, err
	}
	return r.h.Twins.PatchReported(ctx, key, patch)
}

func (r deviceRules) Deliver(deviceID, moduleID, rid string, status int, body []byte) {
	r.h.deliverMethodResponse(deviceID, moduleID, rid, status, body)
}

func (r deviceRules) SessionChanged(deviceID, moduleID string) {
	r.h.Methods.SessionChanged(deviceID, moduleID)
}

func (r deviceRules) AdmitConnection(deviceID, moduleID string) error {
	return r.h.admitDeviceConnection(deviceID, moduleID)
}

func (r deviceRules) AdmitLink(deviceID, moduleID string) error {
	return r.h.Faults.ConnectError(deviceID, moduleID)
}

func (r deviceRules) AdmitC2DSend() error {
	return r.h.throttle.Allow(throttling.CloudToDevice)
}

// deviceConnections lets the fault service end a device's connections on
// every transport (faults.Connections), each transport implementing it in
// its own terms. The AMQP server is built after the fault service, hence
// the lookup through the hub.
type deviceConnections struct{ h *Hub }

var (
	_ faults.Connections = deviceConnections{}
	_ faults.Connections = (*amqphub.Server)(nil)
	_ faults.Connections = mqttConnections{}
)

func (c deviceConnections) Drop(deviceID, moduleID, op, reason string) {
	ts := []faults.Connections{mqttConnections{c.h.broker}}
	if c.h.amqp != nil {
		ts = append(ts, c.h.amqp)
	}
	for _, t := range ts {
		t.Drop(deviceID, moduleID, op, reason)
	}
}

// mqttConnections drops MQTT connections: MQTT 3.1.1 has neither a
// server goodbye nor sessions and links of the hub's own, so every fault
// operation closes the device's connection (its persistent session is
// kept).
type mqttConnections struct{ b *broker.Broker }

func (m mqttConnections) Drop(deviceID, moduleID, _, _ string) {
	m.b.CloseSession(deviceID, moduleID)
}
