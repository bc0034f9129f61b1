// Package twins holds the device and module twin: its document (tags,
// desired and reported properties with their $metadata and $version), the
// hub's update rules (recursive merge, null deletes, version and etag
// counters, limits) and the Service that applies them for both the service
// REST API and the device MQTT API.
//
// The package is pure: it knows nothing of HTTP, MQTT or SQL. The JSON shapes
// the hub puts on the wire live in package wire; persistence sits behind
// Store.
//
// References are to the protocol digest (shared/docs/iothub-protocol.md):
// §1.8 twin over MQTT, §4 the twin document.
package twins

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"time"
)

// Key names a twin: a device twin when ModuleID is "", else a module twin.
type Key struct {
	DeviceID string
	ModuleID string
}

// Properties is one of the desired or reported sections of a twin.
//
// Data is the user data without $-members. Metadata is the $metadata tree:
// a map with "$lastUpdated" (a string in the hub's time format, see
// FormatTime), in desired also "$lastUpdatedVersion" (int64), and one child
// node per key of Data; a child is itself such a map, with children of its
// own when the value is an object (digest §4.2). Version is the section's
// $version.
//
// Both maps are plain JSON-like trees (map[string]any, []any, string, bool,
// int64, float64, nil) so a store can persist them as JSON; see Normalize for
// reading them back.
type Properties struct {
	Data     map[string]any
	Metadata map[string]any
	Version  int64
}

// Identity is the read-only mirror of registry fields that the twin document
// shows (digest §4.1). The registry owns these values; twins only carries
// them so one Get returns the whole document.
type Identity struct {
	Status                    string // "enabled" | "disabled"
	StatusReason              string
	StatusUpdateTime          time.Time
	LastActivityTime          time.Time
	ConnectionState           string // "Connected" | "Disconnected"
	CloudToDeviceMessageCount int
	AuthenticationType        string // "sas" | "selfSigned" | "certificateAuthority" | "none"
	PrimaryThumbprint         string
	SecondaryThumbprint       string
	ModelID                   string
	IotEdge                   bool
	DeviceEtag                string // the identity's etag, already rendered (e.g. "MTQ1NzQ5NDU4")
	DeviceScope               string
	ParentScopes              []string
}

// Twin is a device or module twin.
type Twin struct {
	Key
	Identity
	// Tags is nil until tags were first written; the hub then omits "tags"
	// from the document. After a write it is non-nil, possibly empty.
	Tags     map[string]any
	Desired  Properties
	Reported Properties
	// Version is the twin's "version": +1 on every change (digest §4.4).
	Version int64
	// ETag is the twin etag counter, +1 on every service-side write and
	// rendered by FormatETag.
	ETag int64
}

// Store persists twins. Twins are created and deleted together with their
// identity by the registry (see NewTwin); this interface only reads and
// updates them.
type Store interface {
	// Get returns the twin. It returns 404001 DeviceNotFound when the device
	// does not exist and 404010 ModuleNotFound when the device exists but
	// the module does not (or, if the store cannot tell, 404010 for any
	// module key).
	Get(ctx context.Context, key Key) (*Twin, error)

	// Update loads the twin, calls fn with it and, if fn returns nil, saves
	// Tags, Desired, Reported, Version and ETag in the same transaction and
	// returns the saved twin. If fn returns an error nothing is saved and
	// Update returns that error unchanged. Same not-found errors as Get.
	// fn is pure over its argument, so a store may call it again on a retry.
	Update(ctx context.Context, key Key, fn func(*Twin) error) (*Twin, error)
}

// Notifier is told about desired-property changes so the device transport
// can publish $iothub/twin/PATCH/properties/desired/?$version={version}
// (digest §1.8). It is called with the Service's per-twin lock held, in
// strictly increasing version order per twin; it must not block for long and
// must not call back into the Service for the same twin.
type Notifier interface {
	// DesiredChanged reports the desired delta as applied (nulls kept for
	// deletions; the full new desired document after a replace) and the new
	// desired $version. The patch is the notifier's own copy. It is called
	// with the twin's lock held, so it must not wait on a device's socket: a
	// device transport queues the notification and returns.
	DesiredChanged(key Key, patch map[string]any, version int64)
}

// NewTwin returns the twin the hub creates together with an identity
// (digest §4.1, §4.4): no tags, desired and reported empty with $version 1
// and a root $metadata.$lastUpdated of now, twin version 2, etag counter 1
// ("AAAAAAAAAAE="). The caller fills Identity.
func NewTwin(key Key, now time.Time) *Twin {
	ts := FormatTime(now)
	return &Twin{
		Key:      key,
		Desired:  Properties{Data: map[string]any{}, Metadata: map[string]any{metaLastUpdated: ts}, Version: 1},
		Reported: Properties{Data: map[string]any{}, Metadata: map[string]any{metaLastUpdated: ts}, Version: 1},
		Version:  2,
		ETag:     1,
	}
}

// FormatETag renders a twin etag counter as the hub does: base64 of the
// counter as 8 bytes big-endian (1 → "AAAAAAAAAAE=").
func FormatETag(counter int64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(counter))
	return base64.StdEncoding.EncodeToString(b[:])
}

// timeLayout is .NET's "yyyy-MM-ddTHH:mm:ss.FFFFFFFZ": up to 7 fractional
// digits with trailing zeros (and a bare dot) dropped. The hub renders twin
// times this way: "2024-05-28T11:04:38.4422737Z", "0001-01-01T00:00:00Z".
const timeLayout = "2006-01-02T15:04:05.9999999Z"

// FormatTime renders t in UTC the way the hub renders twin and job times,
// truncated to .NET's 100 ns tick. The zero time gives
// "0001-01-01T00:00:00Z".
func FormatTime(t time.Time) string {
	return t.UTC().Truncate(100 * time.Nanosecond).Format(timeLayout)
}

// Clone returns a deep copy of t that shares no maps or slices with it.
func (t *Twin) Clone() *Twin {
	if t == nil {
		return nil
	}
	c := *t
	c.Tags = copyMap(t.Tags)
	c.Desired = Properties{Data: copyMap(t.Desired.Data), Metadata: copyMap(t.Desired.Metadata), Version: t.Desired.Version}
	c.Reported = Properties{Data: copyMap(t.Reported.Data), Metadata: copyMap(t.Reported.Metadata), Version: t.Reported.Version}
	if t.ParentScopes != nil {
		c.ParentScopes = append([]string(nil), t.ParentScopes...)
	}
	return &c
}
