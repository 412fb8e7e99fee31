-- See migrations/postgres: the Stripe mirror and Connect.
BEGIN;
CREATE TABLE stripe_objects (
    account              TEXT    NOT NULL,
    object_type          TEXT    NOT NULL,
    object_id            TEXT    NOT NULL,
    data                 TEXT    NOT NULL,
    livemode             BOOLEAN NOT NULL,
    deleted              BOOLEAN NOT NULL DEFAULT FALSE,
    customer             TEXT,
    status_rank          INTEGER NOT NULL,
    source_event_id      TEXT    NOT NULL,
    source_event_created BIGINT  NOT NULL,
    updated_at           TEXT    NOT NULL,
    PRIMARY KEY (account, object_type, object_id)
);
CREATE INDEX stripe_objects_customer_idx ON stripe_objects (account, object_type, customer, object_id)
    WHERE customer IS NOT NULL;

CREATE TABLE stripe_backfills (
    account        TEXT    NOT NULL,
    object_type    TEXT    NOT NULL,
    since          BIGINT  NOT NULL,
    starting_after TEXT,
    stored         BIGINT  NOT NULL DEFAULT 0,
    done           BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at     TEXT    NOT NULL,
    PRIMARY KEY (account, object_type, since)
);

ALTER TABLE webhook_events ADD COLUMN account TEXT NOT NULL DEFAULT '';
COMMIT;

-- SQLite cannot change a table's UNIQUE constraint: the payments table is rebuilt with
-- (provider, account, provider_ref), the way SQLite's ALTER TABLE documentation says:
-- foreign keys off (which only takes effect outside a transaction, hence this
-- migration's own, see metadata.toml), rebuild, check, on again. The rows referencing
-- payments keep referencing the table by name.
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE payments_rebuilt (
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
    idempotency_key     TEXT,
    request_fingerprint TEXT,
    failure_reason      TEXT,
    checkout_extras     TEXT,
    next_reconcile_at   TEXT,
    reconcile_checks    INTEGER NOT NULL DEFAULT 0,
    account             TEXT    NOT NULL DEFAULT '',
    CONSTRAINT payments_provider_ref UNIQUE (provider, account, provider_ref)
);
INSERT INTO payments_rebuilt (id, provider, provider_ref, merchant_ref, amount, currency, status, paid_amount,
    refunded_amount, dispute_status, checkout_url, qr_text, callback_token_hash, client_token_hash, metadata,
    customer_email, description, created_at, updated_at, paid_at, expires_at, version, idempotency_key,
    request_fingerprint, failure_reason, checkout_extras, next_reconcile_at, reconcile_checks)
SELECT id, provider, provider_ref, merchant_ref, amount, currency, status, paid_amount,
    refunded_amount, dispute_status, checkout_url, qr_text, callback_token_hash, client_token_hash, metadata,
    customer_email, description, created_at, updated_at, paid_at, expires_at, version, idempotency_key,
    request_fingerprint, failure_reason, checkout_extras, next_reconcile_at, reconcile_checks
FROM payments;
DROP TABLE payments;
ALTER TABLE payments_rebuilt RENAME TO payments;
CREATE UNIQUE INDEX payments_idempotency_key ON payments (idempotency_key);
CREATE INDEX payments_reconcile_due_idx ON payments (next_reconcile_at) WHERE next_reconcile_at IS NOT NULL;
CREATE INDEX payments_listing_idx ON payments (created_at DESC, id DESC);
CREATE INDEX payments_merchant_ref_idx ON payments (merchant_ref) WHERE merchant_ref IS NOT NULL;
PRAGMA foreign_key_check;
COMMIT;
PRAGMA foreign_keys = ON;
