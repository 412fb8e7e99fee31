-- See migrations/postgres: other provider ids of a payment.
CREATE TABLE payment_aliases (
    provider   TEXT NOT NULL,
    alias      TEXT NOT NULL,
    payment_id TEXT NOT NULL REFERENCES payments (id),
    PRIMARY KEY (provider, alias)
);
