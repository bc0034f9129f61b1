package hub

import (
	"context"
	"encoding/json"
	"github.com/iothub-emulator/iothub-emulator/throttling"

	"github.com/iothub-emulator/iothub-emulator/broker"
	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/jobs"
	"github.com/iothub-emulator/iothub-emulator/methods"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// wire connects the domain services to the broker's hub topics. Each
// capability adds its lines here.
func (h *Hub) wire() {
	h.broker.SetHandlers(broker.Handlers{
		TwinGet: func(ctx context.Context, d broker.Device) (*twins.Twin, error) {
			if err := h.admitTwin(ctx, d.DeviceID, d.ModuleID, throttling.TwinReads); err != nil {
				return nil, err
			}
			return h.Twins.Get(ctx, twins.Key{DeviceID: d.DeviceID, ModuleID: d.ModuleID})
		},
		TwinPatchReported: func(ctx context.Context, d broker.Device, patch map[string]any) (int64, error) {
			if err := h.admitTwin(ctx, d.DeviceID, d.ModuleID, throttling.TwinUpdates); err != nil {
				return 0, err
			}
			return h.Twins.PatchReported(ctx, twins.Key{DeviceID: d.DeviceID, ModuleID: d.ModuleID}, patch)
		},
		Telemetry: func(ctx context.Context, d broker.Device, props map[string]string, body []byte, ack bool) (func() error, error) {
			// Faults and --sku shaping, as for every transport
			// (devicerules.go); a refusal closes the connection.
			if err := h.admitTelemetry(ctx, d.DeviceID, d.ModuleID, props); err != nil {
				return nil, err
			}
			if !ack {
				return nil, h.Telemetry.Enqueue(ctx, broker.TelemetryMessage(d, props, body))
			}
			return h.Telemetry.Submit(ctx, broker.TelemetryMessage(d, props, body))
		},
		C2DReady: func(d broker.Device) { h.C2D.Kick(d.DeviceID) },
		C2DComplete: func(d broker.Device, lockToken string) {
			if err := h.C2D.Complete(context.Background(), d.DeviceID, lockToken); err != nil && !iothub.Is(err, iothub.DeviceMessageLockLost) {
				h.log.Error("complete a C2D message", "device", d.DeviceID, "error", err)
			}
		},
		C2DRelease: func(d broker.Device, written, unsent []string) {
			h.C2D.Release(context.Background(), d.DeviceID, written)
			h.C2D.Return(context.Background(), d.DeviceID, unsent)
		},
		MethodResponse: func(d broker.Device, rid string, status int, body []byte) {
			h.deliverMethodResponse(d.DeviceID, d.ModuleID, rid, status, body)
		},
		AdmitConnect: h.admitConnect,
		SessionChanged: func(d broker.Device) {
			h.Methods.SessionChanged(d.DeviceID, d.ModuleID)
		},
	})
}

// identityChecker tells the Invoker whether a device or module exists.
type identityChecker struct{ h *Hub }

func (c identityChecker) Exists(ctx context.Context, deviceID, moduleID string) error {
	_, err := c.h.Registry.Get(ctx, deviceID, moduleID)
	return err
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
