-- Jobs read their pending device records in key order a batch at a time;
-- with status and the key in one index that is a range scan, not a sort of
-- every pending record per batch.
DROP INDEX device_jobs_status;
CREATE INDEX device_jobs_pending ON device_jobs(job_id, status, device_id, module_id);
