DROP INDEX outbox_dead_idx;
ALTER TABLE outbox DROP COLUMN dead_at;
