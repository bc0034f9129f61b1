// Package registry is the hub's identity registry: devices and modules, their
// keys, status and connection state. It knows nothing of HTTP, MQTT or SQL.
package registry

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// Authentication types as the hub names them.
const (
	AuthSAS                  = "sas"
	AuthSelfSigned           = "selfSigned"
	AuthCertificateAuthority = "certificateAuthority"
	AuthNone                 = "none"
)

// Status values.
const (
	StatusEnabled  = "enabled"
	StatusDisabled = "disabled"
)

// Connection states.
const (
	Connected    = "Connected"
	Disconnected = "Disconnected"
)

// Identity is a device (ModuleID == "") or a module.
type Identity struct {
	DeviceID     string
	ModuleID     string
	GenerationID string
	// ETag counts identity updates; the wire renders it as the hub does.
	ETag                       int64
	Status                     string
	StatusReason               string
	StatusUpdatedTime          time.Time
	ConnectionState            string
	ConnectionStateUpdatedTime time.Time
	LastActivityTime           time.Time
	CloudToDeviceMessageCount  int
	Auth                       Authentication
	IotEdge                    bool
	ManagedBy                  string
	DeviceScope                string
	ParentScopes               []string
	ModelID                    string
}

// IsModule reports whether the identity is a module.
func (i *Identity) IsModule() bool { return i.ModuleID != "" }

// Authentication is how an identity proves itself.
type Authentication struct {
	Type                string
	PrimaryKey          string
	SecondaryKey        string
	PrimaryThumbprint   string
	SecondaryThumbprint string
}

// Stats are the registry statistics the hub reports.
type Stats struct {
	Total, Enabled, Disabled int
}

// Store persists identities. Implementations return *iothub.Error values:
// 404001 DeviceNotFound / 404010 ModuleNotFound when absent, 409001
// DeviceAlreadyExists / 409301 ModuleAlreadyExistsOnDevice on create conflicts.
type Store interface {
	// Create inserts a new identity with a fresh twin. A module's device must exist.
	Create(ctx context.Context, id *Identity) (*Identity, error)
	Get(ctx context.Context, deviceID, moduleID string) (*Identity, error)
	// Update loads the identity, calls fn and, if fn returns nil, saves it
	// with a new identity etag, all in one transaction.
	Update(ctx context.Context, deviceID, moduleID string, fn func(*Identity) error) (*Identity, error)
	// Delete removes the identity, its twin and, for a device, its modules,
	// if fn (called on the current identity in the same transaction) returns nil.
	Delete(ctx context.Context, deviceID, moduleID string, fn func(*Identity) error) error
	// List returns up to top devices ordered by id.
	List(ctx context.Context, top int) ([]*Identity, error)
	ListModules(ctx context.Context, deviceID string) ([]*Identity, error)
	Stats(ctx context.Context) (Stats, error)
	// SetConnection records a connect or disconnect without changing the etag.
	SetConnection(ctx context.Context, deviceID, moduleID, state string, at time.Time, modelID string) error
	// ConnectedCount counts identities whose state is Connected.
	ConnectedCount(ctx context.Context) (int, error)
	// Apply calls decide on each key's current identity (nil when absent),
	// in order, inside one transaction, and writes the Change it returns:
	// Insert stores the identity with a fresh identity etag and a fresh twin
	// (404001 if a module's device is missing), Replace saves it with a new
	// identity etag, Remove deletes it with its twin and, for a device, its
	// modules and stored MQTT sessions. Errors of one entry (from decide or
	// the checks above) come back in the slice, one per key, and leave the
	// other entries alone; any other error rolls everything back.
	Apply(ctx context.Context, keys []Key, decide func(i int, cur *Identity) (Change, error)) ([]error, error)
}

// SessionCloser closes a device's live connection; the broker implements it.
// With forget, the stored MQTT session (subscriptions) goes too.
type SessionCloser interface {
	CloseSession(deviceID, moduleID string, forget bool)
}

