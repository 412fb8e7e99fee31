-- A request that failed authentication keeps only the first 64 KiB of its body;
-- these say how long it was and what it hashed to. `refused_count` is set on the
-- one summary row written per address and minute for requests refused with 429.
-- All NULL on the rows of authentic requests, whose body is kept whole.
ALTER TABLE webhook_logs ADD COLUMN body_length BIGINT;
ALTER TABLE webhook_logs ADD COLUMN body_sha256 TEXT;
ALTER TABLE webhook_logs ADD COLUMN refused_count BIGINT;
