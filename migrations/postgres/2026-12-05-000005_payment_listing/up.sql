-- GET /payments lists newest first, a page at a time, cut by (created_at, id): this
-- index serves the order and the cursor; merchant_ref, the filter merchants use most,
-- has its own (only payments that carry one).
CREATE INDEX payments_listing_idx ON payments (created_at DESC, id DESC);
CREATE INDEX payments_merchant_ref_idx ON payments (merchant_ref) WHERE merchant_ref IS NOT NULL;
