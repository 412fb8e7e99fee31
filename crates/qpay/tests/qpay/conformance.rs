//! Conformance with QPay's published examples (`$PAYHOOK_FIXTURES_DIR/qpay`). Run by
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
#[ignore = "reads the published examples in PAYHOOK_FIXTURES_DIR; run with make conformance"]
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
#[ignore = "reads the published examples in PAYHOOK_FIXTURES_DIR; run with make conformance"]
fn the_invoice_answer_gives_qr_short_url_and_bank_links() {
    let checkout = wire::invoice(&fixture("create_invoice_response.json")).unwrap();
    assert_eq!(checkout.provider_ref, "abc123-def456-ghi789");
    assert_eq!(checkout.checkout_url.as_deref(), Some("https://qpay.mn/s/abc123"));
    assert!(checkout.qr_text.is_some());
    assert_eq!(checkout.extras["urls"].as_array().unwrap().len(), 2);
}

#[test]
#[ignore = "reads the published examples in PAYHOOK_FIXTURES_DIR; run with make conformance"]
fn payment_checks_read_paid_and_unpaid() {
    let paid = wire::check(&fixture("payment_check_response_paid.json")).unwrap();
    assert_eq!((paid.status, paid.paid_amount), (PaymentStatus::Paid, Some(5_000_000)));
    let unpaid = wire::check(&fixture("payment_check_response_unpaid.json")).unwrap();
    assert_eq!((unpaid.status, unpaid.paid_amount), (PaymentStatus::Pending, None));
}

/// Every key payhook sends is one QPay's example request has, and payhook sends every
/// key of it but the optional branch code.
fn same_keys(sent: &serde_json::Value, example: &serde_json::Value, optional: &[&str]) {
    let keys = |v: &serde_json::Value| -> std::collections::BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    };
    let (sent_keys, example_keys) = (keys(sent), keys(example));
    assert!(sent_keys.is_subset(&example_keys), "{sent_keys:?} ⊄ {example_keys:?}");
    for key in example_keys.iter().filter(|k| !optional.contains(&k.as_str())) {
        assert!(sent_keys.contains(key), "{key} is not sent");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reads the published examples in PAYHOOK_FIXTURES_DIR; run with make conformance"]
async fn requests_have_the_shape_of_qpays_examples() {
    use payhook_domain::ports::PaymentGateway;
    use payhook_domain::{CallbackToken, CheckoutRequest, Currency, Money, PaymentId};
    let fake = payhook_testkit::fake_qpay::FakeQPay::start("id", "secret").await;
    let client = payhook_qpay::QPayClient::new(
        &fake.base_url,
        payhook_qpay::QPayCredentials {
            client_id: "id".into(),
            client_secret: "secret".to_owned().into(),
            invoice_code: "TEST_INVOICE".into(),
        },
        "https://api.your-domain.mn",
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let request = CheckoutRequest {
        payment_id: PaymentId::from_uuid(uuid::Uuid::new_v4()),
        amount: Money::new(150_000, Currency::parse("MNT").unwrap()).unwrap(),
        merchant_ref: None,
        customer_email: None,
        description: Some("test".into()),
        metadata: serde_json::Value::Null,
        callback_token: Some(CallbackToken::new("ab".repeat(16))),
        success_url: None,
        cancel_url: None,
    };
    let invoice = client.create_checkout(&request).await.unwrap();
    client.fetch_status(&invoice.provider_ref).await.unwrap();
    let sent = fake.requests();
    let json = |name| serde_json::from_slice::<serde_json::Value>(&fixture(name)).unwrap();
    same_keys(
        &sent[1].body,
        &json("create_invoice_request_simple.json"),
        &["sender_branch_code"],
    );
    let check = &sent[2].body;
    same_keys(check, &json("payment_check_request.json"), &[]);
    same_keys(&check["offset"], &json("payment_check_request.json")["offset"], &[]);
    assert_eq!(check["object_type"], "INVOICE");
}
