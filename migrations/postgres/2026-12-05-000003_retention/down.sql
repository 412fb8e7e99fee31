DROP INDEX outbox_published_idx;
DROP INDEX webhook_events_settled_idx;
-- NOT VALID: rows purged while the key was absent may be named still.
ALTER TABLE webhook_events
    ADD CONSTRAINT webhook_events_log_id_fkey FOREIGN KEY (log_id) REFERENCES webhook_logs (id) NOT VALID;
