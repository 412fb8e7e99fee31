-- The foreign key on webhook_events.log_id is not restored: forensic rows purged
-- since would break it.
DROP INDEX outbox_published_idx;
DROP INDEX webhook_events_settled_idx;
