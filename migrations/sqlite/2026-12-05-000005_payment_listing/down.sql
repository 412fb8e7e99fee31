DROP INDEX payments_merchant_ref_idx;
DROP INDEX payments_listing_idx;
