-- Identities (devices and modules) and their twins share one row: a twin
-- never exists without its identity, deleting one deletes the other, and the
-- query language reads both at once. module_id is '' for a device.
CREATE TABLE identities (
  device_id TEXT NOT NULL,
  module_id TEXT NOT NULL DEFAULT '',
  generation_id TEXT NOT NULL,
  etag INTEGER NOT NULL,                 -- identity etag counter
  status TEXT NOT NULL,
  status_reason TEXT NOT NULL DEFAULT '',
  status_updated_time TEXT NOT NULL,
  connection_state TEXT NOT NULL,
  connection_state_updated_time TEXT NOT NULL,
  last_activity_time TEXT NOT NULL,
  c2d_count INTEGER NOT NULL DEFAULT 0,
  auth_type TEXT NOT NULL,
  primary_key TEXT NOT NULL DEFAULT '',
  secondary_key TEXT NOT NULL DEFAULT '',
  primary_thumbprint TEXT NOT NULL DEFAULT '',
  secondary_thumbprint TEXT NOT NULL DEFAULT '',
  iot_edge INTEGER NOT NULL DEFAULT 0,
  managed_by TEXT NOT NULL DEFAULT '',
  device_scope TEXT NOT NULL DEFAULT '',
  parent_scopes TEXT NOT NULL DEFAULT '[]',
  model_id TEXT NOT NULL DEFAULT '',
  created_time TEXT NOT NULL,
  tags TEXT,
  desired TEXT NOT NULL,
  reported TEXT NOT NULL,
  desired_meta TEXT NOT NULL,
  reported_meta TEXT NOT NULL,
  desired_version INTEGER NOT NULL,
  reported_version INTEGER NOT NULL,
  twin_version INTEGER NOT NULL,
  twin_etag INTEGER NOT NULL,
  PRIMARY KEY (device_id, module_id)
) WITHOUT ROWID;

CREATE INDEX identities_status ON identities(status);

-- MQTT sessions of clean-session-0 clients survive restarts: the SDKs never
-- re-subscribe after reconnecting (sdk-behavior.md §3.2).
CREATE TABLE mqtt_subscriptions (
  client_id TEXT NOT NULL,
  filter TEXT NOT NULL,
  qos INTEGER NOT NULL,
  PRIMARY KEY (client_id, filter)
) WITHOUT ROWID;

-- Monotonic counters (identity etags, message sequence numbers) that must
-- never go backwards across restarts.
CREATE TABLE counters (
  name TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
