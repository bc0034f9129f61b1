package wire

import (
	"encoding/json"

	"github.com/iothub-emulator/iothub-emulator/messaging"
)

// FeedbackContentType is the content type of a feedback batch.
const FeedbackContentType = "application/vnd.microsoft.iothub.feedback.json"

// Feedback is one record of a feedback batch, as the hub writes it (protocol
// digest §3.12; the C# SDK's FeedbackRecord, Go's iotservice.Feedback).
type Feedback struct {
	OriginalMessageID  string `json:"originalMessageId"`
	Description        string `json:"description"`
	DeviceGenerationID string `json:"deviceGenerationId"`
	DeviceID           string `json:"deviceId"`
	EnqueuedTimeUTC    string `json:"enqueuedTimeUtc"`
	StatusCode         string `json:"statusCode"`
}

// FeedbackBatch renders records as the body of one feedback message: a JSON
// array. Times are RFC 3339 in UTC with a Z, which Go's time.Time parses.
func FeedbackBatch(records []*messaging.Feedback) []byte {
	out := make([]Feedback, len(records))
	for i, r := range records {
		out[i] = Feedback{OriginalMessageID: r.OriginalMessageID, Description: r.Description, DeviceGenerationID: r.DeviceGenerationID,
			DeviceID: r.DeviceID, EnqueuedTimeUTC: r.EnqueuedTime.UTC().Format("2006-01-02T15:04:05.0000000Z"), StatusCode: r.StatusCode}
	}
	b, _ := json.Marshal(out) // strings only: cannot fail
	return b
}
