package httpapi

import (
	"net/http"
	"strconv"

	"github.com/iothub-emulator/iothub-emulator/fileupload"
	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

func (s *Server) startFileUpload(w http.ResponseWriter, r *http.Request, id *registry.Identity) error {
	if id.ModuleID != "" {
		return iothub.Errorf(iothub.ArgumentInvalid, "File upload is for devices, not modules.")
	}
	var in struct {
		BlobName string `json:"blobName"`
	}
	if err := readJSON(r, &in); err != nil {
		return err
	}
	info, err := s.FileUpload.Start(ctx(r), id.DeviceID, in.BlobName)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]string{
		"correlationId": info.CorrelationID, "hostName": info.HostName, "containerName": info.ContainerName,
		"blobName": info.BlobName, "sasToken": info.SASToken,
	})
}

func (s *Server) completeFileUpload(w http.ResponseWriter, r *http.Request, id *registry.Identity) error {
	var in struct {
		CorrelationID     string `json:"correlationId"`
		IsSuccess         bool   `json:"isSuccess"`
		StatusCode        int    `json:"statusCode"`
		StatusDescription string `json:"statusDescription"`
	}
	if err := readJSON(r, &in); err != nil {
		return err
	}
	if c := pathVar(r, "correlationId"); c != "" {
		in.CorrelationID = c
	}
	if err := s.FileUpload.Complete(ctx(r), id.DeviceID, fileupload.Result{
		CorrelationID: in.CorrelationID, IsSuccess: in.IsSuccess, StatusCode: in.StatusCode, StatusDescription: in.StatusDescription,
	}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// fileNotificationJSON is the hub's file notification body, plus the
// emulator's sequence number for paging.
type fileNotificationJSON struct {
	DeviceID        string `json:"deviceId"`
	BlobURI         string `json:"blobUri"`
	BlobName        string `json:"blobName"`
	LastUpdatedTime string `json:"lastUpdatedTime"`
	BlobSizeInBytes int64  `json:"blobSizeInBytes"`
	EnqueuedTimeUtc string `json:"enqueuedTimeUtc"`
	SequenceNumber  int64  `json:"sequenceNumber"`
}

func (s *Server) listFileNotifications(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var after int64
	if v := q.Get("from"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return iothub.Errorf(iothub.ArgumentInvalid, "from must be a sequence number (1 or more).")
		}
		after = n - 1
	}
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return iothub.Errorf(iothub.ArgumentInvalid, "limit must be a positive integer.")
		}
		limit = n
	}
	ns, err := s.FileUpload.Notifications(ctx(r), q.Get("deviceId"), after, limit)
	if err != nil {
		return err
	}
	out := make([]fileNotificationJSON, len(ns))
	for i, n := range ns {
		out[i] = fileNotificationJSON{
			DeviceID: n.DeviceID, BlobURI: n.BlobURI, BlobName: n.BlobName,
			LastUpdatedTime: twins.FormatTime(n.LastUpdatedTime), BlobSizeInBytes: n.BlobSizeInBytes,
			EnqueuedTimeUtc: twins.FormatTime(n.EnqueuedTime), SequenceNumber: n.Seq,
		}
	}
	return writeJSON(w, http.StatusOK, out)
}
