-- Automatic device and module configurations (issue 17), and which one each
-- twin carries, so its content can be taken off again. A twin's row goes with
-- its identity; a configuration's rows go with it.
CREATE TABLE configurations (
  id TEXT PRIMARY KEY,
  schema_version TEXT NOT NULL,
  labels TEXT NOT NULL,          -- JSON object
  content TEXT NOT NULL,         -- JSON {deviceContent, moduleContent, modulesContent}
  target_condition TEXT NOT NULL,
  priority INTEGER NOT NULL,
  created_time TEXT NOT NULL,
  last_updated_time TEXT NOT NULL,
  metric_queries TEXT NOT NULL,  -- JSON object name -> query
  metric_results TEXT NOT NULL,  -- JSON object name -> count
  system_results TEXT NOT NULL,  -- JSON object targetedCount, appliedCount
  etag INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE configuration_twins (
  device_id TEXT NOT NULL,
  module_id TEXT NOT NULL,
  configuration_id TEXT NOT NULL REFERENCES configurations(id) ON DELETE CASCADE,
  PRIMARY KEY (device_id, module_id),
  FOREIGN KEY (device_id, module_id) REFERENCES identities(device_id, module_id) ON DELETE CASCADE
) WITHOUT ROWID;

CREATE INDEX configuration_twins_configuration ON configuration_twins(configuration_id);
