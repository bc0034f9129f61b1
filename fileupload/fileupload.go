// Package fileupload is the hub's device file upload: a device asks for a
// SAS URI of a blob in the hub's storage container (POST
// /devices/{id}/files), uploads to the storage account itself, and tells the
// hub how it went (POST /devices/{id}/files/notifications); successful
// uploads become file notifications for back ends. The storage account
// (Azurite locally) is reached through the Storage interface; pending
// uploads and notifications are kept in a Store.
package fileupload

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// Storage is the storage account behind file upload.
type Storage interface {
	// HostName is what devices put before /container/blob: the blob
	// endpoint without its scheme ("account.blob.core.windows.net", or
	// "127.0.0.1:10000/devstoreaccount1" for Azurite).
	HostName() string
	// BlobURL is the blob's URI without a SAS.
	BlobURL(container, blob string) string
	// BlobSAS returns a service SAS ("?sv=…&sig=…") that lets its holder
	// create, write and read one blob until expiry.
	BlobSAS(container, blob string, expiry time.Time) string
	// EnsureContainer creates the container when it does not exist.
	EnsureContainer(ctx context.Context, container string) error
	// BlobSize returns the size of a blob.
	BlobSize(ctx context.Context, container, blob string) (int64, error)
}

// Upload is a SAS URI handed to a device and not yet settled by its
// notification.
type Upload struct {
	CorrelationID string
	DeviceID      string
	Container     string
	BlobName      string // with the device id prefix
	Created       time.Time
	Expires       time.Time
}

// Notification is a file notification (the hub's filenotifications node).
type Notification struct {
	// Seq orders notifications; it never goes backwards.
	Seq             int64
	DeviceID        string
	BlobURI         string
	BlobName        string
	LastUpdatedTime time.Time
	BlobSizeInBytes int64
	EnqueuedTime    time.Time
}

// Store keeps pending uploads and notifications.
type Store interface {
	// AddUpload records u unless the device already has max uploads
	// pending (403002 IotHubQuotaExceeded); expired ones do not count and
	// are dropped.
	AddUpload(ctx context.Context, u Upload, max int, now time.Time) error
	// TakeUpload removes and returns a device's pending upload; 400004
	// ArgumentInvalid when there is none with that correlation id.
	TakeUpload(ctx context.Context, deviceID, correlationID string) (*Upload, error)
	// AddNotification appends n, assigning Seq, and drops notifications
	// beyond keep (oldest first) or enqueued before notBefore.
	AddNotification(ctx context.Context, n *Notification, keep int, notBefore time.Time) error
	// Notifications lists notifications with Seq > after, oldest first,
	// for one device or all (deviceID ""), at most limit.
	Notifications(ctx context.Context, deviceID string, after int64, limit int) ([]Notification, error)
}

