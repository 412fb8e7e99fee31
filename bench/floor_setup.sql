-- The floor's tables: what a naive handler must write durably per webhook.
DROP TABLE IF EXISTS floor_raw, floor_inbox;
CREATE TABLE floor_raw (
    id          BIGSERIAL   PRIMARY KEY,
    received_at TIMESTAMPTZ NOT NULL,
    body        BYTEA       NOT NULL
);
CREATE TABLE floor_inbox (
    id          BIGSERIAL   PRIMARY KEY,
    event_id    TEXT        NOT NULL UNIQUE,
    received_at TIMESTAMPTZ NOT NULL
);
