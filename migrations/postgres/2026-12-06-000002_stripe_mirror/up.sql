-- The Stripe mirror and Connect (docs/stripe-mirror.md).
--
-- Stripe objects as Stripe sent them, per Connect account ('' for the platform). `data`
-- is the object's JSON text, kept as TEXT: JSONB would reorder its keys. A write
-- replaces a row only when it is newer: a later `source_event_created` (unix seconds,
-- as Stripe stamps events), or the same second and a later `status_rank`.
CREATE TABLE stripe_objects (
    account              TEXT        NOT NULL,
    object_type          TEXT        NOT NULL,
    object_id            TEXT        NOT NULL,
    data                 TEXT        NOT NULL,
    livemode             BOOLEAN     NOT NULL,
    deleted              BOOLEAN     NOT NULL DEFAULT FALSE,
    customer             TEXT,
    status_rank          INTEGER     NOT NULL,
    source_event_id      TEXT        NOT NULL,
    source_event_created BIGINT      NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (account, object_type, object_id)
);
CREATE INDEX stripe_objects_customer_idx ON stripe_objects (account, object_type, customer, object_id)
    WHERE customer IS NOT NULL;

-- Where each `payhook stripe backfill` stands, so running it again goes on from there.
-- `since` 0: every object.
CREATE TABLE stripe_backfills (
    account        TEXT        NOT NULL,
    object_type    TEXT        NOT NULL,
    since          BIGINT      NOT NULL,
    starting_after TEXT,
    stored         BIGINT      NOT NULL DEFAULT 0,
    done           BOOLEAN     NOT NULL DEFAULT FALSE,
    updated_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (account, object_type, since)
);

-- Connect: the account an event and a payment belong to ('' for the platform and for
-- providers without accounts). A provider's reference is unique within its account.
ALTER TABLE webhook_events ADD COLUMN account TEXT NOT NULL DEFAULT '';
ALTER TABLE payments ADD COLUMN account TEXT NOT NULL DEFAULT '';
ALTER TABLE payments DROP CONSTRAINT payments_provider_ref;
ALTER TABLE payments ADD CONSTRAINT payments_provider_ref UNIQUE (provider, account, provider_ref);
