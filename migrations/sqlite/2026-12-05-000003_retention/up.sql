-- See migrations/postgres: `log_id` stops being a foreign key, so forensic rows can be
-- purged independently of the inbox events that name them. SQLite cannot drop a
-- constraint, so the table is rebuilt (ids and the AUTOINCREMENT counter kept).
CREATE TABLE webhook_events_rebuilt (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    provider        TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    payment_ref     TEXT,
    payload         TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'processed', 'ignored', 'failed', 'dead')),
    result          TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT    NOT NULL,
    locked_until    TEXT,
    last_error      TEXT,
    received_at     TEXT    NOT NULL,
    processed_at    TEXT,
    log_id          INTEGER,  -- webhook_logs.id; the row may have been purged
    CONSTRAINT webhook_events_dedup UNIQUE (provider, event_id)
);
INSERT INTO webhook_events_rebuilt
    (id, provider, event_id, event_type, payment_ref, payload, status, result, attempts,
     next_attempt_at, locked_until, last_error, received_at, processed_at, log_id)
SELECT id, provider, event_id, event_type, payment_ref, payload, status, result, attempts,
       next_attempt_at, locked_until, last_error, received_at, processed_at, log_id
FROM webhook_events;
DELETE FROM sqlite_sequence WHERE name = 'webhook_events_rebuilt';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'webhook_events_rebuilt', seq FROM sqlite_sequence WHERE name = 'webhook_events';
DROP TABLE webhook_events;
ALTER TABLE webhook_events_rebuilt RENAME TO webhook_events;
CREATE INDEX webhook_events_due_idx ON webhook_events (next_attempt_at) WHERE status IN ('pending', 'failed');

-- The purge takes the oldest purgeable rows through these (see migrations/postgres).
CREATE INDEX webhook_events_settled_idx ON webhook_events (processed_at) WHERE status IN ('processed', 'ignored');
CREATE INDEX outbox_published_idx ON outbox (published_at) WHERE published_at IS NOT NULL;
