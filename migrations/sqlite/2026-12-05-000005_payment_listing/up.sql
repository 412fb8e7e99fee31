-- See migrations/postgres: the order and cursor of GET /payments, and its most used filter.
CREATE INDEX payments_listing_idx ON payments (created_at DESC, id DESC);
CREATE INDEX payments_merchant_ref_idx ON payments (merchant_ref) WHERE merchant_ref IS NOT NULL;