// Deps are the Service's collaborators, all required.
type Deps struct {
	Store Store
	// Sessions closes the live connections of disabled or deleted identities.
	Sessions SessionCloser
	// Twins writes the twin part of bulk and seed entries (tags, desired).
	Twins TwinWriter
}

// Config configures the registry.
type Config struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Directory is the part of the registry a device transport needs to
// authenticate devices and record their connection state. It exists apart
// from the Service because the transports are built before it: the Service
// closes their sessions.
type Directory struct {
	store   Store
	clock   func() time.Time
	changes connectionFeed // connection-state changes, for live views
}

// NewDirectory returns the Directory over store.
func NewDirectory(store Store, cfg Config) (*Directory, error) {
	if store == nil {
		return nil, errors.New("registry directory: missing required dependency: Store")
	}
	clock := cfg.Now
	if clock == nil {
		clock = time.Now
	}
	return &Directory{store: store, clock: clock}, nil
}

// Get returns an identity, or 404001 / 404010.
func (d *Directory) Get(ctx context.Context, deviceID, moduleID string) (*Identity, error) {
	return d.store.Get(ctx, deviceID, moduleID)
}

// SetConnection records that a device connected or disconnected (state
// "Connected" or "Disconnected"), and the model id it announced.
func (d *Directory) SetConnection(ctx context.Context, deviceID, moduleID, state, modelID string) error {
	at := d.now()
	if err := d.store.SetConnection(ctx, deviceID, moduleID, state, at, modelID); err != nil {
		return err
	}
	d.changes.get().Publish(ConnectionChange{DeviceID: deviceID, ModuleID: moduleID, State: state, Time: at})
	return nil
}

func (d *Directory) now() time.Time { return d.clock().UTC() }

// Service holds the registry's rules: validation, key generation, etag
// checks, and closing sessions of disabled or deleted identities.
type Service struct {
	Deps
	*Directory
}

// NewService returns the registry over deps.
func NewService(deps Deps, cfg Config) (*Service, error) {
	if err := iothub.CheckDeps("registry", deps); err != nil {
		return nil, err
	}
	dir, err := NewDirectory(deps.Store, cfg)
	if err != nil {
		return nil, err
	}
	return &Service{Deps: deps, Directory: dir}, nil
}

// notFound returns the hub's not-found error for an identity.
func notFound(deviceID, moduleID string) error {
	if moduleID != "" {
		return iothub.Errorf(iothub.ModuleNotFound, "Module %s on device %s not found.", moduleID, deviceID)
	}
	return iothub.Errorf(iothub.DeviceNotFound, "Device %s not found.", deviceID)
}

// NotFound is exported for stores.
func NotFound(deviceID, moduleID string) error { return notFound(deviceID, moduleID) }

// ValidateID checks a device or module id: up to 128 characters of ASCII
// letters, digits and - . + % _ # * ? ! ( ) , = @ $ ' (digest §5).
func ValidateID(kind, id string) error {
	if id == "" {
		return iothub.Errorf(iothub.ArgumentNull, "%s cannot be null or empty.", kind)
	}
	if len(id) > 128 {
		return iothub.Errorf(iothub.ArgumentInvalid, "%s '%s' is longer than 128 characters.", kind, id)
	}
	for _, r := range id {
		if (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || strings.ContainsRune("-.+%_#*?!(),=@$'", r) {
			continue
		}
		return iothub.Errorf(iothub.ArgumentInvalid, "%s '%s' is invalid: character %q is not allowed.", kind, id, r)
	}
	return nil
}

// NewKey returns a key as the hub generates one: 32 random bytes, base64.
func NewKey() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return base64.StdEncoding.EncodeToString(b)
}

func validateKey(name, key string) error {
	raw, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return iothub.Errorf(iothub.ArgumentInvalid, "The %s is not a valid base64 string.", name)
	}
	if len(raw) < 16 || len(raw) > 64 {
		return iothub.Errorf(iothub.ArgumentInvalid, "The %s must be between 16 and 64 bytes long, got %d.", name, len(raw))
	}
	return nil
}

func validThumbprint(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return true
}

