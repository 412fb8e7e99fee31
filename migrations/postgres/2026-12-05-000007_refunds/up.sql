-- Refunds as rows of their own: those the merchant asks for through the API, and
-- those seen only in a provider's events (its dashboard).
CREATE TABLE refunds (
    id              UUID        PRIMARY KEY,
    payment_id      UUID        NOT NULL REFERENCES payments (id),
    provider_ref    TEXT,
    amount          BIGINT      NOT NULL CHECK (amount > 0),
    currency        TEXT        NOT NULL,
    reason          TEXT,
    status          TEXT        NOT NULL,
    origin          TEXT        NOT NULL,
    idempotency_key TEXT,
    failure_reason  TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (payment_id, idempotency_key)
);
CREATE INDEX refunds_payment_idx ON refunds (payment_id, created_at);
CREATE INDEX refunds_provider_ref_idx ON refunds (provider_ref) WHERE provider_ref IS NOT NULL;
