-- Reconciliation (docs/operations.md): an open payment is checked with its provider
-- when `next_reconcile_at` comes, on a growing schedule; `reconcile_checks` counts the
-- checks made. NULL: no check is scheduled (settled, given up, or learned of from the
-- provider's own event). The index holds scheduled payments only; its predicate does
-- not name the status, so a payment's status update stays a HOT update. A payment
-- that settles before its check is taken off the schedule when that check comes due.
ALTER TABLE payments ADD COLUMN next_reconcile_at TIMESTAMPTZ;
ALTER TABLE payments ADD COLUMN reconcile_checks INTEGER NOT NULL DEFAULT 0;
CREATE INDEX payments_reconcile_due_idx ON payments (next_reconcile_at) WHERE next_reconcile_at IS NOT NULL;
