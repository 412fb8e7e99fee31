-- A domain event the outgoing webhook could not deliver after notify.max_attempts is
-- dead: kept, listed and replayable, never claimed again on its own (its
-- next_attempt_at is pushed past any claim's `now`, so the claims' index scans stop
-- before it).
ALTER TABLE outbox ADD COLUMN dead_at TIMESTAMPTZ;
CREATE INDEX outbox_dead_idx ON outbox (id) WHERE dead_at IS NOT NULL;
