package amqphub

import (
	"context"

	"github.com/iothub-emulator/iothub-emulator/messaging"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// What the device and service nodes call, as interfaces: the hub hands in
// its services wrapped in the rules every transport shares (injected faults,
// the tier's throttles), so AMQP devices are treated exactly as MQTT and
// HTTPS ones.

// TelemetrySink stores device-to-cloud messages (messaging.Telemetry).
type TelemetrySink interface {
	// Submit queues m and returns a wait for its commit; a refusal comes
	// back at once (an injected fault, throttling past the shaping bound).
	Submit(ctx context.Context, m *messaging.Message) (wait func() error, err error)
}

// DeviceTwins answers a device's own twin requests (twins.Service).
type DeviceTwins interface {
	Get(ctx context.Context, key twins.Key) (*twins.Twin, error)
	PatchReported(ctx context.Context, key twins.Key, patch map[string]any) (int64, error)
}

// DeviceMethods takes the device's method responses and hears when its
// method link comes and goes (methods.Invoker).
type DeviceMethods interface {
	Deliver(deviceID, moduleID, rid string, status int, body []byte)
	SessionChanged(deviceID, moduleID string)
}

// Admission is what the hub decides about an authenticated client's
// operations beyond its credentials.
type Admission interface {
	// AdmitConnection returns why a device's new connection (its first
	// link on an AMQP connection) is refused, or nil: an injected fault
	// refuses its reconnects, or the tier's new-connection budget is spent.
	AdmitConnection(deviceID, moduleID string) error
	// AdmitLink returns why another link of a connected device is refused
	// (an injected fault refuses its reconnects), or nil.
	AdmitLink(deviceID, moduleID string) error
	// AdmitC2DSend takes one cloud-to-device send from the tier's budget,
	// or returns 429001.
	AdmitC2DSend() error
}
