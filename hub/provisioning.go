package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/provisioning"
	"github.com/iothub-emulator/iothub-emulator/sasauth"
	"github.com/iothub-emulator/iothub-emulator/sqlite"
)

// DPSPolicyName is the Device Provisioning Service's service policy.
const DPSPolicyName = "provisioningserviceowner"

// newProvisioning builds the Device Provisioning Service over the registry
// and twin services; the broker and the REST API serve it on the hub's own
// listeners.
func (h *Hub) newProvisioning(context.Context) (err error) {
	h.dpsAuth = &sasauth.Authenticator{Policies: []sasauth.Policy{{
		Name: DPSPolicyName, PrimaryKey: provisioning.DefaultServiceKey, SecondaryKey: provisioning.DefaultServiceKey,
		Rights: sasauth.RegistryRead | sasauth.RegistryWrite | sasauth.ServiceConnect,
	}}}
	h.Provisioning, err = provisioning.NewService(provisioning.Deps{
		Store: &sqlite.ProvisioningStore{DB: h.db}, Registry: h.Registry, Twins: h.Twins,
	}, provisioning.Config{IDScope: h.cfg.DPSIDScope, HubHostName: h.cfg.Hostname, Now: h.now})
	return err
}

// seedEnrollments creates the seed file's enrollments and enrollment groups
// that do not exist yet; existing ones are left alone.
func (h *Hub) seedEnrollments(ctx context.Context) error {
	if h.cfg.SeedFile == "" {
		return nil
	}
	f, err := readSeed(h.cfg.SeedFile)
	if err != nil {
		return fmt.Errorf("--seed: %w", err)
	}
	for _, raw := range f.Enrollments {
		var e provisioning.Enrollment
		if err := seedDecode(raw, &e); err != nil {
			return fmt.Errorf("--seed: enrollment: %w", err)
		}
		if _, err := h.Provisioning.GetEnrollment(ctx, e.RegistrationID); err == nil {
			continue
		}
		if _, err := h.Provisioning.PutEnrollment(ctx, e.RegistrationID, "", &e); err != nil {
			return fmt.Errorf("--seed: enrollment %q: %s", e.RegistrationID, iothub.MessageOf(err))
		}
	}
	for _, raw := range f.EnrollmentGroups {
		var g provisioning.EnrollmentGroup
		if err := seedDecode(raw, &g); err != nil {
			return fmt.Errorf("--seed: enrollment group: %w", err)
		}
		if _, err := h.Provisioning.GetGroup(ctx, g.EnrollmentGroupID); err == nil {
			continue
		}
		if _, err := h.Provisioning.PutGroup(ctx, g.EnrollmentGroupID, "", &g); err != nil {
			return fmt.Errorf("--seed: enrollment group %q: %s", g.EnrollmentGroupID, iothub.MessageOf(err))
		}
	}
	return nil
}

// seedDecode reads a seed entry (JSON or YAML, so a generic map) into the
// service API's JSON shape, refusing unknown members.
func seedDecode(raw map[string]any, v any) error {
	b, err := json.Marshal(raw)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// DPSIDScope is the Device Provisioning Service's ID scope.
func (h *Hub) DPSIDScope() string { return h.Provisioning.IDScope() }

// DPSServiceConnectionString is the provisioning service's connection string.
func (h *Hub) DPSServiceConnectionString() string {
	return "HostName=" + h.cfg.Hostname + ";SharedAccessKeyName=" + DPSPolicyName + ";SharedAccessKey=" + provisioning.DefaultServiceKey
}

// provisioningLink lets the broker, built before the service, reach it.
type provisioningLink struct{ h *Hub }

func (l provisioningLink) Authenticate(ctx context.Context, c provisioning.Credentials) error {
	return l.h.Provisioning.Authenticate(ctx, c)
}

func (l provisioningLink) Register(ctx context.Context, c provisioning.Credentials, payload json.RawMessage) (*provisioning.Operation, error) {
	return l.h.Provisioning.Register(ctx, c, payload)
}

func (l provisioningLink) OperationStatus(ctx context.Context, c provisioning.Credentials, operationID string) (*provisioning.Operation, error) {
	return l.h.Provisioning.OperationStatus(ctx, c, operationID)
}

func (l provisioningLink) RetryAfter() time.Duration { return l.h.Provisioning.RetryAfter() }