// Config tunes file upload.
type Config struct {
	// Container is the storage container uploads go to.
	Container string
	// SASTTL is how long a SAS URI stays valid (the hub's default: 1 hour).
	SASTTL time.Duration
	// MaxPending bounds a device's concurrent uploads (the hub: 10).
	MaxPending int
	// NotificationTTL and MaxNotifications bound the kept notifications
	// (the hub keeps them an hour by default).
	NotificationTTL  time.Duration
	MaxNotifications int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig holds the hub's defaults.
func DefaultConfig() Config {
	return Config{Container: "fileupload", SASTTL: time.Hour, MaxPending: 10, NotificationTTL: time.Hour, MaxNotifications: 10000}
}

// Deps are the service's collaborators. Storage may be nil: file upload is
// then not configured, as on a hub without a storage account.
type Deps struct {
	Storage Storage
	Store   Store
}

// NotificationSource is what a consumer of file notifications needs (the
// emulator's REST stand-in today, the AMQP filenotifications node later):
// the kept notifications after a sequence number, and a signal for new ones.
// *Service is one.
type NotificationSource interface {
	Notifications(ctx context.Context, deviceID string, after int64, limit int) ([]Notification, error)
	// Changed returns a channel that is closed when a notification is
	// stored after the call: take it, read Notifications, then wait on it.
	Changed() <-chan struct{}
}

// Service runs file upload.
type Service struct {
	d   Deps
	cfg Config

	mu      sync.Mutex
	changed chan struct{}
}

var _ NotificationSource = (*Service)(nil)

// NewService returns a service; zero Config fields take DefaultConfig's.
func NewService(d Deps, cfg Config) (*Service, error) {
	if err := iothub.CheckDeps("fileupload", d, "Storage"); err != nil {
		return nil, err
	}
	def := DefaultConfig()
	if cfg.Container == "" {
		cfg.Container = def.Container
	}
	if cfg.SASTTL <= 0 {
		cfg.SASTTL = def.SASTTL
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = def.MaxPending
	}
	if cfg.NotificationTTL <= 0 {
		cfg.NotificationTTL = def.NotificationTTL
	}
	if cfg.MaxNotifications <= 0 {
		cfg.MaxNotifications = def.MaxNotifications
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{d: d, cfg: cfg, changed: make(chan struct{})}, nil
}

// Close releases nothing; it keeps the hub's shutdown uniform.
func (s *Service) Close() error { return nil }

// Configured reports whether a storage account is set.
func (s *Service) Configured() bool { return s.d.Storage != nil }

// SASInfo is the answer to POST /devices/{id}/files.
type SASInfo struct {
	CorrelationID, HostName, ContainerName, BlobName, SASToken string
}

// MaxBlobNameLength is the longest blob name storage accepts.
const MaxBlobNameLength = 1024

// Start hands a device a SAS URI for blobName, stored as
// "{deviceId}/{blobName}" in the configured container, as the hub does.
func (s *Service) Start(ctx context.Context, deviceID, blobName string) (*SASInfo, error) {
	if s.d.Storage == nil {
		return nil, iothub.Errorf(iothub.BlobContainerValidationError, "File upload is not configured: start the emulator with --storage-connection-string.")
	}
	if strings.TrimSpace(blobName) == "" {
		return nil, iothub.Errorf(iothub.ArgumentNull, "blobName is required.")
	}
	full := deviceID + "/" + blobName
	if len(full) > MaxBlobNameLength {
		return nil, iothub.Errorf(iothub.ArgumentInvalid, "The blob name is longer than %d characters.", MaxBlobNameLength)
	}
	if err := s.d.Storage.EnsureContainer(ctx, s.cfg.Container); err != nil {
		return nil, iothub.Wrap(iothub.BlobContainerValidationError, err, "The storage container '%s' could not be reached: %v", s.cfg.Container, err)
	}
	now := s.cfg.Now().UTC()
	u := Upload{CorrelationID: correlationID(), DeviceID: deviceID, Container: s.cfg.Container, BlobName: full,
		Created: now, Expires: now.Add(s.cfg.SASTTL)}
	if err := s.d.Store.AddUpload(ctx, u, s.cfg.MaxPending, now); err != nil {
		return nil, err
	}
	return &SASInfo{
		CorrelationID: u.CorrelationID, HostName: s.d.Storage.HostName(), ContainerName: u.Container,
		BlobName: u.BlobName, SASToken: s.d.Storage.BlobSAS(u.Container, u.BlobName, u.Expires),
	}, nil
}

// correlationID is opaque to devices; the hub's are base64-like strings, a
// UUID serves as well.
func correlationID() string { return uuid.NewString() }

// Result is a device's upload outcome.
type Result struct {
	CorrelationID     string
	IsSuccess         bool
	StatusCode        int
	StatusDescription string
}

// Complete settles an upload. A successful one becomes a file notification
// with the blob's size as storage reports it.
func (s *Service) Complete(ctx context.Context, deviceID string, r Result) error {
	if r.CorrelationID == "" {
		return iothub.Errorf(iothub.ArgumentNull, "correlationId is required.")
	}
	u, err := s.d.Store.TakeUpload(ctx, deviceID, r.CorrelationID)
	if err != nil {
		return err
	}
	if !r.IsSuccess || s.d.Storage == nil {
		return nil
	}
	now := s.cfg.Now().UTC()
	size, err := s.d.Storage.BlobSize(ctx, u.Container, u.BlobName)
	if err != nil {
		size = 0 // the device says it uploaded; the notification still goes out
	}
	n := &Notification{
		DeviceID: deviceID, BlobURI: s.d.Storage.BlobURL(u.Container, u.BlobName), BlobName: u.BlobName,
		LastUpdatedTime: now, BlobSizeInBytes: size, EnqueuedTime: now,
	}
	if err := s.d.Store.AddNotification(ctx, n, s.cfg.MaxNotifications, now.Add(-s.cfg.NotificationTTL)); err != nil {
		return err
	}
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return nil
}

// Changed returns a channel closed by the next stored notification.
func (s *Service) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Notifications lists kept notifications after a sequence number.
func (s *Service) Notifications(ctx context.Context, deviceID string, after int64, limit int) ([]Notification, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	return s.d.Store.Notifications(ctx, deviceID, after, limit)
}