// normalize validates id's mutable fields and fills defaults (keys, status,
// auth type) as the hub does on create and update.
func (s *Service) normalize(id *Identity) error {
	switch id.Status {
	case "":
		id.Status = StatusEnabled
	case StatusEnabled, StatusDisabled:
	default:
		if strings.EqualFold(id.Status, StatusEnabled) {
			id.Status = StatusEnabled
		} else if strings.EqualFold(id.Status, StatusDisabled) {
			id.Status = StatusDisabled
		} else {
			return iothub.Errorf(iothub.ArgumentInvalid, "Invalid status '%s': must be 'enabled' or 'disabled'.", id.Status)
		}
	}
	if len(id.StatusReason) > 128 {
		return iothub.Errorf(iothub.ArgumentInvalid, "statusReason is longer than 128 characters.")
	}
	a := &id.Auth
	switch strings.ToLower(a.Type) {
	case "", "sas":
		a.Type = AuthSAS
		if a.PrimaryThumbprint != "" || a.SecondaryThumbprint != "" {
			return iothub.Errorf(iothub.ArgumentInvalid, "Thumbprints cannot be set for authentication type 'sas'.")
		}
		if a.PrimaryKey == "" {
			a.PrimaryKey = NewKey()
		} else if err := validateKey("primary key", a.PrimaryKey); err != nil {
			return err
		}
		if a.SecondaryKey == "" {
			a.SecondaryKey = NewKey()
		} else if err := validateKey("secondary key", a.SecondaryKey); err != nil {
			return err
		}
	case "selfsigned":
		a.Type = AuthSelfSigned
		if a.PrimaryKey != "" || a.SecondaryKey != "" {
			return iothub.Errorf(iothub.ArgumentInvalid, "Symmetric keys cannot be set for authentication type 'selfSigned'.")
		}
		if !validThumbprint(a.PrimaryThumbprint) || (a.SecondaryThumbprint != "" && !validThumbprint(a.SecondaryThumbprint)) {
			return iothub.Errorf(iothub.ArgumentInvalid, "Thumbprints must be 40 (SHA-1) or 64 (SHA-256) hexadecimal characters.")
		}
		a.PrimaryThumbprint = strings.ToUpper(a.PrimaryThumbprint)
		a.SecondaryThumbprint = strings.ToUpper(a.SecondaryThumbprint)
	case "certificateauthority":
		a.Type = AuthCertificateAuthority
		a.PrimaryKey, a.SecondaryKey, a.PrimaryThumbprint, a.SecondaryThumbprint = "", "", "", ""
	case "none":
		a.Type = AuthNone
		a.PrimaryKey, a.SecondaryKey, a.PrimaryThumbprint, a.SecondaryThumbprint = "", "", "", ""
	default:
		return iothub.Errorf(iothub.ArgumentInvalid, "Invalid authentication type '%s'.", a.Type)
	}
	return nil
}

// ETagString renders an identity etag counter as the hub does: base64 of its
// ASCII decimal ("MA==" is 0).
func ETagString(n int64) string {
	return base64.StdEncoding.EncodeToString([]byte(strconv.FormatInt(n, 10)))
}

// Create registers a new device or module. Returns 400004 for invalid input,
// 409001/409301 when it exists, 404001 when a module's device is missing.
func (s *Service) Create(ctx context.Context, id *Identity) (*Identity, error) {
	if err := ValidateID("DeviceId", id.DeviceID); err != nil {
		return nil, err
	}
	if id.ModuleID != "" {
		if err := ValidateID("ModuleId", id.ModuleID); err != nil {
			return nil, err
		}
	}
	if err := s.normalize(id); err != nil {
		return nil, err
	}
	now := s.now()
	id.GenerationID = generationID(now)
	if err := s.resolveScopes(ctx, id, nil); err != nil {
		return nil, err
	}
	id.ConnectionState = Disconnected
	id.StatusUpdatedTime, id.ConnectionStateUpdatedTime, id.LastActivityTime = time.Time{}, time.Time{}, time.Time{}
	id.CloudToDeviceMessageCount = 0
	return s.Store.Create(ctx, id)
}

