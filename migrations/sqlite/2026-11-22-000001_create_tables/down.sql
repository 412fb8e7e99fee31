DROP TABLE outbox;
DROP TABLE payment_status_history;
DROP TABLE payments;
DROP TABLE webhook_events;
DROP TABLE webhook_logs;
