-- Device counts by status, kept by triggers in the transaction of every
-- identity write, so GET /statistics/devices (every dashboard page, the
-- service SDKs' registry statistics) reads two rows instead of counting a
-- million identities (1.2 s at 1,000,000 devices). Modules are not counted.
-- Triggers cover every writer of the table, present and future.
CREATE TABLE device_counts (
  status TEXT PRIMARY KEY,
  n INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO device_counts (status, n)
  SELECT status, COUNT(*) FROM identities WHERE module_id = '' GROUP BY status;

CREATE TRIGGER device_counts_insert AFTER INSERT ON identities WHEN NEW.module_id = '' BEGIN
  INSERT INTO device_counts (status, n) VALUES (NEW.status, 1)
    ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER device_counts_delete AFTER DELETE ON identities WHEN OLD.module_id = '' BEGIN
  UPDATE device_counts SET n = n - 1 WHERE status = OLD.status;
END;

CREATE TRIGGER device_counts_status AFTER UPDATE OF status ON identities
  WHEN NEW.module_id = '' AND OLD.status <> NEW.status BEGIN
  UPDATE device_counts SET n = n - 1 WHERE status = OLD.status;
  INSERT INTO device_counts (status, n) VALUES (NEW.status, 1)
    ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;
