ALTER TABLE webhook_logs DROP COLUMN refused_count;
ALTER TABLE webhook_logs DROP COLUMN body_sha256;
ALTER TABLE webhook_logs DROP COLUMN body_length;
