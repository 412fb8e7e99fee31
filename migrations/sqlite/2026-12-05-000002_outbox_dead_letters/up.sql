-- A domain event the outgoing webhook could not deliver after notify.max_attempts is
-- dead: kept, listed and replayable, never claimed again on its own.
ALTER TABLE outbox ADD COLUMN dead_at TEXT;
CREATE INDEX outbox_dead_idx ON outbox (id) WHERE dead_at IS NOT NULL;
