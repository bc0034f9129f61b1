package provisioning

import (
	"context"
	"encoding/base64"
	"errors"
	"hash/fnv"

	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// DefaultIDScope is the well-known ID scope, fixed so that scripts and docs
// can hard-code it (real scopes look like 0ne + 8 hex digits).
const DefaultIDScope = "0ne00000000"

// DefaultRetryAfter is the polling interval the service asks devices for
// (the retry-after of a 202); the cloud says 3 seconds.
const DefaultRetryAfter = 1 * time.Second

// Store persists enrollments and registration states. Get and Delete return
// 404000 GenericNotFound when the record is absent. Lists are ordered by id.
type Store interface {
	GetEnrollment(ctx context.Context, registrationID string) (*Enrollment, error)
	PutEnrollment(ctx context.Context, e *Enrollment) error
	DeleteEnrollment(ctx context.Context, registrationID string) error
	ListEnrollments(ctx context.Context) ([]*Enrollment, error)

	GetGroup(ctx context.Context, groupID string) (*EnrollmentGroup, error)
	PutGroup(ctx context.Context, g *EnrollmentGroup) error
	DeleteGroup(ctx context.Context, groupID string) error
	ListGroups(ctx context.Context) ([]*EnrollmentGroup, error)

	GetRegistration(ctx context.Context, registrationID string) (*RegistrationState, error)
	PutRegistration(ctx context.Context, r *RegistrationState) error
	DeleteRegistration(ctx context.Context, registrationID string) error
	// ListRegistrations returns the states of one enrollment group's devices.
	ListRegistrations(ctx context.Context, groupID string) ([]*RegistrationState, error)
}

// Registry is what assignment needs from the hub's identity registry.
type Registry interface {
	Get(ctx context.Context, deviceID, moduleID string) (*registry.Identity, error)
	Create(ctx context.Context, id *registry.Identity) (*registry.Identity, error)
	Update(ctx context.Context, ifMatch string, in *registry.Identity) (*registry.Identity, error)
}

// Twins is what assignment needs from the twin service.
type Twins interface {
	ReplaceService(ctx context.Context, key twins.Key, ifMatch string, tags, desired map[string]any) (*twins.Twin, error)
}

// Deps are the Service's collaborators, all required.
type Deps struct {
	Store    Store
	Registry Registry
	Twins    Twins
}

// Config configures the Service.
type Config struct {
	// IDScope is the scope devices name; DefaultIDScope when empty.
	IDScope string
	// HubHostName is what devices get as assignedHub.
	HubHostName string
	// RetryAfter is the polling interval asked of devices; DefaultRetryAfter
	// when zero.
	RetryAfter time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Service is the Device Provisioning Service.
type Service struct {
	Deps
	cfg Config
	// writes serializes the service API's read-check-write of enrollments,
	// so an etag check and the write it guards are one step.
	writes sync.Mutex
	// regs serializes registrations of one registration id.
	regs [64]sync.Mutex
	// closed makes every call after Close return iothub.ErrClosed.
	closed atomic.Bool
}

// Close stops the service: it waits for the writes and registrations in
// progress, and every later call returns iothub.ErrClosed. Safe to call twice.
func (s *Service) Close() error {
	s.closed.Store(true)
	// Taking each lock once waits for the call that holds it; later calls
	// see closed.
	s.writes.Lock()
	s.writes.Unlock() //lint:ignore SA2001 the empty critical section is the wait
	for i := range s.regs {
		s.regs[i].Lock()
		s.regs[i].Unlock() //lint:ignore SA2001 the empty critical section is the wait
	}
	return nil
}

// lockWrites takes the service API's write lock, unless the service is closed.
func (s *Service) lockWrites() error {
	s.writes.Lock()
	if s.closed.Load() {
		s.writes.Unlock()
		return iothub.ErrClosed
	}
	return nil
}

// NewService returns a Service over deps.
func NewService(deps Deps, cfg Config) (*Service, error) {
	if err := iothub.CheckDeps("provisioning", deps); err != nil {
		return nil, err
	}
	if cfg.IDScope == "" {
		cfg.IDScope = DefaultIDScope
	}
	if cfg.HubHostName == "" {
		cfg.HubHostName = "localhost"
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = DefaultRetryAfter
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{Deps: deps, cfg: cfg}, nil
}

// IDScope is the service's ID scope.
func (s *Service) IDScope() string { return s.cfg.IDScope }

// RetryAfter is the polling interval devices are asked to keep.
func (s *Service) RetryAfter() time.Duration { return s.cfg.RetryAfter }

func (s *Service) now() time.Time { return s.cfg.Now().UTC() }

// newETag renders an etag as DPS does: base64 of a quoted GUID.
func newETag() string {
	return base64.StdEncoding.EncodeToString([]byte(`"` + uuid.NewString() + `"`))
}

// matchETag applies If-Match: empty or * match anything.
func matchETag(ifMatch, etag string) bool {
	v := strings.Trim(strings.TrimPrefix(strings.TrimSpace(ifMatch), "W/"), `"`)
	return v == "" || v == "*" || v == strings.Trim(etag, `"`)
}

func preconditionFailed() error {
	return iothub.Errorf(iothub.PreconditionFailed, "Precondition failed: the etag does not match.")
}

func badRequest(format string, args ...any) error {
	return iothub.Errorf(iothub.ArgumentInvalid, format, args...)
}

// ValidateRegistrationID checks a registration id as DPS does: up to 128
// characters, lower-case letters, digits and - . _ :, ending with a letter,
// digit or dash.
func ValidateRegistrationID(id string) error {
	if id == "" {
		return badRequest("The registration id cannot be empty.")
	}
	if len(id) > 128 {
		return badRequest("The registration id '%s' is longer than 128 characters.", id)
	}
	for _, r := range id {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || strings.ContainsRune("-._:", r) {
			continue
		}
		return badRequest("The registration id '%s' is invalid: use lower-case letters, digits and - . _ : only.", id)
	}
	if last := id[len(id)-1]; last == '.' || last == '_' || last == ':' {
		return badRequest("The registration id '%s' must end with a letter, a digit or '-'.", id)
	}
	return nil
}

// ---- individual enrollments ----

// PutEnrollment creates or replaces an individual enrollment. ifMatch must
// match an existing enrollment's etag (412 otherwise). Empty symmetric keys
// are generated; the stored enrollment is returned.
func (s *Service) PutEnrollment(ctx context.Context, id, ifMatch string, e *Enrollment) (*Enrollment, error) {
	if e.RegistrationID == "" {
		e.RegistrationID = id
	}
	if e.RegistrationID != id {
		return nil, badRequest("The registration id in the body ('%s') is not the one in the path ('%s').", e.RegistrationID, id)
	}
	if err := ValidateRegistrationID(id); err != nil {
		return nil, err
	}
	if e.DeviceID != "" {
		if err := registry.ValidateID("DeviceId", e.DeviceID); err != nil {
			return nil, err
		}
	}
	if err := s.normalize(&e.Attestation, false, &e.ProvisioningStatus, &e.ReprovisionPolicy, &e.InitialTwin); err != nil {
		return nil, err
	}
	if err := s.lockWrites(); err != nil {
		return nil, err
	}
	defer s.writes.Unlock()
	cur, err := s.Store.GetEnrollment(ctx, id)
	if err != nil && iothub.CodeOf(err) != iothub.GenericNotFound {
		return nil, err
	}
	now := s.now()
	e.CreatedDateTimeUTC = now
	if cur != nil {
		if !matchETag(ifMatch, cur.ETag) {
			return nil, preconditionFailed()
		}
		e.CreatedDateTimeUTC = cur.CreatedDateTimeUTC
	}
	e.LastUpdatedDateTimeUTC = now
	e.ETag = newETag()
	e.IoTHubHostName = s.cfg.HubHostName
	e.IoTHubs = nil
	e.RegistrationState = nil
	if e.AllocationPolicy == "" {
		e.AllocationPolicy = "hashed"
	}
	if err := s.Store.PutEnrollment(ctx, e); err != nil {
		return nil, err
	}
	return e, nil
}

// GetEnrollment returns an individual enrollment with its registration
// state, if the device registered.
func (s *Service) GetEnrollment(ctx context.Context, id string) (*Enrollment, error) {
	e, err := s.Store.GetEnrollment(ctx, id)
	if err != nil {
		return nil, err
	}
	if r, err := s.Store.GetRegistration(ctx, id); err == nil && r.EnrollmentGroupID == "" {
		e.RegistrationState = r
	}
	return e, nil
}

// DeleteEnrollment deletes an individual enrollment when ifMatch matches.
// The device stays in the hub, as with DPS.
func (s *Service) DeleteEnrollment(ctx context.Context, id, ifMatch string) error {
	if err := s.lockWrites(); err != nil {
		return err
	}
	defer s.writes.Unlock()
	cur, err := s.Store.GetEnrollment(ctx, id)
	if err != nil {
		return err
	}
	if !matchETag(ifMatch, cur.ETag) {
		return preconditionFailed()
	}
	return s.Store.DeleteEnrollment(ctx, id)
}

// Enrollments returns every individual enrollment (the enrollment query:
// DPS accepts only "SELECT *" specifications, with paging done by callers).
func (s *Service) Enrollments(ctx context.Context) ([]*Enrollment, error) {
	return s.Store.ListEnrollments(ctx)
}

// Bulk modes.
const (
	BulkCreate            = "create"
	BulkUpdate            = "update"
	BulkUpdateIfMatchETag = "updateIfMatchETag"
	BulkDelete            = "delete"
)

// MaxBulkEnrollments bounds one bulk operation, as DPS does.
const MaxBulkEnrollments = 10

// Bulk runs one operation on up to MaxBulkEnrollments enrollments; each
// entry succeeds or fails on its own.
func (s *Service) Bulk(ctx context.Context, mode string, list []*Enrollment) (*BulkResult, error) {
	if len(list) == 0 || len(list) > MaxBulkEnrollments {
		return nil, badRequest("A bulk operation takes 1 to %d enrollments, not %d.", MaxBulkEnrollments, len(list))
	}
	switch mode {
	case BulkCreate, BulkUpdate, BulkUpdateIfMatchETag, BulkDelete:
	default:
		return nil, badRequest("Unknown bulk operation mode '%s'.", mode)
	}
	res := &BulkResult{IsSuccessful: true, Errors: []BulkError{}}
	for _, e := range list {
		if e == nil {
			return nil, badRequest("A bulk operation entry is null.")
		}
		var err error
		switch mode {
		case BulkCreate:
			if _, gerr := s.Store.GetEnrollment(ctx, e.RegistrationID); gerr == nil {
				err = iothub.Errorf(iothub.DeviceAlreadyExists, "Enrollment '%s' already exists.", e.RegistrationID)
			} else {
				_, err = s.PutEnrollment(ctx, e.RegistrationID, "", e)
			}
		case BulkUpdate:
			_, err = s.PutEnrollment(ctx, e.RegistrationID, "", e)
		case BulkUpdateIfMatchETag:
			_, err = s.PutEnrollment(ctx, e.RegistrationID, e.ETag, e)
		case BulkDelete:
			err = s.DeleteEnrollment(ctx, e.RegistrationID, e.ETag)
		}
		if err != nil {
			var he *iothub.Error
			if !errors.As(err, &he) {
				return nil, err
			}
			res.IsSuccessful = false
			res.Errors = append(res.Errors, BulkError{RegistrationID: e.RegistrationID, ErrorCode: int(he.Code), ErrorStatus: he.Message})
		}
	}
	return res, nil
}

// ---- enrollment groups ----

// PutGroup creates or replaces an enrollment group (see PutEnrollment).
func (s *Service) PutGroup(ctx context.Context, id, ifMatch string, g *EnrollmentGroup) (*EnrollmentGroup, error) {
	if g.EnrollmentGroupID == "" {
		g.EnrollmentGroupID = id
	}
	if g.EnrollmentGroupID != id {
		return nil, badRequest("The enrollment group id in the body ('%s') is not the one in the path ('%s').", g.EnrollmentGroupID, id)
	}
	if err := ValidateRegistrationID(strings.ToLower(id)); err != nil {
		return nil, err
	}
	if err := s.normalize(&g.Attestation, true, &g.ProvisioningStatus, &g.ReprovisionPolicy, &g.InitialTwin); err != nil {
		return nil, err
	}
	if err := s.lockWrites(); err != nil {
		return nil, err
	}
	defer s.writes.Unlock()
	cur, err := s.Store.GetGroup(ctx, id)
	if err != nil && iothub.CodeOf(err) != iothub.GenericNotFound {
		return nil, err
	}
	now := s.now()
	g.CreatedDateTimeUTC = now
	if cur != nil {
		if !matchETag(ifMatch, cur.ETag) {
			return nil, preconditionFailed()
		}
		g.CreatedDateTimeUTC = cur.CreatedDateTimeUTC
	}
	g.LastUpdatedDateTimeUTC = now
	g.ETag = newETag()
	g.IoTHubHostName = s.cfg.HubHostName
	g.IoTHubs = nil
	if g.AllocationPolicy == "" {
		g.AllocationPolicy = "hashed"
	}
	if err := s.Store.PutGroup(ctx, g); err != nil {
		return nil, err
	}
	return g, nil
}

// GetGroup returns an enrollment group.
func (s *Service) GetGroup(ctx context.Context, id string) (*EnrollmentGroup, error) {
	return s.Store.GetGroup(ctx, id)
}

// DeleteGroup deletes an enrollment group when ifMatch matches.
func (s *Service) DeleteGroup(ctx context.Context, id, ifMatch string) error {
	if err := s.lockWrites(); err != nil {
		return err
	}
	defer s.writes.Unlock()
	cur, err := s.Store.GetGroup(ctx, id)
	if err != nil {
		return err
	}
	if !matchETag(ifMatch, cur.ETag) {
		return preconditionFailed()
	}
	return s.Store.DeleteGroup(ctx, id)
}

// Groups returns every enrollment group.
func (s *Service) Groups(ctx context.Context) ([]*EnrollmentGroup, error) {
	return s.Store.ListGroups(ctx)
}

// ---- registration states ----

// Registration returns a device's registration state.
func (s *Service) Registration(ctx context.Context, id string) (*RegistrationState, error) {
	return s.Store.GetRegistration(ctx, id)
}

// DeleteRegistration forgets a device's registration state when ifMatch
// matches; its next registration is an initial assignment again.
func (s *Service) DeleteRegistration(ctx context.Context, id, ifMatch string) error {
	mu := s.regLock(id)
	mu.Lock()
	defer mu.Unlock()
	if s.closed.Load() {
		return iothub.ErrClosed
	}
	cur, err := s.Store.GetRegistration(ctx, id)
	if err != nil {
		return err
	}
	if !matchETag(ifMatch, cur.ETag) {
		return preconditionFailed()
	}
	return s.Store.DeleteRegistration(ctx, id)
}

// GroupRegistrations returns the registration states of a group's devices.
func (s *Service) GroupRegistrations(ctx context.Context, groupID string) ([]*RegistrationState, error) {
	if _, err := s.Store.GetGroup(ctx, groupID); err != nil {
		return nil, err
	}
	return s.Store.ListRegistrations(ctx, groupID)
}

func (s *Service) regLock(id string) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return &s.regs[h.Sum32()%uint32(len(s.regs))]
}

// ---- validation ----

// normalize checks and completes an attestation and the common settings of
// an enrollment (group is true for enrollment groups).
func (s *Service) normalize(a *Attestation, group bool, status *string, policy **ReprovisionPolicy, twin **InitialTwin) error {
	switch a.Type {
	case AttestationSymmetricKey:
		if a.SymmetricKey == nil {
			a.SymmetricKey = &SymmetricKey{}
		}
		if a.SymmetricKey.PrimaryKey == "" {
			a.SymmetricKey.PrimaryKey = registry.NewKey()
		}
		if a.SymmetricKey.SecondaryKey == "" {
			a.SymmetricKey.SecondaryKey = registry.NewKey()
		}
		for _, k := range []string{a.SymmetricKey.PrimaryKey, a.SymmetricKey.SecondaryKey} {
			if b, err := base64.StdEncoding.DecodeString(k); err != nil || len(b) < 16 || len(b) > 64 {
				return badRequest("A symmetric key must be base64 of 16 to 64 bytes.")
			}
		}
		a.X509, a.TPM = nil, nil
	case AttestationX509:
		if err := normalizeX509(a.X509, group); err != nil {
			return err
		}
		a.SymmetricKey, a.TPM = nil, nil
	case AttestationTPM:
		return badRequest("TPM attestation is not supported by the emulator.")
	case "":
		return badRequest("The attestation mechanism is required.")
	default:
		return badRequest("Unknown attestation type '%s'.", a.Type)
	}
	switch *status {
	case "":
		*status = StatusEnabled
	case StatusEnabled, StatusDisabled:
	default:
		return badRequest("provisioningStatus must be enabled or disabled, not '%s'.", *status)
	}
	if *policy == nil {
		*policy = &ReprovisionPolicy{UpdateHubAssignment: true, MigrateDeviceData: true}
	}
	if *twin != nil {
		t := *twin
		if t.Tags == nil && t.Properties.Desired == nil {
			*twin = nil
		}
	}
	return nil
}

// DefaultServiceKey is the well-known key of the provisioningserviceowner
// policy, printed in the banner like the hub's keys.
const DefaultServiceKey = "MACPnWPUbIqeE5bvBsnGci+q9Ojmd9r/EmOhSjSYdtc="
