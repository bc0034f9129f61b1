-- Device Provisioning Service (issue 18): individual enrollments, enrollment
-- groups and registration states, kept as the service API's JSON documents.
CREATE TABLE dps_enrollments (
  registration_id TEXT PRIMARY KEY,
  body TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE dps_enrollment_groups (
  group_id TEXT PRIMARY KEY,
  body TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE dps_registrations (
  registration_id TEXT PRIMARY KEY,
  group_id TEXT NOT NULL, -- '' for individual enrollments
  operation_id TEXT NOT NULL,
  body TEXT NOT NULL
) WITHOUT ROWID;

CREATE INDEX dps_registrations_group ON dps_registrations(group_id, registration_id);
