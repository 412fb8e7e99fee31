ALTER TABLE payments
    DROP CONSTRAINT payments_idempotency_key,
    DROP COLUMN idempotency_key,
    DROP COLUMN request_fingerprint,
    DROP COLUMN failure_reason,
    DROP COLUMN checkout_extras;
