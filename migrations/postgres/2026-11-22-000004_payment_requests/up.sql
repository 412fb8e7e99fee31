-- Payments requested through POST /payments: the caller's Idempotency-Key (one
-- payment per key), the fingerprint of the request that first used it (a reuse with
-- another request is refused), why creation at the provider failed, and what else the
-- provider gave for paying (QPay's QR image and bank app links).
ALTER TABLE payments
    ADD COLUMN idempotency_key     TEXT,
    ADD COLUMN request_fingerprint TEXT,
    ADD COLUMN failure_reason      TEXT,
    ADD COLUMN checkout_extras     JSONB,
    ADD CONSTRAINT payments_idempotency_key UNIQUE (idempotency_key);
