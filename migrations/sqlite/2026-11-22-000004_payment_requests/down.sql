DROP INDEX payments_idempotency_key;
ALTER TABLE payments DROP COLUMN checkout_extras;
ALTER TABLE payments DROP COLUMN failure_reason;
ALTER TABLE payments DROP COLUMN request_fingerprint;
ALTER TABLE payments DROP COLUMN idempotency_key;
