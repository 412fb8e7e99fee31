-- See migrations/postgres: pending refunds are asked about on a schedule.
ALTER TABLE refunds ADD COLUMN next_check_at TEXT;
ALTER TABLE refunds ADD COLUMN checks INTEGER NOT NULL DEFAULT 0;
UPDATE refunds SET next_check_at = created_at WHERE status = 'pending';
CREATE INDEX refunds_check_due_idx ON refunds (next_check_at) WHERE next_check_at IS NOT NULL;
