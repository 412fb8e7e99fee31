-- See migrations/postgres: disputes as rows of their own, several per payment.
CREATE TABLE disputes (
    id              TEXT    PRIMARY KEY,
    payment_id      TEXT    NOT NULL REFERENCES payments (id),
    provider_ref    TEXT    NOT NULL,
    amount          INTEGER,
    currency        TEXT,
    reason          TEXT,
    status          TEXT    NOT NULL,
    evidence_due_by TEXT,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    closed_at       TEXT,
    UNIQUE (payment_id, provider_ref)
);
