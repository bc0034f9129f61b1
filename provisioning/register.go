package provisioning

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/sasauth"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// Credentials are what a device presents to register: the scope and
// registration id it names, and a SAS token (symmetric keys) or its TLS
// client certificate chain (X.509).
type Credentials struct {
	IDScope        string
	RegistrationID string
	SASToken       string
	Certificates   []*x509.Certificate
	// Attested is set by a transport that authenticated the connection
	// (MQTT at CONNECT): reading the operation status then needs no new
	// check. Register always checks, as the enrollment may have changed.
	Attested bool
}

// DeriveKey returns a device's key in a symmetric-key enrollment group:
// base64(HMAC-SHA256(registrationId) keyed with the decoded group key), as
// the SDKs and DPS derive it.
func DeriveKey(groupKey, registrationID string) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(groupKey)
	if err != nil {
		return "", err
	}
	mac := hmac.New(sha256.New, raw)
	mac.Write([]byte(registrationID))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}

// attested is an enrollment a device proved it belongs to.
type attested struct {
	regID      string
	enrollment *Enrollment      // individual, or
	group      *EnrollmentGroup // group
	// auth is what the device will use with the hub.
	auth registry.Authentication
}

func (a *attested) settings() (deviceID, status string, caps *Capabilities, twin *InitialTwin, policy *ReprovisionPolicy, groupID string) {
	if a.enrollment != nil {
		e := a.enrollment
		deviceID = e.DeviceID
		if deviceID == "" {
			deviceID = a.regID
		}
		return deviceID, e.ProvisioningStatus, e.Capabilities, e.InitialTwin, e.ReprovisionPolicy, ""
	}
	g := a.group
	return a.regID, g.ProvisioningStatus, g.Capabilities, g.InitialTwin, g.ReprovisionPolicy, g.EnrollmentGroupID
}

func unauthorized(format string, args ...any) error {
	return iothub.Errorf(iothub.IotHubUnauthorizedAccess, format, args...)
}

// Authenticate checks a device's credentials against the enrollments:
// an individual enrollment of its registration id first, then the groups.
// Every failure is 401002, as DPS gives no hint which part was wrong.
func (s *Service) Authenticate(ctx context.Context, c Credentials) error {
	_, err := s.attest(ctx, c)
	return err
}

func (s *Service) attest(ctx context.Context, c Credentials) (*attested, error) {
	if s.closed.Load() {
		return nil, iothub.ErrClosed
	}
	if c.IDScope != s.cfg.IDScope {
		return nil, unauthorized("Unauthorized: unknown ID scope '%s'.", c.IDScope)
	}
	if err := ValidateRegistrationID(c.RegistrationID); err != nil {
		return nil, err
	}
	if c.SASToken != "" {
		return s.attestSAS(ctx, c)
	}
	if len(c.Certificates) > 0 {
		return s.attestX509(ctx, c)
	}
	return nil, unauthorized("Unauthorized: no SAS token and no client certificate.")
}

func (s *Service) attestSAS(ctx context.Context, c Credentials) (*attested, error) {
	t, err := sasauth.Parse(c.SASToken)
	if err != nil {
		return nil, unauthorized("Unauthorized: %v", err)
	}
	want := c.IDScope + "/registrations/" + c.RegistrationID
	if !strings.EqualFold(t.Resource(), want) {
		return nil, unauthorized("Unauthorized: the token's resource '%s' is not '%s'.", t.Resource(), want)
	}
	// The Node and C SDKs sign with skn=registration, Python with no skn.
	if t.KeyName != "" && t.KeyName != "registration" {
		return nil, unauthorized("Unauthorized: the token's skn must be 'registration', not '%s'.", t.KeyName)
	}
	if t.Expired(s.now()) {
		return nil, unauthorized("Unauthorized: the token expired at %s.", time.Unix(t.Expiry, 0).UTC().Format(time.RFC3339))
	}
	e, err := s.Store.GetEnrollment(ctx, c.RegistrationID)
	switch {
	case err == nil:
		// An individual enrollment decides alone: a group cannot take over
		// a registration id enrolled individually.
		if sk := e.Attestation.SymmetricKey; e.Attestation.Type == AttestationSymmetricKey && sk != nil &&
			(t.VerifyKey(sk.PrimaryKey) || t.VerifyKey(sk.SecondaryKey)) {
			return &attested{regID: c.RegistrationID, enrollment: e,
				auth: registry.Authentication{Type: registry.AuthSAS, PrimaryKey: sk.PrimaryKey, SecondaryKey: sk.SecondaryKey}}, nil
		}
		return nil, unauthorized("Unauthorized: the token is not signed with the enrollment's key.")
	case iothub.CodeOf(err) != iothub.GenericNotFound:
		return nil, err
	}
	groups, err := s.Store.ListGroups(ctx)
	if err != nil {
		return nil, err
	}
	for _, g := range groups {
		sk := g.Attestation.SymmetricKey
		if g.Attestation.Type != AttestationSymmetricKey || sk == nil {
			continue
		}
		p, err1 := DeriveKey(sk.PrimaryKey, c.RegistrationID)
		q, err2 := DeriveKey(sk.SecondaryKey, c.RegistrationID)
		if err1 != nil || err2 != nil {
			continue
		}
		if t.VerifyKey(p) || t.VerifyKey(q) {
			return &attested{regID: c.RegistrationID, group: g,
				auth: registry.Authentication{Type: registry.AuthSAS, PrimaryKey: p, SecondaryKey: q}}, nil
		}
	}
	return nil, unauthorized("Unauthorized: no enrollment matches registration '%s' and its token.", c.RegistrationID)
}

