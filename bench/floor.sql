-- The floor: per transaction, what a naive webhook handler must do durably: keep a
-- ~2 KB raw body, insert-or-ignore an inbox row keyed on the event id, commit.
-- Run by `make bench` with pgbench at payhook's concurrency against the same server.
\set n random(1, 2000000000)
BEGIN;
INSERT INTO floor_raw (received_at, body) VALUES (now(), convert_to(repeat('x', 2048), 'UTF8'));
INSERT INTO floor_inbox (event_id, received_at) VALUES ('evt_floor_' || :client_id || '_' || :n, now())
    ON CONFLICT (event_id) DO NOTHING;
COMMIT;
