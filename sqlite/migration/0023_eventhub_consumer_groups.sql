-- Event Hub-compatible endpoint (issue 15): consumer groups besides
-- $Default, created through the emulator-only endpoint or the seed file.
-- name_key is the lower-case name: groups compare case-insensitively.
CREATE TABLE eventhub_consumer_groups (
  name_key TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  created_time TEXT NOT NULL
) WITHOUT ROWID;
