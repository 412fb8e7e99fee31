-- See migrations/postgres: when an open payment is next checked with its provider.
ALTER TABLE payments ADD COLUMN next_reconcile_at TEXT;
ALTER TABLE payments ADD COLUMN reconcile_checks INTEGER NOT NULL DEFAULT 0;
CREATE INDEX payments_reconcile_due_idx ON payments (next_reconcile_at) WHERE next_reconcile_at IS NOT NULL;
