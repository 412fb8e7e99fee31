DROP INDEX payments_reconcile_due_idx;
ALTER TABLE payments DROP COLUMN reconcile_checks;
ALTER TABLE payments DROP COLUMN next_reconcile_at;
