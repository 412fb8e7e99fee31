-- The payments table keeps its (provider, account, provider_ref) constraint: going
-- back would need the rebuild again, and rows of two accounts may share a reference.
ALTER TABLE webhook_events DROP COLUMN account;
DROP TABLE stripe_backfills;
DROP TABLE stripe_objects;
