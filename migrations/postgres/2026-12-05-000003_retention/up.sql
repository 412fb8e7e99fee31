-- Retention (retention.*) deletes old forensic rows, processed inbox events and
-- delivered outbox messages, each kind by its own age. An inbox event can outlive the
-- request that brought it (a dead event is never purged; inbox_days may exceed
-- forensic_days), so `log_id` becomes a reference that may point at a purged row
-- rather than a foreign key. With the key, every forensic delete would also search
-- webhook_events for rows naming it, and no index serves that search.
ALTER TABLE webhook_events DROP CONSTRAINT IF EXISTS webhook_events_log_id_fkey;
-- The purge takes the oldest purgeable rows through these indexes, a small batch at
-- a time. Both are partial: a row enters when it is processed or delivered, an
-- update that already rewrites it, so the ingest path's inserts do not maintain them.
CREATE INDEX webhook_events_settled_idx ON webhook_events (processed_at) WHERE status IN ('processed', 'ignored');
CREATE INDEX outbox_published_idx ON outbox (published_at) WHERE published_at IS NOT NULL;
