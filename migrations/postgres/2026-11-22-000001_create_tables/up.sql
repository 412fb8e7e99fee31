-- Every inbound webhook request, whatever happened to it (ARCHITECTURE.md §4).
CREATE TABLE webhook_logs (
    id                BIGSERIAL PRIMARY KEY,
    provider          TEXT        NOT NULL,  -- the path segment as sent; may name no provider
    received_at       TIMESTAMPTZ NOT NULL,
    method            TEXT        NOT NULL,
    path              TEXT        NOT NULL,
    query             TEXT        NOT NULL DEFAULT '',  -- secret parameters redacted
    headers           JSONB       NOT NULL,             -- [[name, value], ...], secrets redacted
    raw_body          BYTEA       NOT NULL,             -- verbatim bytes
    remote_addr       TEXT,
    event_id          TEXT,
    event_type        TEXT,
    external_id       TEXT,
    provider_status   TEXT,
    amount            BIGINT,
    http_status       INTEGER,
    processing_result TEXT,
    processing_error  TEXT,
    completed_at      TIMESTAMPTZ
);
CREATE INDEX webhook_logs_received_at_idx ON webhook_logs (received_at);
CREATE INDEX webhook_logs_event_idx ON webhook_logs (provider, event_id);

-- The durable inbox: one row per distinct provider event.
CREATE TABLE webhook_events (
    id              BIGSERIAL PRIMARY KEY,
    provider        TEXT        NOT NULL,
    event_id        TEXT        NOT NULL,
    event_type      TEXT        NOT NULL,
    payment_ref     TEXT,
    payload         JSONB       NOT NULL,  -- the normalized domain event
    status          TEXT        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'processed', 'ignored', 'failed', 'dead')),
    result          TEXT,                  -- applied | stale_transition, once processed
    attempts        INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    locked_until    TIMESTAMPTZ,           -- lease of the worker that claimed it
    last_error      TEXT,
    received_at     TIMESTAMPTZ NOT NULL,
    processed_at    TIMESTAMPTZ,
    log_id          BIGINT REFERENCES webhook_logs (id),
    CONSTRAINT webhook_events_dedup UNIQUE (provider, event_id)
);
CREATE INDEX webhook_events_due_idx ON webhook_events (next_attempt_at) WHERE status = 'pending';

CREATE TABLE payments (
    id                  UUID        PRIMARY KEY,
    provider            TEXT        NOT NULL,
    provider_ref        TEXT,
    merchant_ref        TEXT,
    amount              BIGINT      NOT NULL CHECK (amount >= 0),
    currency            TEXT        NOT NULL,
    status              TEXT        NOT NULL,
    paid_amount         BIGINT      NOT NULL DEFAULT 0,
    refunded_amount     BIGINT      NOT NULL DEFAULT 0,
    dispute_status      TEXT,
    checkout_url        TEXT,
    qr_text             TEXT,
    callback_token_hash TEXT,
    client_token_hash   TEXT,
    metadata            JSONB       NOT NULL DEFAULT '{}',
    customer_email      TEXT,
    description         TEXT,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL,
    paid_at             TIMESTAMPTZ,
    expires_at          TIMESTAMPTZ,
    version             BIGINT      NOT NULL DEFAULT 1,  -- optimistic concurrency
    CONSTRAINT payments_provider_ref UNIQUE (provider, provider_ref)
);

CREATE TABLE payment_status_history (
    id          BIGSERIAL   PRIMARY KEY,
    payment_id  UUID        NOT NULL REFERENCES payments (id),
    from_status TEXT        NOT NULL,
    to_status   TEXT        NOT NULL,
    applied     BOOLEAN     NOT NULL,
    event_id    TEXT,
    reason      TEXT        NOT NULL,
    at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX payment_status_history_payment_idx ON payment_status_history (payment_id, id);

CREATE TABLE outbox (
    id           BIGSERIAL   PRIMARY KEY,
    topic        TEXT        NOT NULL,
    payload      JSONB       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    published_at TIMESTAMPTZ,
    attempts     INTEGER     NOT NULL DEFAULT 0
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;
