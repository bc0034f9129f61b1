// Package provisioning is the Device Provisioning Service (DPS): individual
// enrollments and enrollment groups, device attestation (symmetric keys,
// group-derived keys, X.509), and the assignment of registered devices to
// this hub through the registry and twin services. It knows nothing of the
// transports: the broker (MQTT) and httpapi (HTTPS) call it.
//
// The types carry DPS's JSON field names: the service API returns them as
// they are, and the SQLite store keeps them as JSON documents.
package provisioning

import (
	"encoding/json"
	"time"
)

// Attestation mechanisms.
const (
	AttestationSymmetricKey = "symmetricKey"
	AttestationX509         = "x509"
	AttestationTPM          = "tpm"
)

// Provisioning statuses of an enrollment.
const (
	StatusEnabled  = "enabled"
	StatusDisabled = "disabled"
)

// Registration statuses (RegistrationState.Status and the operation status).
const (
	RegistrationUnassigned = "unassigned"
	RegistrationAssigning  = "assigning"
	RegistrationAssigned   = "assigned"
	RegistrationFailed     = "failed"
	RegistrationDisabled   = "disabled"
)

// Substatuses of an assigned registration.
const (
	SubstatusInitialAssignment  = "initialAssignment"
	SubstatusDeviceDataMigrated = "deviceDataMigrated"
	SubstatusDeviceDataReset    = "deviceDataReset"
)

// SymmetricKey is a symmetric key attestation; empty keys are generated.
type SymmetricKey struct {
	PrimaryKey   string `json:"primaryKey,omitempty"`
	SecondaryKey string `json:"secondaryKey,omitempty"`
}

// X509Certificate is one certificate of an X.509 attestation: the PEM or
// base64 DER text on input, its info on output.
type X509Certificate struct {
	Certificate string               `json:"certificate,omitempty"`
	Info        *X509CertificateInfo `json:"info,omitempty"`
}

// X509CertificateInfo describes a stored certificate.
type X509CertificateInfo struct {
	SubjectName      string    `json:"subjectName"`
	SHA1Thumbprint   string    `json:"sha1Thumbprint"`
	SHA256Thumbprint string    `json:"sha256Thumbprint"`
	IssuerName       string    `json:"issuerName"`
	NotBeforeUTC     time.Time `json:"notBeforeUtc"`
	NotAfterUTC      time.Time `json:"notAfterUtc"`
	SerialNumber     string    `json:"serialNumber"`
	Version          int       `json:"version"`
}

// X509Certificates is a primary and optional secondary certificate.
type X509Certificates struct {
	Primary   *X509Certificate `json:"primary,omitempty"`
	Secondary *X509Certificate `json:"secondary,omitempty"`
}

// X509Attestation names client certificates (individual enrollments) or
// signing certificates (groups: devices whose chain ends at one of them).
type X509Attestation struct {
	ClientCertificates  *X509Certificates `json:"clientCertificates,omitempty"`
	SigningCertificates *X509Certificates `json:"signingCertificates,omitempty"`
	CAReferences        json.RawMessage   `json:"caReferences,omitempty"`
}

// Attestation is how a device proves itself.
type Attestation struct {
	Type         string           `json:"type"`
	SymmetricKey *SymmetricKey    `json:"symmetricKey,omitempty"`
	X509         *X509Attestation `json:"x509,omitempty"`
	TPM          json.RawMessage  `json:"tpm,omitempty"`
}

// Capabilities are the device capabilities set on assignment.
type Capabilities struct {
	IoTEdge bool `json:"iotEdge"`
}

// InitialTwin is applied to a device's twin on assignment.
type InitialTwin struct {
	Tags       map[string]any        `json:"tags,omitempty"`
	Properties InitialTwinProperties `json:"properties"`
}

// InitialTwinProperties holds the initial desired properties.
type InitialTwinProperties struct {
	Desired map[string]any `json:"desired,omitempty"`
}

// ReprovisionPolicy says what happens when a registered device registers
// again. With one hub, UpdateHubAssignment changes nothing; MigrateDeviceData
// keeps the twin (true) or resets it to the initial twin (false).
type ReprovisionPolicy struct {
	UpdateHubAssignment bool `json:"updateHubAssignment"`
	MigrateDeviceData   bool `json:"migrateDeviceData"`
}

