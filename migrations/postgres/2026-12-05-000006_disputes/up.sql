-- Disputes (chargebacks) as rows of their own, several per payment; the payment keeps
-- only the summary (dispute_status). Keyed by the provider's id of the dispute.
CREATE TABLE disputes (
    id              UUID        PRIMARY KEY,
    payment_id      UUID        NOT NULL REFERENCES payments (id),
    provider_ref    TEXT        NOT NULL,
    amount          BIGINT,
    currency        TEXT,
    reason          TEXT,
    status          TEXT        NOT NULL,
    evidence_due_by TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    closed_at       TIMESTAMPTZ,
    UNIQUE (payment_id, provider_ref)
);
