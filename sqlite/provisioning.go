package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/provisioning"
)

// ProvisioningStore keeps the Device Provisioning Service's enrollments and
// registration states as JSON documents.
type ProvisioningStore struct{ DB *DB }

var _ provisioning.Store = (*ProvisioningStore)(nil)

func enrollmentNotFound(id string) error {
	return iothub.Errorf(iothub.GenericNotFound, "Enrollment '%s' not found.", id)
}

func (s *ProvisioningStore) get(ctx context.Context, query, id string, v any, notFound error) error {
	var body string
	err := s.DB.Reader().QueryRowContext(ctx, query, id).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound
	}
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(body), v)
}

func (s *ProvisioningStore) exec(ctx context.Context, query string, args ...any) (int64, error) {
	var n int64
	err := s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}

func list[T any](ctx context.Context, db *DB, query string, args ...any) ([]*T, error) {
	rows, err := db.Reader().QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*T
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			return nil, err
		}
		v := new(T)
		if err := json.Unmarshal([]byte(body), v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func (s *ProvisioningStore) GetEnrollment(ctx context.Context, id string) (*provisioning.Enrollment, error) {
	var e provisioning.Enrollment
	if err := s.get(ctx, `SELECT body FROM dps_enrollments WHERE registration_id = ?`, id, &e, enrollmentNotFound(id)); err != nil {
		return nil, err
	}
	return &e, nil
}

func (s *ProvisioningStore) PutEnrollment(ctx context.Context, e *provisioning.Enrollment) error {
	body, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = s.exec(ctx, `INSERT INTO dps_enrollments (registration_id, body) VALUES (?, ?)
		ON CONFLICT (registration_id) DO UPDATE SET body = excluded.body`, e.RegistrationID, string(body))
	return err
}

func (s *ProvisioningStore) DeleteEnrollment(ctx context.Context, id string) error {
	n, err := s.exec(ctx, `DELETE FROM dps_enrollments WHERE registration_id = ?`, id)
	if err == nil && n == 0 {
		err = enrollmentNotFound(id)
	}
	return err
}

func (s *ProvisioningStore) ListEnrollments(ctx context.Context) ([]*provisioning.Enrollment, error) {
	return list[provisioning.Enrollment](ctx, s.DB, `SELECT body FROM dps_enrollments ORDER BY registration_id`)
}

func (s *ProvisioningStore) GetGroup(ctx context.Context, id string) (*provisioning.EnrollmentGroup, error) {
	var g provisioning.EnrollmentGroup
	if err := s.get(ctx, `SELECT body FROM dps_enrollment_groups WHERE group_id = ?`, id, &g, enrollmentNotFound(id)); err != nil {
		return nil, err
	}
	return &g, nil
}

func (s *ProvisioningStore) PutGroup(ctx context.Context, g *provisioning.EnrollmentGroup) error {
	body, err := json.Marshal(g)
	if err != nil {
		return err
	}
	_, err = s.exec(ctx, `INSERT INTO dps_enrollment_groups (group_id, body) VALUES (?, ?)
		ON CONFLICT (group_id) DO UPDATE SET body = excluded.body`, g.EnrollmentGroupID, string(body))
	return err
}

func (s *ProvisioningStore) DeleteGroup(ctx context.Context, id string) error {
	n, err := s.exec(ctx, `DELETE FROM dps_enrollment_groups WHERE group_id = ?`, id)
	if err == nil && n == 0 {
		err = enrollmentNotFound(id)
	}
	return err
}

func (s *ProvisioningStore) ListGroups(ctx context.Context) ([]*provisioning.EnrollmentGroup, error) {
	return list[provisioning.EnrollmentGroup](ctx, s.DB, `SELECT body FROM dps_enrollment_groups ORDER BY group_id`)
}

func registrationNotFound(id string) error {
	return iothub.Errorf(iothub.GenericNotFound, "Registration '%s' not found.", id)
}

func (s *ProvisioningStore) GetRegistration(ctx context.Context, id string) (*provisioning.RegistrationState, error) {
	var r provisioning.RegistrationState
	var body string
	err := s.DB.Reader().QueryRowContext(ctx, `SELECT group_id, operation_id, body FROM dps_registrations WHERE registration_id = ?`, id).
		Scan(&r.EnrollmentGroupID, &r.OperationID, &body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, registrationNotFound(id)
	}
	if err != nil {
		return nil, err
	}
	return &r, json.Unmarshal([]byte(body), &r)
}

func (s *ProvisioningStore) PutRegistration(ctx context.Context, r *provisioning.RegistrationState) error {
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = s.exec(ctx, `INSERT INTO dps_registrations (registration_id, group_id, operation_id, body) VALUES (?, ?, ?, ?)
		ON CONFLICT (registration_id) DO UPDATE SET group_id = excluded.group_id, operation_id = excluded.operation_id, body = excluded.body`,
		r.RegistrationID, r.EnrollmentGroupID, r.OperationID, string(body))
	return err
}

func (s *ProvisioningStore) DeleteRegistration(ctx context.Context, id string) error {
	n, err := s.exec(ctx, `DELETE FROM dps_registrations WHERE registration_id = ?`, id)
	if err == nil && n == 0 {
		err = registrationNotFound(id)
	}
	return err
}

func (s *ProvisioningStore) ListRegistrations(ctx context.Context, groupID string) ([]*provisioning.RegistrationState, error) {
	rows, err := s.DB.Reader().QueryContext(ctx, `SELECT group_id, operation_id, body FROM dps_registrations WHERE group_id = ? ORDER BY registration_id`, groupID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*provisioning.RegistrationState
	for rows.Next() {
		var r provisioning.RegistrationState
		var body string
		if err := rows.Scan(&r.EnrollmentGroupID, &r.OperationID, &body); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			return nil, err
		}
		out = append(out, &r)
	}
	return out, rows.Err()
}
