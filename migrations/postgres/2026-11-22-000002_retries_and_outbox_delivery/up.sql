-- Events waiting for a retry are 'failed' (due at next_attempt_at), so the worker's
-- index covers them too.
DROP INDEX webhook_events_due_idx;
CREATE INDEX webhook_events_due_idx ON webhook_events (next_attempt_at) WHERE status IN ('pending', 'failed');

-- Outbox delivery is retried with backoff and leased like the inbox, so one slow
-- subscriber or a crashed instance never loses or blocks a domain event.
ALTER TABLE outbox ADD COLUMN next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT 'epoch';
ALTER TABLE outbox ADD COLUMN locked_until TIMESTAMPTZ;
ALTER TABLE outbox ADD COLUMN last_error TEXT;
DROP INDEX outbox_unpublished_idx;
CREATE INDEX outbox_unpublished_idx ON outbox (next_attempt_at, id) WHERE published_at IS NULL;
