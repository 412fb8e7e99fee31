-- See migrations/postgres. What running subscriptions needs beyond their rows: the answer to a repeated
-- Idempotency-Key, Stripe's hosted page, the order of Stripe's words about it, and
-- which renewal's `subscription.renewal_due` was published.
ALTER TABLE subscriptions ADD COLUMN request_fingerprint TEXT;
ALTER TABLE subscriptions ADD COLUMN checkout_url TEXT;
ALTER TABLE subscriptions ADD COLUMN provider_event_created BIGINT;
ALTER TABLE subscriptions ADD COLUMN provider_status_rank INTEGER;
ALTER TABLE subscriptions ADD COLUMN renewal_notified TEXT;
CREATE INDEX subscriptions_listing_idx ON subscriptions (created_at DESC, id DESC);
