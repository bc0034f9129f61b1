// Package wire holds the hub's JSON shapes, shared by the REST and MQTT
// transports, and the named converters between them and the domain types.
// Field names and order follow the hub's own responses (protocol digest §3-§5).
package wire

import (
	"time"

	"github.com/iothub-emulator/iothub-emulator/registry"
)

// IdentityTime renders a registry time as the hub does in identity JSON:
// no zone suffix, 7 fractional digits, "0001-01-01T00:00:00" when unset
// (digest §3.0, captured az CLI output).
func IdentityTime(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00"
	}
	return t.UTC().Format("2006-01-02T15:04:05.0000000")
}

// SymmetricKey is the symmetricKey member.
type SymmetricKey struct {
	PrimaryKey   *string `json:"primaryKey"`
	SecondaryKey *string `json:"secondaryKey"`
}

// X509Thumbprint is the x509Thumbprint member.
type X509Thumbprint struct {
	PrimaryThumbprint   *string `json:"primaryThumbprint"`
	SecondaryThumbprint *string `json:"secondaryThumbprint"`
}

// Authentication is the authentication member of devices and modules.
type Authentication struct {
	SymmetricKey   *SymmetricKey   `json:"symmetricKey"`
	X509Thumbprint *X509Thumbprint `json:"x509Thumbprint"`
	Type           string          `json:"type"`
}

// Capabilities is the capabilities member.
type Capabilities struct {
	IotEdge bool `json:"iotEdge"`
}

// Device is the hub's device identity JSON.
type Device struct {
	DeviceID                   string          `json:"deviceId"`
	GenerationID               string          `json:"generationId"`
	ETag                       string          `json:"etag"`
	ConnectionState            string          `json:"connectionState"`
	Status                     string          `json:"status"`
	StatusReason               *string         `json:"statusReason"`
	ConnectionStateUpdatedTime string          `json:"connectionStateUpdatedTime"`
	StatusUpdatedTime          string          `json:"statusUpdatedTime"`
	LastActivityTime           string          `json:"lastActivityTime"`
	CloudToDeviceMessageCount  int             `json:"cloudToDeviceMessageCount"`
	Authentication             *Authentication `json:"authentication"`
	Capabilities               *Capabilities   `json:"capabilities"`
	DeviceScope                *string         `json:"deviceScope"`
	ParentScopes               []string        `json:"parentScopes"`
}

// Module is the hub's module identity JSON.
type Module struct {
	ModuleID                   string          `json:"moduleId"`
	ManagedBy                  *string         `json:"managedBy"`
	DeviceID                   string          `json:"deviceId"`
	GenerationID               string          `json:"generationId"`
	ETag                       string          `json:"etag"`
	ConnectionState            string          `json:"connectionState"`
	ConnectionStateUpdatedTime string          `json:"connectionStateUpdatedTime"`
	LastActivityTime           string          `json:"lastActivityTime"`
	CloudToDeviceMessageCount  int             `json:"cloudToDeviceMessageCount"`
	Authentication             *Authentication `json:"authentication"`
}

func strOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func authOut(a registry.Authentication) *Authentication {
	out := &Authentication{Type: a.Type,
		SymmetricKey:   &SymmetricKey{PrimaryKey: strOrNil(a.PrimaryKey), SecondaryKey: strOrNil(a.SecondaryKey)},
		X509Thumbprint: &X509Thumbprint{PrimaryThumbprint: strOrNil(a.PrimaryThumbprint), SecondaryThumbprint: strOrNil(a.SecondaryThumbprint)},
	}
	return out
}

// FromDevice renders a device identity.
func FromDevice(id *registry.Identity) *Device {
	scopes := id.ParentScopes
	if scopes == nil {
		scopes = []string{}
	}
	return &Device{
		DeviceID: id.DeviceID, GenerationID: id.GenerationID, ETag: registry.ETagString(id.ETag),
		ConnectionState: id.ConnectionState, Status: id.Status, StatusReason: strOrNil(id.StatusReason),
		ConnectionStateUpdatedTime: IdentityTime(id.ConnectionStateUpdatedTime), StatusUpdatedTime: IdentityTime(id.StatusUpdatedTime),
		LastActivityTime: IdentityTime(id.LastActivityTime), CloudToDeviceMessageCount: id.CloudToDeviceMessageCount,
		Authentication: authOut(id.Auth), Capabilities: &Capabilities{IotEdge: id.IotEdge},
		DeviceScope: strOrNil(id.DeviceScope), ParentScopes: scopes,
	}
}

// FromModule renders a module identity.
func FromModule(id *registry.Identity) *Module {
	return &Module{
		ModuleID: id.ModuleID, ManagedBy: strOrNil(id.ManagedBy), DeviceID: id.DeviceID, GenerationID: id.GenerationID,
		ETag: registry.ETagString(id.ETag), ConnectionState: id.ConnectionState,
		ConnectionStateUpdatedTime: IdentityTime(id.ConnectionStateUpdatedTime), LastActivityTime: IdentityTime(id.LastActivityTime),
		CloudToDeviceMessageCount: id.CloudToDeviceMessageCount, Authentication: authOut(id.Auth),
	}
}

// IdentityIn is an incoming device or module body (PUT). encoding/json
// matches member names case-insensitively, as the hub does.
type IdentityIn struct {
	DeviceID       string          `json:"deviceId"`
	ModuleID       string          `json:"moduleId"`
	Status         string          `json:"status"`
	StatusReason   string          `json:"statusReason"`
	ETag           string          `json:"etag"`
	Authentication *Authentication `json:"authentication"`
	Capabilities   *Capabilities   `json:"capabilities"`
	ManagedBy      string          `json:"managedBy"`
	DeviceScope    string          `json:"deviceScope"`
	ParentScopes   []string        `json:"parentScopes"`
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// ToIdentity converts an incoming body to a registry identity.
func (in *IdentityIn) ToIdentity() *registry.Identity {
	id := &registry.Identity{DeviceID: in.DeviceID, ModuleID: in.ModuleID, Status: in.Status, StatusReason: in.StatusReason,
		ManagedBy: in.ManagedBy, DeviceScope: in.DeviceScope, ParentScopes: in.ParentScopes}
	if a := in.Authentication; a != nil {
		id.Auth.Type = a.Type
		if a.SymmetricKey != nil {
			id.Auth.PrimaryKey, id.Auth.SecondaryKey = deref(a.SymmetricKey.PrimaryKey), deref(a.SymmetricKey.SecondaryKey)
		}
		if a.X509Thumbprint != nil {
			id.Auth.PrimaryThumbprint, id.Auth.SecondaryThumbprint = deref(a.X509Thumbprint.PrimaryThumbprint), deref(a.X509Thumbprint.SecondaryThumbprint)
		}
	}
	if in.Capabilities != nil {
		id.IotEdge = in.Capabilities.IotEdge
	}
	return id
}
