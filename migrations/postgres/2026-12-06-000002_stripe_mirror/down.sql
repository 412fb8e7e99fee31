ALTER TABLE payments DROP CONSTRAINT payments_provider_ref;
ALTER TABLE payments ADD CONSTRAINT payments_provider_ref UNIQUE (provider, provider_ref);
ALTER TABLE payments DROP COLUMN account;
ALTER TABLE webhook_events DROP COLUMN account;
DROP TABLE stripe_backfills;
DROP TABLE stripe_objects;
