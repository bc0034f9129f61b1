package broker

import "github.com/iothub-emulator/iothub-emulator/wire"

// ErrorBody is the JSON the hub puts in MQTT error responses
// (wire.ErrorBody).
func ErrorBody(err error) []byte { return wire.ErrorBody(err) }
