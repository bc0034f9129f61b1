package wire

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// ErrorBody is the JSON the hub puts in device-side error responses (MQTT
// twin responses, AMQP twin replies):
// {"errorCode":400004,"trackingId":"…","message":"…","timestampUtc":"…"}.
func ErrorBody(err error) []byte {
	b, _ := json.Marshal(struct {
		ErrorCode    int    `json:"errorCode"`
		TrackingID   string `json:"trackingId"`
		Message      string `json:"message"`
		TimestampUTC string `json:"timestampUtc"`
	}{int(iothub.CodeOf(err)), uuid.NewString(), iothub.MessageOf(err), time.Now().UTC().Format("2006-01-02T15:04:05.0000000Z")})
	return b
}
