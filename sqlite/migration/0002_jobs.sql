-- Jobs v2 and their per-device records. The column names of device_jobs are
-- the ones the query compiler maps for FROM devices.jobs.
CREATE TABLE jobs (
  job_id TEXT PRIMARY KEY,
  type TEXT NOT NULL,
  query_condition TEXT NOT NULL,
  created_time TEXT NOT NULL,
  start_time TEXT NOT NULL,
  end_time TEXT,
  max_execution_seconds INTEGER NOT NULL,
  method TEXT,        -- JSON cloudToDeviceMethod
  update_twin TEXT,   -- JSON updateTwin
  status TEXT NOT NULL,
  status_message TEXT NOT NULL DEFAULT '',
  failure_reason TEXT NOT NULL DEFAULT '',
  selected INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE INDEX jobs_status ON jobs(status);

CREATE TABLE device_jobs (
  job_id TEXT NOT NULL REFERENCES jobs(job_id) ON DELETE CASCADE,
  device_id TEXT NOT NULL,
  module_id TEXT NOT NULL DEFAULT '',
  job_type TEXT NOT NULL,
  status TEXT NOT NULL,
  start_time TEXT,
  end_time TEXT,
  created_time TEXT NOT NULL,
  last_updated_time TEXT NOT NULL,
  outcome TEXT,       -- JSON {"deviceMethodResponse":{"status":..,"payload":..}}
  error TEXT,         -- JSON {"code":..,"description":..}
  PRIMARY KEY (job_id, device_id, module_id)
) WITHOUT ROWID;

CREATE INDEX device_jobs_status ON device_jobs(job_id, status);
