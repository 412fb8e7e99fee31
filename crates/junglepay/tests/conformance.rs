//! Conformance with JunglePay's published examples (`../shared/fixtures/junglepay`).
//! Run by `make conformance`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payhook_domain::source::{Delivery, Parsed, WebhookSource};
use payhook_domain::{PaymentChange, PaymentStatus};
use payhook_junglepay::{read_transaction, JunglePayPostbacks};

fn fixture(name: &str) -> Vec<u8> {
    let dir = std::env::var("PAYHOOK_FIXTURES_DIR").expect("set PAYHOOK_FIXTURES_DIR (make conformance does)");
    std::fs::read(std::path::Path::new(&dir).join("junglepay").join(name)).unwrap()
}

#[test]
#[ignore = "reads ../shared/fixtures; run with make conformance"]
fn the_paid_postback_is_a_claim_to_confirm() {
    let body = fixture("postback_transaction_paid_credit_card.json");
    let delivery = Delivery {
        headers: &[],
        query: "payment_id=0f7d3a8e-5a4b-4f0e-9d7c-2b1f6e3a9c11&token=t",
        body: &body,
        received_at: chrono::Utc::now(),
    };
    match JunglePayPostbacks.parse(&delivery) {
        Ok(Parsed::Event(e)) => {
            assert_eq!(e.event_id.as_str(), "686401");
            assert_eq!(e.payment.provider_ref.as_deref(), Some("282"));
            assert_eq!(e.change, PaymentChange::paid(None));
            assert!(e.confirm_with_provider);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
#[ignore = "reads ../shared/fixtures; run with make conformance"]
fn the_transaction_object_reads_as_paid() {
    let (id, status) = read_transaction(&fixture("transaction_object_create_response.json")).unwrap();
    assert_eq!(id, "282");
    assert_eq!((status.status, status.paid_amount), (PaymentStatus::Paid, Some(10_000)));
}
