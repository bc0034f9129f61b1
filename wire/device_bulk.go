package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// ExportImportDevice is one entry of a bulk registry request, POST /devices
// (digest §3.2; the C# SDK's ExportImportDevice). Member names match
// case-insensitively, so "eTag" (C#) and "etag" (Node, Go) both land in
// ETag.
type ExportImportDevice struct {
	ID string `json:"id"`
	// DeviceID is accepted when id is absent.
	DeviceID       string          `json:"deviceId"`
	ModuleID       string          `json:"moduleId"`
	ETag           string          `json:"eTag"`
	ImportMode     string          `json:"importMode"`
	Status         string          `json:"status"`
	StatusReason   string          `json:"statusReason"`
	Authentication *Authentication `json:"authentication"`
	TwinETag       string          `json:"twinETag"`
	Tags           map[string]any  `json:"tags"`
	Properties     *struct {
		Desired  map[string]any `json:"desired"`
		Reported map[string]any `json:"reported"`
	} `json:"properties"`
	Capabilities *Capabilities `json:"capabilities"`
	DeviceScope  string        `json:"deviceScope"`
	ParentScopes []string      `json:"parentScopes"`
	ManagedBy    string        `json:"managedBy"`
}

// DecodeBulk decodes a bulk request body: a JSON array of entries, with
// numbers in tags and desired kept exact. Errors: 400006 IotHubFormatError
// for a body that is not a JSON array, 400004 ArgumentInvalid for an entry
// with a bad importMode.
func DecodeBulk(body []byte) ([]registry.BulkOp, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var in []ExportImportDevice
	if err := dec.Decode(&in); err != nil {
		return nil, iothub.Wrap(iothub.IotHubFormatError, err, "The request body is not a JSON array of devices: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, iothub.Errorf(iothub.IotHubFormatError, "The request body is not valid JSON: data after the array.")
	}
	ops := make([]registry.BulkOp, len(in))
	for i := range in {
		op, err := in[i].ToBulkOp()
		if err != nil {
			return nil, err
		}
		ops[i] = op
	}
	return ops, nil
}

// ToBulkOp converts an entry to the registry's form.
func (e *ExportImportDevice) ToBulkOp() (registry.BulkOp, error) {
	mode, err := registry.ParseImportMode(e.ImportMode)
	if err != nil {
		return registry.BulkOp{}, err
	}
	id := e.ID
	if id == "" {
		id = e.DeviceID
	}
	op := registry.BulkOp{
		Mode: mode,
		Identity: &registry.Identity{DeviceID: id, ModuleID: e.ModuleID, Status: e.Status, StatusReason: e.StatusReason,
			ManagedBy: e.ManagedBy, DeviceScope: e.DeviceScope, ParentScopes: e.ParentScopes},
		Auth:     authIn(e.Authentication),
		ETag:     e.ETag,
		TwinETag: e.TwinETag,
		Tags:     twins.NormalizeMap(e.Tags),
	}
	if e.Capabilities != nil {
		op.Identity.IotEdge = e.Capabilities.IotEdge
	}
	if e.Properties != nil {
		op.Desired = twins.NormalizeMap(e.Properties.Desired)
		op.Reported = twins.NormalizeMap(e.Properties.Reported)
		delete(op.Desired, "$metadata")
		delete(op.Desired, "$version")
		delete(op.Reported, "$metadata")
		delete(op.Reported, "$version")
	}
	return op, nil
}

// authIn converts an authentication member; nil stays nil (keep the
// current credentials, or generate keys on create).
func authIn(a *Authentication) *registry.Authentication {
	if a == nil {
		return nil
	}
	out := &registry.Authentication{Type: a.Type}
	if a.SymmetricKey != nil {
		out.PrimaryKey, out.SecondaryKey = deref(a.SymmetricKey.PrimaryKey), deref(a.SymmetricKey.SecondaryKey)
	}
	if a.X509Thumbprint != nil {
		out.PrimaryThumbprint, out.SecondaryThumbprint = deref(a.X509Thumbprint.PrimaryThumbprint), deref(a.X509Thumbprint.SecondaryThumbprint)
	}
	return out
}

// BulkResult is the bulk response body; the hub sends it with 200 when
// every entry succeeded, 400 otherwise.
type BulkResult struct {
	IsSuccessful bool          `json:"isSuccessful"`
	Errors       []BulkError   `json:"errors"`
	Warnings     []BulkWarning `json:"warnings"`
}

// BulkError is one failed entry. errorCode is numeric on the wire although
// the swagger types it as a string (digest §3.2, §10).
type BulkError struct {
	DeviceID    string `json:"deviceId"`
	ModuleID    string `json:"moduleId,omitempty"`
	ErrorCode   int    `json:"errorCode"`
	ErrorStatus string `json:"errorStatus"`
}

// BulkWarning is a warning about one entry; the emulator has none to give.
type BulkWarning struct {
	DeviceID      string `json:"deviceId"`
	WarningCode   string `json:"warningCode"`
	WarningStatus string `json:"warningStatus"`
}

// FromBulkErrors renders the result of a bulk request.
func FromBulkErrors(errs []registry.BulkError) *BulkResult {
	out := &BulkResult{IsSuccessful: len(errs) == 0, Errors: []BulkError{}, Warnings: []BulkWarning{}}
	for _, e := range errs {
		out.Errors = append(out.Errors, BulkError{DeviceID: e.DeviceID, ModuleID: e.ModuleID,
			ErrorCode: int(iothub.CodeOf(e.Err)), ErrorStatus: iothub.MessageOf(e.Err)})
	}
	return out
}
