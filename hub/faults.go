package hub

import (
	"context"
	"fmt"

	"github.com/iothub-emulator/iothub-emulator/throttling"

	"github.com/iothub-emulator/iothub-emulator/broker"
	"github.com/iothub-emulator/iothub-emulator/faults"
)

// newFaults builds the emulator-only fault injection (/_emulator/faults and
// the SDK suites' fault message properties); the device transports and the
// REST API consult it.
func (h *Hub) newFaults(context.Context) (err error) {
	h.Faults, err = faults.NewService(faults.Deps{Connections: deviceConnections{h}}, faults.Config{Clock: h.clock})
	return err
}

// newThrottling applies --sku and --units (nothing when no SKU is set).
func (h *Hub) newThrottling(context.Context) (err error) {
	h.throttle, err = throttling.New(throttling.Config{SKU: h.cfg.SKU, Units: h.cfg.Units, Clock: h.clock})
	if err != nil {
		return fmt.Errorf("--sku/--units: %w", err)
	}
	return nil
}

// admitConnect applies admitDeviceConnection to an MQTT CONNECT (a refusal
// is CONNACK 3).
func (h *Hub) admitConnect(d broker.Device) error {
	return h.admitDeviceConnection(d.DeviceID, d.ModuleID)
}
