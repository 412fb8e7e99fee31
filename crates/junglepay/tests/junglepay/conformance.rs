//! Conformance with JunglePay's published examples (`$PAYHOOK_FIXTURES_DIR/junglepay`).
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
#[ignore = "reads the published examples in PAYHOOK_FIXTURES_DIR; run with make conformance"]
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
#[ignore = "reads the published examples in PAYHOOK_FIXTURES_DIR; run with make conformance"]
fn the_transaction_object_reads_as_paid() {
    let (id, status) = read_transaction(&fixture("transaction_object_create_response.json")).unwrap();
    assert_eq!(id, "282");
    assert_eq!((status.status, status.paid_amount), (PaymentStatus::Paid, Some(10_000)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reads the published examples in PAYHOOK_FIXTURES_DIR; run with make conformance"]
async fn the_transaction_request_has_the_shape_of_junglepays_example() {
    use payhook_domain::ports::PaymentGateway;
    use payhook_domain::{CallbackToken, CheckoutRequest, Currency, Money, PaymentId};
    use std::collections::BTreeSet;
    let fake = payhook_testkit::fake_junglepay::FakeJunglePay::start("sk").await;
    let client = payhook_junglepay::JunglePayClient::new(
        &fake.base_url,
        &"sk".to_owned().into(),
        "https://gateway.example.com",
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let request = CheckoutRequest {
        payment_id: PaymentId::from_uuid(uuid::Uuid::new_v4()),
        amount: Money::new(10_000, Currency::parse("BRL").unwrap()).unwrap(),
        merchant_ref: Some("ord_123".into()),
        customer_email: Some("gabryel@hotmail.com".into()),
        description: Some("b456".into()),
        metadata: serde_json::json!({ "customer_name": "Gabryel", "customer_document": "12345678910" }),
        callback_token: Some(CallbackToken::new("ab".repeat(16))),
        success_url: None,
        cancel_url: None,
    };
    client.create_checkout(&request).await.unwrap();
    let sent = fake.requests()[0].body.clone();
    let example: serde_json::Value =
        serde_json::from_slice(&fixture("create_transaction_request_pix_constructed.json")).unwrap();
    let keys = |v: &serde_json::Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(keys(&sent), keys(&example), "top-level fields");
    assert!(keys(&sent["customer"]).is_subset(&keys(&example["customer"])));
    assert_eq!(
        keys(&sent["customer"]["document"]),
        keys(&example["customer"]["document"])
    );
    assert!(keys(&sent["items"][0]).is_subset(&keys(&example["items"][0])));
    assert_eq!(keys(&sent["pix"]), keys(&example["pix"]));
    assert!(
        sent["metadata"].is_string(),
        "metadata is a JSON string, as in the example"
    );
}
