DROP INDEX payments_subscription_idx;
ALTER TABLE payments DROP COLUMN subscription_id;
DROP TABLE subscription_history;
DROP TABLE subscriptions;
DROP TABLE plans;