// generationID mimics the hub's 18-digit .NET-ticks string; it changes when
// a device is deleted and created again.
func generationID(now time.Time) string {
	const ticksAtUnixEpoch = 621355968000000000
	return strconv.FormatInt(ticksAtUnixEpoch+now.UnixNano()/100, 10)
}

// Update replaces an identity's mutable fields when ifMatch matches its etag.
// Returns 412001 PreconditionFailed on a stale etag, 404 when absent.
func (s *Service) Update(ctx context.Context, ifMatch string, in *Identity) (*Identity, error) {
	if err := s.normalize(in); err != nil {
		return nil, err
	}
	if !in.IsModule() {
		// Scopes name other devices: check them before the update's
		// transaction, which must not read the store again.
		cur, err := s.Store.Get(ctx, in.DeviceID, "")
		if err != nil {
			return nil, err
		}
		in.GenerationID = cur.GenerationID
		if err := s.resolveScopes(ctx, in, cur); err != nil {
			return nil, err
		}
	}
	var disabled bool
	out, err := s.Store.Update(ctx, in.DeviceID, in.ModuleID, func(cur *Identity) error {
		if !iothub.MatchETag(ifMatch, ETagString(cur.ETag)) {
			return iothub.Errorf(iothub.PreconditionFailed, "PreconditionFailed, ETag may be invalid.")
		}
		if cur.Status != in.Status {
			cur.StatusUpdatedTime = s.now()
			disabled = in.Status == StatusDisabled
		}
		cur.Status, cur.StatusReason = in.Status, in.StatusReason
		cur.Auth = in.Auth
		cur.IotEdge = in.IotEdge
		cur.ManagedBy = in.ManagedBy
		if !in.IsModule() {
			cur.DeviceScope, cur.ParentScopes = in.DeviceScope, in.ParentScopes
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if disabled {
		s.Sessions.CloseSession(out.DeviceID, out.ModuleID, false)
		if out.ModuleID == "" {
			// A disabled device's modules cannot connect either.
			modules, _ := s.Store.ListModules(ctx, out.DeviceID)
			for _, m := range modules {
				s.Sessions.CloseSession(m.DeviceID, m.ModuleID, false)
			}
		}
	}
	return out, nil
}

// Delete removes an identity when ifMatch matches, and closes its session
// (and, for a device, its modules' sessions).
func (s *Service) Delete(ctx context.Context, deviceID, moduleID, ifMatch string) error {
	var modules []*Identity
	if moduleID == "" {
		modules, _ = s.Store.ListModules(ctx, deviceID)
	}
	err := s.Store.Delete(ctx, deviceID, moduleID, func(cur *Identity) error {
		if !iothub.MatchETag(ifMatch, ETagString(cur.ETag)) {
			return iothub.Errorf(iothub.PreconditionFailed, "PreconditionFailed, ETag may be invalid.")
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.Sessions.CloseSession(deviceID, moduleID, true)
	for _, m := range modules {
		s.Sessions.CloseSession(m.DeviceID, m.ModuleID, true)
	}
	return nil
}

// List returns up to top devices; top outside 1..1000 means 1000, as the hub.
func (s *Service) List(ctx context.Context, top int) ([]*Identity, error) {
	if top <= 0 || top > 1000 {
		top = 1000
	}
	return s.Store.List(ctx, top)
}

// ListModules returns a device's modules; 404001 if the device is missing.
func (s *Service) ListModules(ctx context.Context, deviceID string) ([]*Identity, error) {
	if _, err := s.Store.Get(ctx, deviceID, ""); err != nil {
		return nil, err
	}
	return s.Store.ListModules(ctx, deviceID)
}

// Stats returns the registry statistics.
func (s *Service) Stats(ctx context.Context) (Stats, error) { return s.Store.Stats(ctx) }

// ConnectedCount returns the number of connected devices.
func (s *Service) ConnectedCount(ctx context.Context) (int, error) {
	return s.Store.ConnectedCount(ctx)
}
