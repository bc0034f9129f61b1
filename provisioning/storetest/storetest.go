// Package storetest is the conformance suite of provisioning.Store: every
// implementation runs it (the SQLite store, and the domain tests' memory store).
package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/provisioning"
)

// Run checks a store; newStore returns an empty one.
func Run(t *testing.T, newStore func(t *testing.T) provisioning.Store) {
	ctx := context.Background()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	t.Run("enrollments", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.GetEnrollment(ctx, "a"); iothub.CodeOf(err) != iothub.GenericNotFound {
			t.Fatalf("absent enrollment: %v", err)
		}
		if err := s.DeleteEnrollment(ctx, "a"); iothub.CodeOf(err) != iothub.GenericNotFound {
			t.Fatalf("delete absent enrollment: %v", err)
		}
		for _, id := range []string{"b", "a"} {
			e := &provisioning.Enrollment{RegistrationID: id, ETag: "e1", ProvisioningStatus: "enabled", CreatedDateTimeUTC: now,
				Attestation: provisioning.Attestation{Type: "symmetricKey", SymmetricKey: &provisioning.SymmetricKey{PrimaryKey: "k1"}},
				InitialTwin: &provisioning.InitialTwin{Tags: map[string]any{"t": "v"}}}
			if err := s.PutEnrollment(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.PutEnrollment(ctx, &provisioning.Enrollment{RegistrationID: "a", ETag: "e2", ProvisioningStatus: "disabled",
			Attestation: provisioning.Attestation{Type: "symmetricKey", SymmetricKey: &provisioning.SymmetricKey{PrimaryKey: "k2"}}}); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetEnrollment(ctx, "a")
		if err != nil || got.ETag != "e2" || got.ProvisioningStatus != "disabled" || got.Attestation.SymmetricKey.PrimaryKey != "k2" || got.InitialTwin != nil {
			t.Fatalf("replaced enrollment: %+v %v", got, err)
		}
		got, _ = s.GetEnrollment(ctx, "b")
		if !got.CreatedDateTimeUTC.Equal(now) || got.InitialTwin.Tags["t"] != "v" {
			t.Fatalf("round trip: %+v", got)
		}
		list, err := s.ListEnrollments(ctx)
		if err != nil || len(list) != 2 || list[0].RegistrationID != "a" || list[1].RegistrationID != "b" {
			t.Fatalf("list: %v %v", list, err)
		}
		if err := s.DeleteEnrollment(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetEnrollment(ctx, "a"); iothub.CodeOf(err) != iothub.GenericNotFound {
			t.Fatalf("deleted enrollment: %v", err)
		}
	})

	t.Run("groups", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.GetGroup(ctx, "g"); iothub.CodeOf(err) != iothub.GenericNotFound {
			t.Fatalf("absent group: %v", err)
		}
		for _, id := range []string{"g2", "g1"} {
			if err := s.PutGroup(ctx, &provisioning.EnrollmentGroup{EnrollmentGroupID: id, ETag: id}); err != nil {
				t.Fatal(err)
			}
		}
		list, err := s.ListGroups(ctx)
		if err != nil || len(list) != 2 || list[0].EnrollmentGroupID != "g1" {
			t.Fatalf("list: %v %v", list, err)
		}
		// Groups and individual enrollments are apart.
		if _, err := s.GetEnrollment(ctx, "g1"); iothub.CodeOf(err) != iothub.GenericNotFound {
			t.Fatalf("a group read as an enrollment: %v", err)
		}
		if err := s.DeleteGroup(ctx, "g1"); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteGroup(ctx, "g1"); iothub.CodeOf(err) != iothub.GenericNotFound {
			t.Fatalf("delete twice: %v", err)
		}
	})

	t.Run("registrations", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.GetRegistration(ctx, "r"); iothub.CodeOf(err) != iothub.GenericNotFound {
			t.Fatalf("absent registration: %v", err)
		}
		for _, r := range []*provisioning.RegistrationState{
			{RegistrationID: "r2", Status: "assigned", OperationID: "op2", EnrollmentGroupID: "g"},
			{RegistrationID: "r1", Status: "assigned", OperationID: "op1", EnrollmentGroupID: "g"},
			{RegistrationID: "r3", Status: "failed", ErrorCode: 401002, OperationID: "op3"},
		} {
			if err := s.PutRegistration(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.PutRegistration(ctx, &provisioning.RegistrationState{RegistrationID: "r1", Status: "assigned", OperationID: "op1b", EnrollmentGroupID: "g"}); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetRegistration(ctx, "r1")
		if err != nil || got.OperationID != "op1b" || got.EnrollmentGroupID != "g" {
			t.Fatalf("operation id and group kept beside the document: %+v %v", got, err)
		}
		list, err := s.ListRegistrations(ctx, "g")
		if err != nil || len(list) != 2 || list[0].RegistrationID != "r1" || list[1].RegistrationID != "r2" {
			t.Fatalf("group registrations: %v %v", list, err)
		}
		if err := s.DeleteRegistration(ctx, "r3"); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteRegistration(ctx, "r3"); iothub.CodeOf(err) != iothub.GenericNotFound {
			t.Fatalf("delete twice: %v", err)
		}
	})
}
