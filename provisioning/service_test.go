package provisioning_test

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/provisioning"
	"github.com/iothub-emulator/iothub-emulator/provisioning/storetest"
	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/sasauth"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// memStore is a provisioning.Store in memory, checked by the conformance suite.
type memStore struct {
	mu     sync.Mutex
	enr    map[string]provisioning.Enrollment
	groups map[string]provisioning.EnrollmentGroup
	regs   map[string]provisioning.RegistrationState
}

func newMemStore() *memStore {
	return &memStore{enr: map[string]provisioning.Enrollment{}, groups: map[string]provisioning.EnrollmentGroup{}, regs: map[string]provisioning.RegistrationState{}}
}

func notFound(code iothub.Code) error { return iothub.Errorf(code, "not found") }

func (m *memStore) GetEnrollment(_ context.Context, id string) (*provisioning.Enrollment, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.enr[id]
	if !ok {
		return nil, notFound(iothub.GenericNotFound)
	}
	return &e, nil
}
func (m *memStore) PutEnrollment(_ context.Context, e *provisioning.Enrollment) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.enr[e.RegistrationID] = *e
	return nil
}
func (m *memStore) DeleteEnrollment(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.enr[id]; !ok {
		return notFound(iothub.GenericNotFound)
	}
	delete(m.enr, id)
	return nil
}
func (m *memStore) ListEnrollments(context.Context) ([]*provisioning.Enrollment, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*provisioning.Enrollment
	for _, e := range m.enr {
		e := e
		out = append(out, &e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].RegistrationID < out[j].RegistrationID })
	return out, nil
}
func (m *memStore) GetGroup(_ context.Context, id string) (*provisioning.EnrollmentGroup, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	g, ok := m.groups[id]
	if !ok {
		return nil, notFound(iothub.GenericNotFound)
	}
	return &g, nil
}
func (m *memStore) PutGroup(_ context.Context, g *provisioning.EnrollmentGroup) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.groups[g.EnrollmentGroupID] = *g
	return nil
}
func (m *memStore) DeleteGroup(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.groups[id]; !ok {
		return notFound(iothub.GenericNotFound)
	}
	delete(m.groups, id)
	return nil
}
func (m *memStore) ListGroups(context.Context) ([]*provisioning.EnrollmentGroup, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*provisioning.EnrollmentGroup
	for _, g := range m.groups {
		g := g
		out = append(out, &g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].EnrollmentGroupID < out[j].EnrollmentGroupID })
	return out, nil
}
func (m *memStore) GetRegistration(_ context.Context, id string) (*provisioning.RegistrationState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.regs[id]
	if !ok {
		return nil, notFound(iothub.GenericNotFound)
	}
	return &r, nil
}
func (m *memStore) PutRegistration(_ context.Context, r *provisioning.RegistrationState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.regs[r.RegistrationID] = *r
	return nil
}
func (m *memStore) DeleteRegistration(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.regs[id]; !ok {
		return notFound(iothub.GenericNotFound)
	}
	delete(m.regs, id)
	return nil
}
func (m *memStore) ListRegistrations(_ context.Context, groupID string) ([]*provisioning.RegistrationState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*provisioning.RegistrationState
	for _, r := range m.regs {
		if r.EnrollmentGroupID == groupID {
			r := r
			out = append(out, &r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].RegistrationID < out[j].RegistrationID })
	return out, nil
}

func TestMemStoreConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) provisioning.Store { return newMemStore() })
}

// fakeHub records what assignment does to the registry and the twins.
type fakeHub struct {
	mu       sync.Mutex
	devices  map[string]registry.Identity
	twins    map[string][2]map[string]any // tags, desired
	failWith error
}

func (f *fakeHub) Get(_ context.Context, id, _ string) (*registry.Identity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.devices[id]
	if !ok {
		return nil, registry.NotFound(id, "")
	}
	return &d, nil
}
func (f *fakeHub) Create(_ context.Context, id *registry.Identity) (*registry.Identity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWith != nil {
		return nil, f.failWith
	}
	f.devices[id.DeviceID] = *id
	return id, nil
}
func (f *fakeHub) Update(_ context.Context, _ string, id *registry.Identity) (*registry.Identity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.devices[id.DeviceID] = *id
	return id, nil
}
func (f *fakeHub) ReplaceService(_ context.Context, k twins.Key, _ string, tags, desired map[string]any) (*twins.Twin, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.twins[k.DeviceID] = [2]map[string]any{tags, desired}
	return &twins.Twin{}, nil
}

