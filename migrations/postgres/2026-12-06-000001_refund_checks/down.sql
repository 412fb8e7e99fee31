DROP INDEX refunds_check_due_idx;
ALTER TABLE refunds DROP COLUMN checks;
ALTER TABLE refunds DROP COLUMN next_check_at;
