-- File upload (issue 17): SAS URIs handed to devices and not yet settled,
-- and the file notifications of successful uploads.
CREATE TABLE file_uploads (
  correlation_id TEXT PRIMARY KEY,
  device_id TEXT NOT NULL,
  container TEXT NOT NULL,
  blob_name TEXT NOT NULL,
  created_time TEXT NOT NULL,
  expiry_time TEXT NOT NULL
) WITHOUT ROWID;

CREATE INDEX file_uploads_device ON file_uploads(device_id, expiry_time);

CREATE TABLE file_notifications (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused: consumers page by it
  device_id TEXT NOT NULL,
  blob_uri TEXT NOT NULL,
  blob_name TEXT NOT NULL,
  last_updated_time TEXT NOT NULL,
  blob_size INTEGER NOT NULL,
  enqueued_time TEXT NOT NULL
);

CREATE INDEX file_notifications_device ON file_notifications(device_id, seq);
