-- The hub's service-bound feedback queue: records wait until a feedback
-- receiver completes them (AMQP accepted or rejected); a delivered batch is
-- locked meanwhile, and an abandoned batch or a lapsed lock makes its records
-- available again. Settled records stay, for the emulator's feedback listing.
ALTER TABLE c2d_feedback ADD COLUMN settled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE c2d_feedback ADD COLUMN lock_token TEXT;
ALTER TABLE c2d_feedback ADD COLUMN lock_until_ms INTEGER;
CREATE INDEX c2d_feedback_pending ON c2d_feedback (settled, seq);
CREATE INDEX c2d_feedback_lock ON c2d_feedback (lock_token) WHERE lock_token IS NOT NULL;