// Register attests a device and assigns it to the hub: it creates or
// updates the device identity, applies the initial twin as the reprovision
// policy says, and records the registration state. The returned operation is
// "assigning"; OperationStatus then reports the outcome, which is already
// stored. Attestation failures are 401002; a disabled enrollment gives a
// "disabled" state and a failed assignment a "failed" one with its error.
func (s *Service) Register(ctx context.Context, c Credentials, payload json.RawMessage) (*Operation, error) {
	a, err := s.attest(ctx, c)
	if err != nil {
		return nil, err
	}
	mu := s.regLock(a.regID)
	mu.Lock()
	defer mu.Unlock()
	if s.closed.Load() {
		return nil, iothub.ErrClosed
	}
	prev, err := s.Store.GetRegistration(ctx, a.regID)
	if err != nil && iothub.CodeOf(err) != iothub.GenericNotFound {
		return nil, err
	}
	now := s.now()
	deviceID, status, caps, twin, policy, groupID := a.settings()
	st := &RegistrationState{
		RegistrationID: a.regID, CreatedDateTimeUTC: now, LastUpdatedDateTimeUTC: now, ETag: newETag(),
		OperationID:       "4." + strings.ReplaceAll(uuid.NewString(), "-", "")[:16] + "." + uuid.NewString(),
		EnrollmentGroupID: groupID,
	}
	if prev != nil {
		st.CreatedDateTimeUTC = prev.CreatedDateTimeUTC
	}
	if len(payload) > 0 && string(payload) != "null" {
		st.Payload = payload
	}
	if status == StatusDisabled {
		st.Status = RegistrationDisabled
	} else if err := s.assign(ctx, a, deviceID, caps, twin, policy, prev, st); err != nil {
		var he *iothub.Error
		if !errors.As(err, &he) {
			return nil, err // not recorded: the device retries
		}
		st.Status, st.ErrorCode, st.ErrorMessage = RegistrationFailed, int(he.Code), he.Message
		st.AssignedHub, st.DeviceID, st.Substatus = "", "", ""
	}
	if err := s.Store.PutRegistration(ctx, st); err != nil {
		return nil, err
	}
	return &Operation{OperationID: st.OperationID, Status: RegistrationAssigning}, nil
}

func (s *Service) assign(ctx context.Context, a *attested, deviceID string, caps *Capabilities, twin *InitialTwin,
	policy *ReprovisionPolicy, prev *RegistrationState, st *RegistrationState) error {
	edge := caps != nil && caps.IoTEdge
	st.Substatus = SubstatusInitialAssignment
	applyTwin := twin != nil
	cur, err := s.Registry.Get(ctx, deviceID, "")
	switch {
	case err == nil:
		if prev != nil && prev.Status == RegistrationAssigned && prev.DeviceID == deviceID {
			// A registered device registers again: keep its twin, or reset
			// it to the initial twin (the reprovision policy).
			if policy == nil || policy.MigrateDeviceData {
				st.Substatus, applyTwin = SubstatusDeviceDataMigrated, false
			} else {
				st.Substatus, applyTwin = SubstatusDeviceDataReset, true
			}
		}
		// A device that registers again with the same credentials needs
		// no registry write (and keeps its etag).
		if cur.Auth != a.auth || cur.IotEdge != edge {
			upd := *cur
			upd.Auth, upd.IotEdge = a.auth, edge
			if _, err := s.Registry.Update(ctx, "*", &upd); err != nil {
				return err
			}
		}
	case iothub.CodeOf(err) == iothub.DeviceNotFound:
		id := &registry.Identity{DeviceID: deviceID, Status: registry.StatusEnabled, Auth: a.auth, IotEdge: edge}
		if _, err := s.Registry.Create(ctx, id); err != nil {
			return err
		}
	default:
		return err
	}
	if applyTwin {
		var tags, desired map[string]any
		if twin != nil {
			tags, desired = twin.Tags, twin.Properties.Desired
		}
		if tags == nil {
			tags = map[string]any{}
		}
		if desired == nil {
			desired = map[string]any{}
		}
		if _, err := s.Twins.ReplaceService(ctx, twins.Key{DeviceID: deviceID}, "*", tags, desired); err != nil {
			return err
		}
	}
	st.Status, st.AssignedHub, st.DeviceID = RegistrationAssigned, s.cfg.HubHostName, deviceID
	return nil
}

// OperationStatus reports a register operation of the device: its
// registration state once the operation is the device's latest. 404000 for
// an operation id the device does not own. The credentials are checked
// unless the transport already did (Credentials.Attested).
func (s *Service) OperationStatus(ctx context.Context, c Credentials, operationID string) (*Operation, error) {
	if s.closed.Load() {
		return nil, iothub.ErrClosed
	}
	if !c.Attested {
		if _, err := s.attest(ctx, c); err != nil {
			return nil, err
		}
	}
	st, err := s.Store.GetRegistration(ctx, c.RegistrationID)
	if err != nil {
		return nil, err
	}
	if st.OperationID != operationID {
		return nil, iothub.Errorf(iothub.GenericNotFound, "Operation '%s' of registration '%s' not found.", operationID, c.RegistrationID)
	}
	return &Operation{OperationID: operationID, Status: st.Status, RegistrationState: st}, nil
}
