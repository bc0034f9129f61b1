package wire

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// ErrorBodyAt is the JSON the hub puts in device-side error responses (MQTT
// twin responses, AMQP twin replies), stamped with now (the hub's clock):
// {"errorCode":400004,"trackingId":"…","message":"…","timestampUtc":"…"}.
func ErrorBodyAt(err error, now time.Time) []byte {
	b, _ := json.Marshal(struct {
		ErrorCode    int    `json:"errorCode"`
		TrackingID   string `json:"trackingId"`
		Message      string `json:"message"`
		TimestampUTC string `json:"timestampUtc"`
	}{int(iothub.CodeOf(err)), uuid.NewString(), iothub.MessageOf(err), now.UTC().Format("2006-01-02T15:04:05.0000000Z")})
	return b
}
