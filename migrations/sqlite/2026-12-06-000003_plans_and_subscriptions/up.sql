-- See migrations/postgres: plans and subscriptions.
CREATE TABLE plans (
    id              TEXT        PRIMARY KEY,
    code            TEXT        NOT NULL UNIQUE,
    name            TEXT        NOT NULL,
    amount          BIGINT      NOT NULL CHECK (amount > 0),
    currency        TEXT        NOT NULL,
    "interval"      TEXT        NOT NULL,
    interval_count  INTEGER     NOT NULL CHECK (interval_count > 0),
    trial_days      INTEGER     NOT NULL DEFAULT 0 CHECK (trial_days >= 0),
    stripe_price_id TEXT,
    active          BOOLEAN     NOT NULL DEFAULT TRUE,
    created_at      TEXT        NOT NULL
);

CREATE TABLE subscriptions (
    id                   TEXT        PRIMARY KEY,
    plan_id              TEXT        NOT NULL REFERENCES plans (id),
    provider             TEXT        NOT NULL,
    account              TEXT        NOT NULL DEFAULT '',
    provider_ref         TEXT,
    customer_ref         TEXT        NOT NULL,
    customer_email       TEXT,
    status               TEXT        NOT NULL,
    anchor               TEXT       ,
    periods              INTEGER     NOT NULL DEFAULT 0,
    current_period_start TEXT       ,
    current_period_end   TEXT       ,
    cancel_at_period_end BOOLEAN     NOT NULL DEFAULT FALSE,
    canceled_at          TEXT       ,
    metadata             TEXT        NOT NULL DEFAULT '{}',
    idempotency_key      TEXT        UNIQUE,
    -- When the scheduler next looks at it (a renewal to ask for, a lapse, an expiry).
    next_due_at          TEXT       ,
    created_at           TEXT        NOT NULL,
    updated_at           TEXT        NOT NULL,
    version              BIGINT      NOT NULL DEFAULT 1,
    CONSTRAINT subscriptions_provider_ref UNIQUE (provider, account, provider_ref)
);
CREATE INDEX subscriptions_customer_idx ON subscriptions (customer_ref, created_at DESC);
CREATE INDEX subscriptions_due_idx ON subscriptions (next_due_at) WHERE next_due_at IS NOT NULL;

CREATE TABLE subscription_history (
    id              INTEGER     PRIMARY KEY AUTOINCREMENT,
    subscription_id TEXT        NOT NULL REFERENCES subscriptions (id),
    from_status     TEXT        NOT NULL,
    to_status       TEXT        NOT NULL,
    applied         BOOLEAN     NOT NULL,
    reason          TEXT        NOT NULL,
    at              TEXT        NOT NULL
);
CREATE INDEX subscription_history_subscription_idx ON subscription_history (subscription_id, id);

ALTER TABLE payments ADD COLUMN subscription_id TEXT REFERENCES subscriptions (id);
CREATE INDEX payments_subscription_idx ON payments (subscription_id, created_at DESC) WHERE subscription_id IS NOT NULL;
