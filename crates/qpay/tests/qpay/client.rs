//! The QPay client against the fake QPay API on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payhook_domain::ports::PaymentGateway;
use payhook_domain::{CallbackToken, CheckoutRequest, Currency, GatewayError, Money, PaymentId, PaymentStatus};
use payhook_qpay::{QPayClient, QPayCredentials};
use payhook_testkit::fake_qpay::FakeQPay;
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;

const ID: &str = "merchant-client";
const SECRET: &str = "merchant-secret";

fn client(fake: &FakeQPay, secret: &str) -> QPayClient {
    QPayClient::new(
        &fake.base_url,
        QPayCredentials {
            client_id: ID.into(),
            client_secret: SecretString::from(secret),
            invoice_code: "PAYHOOK_INVOICE".into(),
        },
        "https://hooks.example.mn/",
        Duration::from_secs(5),
    )
    .unwrap()
}

fn request(minor: i64) -> CheckoutRequest {
    CheckoutRequest {
        payment_id: PaymentId::from_uuid(uuid::Uuid::new_v4()),
        amount: Money::new(minor, Currency::parse("MNT").unwrap()).unwrap(),
        merchant_ref: Some("order-5".into()),
        customer_email: None,
        description: Some("Order 5".into()),
        metadata: serde_json::Value::Null,
        callback_token: Some(CallbackToken::new("0123456789abcdef0123456789abcdef".into())),
        success_url: None,
        cancel_url: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_an_invoice_with_a_token_in_its_callback_url() {
    let fake = FakeQPay::start(ID, SECRET).await;
    let req = request(5_000_000);
    let before = chrono::Utc::now();
    let checkout = client(&fake, SECRET).create_checkout(&req).await.unwrap();
    assert_eq!(checkout.provider_ref, "fake-invoice-1");
    let expires = checkout.expires_at.expect("payhook gives a QPay invoice a due date");
    assert!(
        expires >= before + chrono::Duration::hours(24) && expires <= chrono::Utc::now() + chrono::Duration::hours(24),
        "payable for 24 hours: {expires}"
    );
    assert!(checkout.qr_text.unwrap().contains("fake-invoice-1"));
    assert_eq!(
        checkout.checkout_url.as_deref(),
        Some("https://qpay.mn/s/fake-invoice-1")
    );
    assert!(checkout.extras["qr_image"].is_string() && checkout.extras["urls"].is_array());

    let sent = fake.requests();
    assert_eq!(sent[0].path, "/v2/auth/token");
    let invoice = &sent[1];
    assert_eq!(invoice.authorization.as_deref(), Some("Bearer fake-access-1"));
    assert_eq!(invoice.body["sender_invoice_no"], req.payment_id.to_string());
    assert_eq!(invoice.body["invoice_code"], "PAYHOOK_INVOICE");
    assert_eq!(invoice.body["amount"], 50_000, "whole tögrög");
    assert_eq!(
        invoice.body["callback_url"],
        format!(
            "https://hooks.example.mn/webhooks/qpay?payment_id={}&token=0123456789abcdef0123456789abcdef",
            req.payment_id
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amounts_must_be_whole_tugrik_in_mnt() {
    let fake = FakeQPay::start(ID, SECRET).await;
    let c = client(&fake, SECRET);
    assert!(matches!(
        c.check(&request(5_000_050)),
        Err(GatewayError::Invalid { field: "amount", .. })
    ));
    let mut usd = request(5_000);
    usd.amount = Money::new(5_000, Currency::parse("USD").unwrap()).unwrap();
    assert!(matches!(
        c.check(&usd),
        Err(GatewayError::Invalid { field: "currency", .. })
    ));
    assert_eq!(c.check(&request(5_000_000)), Ok(()));
    assert!(fake.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_reports_unpaid_partial_and_paid() {
    let fake = FakeQPay::start(ID, SECRET).await;
    let c = client(&fake, SECRET);
    let invoice = c.create_checkout(&request(5_000_000)).await.unwrap().provider_ref;
    assert_eq!(c.fetch_status(&invoice).await.unwrap().status, PaymentStatus::Pending);
    fake.pay(&invoice, 20_000).unwrap();
    let partial = c.fetch_status(&invoice).await.unwrap();
    assert_eq!(
        (partial.status, partial.paid_amount),
        (PaymentStatus::Paid, Some(2_000_000))
    );
    fake.pay(&invoice, 30_000).unwrap();
    fake.next_checks_unpaid(1);
    assert_eq!(
        c.fetch_status(&invoice).await.unwrap().status,
        PaymentStatus::Pending,
        "a lagging check"
    );
    let paid = c.fetch_status(&invoice).await.unwrap();
    assert_eq!((paid.status, paid.paid_amount), (PaymentStatus::Paid, Some(5_000_000)));
    assert_eq!(fake.token_requests(), 1, "one token serves every call while it lives");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_callers_finding_the_token_expired_cause_one_refresh() {
    for as_epoch in [false, true] {
        let fake = FakeQPay::start(ID, SECRET).await;
        fake.token_lifetime(2, as_epoch);
        let c = Arc::new(client(&fake, SECRET));
        let invoice = c.create_checkout(&request(5_000_000)).await.unwrap().provider_ref;
        assert_eq!(fake.token_requests(), 1);
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        let calls: Vec<_> = (0..50)
            .map(|_| {
                let (c, invoice) = (c.clone(), invoice.clone());
                tokio::spawn(async move { c.fetch_status(&invoice).await })
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
        assert_eq!(
            fake.token_requests(),
            2,
            "exactly one refresh (epoch expiry: {as_epoch})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_classified_and_wrong_credentials_refused() {
    let fake = FakeQPay::start(ID, SECRET).await;
    let refused = client(&fake, "wrong").create_checkout(&request(5_000_000)).await;
    assert!(matches!(refused, Err(GatewayError::Rejected { .. })), "{refused:?}");
    let c = client(&fake, SECRET);
    fake.fail_next(&[500, 500]);
    let down = c.create_checkout(&request(5_000_000)).await;
    assert!(matches!(down, Err(GatewayError::Unavailable { .. })), "{down:?}");
    let down_again = c.create_checkout(&request(5_000_000)).await;
    assert!(
        matches!(down_again, Err(GatewayError::Unavailable { .. })),
        "{down_again:?}"
    );
    assert!(c.create_checkout(&request(5_000_000)).await.is_ok(), "it recovers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_early_is_replaced_once_and_the_call_succeeds() {
    let fake = FakeQPay::start(ID, SECRET).await;
    let c = client(&fake, SECRET);
    let invoice = c.create_checkout(&request(5_000_000)).await.unwrap().provider_ref;
    fake.revoke_tokens();
    assert_eq!(c.fetch_status(&invoice).await.unwrap().status, PaymentStatus::Pending);
    assert_eq!(fake.token_requests(), 2, "one new token after the 401");
}

/// QPay cannot look an invoice up by `sender_invoice_no`: an interrupted creation is
/// never adopted, and nothing is sent to find out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_creation_is_not_looked_up() {
    let fake = FakeQPay::start(ID, SECRET).await;
    let req = request(5_000_000);
    let c = client(&fake, SECRET);
    c.create_checkout(&req).await.unwrap();
    let sent = fake.requests().len();
    assert_eq!(c.find_checkout(req.payment_id).await.unwrap(), None);
    assert_eq!(fake.requests().len(), sent);
}

/// A stalled QPay is an outage (retried later), not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_qpay_is_unavailable_not_a_hang() {
    let fake = FakeQPay::start(ID, SECRET).await;
    let c = QPayClient::new(
        &fake.base_url,
        QPayCredentials {
            client_id: ID.into(),
            client_secret: SecretString::from(SECRET),
            invoice_code: "PAYHOOK_INVOICE".into(),
        },
        "https://hooks.example.mn/",
        Duration::from_millis(300),
    )
    .unwrap();
    fake.stall(Duration::from_secs(3));
    assert!(matches!(
        c.fetch_status("fake-invoice-1").await,
        Err(payhook_domain::GatewayError::Unavailable { .. })
    ));
    assert_eq!(fake.stalled(), 1, "still held by the fake");
}

/// Cancel deletes an unpaid invoice (`DELETE /v2/invoice/{id}`); a paid one is
/// answered as paid, without a delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_deletes_an_unpaid_invoice_and_reports_a_paid_one() {
    let fake = FakeQPay::start(ID, SECRET).await;
    let c = client(&fake, SECRET);
    let open = c.create_checkout(&request(5_000_000)).await.unwrap();
    assert_eq!(
        c.cancel(&open.provider_ref).await.unwrap().status,
        payhook_domain::PaymentStatus::Canceled
    );
    let sent = fake.requests().pop().unwrap();
    assert_eq!(
        (sent.method.as_str(), sent.path),
        ("DELETE", format!("/v2/invoice/{}", open.provider_ref))
    );
    let paid = c.create_checkout(&request(5_000_000)).await.unwrap();
    fake.pay(&paid.provider_ref, 50_000).unwrap();
    let found = c.cancel(&paid.provider_ref).await.unwrap();
    assert_eq!(found.status, payhook_domain::PaymentStatus::Paid);
    assert!(fake
        .requests()
        .iter()
        .all(|r| r.method != "DELETE" || r.path.ends_with(&open.provider_ref)));
}
