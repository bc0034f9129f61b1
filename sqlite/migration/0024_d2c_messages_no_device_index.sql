-- Telemetry is appended in seq order, so the table's own B-tree grows at
-- its right edge; the (device_id, seq) index took every message to a page
-- chosen by its device, a dozen pages written to the WAL per commit where
-- the rows fill two. Only the emulator's own per-device listing used it,
-- which now reads the newest rows backwards (see sqlite/messaging.go).
DROP INDEX IF EXISTS d2c_messages_device;