var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func newService(t *testing.T) (*provisioning.Service, *fakeHub) {
	t.Helper()
	f := &fakeHub{devices: map[string]registry.Identity{}, twins: map[string][2]map[string]any{}}
	s, err := provisioning.NewService(provisioning.Deps{Store: newMemStore(), Registry: f, Twins: f},
		provisioning.Config{HubHostName: "hub.local", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return s, f
}

const (
	keyA = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	keyB = "HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4="
)

func token(t *testing.T, resource, key, skn string, expiry time.Time) string {
	t.Helper()
	tok, err := sasauth.Sign(resource, key, skn, expiry)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestDeriveKeyMatchesTheSDKs(t *testing.T) {
	// The Node sample's formula: HMAC-SHA256(base64decode(groupKey), regId), base64.
	got, err := provisioning.DeriveKey(keyA, "sensor-1")
	if err != nil {
		t.Fatal(err)
	}
	// node -e "crypto.createHmac('sha256', Buffer.from(key, 'base64')).update('sensor-1').digest('base64')"
	const want = "n5hp4ukLeAS7SxeF5FRQVLr8H+gphAmzs4FeKjULmFc="
	if got != want {
		t.Fatalf("DeriveKey = %s, want %s", got, want)
	}
}

func TestValidateRegistrationID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"device-1", true}, {"a.b_c:d", true}, {"ends-", true},
		{"", false}, {"Upper", false}, {"has space", false}, {"ends.", false}, {"ends:", false},
		{string(make([]byte, 129)), false},
	} {
		if err := provisioning.ValidateRegistrationID(tc.id); (err == nil) != tc.ok {
			t.Errorf("ValidateRegistrationID(%q) = %v, want ok %v", tc.id, err, tc.ok)
		}
	}
}

