-- Other ids a provider uses for a payment (a Stripe charge beside its PaymentIntent),
-- so an event naming only one of them (a dispute on an older API version) finds it.
CREATE TABLE payment_aliases (
    provider   TEXT NOT NULL,
    alias      TEXT NOT NULL,
    payment_id UUID NOT NULL REFERENCES payments (id),
    PRIMARY KEY (provider, alias)
);
