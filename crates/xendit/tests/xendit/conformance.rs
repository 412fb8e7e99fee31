//! Conformance with Xendit's public example callback (`$PAYHOOK_FIXTURES_DIR/xendit`).
//! Run by `make conformance`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payhook_domain::source::Parsed;
use payhook_domain::{PaymentChange, ProcessingResult};
use payhook_xendit::parse_callback;

fn fixture(name: &str) -> Vec<u8> {
    let dir = std::env::var("PAYHOOK_FIXTURES_DIR").expect("set PAYHOOK_FIXTURES_DIR (make conformance does)");
    std::fs::read(std::path::Path::new(&dir).join("xendit").join(name)).unwrap()
}

#[test]
#[ignore = "reads the published examples in PAYHOOK_FIXTURES_DIR; run with make conformance"]
fn the_sdk_example_callback_parses() {
    let body = fixture("invoice_callback_paid_sdk_example.json");
    // Its external_id is not a payhook payment id: acknowledged and ignored.
    match parse_callback(&body, "payhook") {
        Ok(Parsed::Ignored { result, .. }) => assert_eq!(result, ProcessingResult::IgnoredNonUuidExternalId),
        other => panic!("{other:?}"),
    }
    // The same callback for an invoice payhook created is a payment of 2,000,000 IDR.
    let mut json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    json["external_id"] = "0f7d3a8e-5a4b-4f0e-9d7c-2b1f6e3a9c11".into();
    match parse_callback(&serde_json::to_vec(&json).unwrap(), "payhook") {
        Ok(Parsed::Event(e)) => assert_eq!(e.change, PaymentChange::paid(Some(200_000_000))),
        other => panic!("{other:?}"),
    }
}