func TestAttestationSymmetricKey(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	if _, err := s.PutEnrollment(ctx, "dev1", "", &provisioning.Enrollment{
		Attestation: provisioning.Attestation{Type: "symmetricKey", SymmetricKey: &provisioning.SymmetricKey{PrimaryKey: keyA, SecondaryKey: keyB}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutGroup(ctx, "grp", "", &provisioning.EnrollmentGroup{
		Attestation: provisioning.Attestation{Type: "symmetricKey", SymmetricKey: &provisioning.SymmetricKey{PrimaryKey: keyB, SecondaryKey: keyB}}}); err != nil {
		t.Fatal(err)
	}
	derived, _ := provisioning.DeriveKey(keyB, "member")
	derivedForDev1, _ := provisioning.DeriveKey(keyB, "dev1")
	scope := provisioning.DefaultIDScope
	later := now.Add(time.Hour)
	for _, tc := range []struct {
		name, scope, regID, token string
		ok                        bool
	}{
		{"primary key", scope, "dev1", token(t, scope+"/registrations/dev1", keyA, "registration", later), true},
		{"secondary key", scope, "dev1", token(t, scope+"/registrations/dev1", keyB, "registration", later), true},
		{"no skn (Python)", scope, "dev1", token(t, scope+"/registrations/dev1", keyA, "", later), true},
		{"group-derived key", scope, "member", token(t, scope+"/registrations/member", derived, "registration", later), true},
		{"the group key itself", scope, "member", token(t, scope+"/registrations/member", keyB, "registration", later), false},
		{"a group cannot take an individual registration", scope, "dev1", token(t, scope+"/registrations/dev1", derivedForDev1, "registration", later), false},
		{"wrong key", scope, "dev1", token(t, scope+"/registrations/dev1", derived, "registration", later), false},
		{"unknown scope", "0ne11111111", "dev1", token(t, "0ne11111111/registrations/dev1", keyA, "registration", later), false},
		{"token for another registration", scope, "dev1", token(t, scope+"/registrations/dev2", keyA, "registration", later), false},
		{"other skn", scope, "dev1", token(t, scope+"/registrations/dev1", keyA, "owner", later), false},
		{"expired", scope, "dev1", token(t, scope+"/registrations/dev1", keyA, "registration", now.Add(-time.Second)), false},
		{"not a token", scope, "dev1", "secret", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Authenticate(ctx, provisioning.Credentials{IDScope: tc.scope, RegistrationID: tc.regID, SASToken: tc.token})
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && iothub.CodeOf(err) != iothub.IotHubUnauthorizedAccess {
				t.Fatalf("got %v, want 401002", err)
			}
		})
	}
}

func register(t *testing.T, s *provisioning.Service, regID, key string) *provisioning.Operation {
	t.Helper()
	ctx := context.Background()
	c := provisioning.Credentials{IDScope: s.IDScope(), RegistrationID: regID,
		SASToken: token(t, s.IDScope()+"/registrations/"+regID, key, "registration", now.Add(time.Hour))}
	op, err := s.Register(ctx, c, nil)
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	if op.Status != "assigning" {
		t.Fatalf("register answered %q", op.Status)
	}
	done, err := s.OperationStatus(ctx, c, op.OperationID)
	if err != nil {
		t.Fatalf("operation status: %v", err)
	}
	if _, err := s.OperationStatus(ctx, c, "other"); iothub.CodeOf(err) != iothub.GenericNotFound {
		t.Fatalf("foreign operation id: %v", err)
	}
	return done
}

func TestAssignmentAndReprovisioning(t *testing.T) {
	initial := &provisioning.InitialTwin{Tags: map[string]any{"site": "lab"}, Properties: provisioning.InitialTwinProperties{Desired: map[string]any{"n": 1}}}
	for _, tc := range []struct {
		name          string
		migrate       bool
		wantSubstatus string
		wantTwinReset bool
	}{
		{"migrate device data keeps the twin", true, "deviceDataMigrated", false},
		{"reset device data applies the initial twin again", false, "deviceDataReset", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, f := newService(t)
			ctx := context.Background()
			e, err := s.PutEnrollment(ctx, "dev1", "", &provisioning.Enrollment{DeviceID: "device-one", InitialTwin: initial,
				Capabilities:      &provisioning.Capabilities{IoTEdge: true},
				ReprovisionPolicy: &provisioning.ReprovisionPolicy{UpdateHubAssignment: true, MigrateDeviceData: tc.migrate},
				Attestation:       provisioning.Attestation{Type: "symmetricKey", SymmetricKey: &provisioning.SymmetricKey{PrimaryKey: keyA}}})
			if err != nil {
				t.Fatal(err)
			}
			if e.Attestation.SymmetricKey.SecondaryKey == "" || e.IoTHubHostName != "hub.local" {
				t.Fatalf("enrollment not completed: %+v", e)
			}
			op := register(t, s, "dev1", keyA)
			st := op.RegistrationState
			if op.Status != "assigned" || st.DeviceID != "device-one" || st.AssignedHub != "hub.local" || st.Substatus != "initialAssignment" {
				t.Fatalf("first registration: %+v", st)
			}
			d := f.devices["device-one"]
			if d.Auth.Type != registry.AuthSAS || d.Auth.PrimaryKey != keyA || !d.IotEdge {
				t.Fatalf("device: %+v", d)
			}
			if f.twins["device-one"][0]["site"] != "lab" {
				t.Fatalf("initial twin not applied: %v", f.twins)
			}
			delete(f.twins, "device-one")
			op = register(t, s, "dev1", keyA)
			if op.RegistrationState.Substatus != tc.wantSubstatus {
				t.Fatalf("substatus %q, want %q", op.RegistrationState.Substatus, tc.wantSubstatus)
			}
			if _, reset := f.twins["device-one"]; reset != tc.wantTwinReset {
				t.Fatalf("twin reset = %v, want %v", reset, tc.wantTwinReset)
			}
			if !op.RegistrationState.CreatedDateTimeUTC.Equal(now) {
				t.Fatalf("created time not kept: %v", op.RegistrationState.CreatedDateTimeUTC)
			}
		})
	}
}

func TestRegistrationOutcomes(t *testing.T) {
	s, f := newService(t)
	ctx := context.Background()
	sym := provisioning.Attestation{Type: "symmetricKey", SymmetricKey: &provisioning.SymmetricKey{PrimaryKey: keyA}}
	if _, err := s.PutEnrollment(ctx, "off", "", &provisioning.Enrollment{ProvisioningStatus: "disabled", Attestation: sym}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutEnrollment(ctx, "broken", "", &provisioning.Enrollment{Attestation: sym}); err != nil {
		t.Fatal(err)
	}
	op := register(t, s, "off", keyA)
	if op.Status != "disabled" || len(f.devices) != 0 {
		t.Fatalf("disabled enrollment: %+v, devices %v", op, f.devices)
	}
	f.failWith = iothub.Errorf(iothub.TooManyDevices, "full")
	op = register(t, s, "broken", keyA)
	if op.Status != "failed" || op.RegistrationState.ErrorCode != int(iothub.TooManyDevices) || op.RegistrationState.AssignedHub != "" {
		t.Fatalf("failed assignment: %+v", op.RegistrationState)
	}
	if st, err := s.Registration(ctx, "broken"); err != nil || st.Status != "failed" {
		t.Fatalf("failed state not recorded: %+v %v", st, err)
	}
}

func TestEnrollmentValidationAndETags(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	sym := func() provisioning.Attestation { return provisioning.Attestation{Type: "symmetricKey"} }
	for _, tc := range []struct {
		name string
		id   string
		e    provisioning.Enrollment
	}{
		{"no attestation", "a", provisioning.Enrollment{}},
		{"tpm", "a", provisioning.Enrollment{Attestation: provisioning.Attestation{Type: "tpm"}}},
		{"bad key", "a", provisioning.Enrollment{Attestation: provisioning.Attestation{Type: "symmetricKey", SymmetricKey: &provisioning.SymmetricKey{PrimaryKey: "nope"}}}},
		{"bad status", "a", provisioning.Enrollment{ProvisioningStatus: "paused", Attestation: sym()}},
		{"id mismatch", "a", provisioning.Enrollment{RegistrationID: "b", Attestation: sym()}},
		{"bad id", "A", provisioning.Enrollment{Attestation: sym()}},
		{"x509 without certificate", "a", provisioning.Enrollment{Attestation: provisioning.Attestation{Type: "x509", X509: &provisioning.X509Attestation{}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.PutEnrollment(ctx, tc.id, "", &tc.e); iothub.CodeOf(err) != iothub.ArgumentInvalid {
				t.Fatalf("got %v, want 400004", err)
			}
		})
	}
	e, err := s.PutEnrollment(ctx, "a", "", &provisioning.Enrollment{Attestation: sym()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutEnrollment(ctx, "a", `"stale"`, &provisioning.Enrollment{Attestation: sym()}); iothub.CodeOf(err) != iothub.PreconditionFailed {
		t.Fatalf("stale etag on put: %v", err)
	}
	if err := s.DeleteEnrollment(ctx, "a", "stale"); iothub.CodeOf(err) != iothub.PreconditionFailed {
		t.Fatalf("stale etag on delete: %v", err)
	}
	e2, err := s.PutEnrollment(ctx, "a", e.ETag, &provisioning.Enrollment{Attestation: sym()})
	if err != nil || e2.ETag == e.ETag || !e2.CreatedDateTimeUTC.Equal(e.CreatedDateTimeUTC) {
		t.Fatalf("update with the etag: %+v %v", e2, err)
	}
	res, err := s.Bulk(ctx, provisioning.BulkCreate, []*provisioning.Enrollment{
		{RegistrationID: "a", Attestation: sym()}, {RegistrationID: "b", Attestation: sym()}})
	if err != nil || res.IsSuccessful || len(res.Errors) != 1 || res.Errors[0].RegistrationID != "a" {
		t.Fatalf("bulk create: %+v %v", res, err)
	}
	if err := s.DeleteEnrollment(ctx, "a", e2.ETag); err != nil {
		t.Fatal(err)
	}
}

func TestCloseRefusesLaterCalls(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	sym := provisioning.Attestation{Type: "symmetricKey", SymmetricKey: &provisioning.SymmetricKey{PrimaryKey: keyA}}
	if _, err := s.PutEnrollment(ctx, "dev1", "", &provisioning.Enrollment{Attestation: sym}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	c := provisioning.Credentials{IDScope: s.IDScope(), RegistrationID: "dev1",
		SASToken: token(t, s.IDScope()+"/registrations/dev1", keyA, "registration", now.Add(time.Hour))}
	if _, err := s.Register(ctx, c, nil); err != iothub.ErrClosed {
		t.Errorf("Register after Close: %v", err)
	}
	if _, err := s.PutEnrollment(ctx, "dev2", "", &provisioning.Enrollment{Attestation: sym}); err != iothub.ErrClosed {
		t.Errorf("PutEnrollment after Close: %v", err)
	}
	if err := s.DeleteEnrollment(ctx, "dev1", ""); err != iothub.ErrClosed {
		t.Errorf("DeleteEnrollment after Close: %v", err)
	}
}
