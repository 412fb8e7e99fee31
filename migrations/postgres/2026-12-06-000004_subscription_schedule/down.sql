DROP INDEX subscriptions_listing_idx;
ALTER TABLE subscriptions DROP COLUMN renewal_notified;
ALTER TABLE subscriptions DROP COLUMN provider_status_rank;
ALTER TABLE subscriptions DROP COLUMN provider_event_created;
ALTER TABLE subscriptions DROP COLUMN checkout_url;
ALTER TABLE subscriptions DROP COLUMN request_fingerprint;
