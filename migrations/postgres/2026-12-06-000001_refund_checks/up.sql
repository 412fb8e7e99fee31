-- A pending refund whose webhook never came is asked about (docs/operations.md):
-- `next_check_at` is when, on the reconciler's growing schedule counted from the
-- refund's creation; `checks` counts the checks made. NULL: none due (settled, or
-- given up). The index holds scheduled refunds only.
ALTER TABLE refunds ADD COLUMN next_check_at TIMESTAMPTZ;
ALTER TABLE refunds ADD COLUMN checks INTEGER NOT NULL DEFAULT 0;
UPDATE refunds SET next_check_at = created_at WHERE status = 'pending';
CREATE INDEX refunds_check_due_idx ON refunds (next_check_at) WHERE next_check_at IS NOT NULL;
