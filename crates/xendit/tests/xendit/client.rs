//! The Xendit client against the fake Xendit API on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payhook_domain::ports::PaymentGateway;
use payhook_domain::{CheckoutRequest, Currency, GatewayError, Money, PaymentId, PaymentStatus};
use payhook_testkit::fake_xendit::FakeXendit;
use payhook_xendit::XenditClient;
use secrecy::SecretString;
use std::time::Duration;

const KEY: &str = "xnd_development_fake_key";

fn client(fake: &FakeXendit, key: &str, timeout: Duration) -> XenditClient {
    XenditClient::new(&fake.base_url, &SecretString::from(key), "payhook", timeout).unwrap()
}

fn request(minor: i64) -> CheckoutRequest {
    CheckoutRequest {
        payment_id: PaymentId::from_uuid(uuid::Uuid::new_v4()),
        amount: Money::new(minor, Currency::parse("IDR").unwrap()).unwrap(),
        merchant_ref: Some("order-77".into()),
        customer_email: Some("budi@example.co.id".into()),
        description: Some("Order 77".into()),
        metadata: serde_json::Value::Null,
        callback_token: None,
        success_url: None,
        cancel_url: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_an_invoice_with_basic_auth_our_id_and_app_tag() {
    let fake = FakeXendit::start(KEY).await;
    let req = request(15_000_000);
    let checkout = client(&fake, KEY, Duration::from_secs(5))
        .create_checkout(&req)
        .await
        .unwrap();
    assert_eq!(checkout.provider_ref, "inv_fake_0001");
    assert_eq!(
        checkout.checkout_url.as_deref(),
        Some(format!("{}/web/inv_fake_0001", fake.base_url).as_str())
    );
    assert!(checkout.expires_at.is_some());

    let sent = &fake.requests()[0];
    assert_eq!((sent.method.as_str(), sent.path.as_str()), ("POST", "/v2/invoices"));
    assert_eq!(
        sent.authorization.as_deref(),
        Some("Basic eG5kX2RldmVsb3BtZW50X2Zha2Vfa2V5Og=="),
        "base64(key + ':')"
    );
    assert_eq!(sent.body["external_id"], req.payment_id.to_string());
    assert_eq!(sent.body["amount"], 150000, "major units");
    assert_eq!(sent.body["currency"], "IDR");
    assert_eq!(sent.body["payer_email"], "budi@example.co.id");
    assert_eq!(sent.body["metadata"]["app"], "payhook");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_the_invoice_status_back() {
    let fake = FakeXendit::start(KEY).await;
    let c = client(&fake, KEY, Duration::from_secs(5));
    let checkout = c.create_checkout(&request(15_000_000)).await.unwrap();
    let before = c.fetch_status(&checkout.provider_ref).await.unwrap();
    assert_eq!(before.status, PaymentStatus::Pending);
    fake.mark_paid(&checkout.provider_ref);
    let after = c.fetch_status(&checkout.provider_ref).await.unwrap();
    assert_eq!(
        (after.status, after.paid_amount),
        (PaymentStatus::Paid, Some(15_000_000))
    );
    assert!(matches!(
        c.fetch_status("inv_missing").await,
        Err(GatewayError::Rejected { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_classified_and_summarized() {
    let fake = FakeXendit::start(KEY).await;
    let wrong_key = client(&fake, "xnd_wrong", Duration::from_secs(5))
        .create_checkout(&request(10_000))
        .await;
    match wrong_key {
        Err(GatewayError::Rejected { status, message, .. }) => {
            assert_eq!(status, 401);
            assert!(message.contains("INVALID_API_KEY"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let c = client(&fake, KEY, Duration::from_secs(5));
    fake.fail_next(&[400, 503]);
    assert!(matches!(
        c.create_checkout(&request(10_000)).await,
        Err(GatewayError::Rejected { .. })
    ));
    match c.create_checkout(&request(10_000)).await {
        Err(GatewayError::Unavailable { message, .. }) => assert!(message.contains("503"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert!(c.create_checkout(&request(10_000)).await.is_ok(), "then it works again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_provider_is_unavailable_not_a_hang() {
    let fake = FakeXendit::start(KEY).await;
    fake.stall(Duration::from_secs(3));
    let c = client(&fake, KEY, Duration::from_millis(300));
    match c.create_checkout(&request(10_000)).await {
        Err(GatewayError::Unavailable { message, .. }) => assert!(message.contains("in time"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idr_amount_with_sen_is_refused_before_sending() {
    let fake = FakeXendit::start(KEY).await;
    let result = client(&fake, KEY, Duration::from_secs(5))
        .create_checkout(&request(15_000_050))
        .await;
    assert!(matches!(result, Err(GatewayError::Invalid { field: "amount", .. })));
    assert!(fake.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_before_storing_refuses_sen_and_accepts_whole_rupiah() {
    let fake = FakeXendit::start(KEY).await;
    let c = client(&fake, KEY, Duration::from_secs(5));
    assert!(matches!(
        c.check(&request(15_000_050)),
        Err(GatewayError::Invalid { field: "amount", .. })
    ));
    assert_eq!(c.check(&request(15_000_000)), Ok(()));
    assert!(fake.requests().is_empty(), "checking sends nothing");
}

/// An interrupted creation is looked up by payhook's payment id, sent as `external_id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_the_invoice_made_for_a_payment_id() {
    let fake = FakeXendit::start(KEY).await;
    let c = client(&fake, KEY, Duration::from_secs(5));
    let req = request(15_000_000);
    let made = c.create_checkout(&req).await.unwrap();
    c.create_checkout(&request(20_000_000)).await.unwrap();

    let found = c.find_checkout(req.payment_id).await.unwrap();
    assert_eq!(found, Some(made), "the same checkout as the creation answered");
    let sent = fake.requests().pop().unwrap();
    assert_eq!((sent.method.as_str(), sent.path.as_str()), ("GET", "/v2/invoices"));
    assert_eq!(sent.body["query"], format!("external_id={}", req.payment_id));

    let never = PaymentId::from_uuid(uuid::Uuid::new_v4());
    assert_eq!(c.find_checkout(never).await.unwrap(), None);
    fake.fail_next(&[503]);
    assert!(matches!(
        c.find_checkout(never).await,
        Err(GatewayError::Unavailable { .. })
    ));
}

/// Cancel expires the invoice (`POST /invoices/{id}/expire!`): payhook calls it
/// canceled; a paid invoice is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_expires_the_invoice_and_a_paid_one_is_refused() {
    let fake = FakeXendit::start(KEY).await;
    let c = client(&fake, KEY, Duration::from_secs(5));
    let open = c.create_checkout(&request(15_000_000)).await.unwrap();
    assert_eq!(
        c.cancel(&open.provider_ref).await.unwrap().status,
        PaymentStatus::Canceled
    );
    let sent = fake.requests().pop().unwrap();
    assert_eq!(
        (sent.method.as_str(), sent.path),
        ("POST", format!("/invoices/{}/expire!", open.provider_ref))
    );
    let paid = c.create_checkout(&request(15_000_000)).await.unwrap();
    fake.mark_paid(&paid.provider_ref);
    assert!(matches!(
        c.cancel(&paid.provider_ref).await,
        Err(GatewayError::Rejected { status: 400, .. })
    ));
}

/// A refund goes to `POST /refunds` for the invoice, in major units, keyed on payhook's
/// refund id; it starts pending; more than is left is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_a_paid_invoice_through_the_refunds_api() {
    let fake = FakeXendit::start(KEY).await;
    let c = client(&fake, KEY, Duration::from_secs(5));
    let req = request(15_000_000);
    let invoice = c.create_checkout(&req).await.unwrap();
    fake.mark_paid(&invoice.provider_ref);
    let refund = |minor: i64| payhook_domain::RefundRequest {
        refund_id: payhook_domain::RefundId::from_uuid(uuid::Uuid::new_v4()),
        payment_id: req.payment_id,
        payment_ref: invoice.provider_ref.clone(),
        amount: Money::new(minor, Currency::parse("IDR").unwrap()).unwrap(),
        reason: Some("changed my mind".into()),
    };
    let first = refund(5_000_000);
    let answer = c.refund(&first).await.unwrap();
    assert_eq!(answer.status, payhook_domain::RefundStatus::Pending);
    assert!(answer.provider_ref.starts_with("rfd-"));
    let sent = fake.requests().pop().unwrap();
    assert_eq!((sent.method.as_str(), sent.path.as_str()), ("POST", "/refunds"));
    assert_eq!(sent.idempotency_key, Some(first.refund_id.to_string()));
    assert_eq!(sent.body["invoice_id"], invoice.provider_ref);
    assert_eq!(sent.body["amount"], 50000, "major units");
    assert_eq!(sent.body["reference_id"], first.refund_id.to_string());
    assert_eq!(sent.body["reason"], "REQUESTED_BY_CUSTOMER");
    assert_eq!(sent.body["metadata"]["reason"], "changed my mind");
    assert_eq!(c.refund(&first).await.unwrap(), answer, "the same key, the same refund");
    assert!(matches!(
        c.refund(&refund(15_000_000)).await,
        Err(GatewayError::Rejected { status: 400, .. })
    ));
}

/// A refund check reads `GET /refunds/{id}`: pending, then what Xendit settled it as
/// (its callback lost); an unknown refund is refused, not taken as pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_a_refund_back_by_its_id() {
    use payhook_domain::{RefundLookup, RefundReport, RefundStatus};
    let fake = FakeXendit::start(KEY).await;
    let c = client(&fake, KEY, Duration::from_secs(5));
    let req = request(15_000_000);
    let invoice = c.create_checkout(&req).await.unwrap();
    fake.mark_paid(&invoice.provider_ref);
    let asked = payhook_domain::RefundRequest {
        refund_id: payhook_domain::RefundId::from_uuid(uuid::Uuid::new_v4()),
        payment_id: req.payment_id,
        payment_ref: invoice.provider_ref.clone(),
        amount: Money::new(5_000_000, Currency::parse("IDR").unwrap()).unwrap(),
        reason: None,
    };
    let answer = c.refund(&asked).await.unwrap();
    let lookup = RefundLookup {
        refund_id: asked.refund_id,
        refund_ref: answer.provider_ref.clone(),
        payment_ref: invoice.provider_ref.clone(),
        amount: asked.amount,
    };
    let read = |status: RefundStatus| RefundReport::One {
        provider_ref: answer.provider_ref.clone(),
        refund_id: Some(asked.refund_id),
        amount: 5_000_000,
        currency: Currency::parse("IDR").unwrap(),
        status,
    };
    assert_eq!(c.fetch_refund(&lookup).await.unwrap(), read(RefundStatus::Pending));
    let sent = fake.requests().pop().unwrap();
    assert_eq!(
        (sent.method.as_str(), sent.path),
        ("GET", format!("/refunds/{}", answer.provider_ref))
    );
    fake.set_refund_status(&answer.provider_ref, "SUCCEEDED");
    assert_eq!(c.fetch_refund(&lookup).await.unwrap(), read(RefundStatus::Succeeded));
    let unknown = RefundLookup {
        refund_ref: "rfd-nothing".into(),
        ..lookup
    };
    assert!(matches!(
        c.fetch_refund(&unknown).await,
        Err(GatewayError::Rejected { status: 404, .. })
    ));
}
