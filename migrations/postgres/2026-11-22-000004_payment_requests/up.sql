-- Payments requested through POST /payments: the caller's Idempotency-Key (one
-- payment per key), the fingerprint of the request that first used it (a reuse with
-- another request is refused), and why creation at the provider failed.
ALTER TABLE payments
    ADD COLUMN idempotency_key     TEXT,
    ADD COLUMN request_fingerprint TEXT,
    ADD COLUMN failure_reason      TEXT,
    ADD CONSTRAINT payments_idempotency_key UNIQUE (idempotency_key);
