package wire

import (
	"encoding/json"

	"github.com/iothub-emulator/iothub-emulator/fileupload"
)

// FileNotificationContentType is the content type of a file notification.
const FileNotificationContentType = "application/vnd.microsoft.iothub.filenotification.json"

// FileNotification is the body of one file notification as the service SDKs
// parse it (Go iotservice.FileNotification, Java FileUploadNotification).
type FileNotification struct {
	DeviceID        string `json:"deviceId"`
	BlobURI         string `json:"blobUri"`
	BlobName        string `json:"blobName"`
	LastUpdatedTime string `json:"lastUpdatedTime"`
	BlobSizeInBytes int64  `json:"blobSizeInBytes"`
	EnqueuedTimeUTC string `json:"enqueuedTimeUtc"`
}

// FileNotificationBody renders n as the JSON object of one notification.
func FileNotificationBody(n fileupload.Notification) []byte {
	b, _ := json.Marshal(FileNotification{ // strings and a number: cannot fail
		DeviceID: n.DeviceID, BlobURI: n.BlobURI, BlobName: n.BlobName,
		LastUpdatedTime: n.LastUpdatedTime.UTC().Format("2006-01-02T15:04:05.0000000Z"), BlobSizeInBytes: n.BlobSizeInBytes,
		EnqueuedTimeUTC: n.EnqueuedTime.UTC().Format("2006-01-02T15:04:05.0000000Z"),
	})
	return b
}
