-- See migrations/postgres: idempotency keys and creation failures of payments.
ALTER TABLE payments ADD COLUMN idempotency_key TEXT;
ALTER TABLE payments ADD COLUMN request_fingerprint TEXT;
ALTER TABLE payments ADD COLUMN failure_reason TEXT;
ALTER TABLE payments ADD COLUMN checkout_extras TEXT;
CREATE UNIQUE INDEX payments_idempotency_key ON payments (idempotency_key);
