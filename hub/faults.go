package hub

import (
	"context"
	"fmt"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/throttling"

	"github.com/iothub-emulator/iothub-emulator/broker"
	"github.com/iothub-emulator/iothub-emulator/faults"
)

// newFaults builds the emulator-only fault injection (/_emulator/faults and
// the SDK suites' fault message properties); the device transports and the
// REST API consult it.
func (h *Hub) newFaults(context.Context) (err error) {
	h.Faults, err = faults.NewService(faults.Deps{Connections: connectionCloser{h.broker}}, faults.Config{Clock: h.clock})
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

// admitConnect refuses a device's new connection while an injected fault
// says so, or when the tier's new-connection budget is used up (CONNACK 3:
// the SDKs back off and retry).
func (h *Hub) admitConnect(d broker.Device) error {
	if err := h.Faults.ConnectError(d.DeviceID, d.ModuleID); err != nil {
		return err
	}
	if err := h.throttle.Allow(throttling.NewConnections); err != nil {
		return iothub.Errorf(iothub.ServiceUnavailable, "%s", iothub.MessageOf(err))
	}
	return nil
}

// connectionCloser drops a device's live connection, keeping its session.
type connectionCloser struct{ b *broker.Broker }

func (c connectionCloser) CloseConnection(deviceID, moduleID string) {
	c.b.CloseSession(deviceID, moduleID)
}
