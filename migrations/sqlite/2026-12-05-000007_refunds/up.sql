-- See migrations/postgres: refunds as rows of their own.
CREATE TABLE refunds (
    id              TEXT    PRIMARY KEY,
    payment_id      TEXT    NOT NULL REFERENCES payments (id),
    provider_ref    TEXT,
    amount          INTEGER NOT NULL CHECK (amount > 0),
    currency        TEXT    NOT NULL,
    reason          TEXT,
    status          TEXT    NOT NULL,
    origin          TEXT    NOT NULL,
    idempotency_key TEXT,
    failure_reason  TEXT,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    UNIQUE (payment_id, idempotency_key)
);
CREATE INDEX refunds_payment_idx ON refunds (payment_id, created_at);
CREATE INDEX refunds_provider_ref_idx ON refunds (provider_ref) WHERE provider_ref IS NOT NULL;
