//! Conformance with QPay's published examples (`../shared/fixtures/qpay`). Run by
//! `make conformance`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{TimeZone, Utc};
use payhook_domain::PaymentStatus;
use payhook_qpay::wire;

fn fixture(name: &str) -> Vec<u8> {
    let dir = std::env::var("PAYHOOK_FIXTURES_DIR").expect("set PAYHOOK_FIXTURES_DIR (make conformance does)");
    std::fs::read(std::path::Path::new(&dir).join("qpay").join(name)).unwrap()
}

#[test]
#[ignore = "reads ../shared/fixtures; run with make conformance"]
fn the_sandbox_token_expiry_is_read_as_an_epoch() {
    let now = Utc.timestamp_opt(1_769_670_125, 0).single().unwrap();
    let expires = wire::token_expiry(&fixture("auth_token_response_sandbox.json"), now).unwrap();
    assert_eq!(
        expires.timestamp(),
        1_769_756_525,
        "expires_in above 1e9 is an absolute time"
    );
}

#[test]
#[ignore = "reads ../shared/fixtures; run with make conformance"]
fn the_invoice_answer_gives_qr_short_url_and_bank_links() {
    let checkout = wire::invoice(&fixture("create_invoice_response.json")).unwrap();
    assert_eq!(checkout.provider_ref, "abc123-def456-ghi789");
    assert_eq!(checkout.checkout_url.as_deref(), Some("https://qpay.mn/s/abc123"));
    assert!(checkout.qr_text.is_some());
    assert_eq!(checkout.extras["urls"].as_array().unwrap().len(), 2);
}

#[test]
#[ignore = "reads ../shared/fixtures; run with make conformance"]
fn payment_checks_read_paid_and_unpaid() {
    let paid = wire::check(&fixture("payment_check_response_paid.json")).unwrap();
    assert_eq!((paid.status, paid.paid_amount), (PaymentStatus::Paid, Some(5_000_000)));
    let unpaid = wire::check(&fixture("payment_check_response_unpaid.json")).unwrap();
    assert_eq!((unpaid.status, unpaid.paid_amount), (PaymentStatus::Pending, None));
}
