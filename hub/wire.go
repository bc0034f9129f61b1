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
// connected devices get the desired-property notification. Under --sku each
// device's update is a jobs device operation: the job waits for the tier's
// budget (it slows down, as the hub's jobs do) rather than failing.
type jobTwins struct {
	s        *twins.Service
	throttle *throttling.Limiter
}

func (j jobTwins) PatchForJob(ctx context.Context, k jobs.DeviceKey, p jobs.TwinPatch) error {
	if err := j.throttle.Pace(ctx, throttling.JobDeviceOps, 1); err != nil {
		return err
	}
	_, err := j.s.PatchService(ctx, twins.Key{DeviceID: k.DeviceID, ModuleID: k.ModuleID}, "*", twins.ServicePatch{Tags: p.Tags, Desired: p.Desired})
	return err
}

// PatchManyForJob patches a chunk of a job's twins in one transaction;
// under --sku in pieces the tier lets through at once, each when its budget
// allows, so the devices hear of the patch at the tier's pace.
func (j jobTwins) PatchManyForJob(ctx context.Context, keys []jobs.DeviceKey, p jobs.TwinPatch) ([]error, error) {
	piece := len(keys)
	if b := j.throttle.Burst(throttling.JobDeviceOps); b > 0 {
		piece = b
	}
	errs := make([]error, 0, len(keys))
	for start := 0; start < len(keys); start += piece {
		part := keys[start:min(start+piece, len(keys))]
		if err := j.throttle.Pace(ctx, throttling.JobDeviceOps, len(part)); err != nil {
			return nil, err
		}
		tk := make([]twins.Key, len(part))
		for i, k := range part {
			tk[i] = twins.Key{DeviceID: k.DeviceID, ModuleID: k.ModuleID}
		}
		e, err := j.s.PatchMany(ctx, tk, twins.ServicePatch{Tags: p.Tags, Desired: p.Desired})
		if err != nil {
			return nil, err
		}
		errs = append(errs, e...)
	}
	return errs, nil
}

var _ jobs.BatchTwins = jobTwins{}

// jobMethods calls direct methods for method jobs, through the same Invoker
// as POST /twins/{id}/methods; each call is a jobs device operation (paced
// under --sku), not a direct method of the tier's direct-method budget.
type jobMethods struct{ h *Hub }

func (j jobMethods) InvokeForJob(ctx context.Context, k jobs.DeviceKey, m jobs.Method) (int, json.RawMessage, error) {
	if err := j.h.throttle.Pace(ctx, throttling.JobDeviceOps, 1); err != nil {
		return 0, nil, err
	}
	r, err := j.h.Methods.Invoke(ctx, methods.Request{
		DeviceID: k.DeviceID, ModuleID: k.ModuleID, MethodName: m.MethodName, Payload: m.Payload,
		ResponseTimeout: m.ResponseTimeout, ConnectTimeout: m.ConnectTimeout,
	})
	if err != nil {
		return 0, nil, err
	}
	return r.Status, r.Payload, nil
}
