package hub

import (
	"context"

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

// connectionCloser drops a device's live connection, keeping its session.
type connectionCloser struct{ b *broker.Broker }

func (c connectionCloser) CloseConnection(deviceID, moduleID string) {
	c.b.CloseSession(deviceID, moduleID)
}
