-- A job's deviceJobStatistics were counted from device_jobs on every read:
-- a scan of the job's index entries, 100,000 of them for a big job, for
-- every GET /jobs/v2/{id} a client polls with. The counts are now kept per
-- job and status by triggers, in the transaction that changes the records,
-- so they cannot drift from them, and a read is one small range.
CREATE TABLE job_device_counts (
  job_id TEXT NOT NULL REFERENCES jobs(job_id) ON DELETE CASCADE,
  status TEXT NOT NULL,
  n INTEGER NOT NULL,
  PRIMARY KEY (job_id, status)
) WITHOUT ROWID;

INSERT INTO job_device_counts (job_id, status, n)
  SELECT job_id, status, COUNT(*) FROM device_jobs GROUP BY job_id, status;

-- Decrements are plain updates: the row they change exists (its record was
-- counted), and while a job is deleted its counts may already be gone.
CREATE TRIGGER device_jobs_count_insert AFTER INSERT ON device_jobs BEGIN
  INSERT INTO job_device_counts (job_id, status, n) VALUES (NEW.job_id, NEW.status, 1)
    ON CONFLICT (job_id, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER device_jobs_count_update AFTER UPDATE OF job_id, status ON device_jobs
WHEN OLD.status IS NOT NEW.status OR OLD.job_id IS NOT NEW.job_id BEGIN
  UPDATE job_device_counts SET n = n - 1 WHERE job_id = OLD.job_id AND status = OLD.status;
  INSERT INTO job_device_counts (job_id, status, n) VALUES (NEW.job_id, NEW.status, 1)
    ON CONFLICT (job_id, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER device_jobs_count_delete AFTER DELETE ON device_jobs BEGIN
  UPDATE job_device_counts SET n = n - 1 WHERE job_id = OLD.job_id AND status = OLD.status;
END;
