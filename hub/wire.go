package hub

import (
	"context"
	"encoding/json"
	"strconv"

	"github.com/iothub-emulator/iothub-emulator/broker"
	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/jobs"
	"github.com/iothub-emulator/iothub-emulator/messaging"
	"github.com/iothub-emulator/iothub-emulator/methods"
	"github.com/iothub-emulator/iothub-emulator/twins"
	"github.com/iothub-emulator/iothub-emulator/wire"
)

// wire connects the domain services to the broker's hub topics. Each
// capability adds its lines here.
func (h *Hub) wire() {
	h.broker.SetHandlers(broker.Handlers{
		TwinGet: func(ctx context.Context, d broker.Device) ([]byte, error) {
			t, err := h.Twins.Get(ctx, twins.Key{DeviceID: d.DeviceID, ModuleID: d.ModuleID})
			if err != nil {
				return nil, err
			}
			return wire.TwinForDevice(t), nil
		},
		TwinPatchReported: func(ctx context.Context, d broker.Device, body []byte) (int64, error) {
			patch, err := wire.DecodeReportedPatch(body)
			if err != nil {
				return 0, err
			}
			return h.Twins.PatchReported(ctx, twins.Key{DeviceID: d.DeviceID, ModuleID: d.ModuleID}, patch)
		},
		Telemetry: func(ctx context.Context, d broker.Device, props map[string]string, body []byte, wait bool) error {
			if !wait {
				return h.Telemetry.Enqueue(ctx, broker.TelemetryMessage(d, props, body))
			}
			return h.Telemetry.Send(ctx, broker.TelemetryMessage(d, props, body))
		},
		C2DReady: func(d broker.Device) { h.C2D.Kick(d.DeviceID) },
		C2DComplete: func(d broker.Device, lockToken string) {
			if err := h.C2D.Complete(context.Background(), d.DeviceID, lockToken); err != nil && !iothub.Is(err, iothub.DeviceMessageLockLost) {
				h.log.Error("complete a C2D message", "device", d.DeviceID, "error", err)
			}
		},
		C2DRelease: func(d broker.Device, lockTokens []string) {
			h.C2D.Release(context.Background(), d.DeviceID, lockTokens)
		},
		MethodResponse: func(d broker.Device, rid string, status int, body []byte) {
			h.Methods.Deliver(d.DeviceID, d.ModuleID, rid, status, body)
		},
		SessionChanged: func(d broker.Device) {
			h.Methods.SessionChanged(d.DeviceID, d.ModuleID)
		},
	})
}

// c2dLink delivers C2D messages over the broker.
type c2dLink struct{ b *broker.Broker }

func (l c2dLink) Ready(deviceID string) bool            { return l.b.C2DReady(deviceID) }
func (l c2dLink) Deliver(m *messaging.C2DMessage) error { return l.b.DeliverC2D(m) }

// methodTransport lets the Invoker reach devices through the broker: a
// device is online for methods when its live connection holds
// $iothub/methods/POST/# (digest §1.9).
type methodTransport struct{ b *broker.Broker }

func (t methodTransport) IsOnline(deviceID, moduleID string) bool {
	return t.b.IsSubscribed(deviceID, moduleID, methods.SubscriptionFilter)
}

func (t methodTransport) Send(deviceID, moduleID, topic string, payload []byte) error {
	return t.b.Send(deviceID, moduleID, topic, payload)
}

// identityChecker tells the Invoker whether a device or module exists.
type identityChecker struct{ h *Hub }

func (c identityChecker) Exists(ctx context.Context, deviceID, moduleID string) error {
	_, err := c.h.Registry.Get(ctx, deviceID, moduleID)
	return err
}

// desiredNotifier publishes desired-property changes to the twin's device
// when it is connected and subscribed (digest §1.8); it is called in
// version order per twin.
type desiredNotifier struct{ b *broker.Broker }

const desiredFilter = "$iothub/twin/PATCH/properties/desired/#"

func (n desiredNotifier) DesiredChanged(key twins.Key, patch map[string]any, version int64) {
	if !n.b.IsSubscribed(key.DeviceID, key.ModuleID, desiredFilter) {
		return
	}
	_ = n.b.Send(key.DeviceID, key.ModuleID, "$iothub/twin/PATCH/properties/desired/?$version="+strconv.FormatInt(version, 10), wire.DesiredPatch(patch, version))
}

// jobTwins applies a job's twin patch through the twins service, so
// connected devices get the desired-property notification.
type jobTwins struct{ s *twins.Service }

func (j jobTwins) PatchForJob(ctx context.Context, k jobs.DeviceKey, p jobs.TwinPatch) error {
	_, err := j.s.PatchService(ctx, twins.Key{DeviceID: k.DeviceID, ModuleID: k.ModuleID}, "*", twins.ServicePatch{Tags: p.Tags, Desired: p.Desired})
	return err
}

// PatchManyForJob patches a chunk of a job's twins in one transaction.
func (j jobTwins) PatchManyForJob(ctx context.Context, keys []jobs.DeviceKey, p jobs.TwinPatch) ([]error, error) {
	tk := make([]twins.Key, len(keys))
	for i, k := range keys {
		tk[i] = twins.Key{DeviceID: k.DeviceID, ModuleID: k.ModuleID}
	}
	return j.s.PatchMany(ctx, tk, twins.ServicePatch{Tags: p.Tags, Desired: p.Desired})
}

var _ jobs.BatchTwins = jobTwins{}

// jobMethods calls direct methods for method jobs, through the same Invoker
// as POST /twins/{id}/methods.
type jobMethods struct{ h *Hub }

func (j jobMethods) InvokeForJob(ctx context.Context, k jobs.DeviceKey, m jobs.Method) (int, json.RawMessage, error) {
	r, err := j.h.Methods.Invoke(ctx, methods.Request{
		DeviceID: k.DeviceID, ModuleID: k.ModuleID, MethodName: m.MethodName, Payload: m.Payload,
		ResponseTimeout: m.ResponseTimeout, ConnectTimeout: m.ConnectTimeout,
	})
	if err != nil {
		return 0, nil, err
	}
	return r.Status, r.Payload, nil
}
