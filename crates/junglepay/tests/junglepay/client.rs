//! The JunglePay client against the fake JunglePay API on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payhook_domain::ports::PaymentGateway;
use payhook_domain::{
    CallbackToken, CheckoutRequest, Currency, DisputeStatus, GatewayError, Money, PaymentId, PaymentStatus,
};
use payhook_junglepay::JunglePayClient;
use payhook_testkit::fake_junglepay::FakeJunglePay;
use secrecy::SecretString;
use std::time::Duration;

const KEY: &str = "sk_jungle_e2e";

fn client(fake: &FakeJunglePay, key: &str) -> JunglePayClient {
    JunglePayClient::new(
        &fake.base_url,
        &SecretString::from(key),
        "https://hooks.example.com.br",
        Duration::from_secs(5),
    )
    .unwrap()
}

fn request() -> CheckoutRequest {
    CheckoutRequest {
        payment_id: PaymentId::from_uuid(uuid::Uuid::new_v4()),
        amount: Money::new(10_000, Currency::parse("BRL").unwrap()).unwrap(),
        merchant_ref: Some("ord_123".into()),
        customer_email: Some("gabryel@example.com".into()),
        description: Some("Order 123".into()),
        metadata: serde_json::json!({ "customer_name": "Gabryel", "customer_document": "12345678910" }),
        callback_token: Some(CallbackToken::new("feedface".repeat(4))),
        success_url: None,
        cancel_url: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_a_pix_transaction_with_a_tokened_postback_url() {
    let fake = FakeJunglePay::start(KEY).await;
    let req = request();
    let before = chrono::Utc::now();
    let checkout = client(&fake, KEY).create_checkout(&req).await.unwrap();
    assert_eq!(checkout.provider_ref, "282");
    let expires = checkout.expires_at.expect("a PIX code expires");
    assert!(
        expires >= before + chrono::Duration::days(1) && expires <= chrono::Utc::now() + chrono::Duration::days(1),
        "valid the one day asked for: {expires}"
    );
    assert!(checkout.qr_text.unwrap().contains("br.gov.bcb.pix"));
    assert_eq!(
        checkout.checkout_url.as_deref(),
        Some("https://link.compra.com.br/pagar/secure-282")
    );
    let sent = &fake.requests()[0];
    assert_eq!(
        sent.authorization.as_deref(),
        Some("Basic c2tfanVuZ2xlX2UyZTp4"),
        "base64(secret:x)"
    );
    assert_eq!(sent.body["amount"], 10_000, "cents");
    assert_eq!(sent.body["paymentMethod"], "pix");
    assert_eq!(sent.body["customer"]["document"]["number"], "12345678910");
    assert_eq!(
        sent.body["postbackUrl"],
        format!(
            "https://hooks.example.com.br/webhooks/junglepay?payment_id={}&token={}",
            req.payment_id,
            "feedface".repeat(4)
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_statuses_map_as_documented() {
    let fake = FakeJunglePay::start(KEY).await;
    let c = client(&fake, KEY);
    let id = c.create_checkout(&request()).await.unwrap().provider_ref;
    assert_eq!(c.fetch_status(&id).await.unwrap().status, PaymentStatus::Pending);
    for (status, expected, dispute) in [
        ("paid", PaymentStatus::Paid, None),
        ("refused", PaymentStatus::Failed, None),
        ("canceled", PaymentStatus::Canceled, None),
        ("refunded", PaymentStatus::Refunded, None),
        ("chargedback", PaymentStatus::Paid, Some(DisputeStatus::Lost)),
    ] {
        fake.set_status(&id, status).unwrap();
        let fetched = c.fetch_status(&id).await.unwrap();
        assert_eq!((fetched.status, fetched.dispute), (expected, dispute), "{status}");
        if status == "refunded" {
            assert_eq!(fetched.refunded_amount, Some(10_000));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_classified() {
    let fake = FakeJunglePay::start(KEY).await;
    assert!(matches!(
        client(&fake, "wrong").create_checkout(&request()).await,
        Err(GatewayError::Rejected { .. })
    ));
    let c = client(&fake, KEY);
    fake.fail_next(&[502]);
    assert!(matches!(
        c.create_checkout(&request()).await,
        Err(GatewayError::Unavailable { .. })
    ));
    assert!(matches!(
        c.fetch_status("999").await,
        Err(GatewayError::Rejected { .. })
    ));
    assert!(matches!(
        c.fetch_status("../x").await,
        Err(GatewayError::Invalid { .. })
    ));
    let mut usd = request();
    usd.amount = Money::new(100, Currency::parse("USD").unwrap()).unwrap();
    assert!(matches!(
        c.check(&usd),
        Err(GatewayError::Invalid { field: "currency", .. })
    ));
}

/// JunglePay documents no search by metadata: an interrupted creation is never
/// adopted, and nothing is sent to find out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_creation_is_not_looked_up() {
    let fake = FakeJunglePay::start(KEY).await;
    let req = request();
    let c = client(&fake, KEY);
    c.create_checkout(&req).await.unwrap();
    assert_eq!(c.find_checkout(req.payment_id).await.unwrap(), None);
    assert_eq!(fake.requests().len(), 1);
}

/// A stalled JunglePay is an outage (retried later), not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_junglepay_is_unavailable_not_a_hang() {
    let fake = FakeJunglePay::start(KEY).await;
    let c = JunglePayClient::new(
        &fake.base_url,
        &SecretString::from(KEY),
        "https://hooks.example.com.br",
        Duration::from_millis(300),
    )
    .unwrap();
    fake.stall(Duration::from_secs(3));
    assert!(matches!(
        c.fetch_status("282").await,
        Err(payhook_domain::GatewayError::Unavailable { .. })
    ));
}

/// JunglePay's API documents no way to cancel a PIX transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_is_not_supported() {
    let fake = FakeJunglePay::start(KEY).await;
    let c = client(&fake, KEY);
    assert!(matches!(
        c.cancel("282").await,
        Err(payhook_domain::GatewayError::Unsupported {
            operation: "cancel",
            ..
        })
    ));
    assert!(fake.requests().is_empty());
}

/// A refund goes to the transaction's refund endpoint in cents; all of what is left
/// answers `refunded` (succeeded at once), part of it stays pending; too much is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_part_then_all_of_a_paid_transaction() {
    let fake = FakeJunglePay::start(KEY).await;
    let c = client(&fake, KEY);
    let req = request();
    let id = c.create_checkout(&req).await.unwrap().provider_ref;
    fake.set_status(&id, "paid").unwrap();
    let refund = |cents: i64| payhook_domain::RefundRequest {
        refund_id: payhook_domain::RefundId::from_uuid(uuid::Uuid::new_v4()),
        payment_id: req.payment_id,
        payment_ref: id.clone(),
        amount: payhook_domain::Money::new(cents, payhook_domain::Currency::parse("BRL").unwrap()).unwrap(),
        reason: None,
    };
    let part = refund(4_000);
    let answer = c.refund(&part).await.unwrap();
    assert_eq!(answer.status, payhook_domain::RefundStatus::Pending);
    assert_eq!(answer.provider_ref, format!("{id}:{}", part.refund_id));
    let read = c.fetch_status(&id).await.unwrap();
    assert_eq!(
        (read.status, read.refunded_amount),
        (PaymentStatus::PartiallyRefunded, Some(4_000))
    );
    // A refund check reads the transaction: its refunded total.
    let lookup = payhook_domain::RefundLookup {
        refund_id: part.refund_id,
        refund_ref: answer.provider_ref.clone(),
        payment_ref: id.clone(),
        amount: part.amount,
    };
    assert_eq!(
        c.fetch_refund(&lookup).await.unwrap(),
        payhook_domain::RefundReport::Total {
            refunded_total: 4_000,
            currency: payhook_domain::Currency::parse("BRL").unwrap()
        }
    );
    assert!(matches!(
        c.refund(&refund(7_000)).await,
        Err(payhook_domain::GatewayError::Rejected { status: 400, .. })
    ));
    assert_eq!(
        c.refund(&refund(6_000)).await.unwrap().status,
        payhook_domain::RefundStatus::Succeeded
    );
}
