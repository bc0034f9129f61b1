package e2e

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/hub"
	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

// fakeBlobService answers the two calls the emulator makes to storage:
// container creation and a blob's HEAD. The SDK suites run the real thing
// (Azurite); this keeps the Go tests hermetic.
func fakeBlobService(t *testing.T) (endpoint string, calls func() []string) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path)
		mu.Unlock()
		switch {
		case r.Method == http.MethodPut && r.URL.Query().Get("restype") == "container" && r.URL.Query().Get("sig") != "":
			w.WriteHeader(http.StatusCreated)
		case r.Method == http.MethodHead && r.URL.Query().Get("sp") == "r":
			w.Header().Set("Content-Length", "1234")
			w.WriteHeader(http.StatusOK)
		default:
			w.WriteHeader(http.StatusForbidden)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/devstoreaccount1", func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

func TestFileUpload_SASAndNotifications(t *testing.T) {
	t.Parallel()
	endpoint, calls := fakeBlobService(t)
	h := hubtest.Start(t, hubtest.WithDataDir(t.TempDir()), hubtest.WithConfig(func(c *hub.Config) {
		c.StorageConnectionString = "AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=" + endpoint
	}))
	d := h.CreateDevice(t, "cam1")
	auth := "Authorization: " + d.Token(t, h, time.Hour)

	r := h.Do(t, http.MethodPost, "/devices/cam1/files", map[string]string{"blobName": "img/1.jpg"}, auth)
	var info struct{ CorrelationID, HostName, ContainerName, BlobName, SasToken string }
	r.JSON(t, &info)
	if r.StatusCode != http.StatusOK || info.CorrelationID == "" || info.ContainerName != "fileupload" || info.BlobName != "cam1/img/1.jpg" ||
		info.HostName != strings.TrimPrefix(endpoint, "http://") || !strings.Contains(info.SasToken, "sig=") {
		t.Fatalf("SAS: %d %s", r.StatusCode, r.Body)
	}
	if got := calls(); len(got) != 1 || got[0] != "PUT /devstoreaccount1/fileupload" {
		t.Errorf("storage calls = %v, want the container creation", got)
	}
	// A token of a policy without DeviceConnect is refused.
	expectError(t, h.Do(t, http.MethodPost, "/devices/cam1/files", map[string]string{"blobName": "x"}, "Authorization: "+h.ServiceToken(t, "registryRead")),
		http.StatusUnauthorized, "IotHubUnauthorizedAccess")

	// Pending uploads survive a restart.
	h.Restart(t)
	r = h.Do(t, http.MethodPost, "/devices/cam1/files/notifications",
		map[string]any{"correlationId": info.CorrelationID, "isSuccess": true, "statusCode": 200, "statusDescription": "ok"}, auth)
	if r.StatusCode != http.StatusNoContent {
		t.Fatalf("notify: %d %s", r.StatusCode, r.Body)
	}
	var notes []struct {
		DeviceID, BlobURI, BlobName, EnqueuedTimeUtc string
		BlobSizeInBytes, SequenceNumber              int64
	}
	h.Do(t, http.MethodGet, "/_emulator/filenotifications?deviceId=cam1", nil).JSON(t, &notes)
	if len(notes) != 1 || notes[0].BlobSizeInBytes != 1234 || notes[0].BlobURI != endpoint+"/fileupload/cam1/img/1.jpg" || notes[0].SequenceNumber != 1 {
		t.Fatalf("notifications = %+v", notes)
	}
	expectError(t, h.Do(t, http.MethodPost, "/devices/cam1/files/notifications/"+info.CorrelationID, map[string]any{"isSuccess": true}, auth),
		http.StatusBadRequest, "ArgumentInvalid")

	// The Node SDK's form: correlation id in the path.
	r = h.Do(t, http.MethodPost, "/devices/cam1/files", map[string]string{"blobName": "img/2.jpg"}, auth)
	r.JSON(t, &info)
	if r = h.Do(t, http.MethodPost, "/devices/cam1/files/notifications/"+info.CorrelationID, map[string]any{"isSuccess": true, "statusCode": 200}, auth); r.StatusCode != http.StatusNoContent {
		t.Fatalf("notify (path form): %d %s", r.StatusCode, r.Body)
	}
	h.Do(t, http.MethodGet, "/_emulator/filenotifications?from=2", nil).JSON(t, &notes)
	if len(notes) != 1 || notes[0].BlobName != "cam1/img/2.jpg" {
		t.Fatalf("from=2: %+v", notes)
	}
}

func TestFileUpload_NotConfigured(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "d1")
	expectError(t, h.Do(t, http.MethodPost, "/devices/d1/files", map[string]string{"blobName": "a"}, "Authorization: "+d.Token(t, h, time.Hour)),
		http.StatusBadRequest, "BlobContainerValidationError")
}
