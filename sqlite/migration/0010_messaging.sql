-- Device-to-cloud telemetry: a bounded log (retention by count and age).
-- seq is assigned from the 'd2c_seq' counter, so sequence numbers never go
-- backwards even when retention empties the table. props holds the system
-- and application properties as JSON.
CREATE TABLE d2c_messages (
  seq INTEGER PRIMARY KEY,
  device_id TEXT NOT NULL,
  module_id TEXT NOT NULL DEFAULT '',
  enqueued_ms INTEGER NOT NULL,
  props TEXT NOT NULL,
  body BLOB NOT NULL
);

CREATE INDEX d2c_messages_device ON d2c_messages(device_id, seq);

-- Cloud-to-device queues, one per device. A row is pending (Enqueued) when
-- lock_token is NULL and Invisible while locked; completed, rejected,
-- expired and dead-lettered messages are deleted (their feedback stays).
CREATE TABLE c2d_messages (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  device_id TEXT NOT NULL,
  generation_id TEXT NOT NULL DEFAULT '',
  message_id TEXT NOT NULL,
  enqueued_ms INTEGER NOT NULL,
  expiry_ms INTEGER NOT NULL,
  ack TEXT NOT NULL,
  delivery_count INTEGER NOT NULL DEFAULT 0,
  lock_token TEXT,
  lock_until_ms INTEGER,
  props TEXT NOT NULL,
  body BLOB NOT NULL
);

CREATE INDEX c2d_messages_device ON c2d_messages(device_id, seq);
CREATE UNIQUE INDEX c2d_messages_lock ON c2d_messages(lock_token) WHERE lock_token IS NOT NULL;
CREATE INDEX c2d_messages_expiry ON c2d_messages(expiry_ms);

-- The registry's cloudToDeviceMessageCount follows the queue, whichever
-- path adds or removes a message.
CREATE TRIGGER c2d_messages_count_insert AFTER INSERT ON c2d_messages BEGIN
  UPDATE identities SET c2d_count = c2d_count + 1 WHERE device_id = new.device_id AND module_id = '';
END;
CREATE TRIGGER c2d_messages_count_delete AFTER DELETE ON c2d_messages BEGIN
  UPDATE identities SET c2d_count = MAX(c2d_count - 1, 0) WHERE device_id = old.device_id AND module_id = '';
END;
-- A deleted device takes its queue with it.
CREATE TRIGGER identities_delete_c2d AFTER DELETE ON identities WHEN old.module_id = '' BEGIN
  DELETE FROM c2d_messages WHERE device_id = old.device_id;
END;

-- Feedback records for senders that asked for them (iothub-ack).
CREATE TABLE c2d_feedback (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  original_message_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  device_generation_id TEXT NOT NULL,
  enqueued_ms INTEGER NOT NULL,
  status_code TEXT NOT NULL,
  description TEXT NOT NULL
);