// Enrollment is an individual enrollment: one registration id.
type Enrollment struct {
	RegistrationID         string             `json:"registrationId"`
	DeviceID               string             `json:"deviceId,omitempty"`
	RegistrationState      *RegistrationState `json:"registrationState,omitempty"`
	Attestation            Attestation        `json:"attestation"`
	Capabilities           *Capabilities      `json:"capabilities,omitempty"`
	IoTHubHostName         string             `json:"iotHubHostName,omitempty"`
	InitialTwin            *InitialTwin       `json:"initialTwin,omitempty"`
	ETag                   string             `json:"etag,omitempty"`
	ProvisioningStatus     string             `json:"provisioningStatus"`
	ReprovisionPolicy      *ReprovisionPolicy `json:"reprovisionPolicy,omitempty"`
	CreatedDateTimeUTC     time.Time          `json:"createdDateTimeUtc"`
	LastUpdatedDateTimeUTC time.Time          `json:"lastUpdatedDateTimeUtc"`
	AllocationPolicy       string             `json:"allocationPolicy,omitempty"`
	IoTHubs                []string           `json:"iotHubs,omitempty"`
}

// EnrollmentGroup enrolls every device that attests with its group key (or
// a certificate signed by its CA).
type EnrollmentGroup struct {
	EnrollmentGroupID      string             `json:"enrollmentGroupId"`
	Attestation            Attestation        `json:"attestation"`
	Capabilities           *Capabilities      `json:"capabilities,omitempty"`
	IoTHubHostName         string             `json:"iotHubHostName,omitempty"`
	InitialTwin            *InitialTwin       `json:"initialTwin,omitempty"`
	ETag                   string             `json:"etag,omitempty"`
	ProvisioningStatus     string             `json:"provisioningStatus"`
	ReprovisionPolicy      *ReprovisionPolicy `json:"reprovisionPolicy,omitempty"`
	CreatedDateTimeUTC     time.Time          `json:"createdDateTimeUtc"`
	LastUpdatedDateTimeUTC time.Time          `json:"lastUpdatedDateTimeUtc"`
	AllocationPolicy       string             `json:"allocationPolicy,omitempty"`
	IoTHubs                []string           `json:"iotHubs,omitempty"`
}

// RegistrationState is the outcome of a device's latest registration.
type RegistrationState struct {
	RegistrationID         string          `json:"registrationId"`
	CreatedDateTimeUTC     time.Time       `json:"createdDateTimeUtc"`
	AssignedHub            string          `json:"assignedHub,omitempty"`
	DeviceID               string          `json:"deviceId,omitempty"`
	Status                 string          `json:"status"`
	Substatus              string          `json:"substatus,omitempty"`
	ErrorCode              int             `json:"errorCode,omitempty"`
	ErrorMessage           string          `json:"errorMessage,omitempty"`
	LastUpdatedDateTimeUTC time.Time       `json:"lastUpdatedDateTimeUtc"`
	ETag                   string          `json:"etag,omitempty"`
	Payload                json.RawMessage `json:"payload,omitempty"`

	// OperationID is the device's latest register operation; the store
	// keeps it and EnrollmentGroupID beside the document.
	OperationID       string `json:"-"`
	EnrollmentGroupID string `json:"-"`
}

// Operation is a register operation as the device sees it.
type Operation struct {
	OperationID       string             `json:"operationId"`
	Status            string             `json:"status"`
	RegistrationState *RegistrationState `json:"registrationState,omitempty"`
}

// BulkResult is the answer to a bulk enrollment operation.
type BulkResult struct {
	IsSuccessful bool        `json:"isSuccessful"`
	Errors       []BulkError `json:"errors"`
}

// BulkError is one failed entry of a bulk enrollment operation.
type BulkError struct {
	RegistrationID string `json:"registrationId"`
	ErrorCode      int    `json:"errorCode"`
	ErrorStatus    string `json:"errorStatus"`
}
