package broker

import (
	"github.com/iothub-emulator/iothub-emulator/clock"
	"github.com/iothub-emulator/iothub-emulator/wire"
)

// errorBody is the JSON the hub puts in MQTT error responses
// (wire.ErrorBodyAt), stamped with the hub's clock.
func (b *Broker) errorBody(err error) []byte {
	return wire.ErrorBodyAt(err, clock.OrReal(b.cfg.Clock).Now())
}
