-- The embedded store's tables: the same columns as migrations/postgres, in SQLite
-- storage. Instants are fixed-width RFC 3339 UTC text (text order is time order),
-- UUIDs hyphenated text, JSON text, raw bodies blobs (see crates/sql/src/types.rs).

CREATE TABLE webhook_logs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    provider          TEXT    NOT NULL,
    received_at       TEXT    NOT NULL,
    method            TEXT    NOT NULL,
    path              TEXT    NOT NULL,
    query             TEXT    NOT NULL DEFAULT '',
    headers           TEXT    NOT NULL,
    raw_body          BLOB    NOT NULL,
    remote_addr       TEXT,
    event_id          TEXT,
    event_type        TEXT,
    external_id       TEXT,
    provider_status   TEXT,
    amount            INTEGER,
    http_status       INTEGER,
    processing_result TEXT,
    processing_error  TEXT,
    completed_at      TEXT
);
CREATE INDEX webhook_logs_received_at_idx ON webhook_logs (received_at);
CREATE INDEX webhook_logs_event_idx ON webhook_logs (provider, event_id);

CREATE TABLE webhook_events (
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
    log_id          INTEGER REFERENCES webhook_logs (id),
    CONSTRAINT webhook_events_dedup UNIQUE (provider, event_id)
);
CREATE INDEX webhook_events_due_idx ON webhook_events (next_attempt_at) WHERE status = 'pending';

CREATE TABLE payments (
    id                  TEXT    PRIMARY KEY,
    provider            TEXT    NOT NULL,
    provider_ref        TEXT,
    merchant_ref        TEXT,
    amount              INTEGER NOT NULL CHECK (amount >= 0),
    currency            TEXT    NOT NULL,
    status              TEXT    NOT NULL,
    paid_amount         INTEGER NOT NULL DEFAULT 0,
    refunded_amount     INTEGER NOT NULL DEFAULT 0,
    dispute_status      TEXT,
    checkout_url        TEXT,
    qr_text             TEXT,
    callback_token_hash TEXT,
    client_token_hash   TEXT,
    metadata            TEXT    NOT NULL DEFAULT '{}',
    customer_email      TEXT,
    description         TEXT,
    created_at          TEXT    NOT NULL,
    updated_at          TEXT    NOT NULL,
    paid_at             TEXT,
    expires_at          TEXT,
    version             INTEGER NOT NULL DEFAULT 1,
    CONSTRAINT payments_provider_ref UNIQUE (provider, provider_ref)
);

CREATE TABLE payment_status_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    payment_id  TEXT    NOT NULL REFERENCES payments (id),
    from_status TEXT    NOT NULL,
    to_status   TEXT    NOT NULL,
    applied     BOOLEAN NOT NULL,
    event_id    TEXT,
    reason      TEXT    NOT NULL,
    at          TEXT    NOT NULL
);
CREATE INDEX payment_status_history_payment_idx ON payment_status_history (payment_id, id);

CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    topic        TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    published_at TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;
