//! The Stripe gateway (async-stripe SDK) against the fake Stripe API on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payhook_domain::ports::PaymentGateway;
use payhook_domain::{CheckoutRequest, Currency, GatewayError, Money, PaymentId, PaymentStatus};
use payhook_stripe::StripeGateway;
use payhook_testkit::fake_stripe::FakeStripe;
use secrecy::SecretString;
use std::time::Duration;

const KEY: &str = "sk_test_fake_key_for_payhook";

fn gateway(fake: &FakeStripe, key: &str) -> StripeGateway {
    StripeGateway::new(&fake.base_url, &SecretString::from(key), Duration::from_secs(5)).unwrap()
}

fn request() -> CheckoutRequest {
    CheckoutRequest {
        payment_id: PaymentId::from_uuid(uuid::Uuid::new_v4()),
        amount: Money::new(2_500, Currency::parse("EUR").unwrap()).unwrap(),
        merchant_ref: Some("order-17".into()),
        customer_email: Some("ana@example.com".into()),
        description: Some("Order 17".into()),
        metadata: serde_json::Value::Null,
        callback_token: None,
        success_url: None,
        cancel_url: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_a_payment_intent_carrying_our_payment_id() {
    let fake = FakeStripe::start(KEY).await;
    let req = request();
    let checkout = gateway(&fake, KEY).create_checkout(&req).await.unwrap();
    assert!(
        checkout.provider_ref.starts_with("pi_fake"),
        "{}",
        checkout.provider_ref
    );

    let sent = &fake.requests()[0];
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("POST", "/v1/payment_intents")
    );
    assert_eq!(sent.authorization.as_deref(), Some(format!("Bearer {KEY}").as_str()));
    assert_eq!(
        sent.body.get("amount").map(String::as_str),
        Some("2500"),
        "minor units, as Stripe takes them"
    );
    assert_eq!(sent.body.get("currency").map(String::as_str), Some("eur"));
    assert_eq!(
        sent.body.get("metadata[payhook_payment_id]"),
        Some(&req.payment_id.to_string())
    );
    assert_eq!(
        sent.body.get("receipt_email").map(String::as_str),
        Some("ana@example.com")
    );
    assert_eq!(sent.body.get("description").map(String::as_str), Some("Order 17"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_creation_gets_the_same_payment_intent() {
    let fake = FakeStripe::start(KEY).await;
    let g = gateway(&fake, KEY);
    let req = request();
    let first = g.create_checkout(&req).await.unwrap();
    let again = g.create_checkout(&req).await.unwrap();
    assert_eq!(first.provider_ref, again.provider_ref);
    let keys: Vec<Option<String>> = fake.requests().into_iter().map(|r| r.idempotency_key).collect();
    assert_eq!(
        keys,
        vec![Some(req.payment_id.to_string()); 2],
        "keyed on payhook's payment id"
    );
    let other = g.create_checkout(&request()).await.unwrap();
    assert_ne!(other.provider_ref, first.provider_ref);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_the_payment_intent_status_back() {
    let fake = FakeStripe::start(KEY).await;
    let g = gateway(&fake, KEY);
    let checkout = g.create_checkout(&request()).await.unwrap();
    assert_eq!(
        g.fetch_status(&checkout.provider_ref).await.unwrap().status,
        PaymentStatus::Pending
    );
    fake.succeed(&checkout.provider_ref);
    let paid = g.fetch_status(&checkout.provider_ref).await.unwrap();
    assert_eq!((paid.status, paid.paid_amount), (PaymentStatus::Paid, Some(2_500)));
    assert!(matches!(
        g.fetch_status("pi_missing").await,
        Err(GatewayError::Rejected { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_outages_are_told_apart() {
    let fake = FakeStripe::start(KEY).await;
    match gateway(&fake, "sk_test_wrong").create_checkout(&request()).await {
        Err(GatewayError::Rejected { message, .. }) => assert!(message.contains("401"), "{message}"),
        other => panic!("{other:?}"),
    }
    let g = gateway(&fake, KEY);
    fake.fail_next(&[402, 500]);
    assert!(matches!(
        g.create_checkout(&request()).await,
        Err(GatewayError::Rejected { .. })
    ));
    assert!(matches!(
        g.create_checkout(&request()).await,
        Err(GatewayError::Unavailable { .. })
    ));
    assert!(g.create_checkout(&request()).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_stripe_is_unavailable() {
    let g = StripeGateway::new("http://127.0.0.1:9", &SecretString::from(KEY), Duration::from_secs(2)).unwrap();
    assert!(matches!(
        g.create_checkout(&request()).await,
        Err(GatewayError::Unavailable { .. })
    ));
}

/// An interrupted creation is found by Stripe search on the PaymentIntent's
/// `metadata.payhook_payment_id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_the_payment_intent_made_for_a_payment_id() {
    let fake = FakeStripe::start(KEY).await;
    let g = gateway(&fake, KEY);
    let req = request();
    let made = g.create_checkout(&req).await.unwrap();
    g.create_checkout(&request()).await.unwrap();

    let found = g.find_checkout(req.payment_id).await.unwrap();
    assert_eq!(found, Some(made));
    let sent = fake.requests().pop().unwrap();
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("GET", "/v1/payment_intents/search")
    );
    assert_eq!(
        sent.body.get("query"),
        Some(&format!("metadata['payhook_payment_id']:'{}'", req.payment_id))
    );

    assert_eq!(
        g.find_checkout(PaymentId::from_uuid(uuid::Uuid::new_v4()))
            .await
            .unwrap(),
        None
    );
    fake.fail_next(&[500]);
    assert!(matches!(
        g.find_checkout(req.payment_id).await,
        Err(GatewayError::Unavailable { .. })
    ));
}

/// A stalled Stripe is an outage (retried later), not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stripe_is_unavailable_not_a_hang() {
    let fake = FakeStripe::start(KEY).await;
    let g = StripeGateway::new(&fake.base_url, &SecretString::from(KEY), Duration::from_millis(300)).unwrap();
    fake.stall(Duration::from_secs(3));
    assert!(matches!(
        g.fetch_status("pi_anything").await,
        Err(GatewayError::Unavailable { .. })
    ));
}

/// Reconciliation reads held funds as authorized, and a partial capture as paid for
/// what was captured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_and_partially_captured_intents_read_back_as_such() {
    let fake = FakeStripe::start(KEY).await;
    let g = gateway(&fake, KEY);
    let checkout = g.create_checkout(&request()).await.unwrap();
    fake.set_status(&checkout.provider_ref, "requires_capture", 0);
    assert_eq!(
        g.fetch_status(&checkout.provider_ref).await.unwrap().status,
        PaymentStatus::Authorized
    );
    fake.set_status(&checkout.provider_ref, "succeeded", 1_000);
    let captured = g.fetch_status(&checkout.provider_ref).await.unwrap();
    assert_eq!(
        (captured.status, captured.paid_amount, captured.captured),
        (PaymentStatus::Paid, Some(1_000), true)
    );
}

/// Cancel: an open PaymentIntent is canceled; one that succeeded is refused (400).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_an_open_payment_intent_and_is_refused_a_paid_one() {
    let fake = FakeStripe::start(KEY).await;
    let g = gateway(&fake, KEY);
    let open = g.create_checkout(&request()).await.unwrap();
    let canceled = g.cancel(&open.provider_ref).await.unwrap();
    assert_eq!(canceled.status, PaymentStatus::Canceled);
    let sent = fake.requests().pop().unwrap();
    assert_eq!(
        (sent.method.as_str(), sent.path),
        ("POST", format!("/v1/payment_intents/{}/cancel", open.provider_ref))
    );
    let paid = g.create_checkout(&request()).await.unwrap();
    fake.succeed(&paid.provider_ref);
    assert!(matches!(
        g.cancel(&paid.provider_ref).await,
        Err(GatewayError::Rejected { status: 400, .. })
    ));
}

fn session_gateway(fake: &FakeStripe, success_url: Option<&str>) -> StripeGateway {
    gateway(fake, KEY).with_checkout(payhook_stripe::CheckoutMode::CheckoutSession {
        success_url: success_url.map(str::to_owned),
        cancel_url: None,
    })
}

/// Checkout Sessions: created with payhook's id in both metadata, read back open then
/// paid, expired by cancel; refused before sending when nothing says where to go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_sessions_are_created_read_back_and_expired() {
    let fake = FakeStripe::start(KEY).await;
    let g = session_gateway(&fake, Some("https://shop.example/thanks"));
    let req = request();
    let session = g.create_checkout(&req).await.unwrap();
    assert!(session.provider_ref.starts_with("cs_"), "{}", session.provider_ref);
    assert!(session.checkout_url.is_some() && session.expires_at.is_some());
    let sent = fake.requests().pop().unwrap();
    assert_eq!(
        sent.body.get("metadata[payhook_payment_id]"),
        Some(&req.payment_id.to_string())
    );
    assert_eq!(sent.body.get("client_reference_id"), Some(&req.payment_id.to_string()));
    assert_eq!(
        g.fetch_status(&session.provider_ref).await.unwrap().status,
        PaymentStatus::Pending
    );
    fake.complete_session(&session.provider_ref).unwrap();
    let paid = g.fetch_status(&session.provider_ref).await.unwrap();
    assert_eq!((paid.status, paid.paid_amount), (PaymentStatus::Paid, Some(2_500)));
    assert!(matches!(
        g.cancel(&session.provider_ref).await,
        Err(GatewayError::Rejected { status: 400, .. })
    ));
    let open = g.create_checkout(&request()).await.unwrap();
    assert_eq!(
        g.cancel(&open.provider_ref).await.unwrap().status,
        PaymentStatus::Canceled
    );

    let nowhere = session_gateway(&fake, None);
    assert!(matches!(
        nowhere.check(&request()),
        Err(GatewayError::Invalid {
            field: "success_url",
            ..
        })
    ));
    let mut told = request();
    told.success_url = Some("https://shop.example/ok".into());
    assert_eq!(nowhere.check(&told), Ok(()));
}

/// A refund goes to `POST /v1/refunds` for the PaymentIntent, keyed on payhook's refund
/// id; a refund check reads it back with `GET /v1/refunds/{id}`: pending, then what
/// Stripe settled it as (its webhook lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_a_payment_intent_and_reads_the_refund_back() {
    use payhook_domain::{RefundLookup, RefundReport, RefundRequest, RefundStatus};
    let fake = FakeStripe::start(KEY).await;
    let g = gateway(&fake, KEY);
    let req = request();
    let paid = g.create_checkout(&req).await.unwrap();
    fake.succeed(&paid.provider_ref);
    let asked = RefundRequest {
        refund_id: payhook_domain::RefundId::from_uuid(uuid::Uuid::new_v4()),
        payment_id: req.payment_id,
        payment_ref: paid.provider_ref.clone(),
        amount: Money::new(1_000, Currency::parse("EUR").unwrap()).unwrap(),
        reason: Some("duplicate".into()),
    };
    let answer = g.refund(&asked).await.unwrap();
    assert_eq!(answer.status, RefundStatus::Pending);
    assert_eq!(g.refund(&asked).await.unwrap(), answer, "the same key, the same refund");
    let lookup = RefundLookup {
        refund_id: asked.refund_id,
        refund_ref: answer.provider_ref.clone(),
        payment_ref: paid.provider_ref.clone(),
        amount: asked.amount,
    };
    let read = |status: RefundStatus| RefundReport::One {
        provider_ref: answer.provider_ref.clone(),
        refund_id: Some(asked.refund_id),
        amount: 1_000,
        currency: Currency::parse("EUR").unwrap(),
        status,
    };
    assert_eq!(g.fetch_refund(&lookup).await.unwrap(), read(RefundStatus::Pending));
    let sent = fake.requests().pop().unwrap();
    assert_eq!(
        (sent.method.as_str(), sent.path),
        ("GET", format!("/v1/refunds/{}", answer.provider_ref))
    );
    fake.set_refund_status(&answer.provider_ref, "succeeded");
    assert_eq!(g.fetch_refund(&lookup).await.unwrap(), read(RefundStatus::Succeeded));
    let unknown = RefundLookup {
        refund_ref: "re_nothing".into(),
        ..lookup
    };
    assert!(matches!(
        g.fetch_refund(&unknown).await,
        Err(GatewayError::Rejected { status: 404, .. })
    ));
}

/// The mirror's reads: one object as sent (the platform's or a connected account's,
/// by `Stripe-Account`), and a list a page at a time, newest first, with `has_more`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_billing_objects_as_sent_per_account_and_a_page_at_a_time() {
    use payhook_domain::ports::StripeObjectApi;
    use payhook_domain::StripeObjectType;
    let fake = FakeStripe::start(KEY).await;
    let objects =
        payhook_stripe::StripeObjects::new(&fake.base_url, &SecretString::from(KEY), Duration::from_secs(5)).unwrap();
    fake.put_object(
        "",
        "customers",
        serde_json::json!({ "id": "cus_1", "object": "customer", "name": "platform" }),
    );
    fake.put_object(
        "acct_9",
        "customers",
        serde_json::json!({ "id": "cus_1", "object": "customer", "name": "connected" }),
    );
    let read = objects
        .retrieve("acct_9", StripeObjectType::Customer, "cus_1")
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&read).unwrap()["name"],
        "connected"
    );
    let read = objects.retrieve("", StripeObjectType::Customer, "cus_1").await.unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&read).unwrap()["name"],
        "platform"
    );
    let sent = fake.requests().pop().unwrap();
    assert_eq!(sent.path, "/v1/customers/cus_1");
    assert_eq!(sent.authorization.as_deref(), Some(format!("Bearer {KEY}").as_str()));
    assert!(matches!(
        objects.retrieve("", StripeObjectType::Customer, "cus_2").await,
        Err(GatewayError::Rejected { status: 404, .. })
    ));
    assert!(matches!(
        objects.retrieve("", StripeObjectType::Customer, "../charges").await,
        Err(GatewayError::Invalid { .. })
    ));

    for n in 0..5 {
        fake.put_object(
            "",
            "invoices",
            serde_json::json!({ "id": format!("in_{n}"), "object": "invoice", "created": 100 + n }),
        );
    }
    let ids = |page: &payhook_domain::ObjectPage| -> Vec<String> {
        page.data
            .iter()
            .map(|d| {
                serde_json::from_str::<serde_json::Value>(d).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let first = objects
        .list("", StripeObjectType::Invoice, None, None, 2)
        .await
        .unwrap();
    assert_eq!(
        (ids(&first), first.has_more),
        (vec!["in_4".to_owned(), "in_3".to_owned()], true)
    );
    let rest = objects
        .list("", StripeObjectType::Invoice, None, Some("in_3".into()), 10)
        .await
        .unwrap();
    assert_eq!(
        (ids(&rest), rest.has_more),
        (vec!["in_2".into(), "in_1".into(), "in_0".into()], false)
    );
    let recent = objects
        .list("", StripeObjectType::Invoice, Some(103), None, 10)
        .await
        .unwrap();
    assert_eq!(ids(&recent), ["in_4", "in_3"], "created[gte]");
}
