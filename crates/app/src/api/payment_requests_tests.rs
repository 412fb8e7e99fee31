//! Unit tests of payment requests against mocked ports.

use super::*;
use chrono::TimeZone;
use payhook_domain::ports::{MockClock, MockPaymentGateway, MockPaymentStore};
use payhook_domain::{Checkout, PaymentStatus};
use std::sync::Mutex;

fn now() -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000, 0).single().unwrap()
}

fn clock() -> Arc<MockClock> {
    let mut c = MockClock::new();
    c.expect_now().returning(now);
    Arc::new(c)
}

fn body(fields: Value) -> Vec<u8> {
    let mut base = json!({ "provider": "xendit", "amount": 1_500_000, "currency": "IDR" });
    for (k, v) in fields.as_object().unwrap() {
        base[k] = v.clone();
    }
    serde_json::to_vec(&base).unwrap()
}

fn request() -> PaymentRequest {
    PaymentRequest::from_json(&body(
        json!({ "merchant_ref": "order-9", "metadata": { "b": 1, "a": [ { "y": 1, "x": 2 } ] } }),
    ))
    .unwrap()
}

fn gateway() -> MockPaymentGateway {
    let mut g = MockPaymentGateway::new();
    g.expect_provider().return_const(Provider::Xendit);
    g.expect_check().returning(|_| Ok(()));
    g
}

fn payment_from(new: &NewPayment) -> Payment {
    Payment {
        account: String::new(),
        id: new.id,
        provider: new.provider,
        provider_ref: None,
        merchant_ref: new.merchant_ref.clone(),
        amount: new.amount,
        status: PaymentStatus::Pending,
        paid_amount: 0,
        refunded_amount: 0,
        dispute_status: None,
        checkout_url: None,
        qr_text: None,
        customer_email: None,
        description: None,
        metadata: new.metadata.clone(),
        created_at: new.created_at,
        updated_at: new.created_at,
        paid_at: None,
        expires_at: None,
        failure_reason: None,
        checkout_extras: None,
        subscription_id: None,
        version: 1,
    }
}

fn service(store: MockPaymentStore, gateways: Vec<MockPaymentGateway>) -> PaymentRequests {
    PaymentRequests::new(
        Arc::new(store),
        gateways
            .into_iter()
            .map(|g| (Arc::new(g) as Arc<dyn PaymentGateway>, Authentication::Provider))
            .collect(),
        clock(),
    )
}

#[test]
fn every_wrong_field_is_named() {
    let cases = [
        (json!({ "amount": 0 }), "amount"),
        (json!({ "amount": -5 }), "amount"),
        (json!({ "amount": "100" }), "amount"),
        (json!({ "amount": 1.5 }), "amount"),
        (json!({ "amount": null }), "amount"),
        (json!({ "currency": "ZZZ" }), "currency"),
        (json!({ "currency": "US" }), "currency"),
        (json!({ "currency": 360 }), "currency"),
        (json!({ "currency": null }), "currency"),
        (json!({ "customer_email": "not-an-email" }), "customer_email"),
        (json!({ "merchant_ref": "" }), "merchant_ref"),
        (json!({ "merchant_ref": "r".repeat(256) }), "merchant_ref"),
        (json!({ "description": 7 }), "description"),
        (json!({ "metadata": ["a"] }), "metadata"),
        (json!({ "ammount": 5 }), "body"),
        (json!({ "provider": null }), "provider"),
        (json!({ "success_url": "ftp://shop.example/ok" }), "success_url"),
        (json!({ "success_url": "https://" }), "success_url"),
        (json!({ "cancel_url": "shop.example/cart" }), "cancel_url"),
        (
            json!({ "cancel_url": format!("https://shop.example/{}", "x".repeat(2048)) }),
            "cancel_url",
        ),
    ];
    for (fields, expected) in cases {
        match PaymentRequest::from_json(&body(fields.clone())) {
            Err(RequestError::Invalid { field, .. }) => assert_eq!(field, expected, "{fields}"),
            other => panic!("{fields}: expected {expected} to be named, got {other:?}"),
        }
    }
}

#[test]
fn unknown_providers_and_non_objects_are_bad_requests() {
    assert!(matches!(
        PaymentRequest::from_json(&body(json!({ "provider": "paypal" }))),
        Err(RequestError::UnknownProvider(p)) if p == "paypal"
    ));
    assert!(matches!(
        PaymentRequest::from_json(b"{\"amount\":"),
        Err(RequestError::Malformed(_))
    ));
    assert!(matches!(
        PaymentRequest::from_json(b"[1,2]"),
        Err(RequestError::Malformed(_))
    ));
}

#[test]
fn a_valid_body_is_read_whole() {
    let r = PaymentRequest::from_json(&body(json!({
        "customer_email": "ana@example.com", "description": "Order 9", "merchant_ref": "order-9", "metadata": { "k": "v" }
    })))
    .unwrap();
    assert_eq!(r.provider, Provider::Xendit);
    assert_eq!(
        r.amount,
        Money::new(1_500_000, Currency::parse("IDR").unwrap()).unwrap()
    );
    assert_eq!(r.customer_email.as_deref(), Some("ana@example.com"));
    assert_eq!(r.metadata, json!({ "k": "v" }));
}

#[test]
fn the_fingerprint_ignores_key_order_but_not_content() {
    let a = request();
    let reordered =
        PaymentRequest::from_json(br#"{"metadata":{"a":[{"x":2,"y":1}],"b":1},"currency":"IDR","merchant_ref":"order-9","amount":1500000,"provider":"xendit"}"#)
            .unwrap();
    assert_eq!(a.fingerprint(), reordered.fingerprint());
    let mut more = a.clone();
    more.amount = Money::new(1_500_100, Currency::parse("IDR").unwrap()).unwrap();
    assert_ne!(a.fingerprint(), more.fingerprint());
}

#[test]
fn tokens_are_128_bit_hex_and_stored_as_sha256() {
    let (a, b) = (new_token(), new_token());
    assert_eq!(a.len(), 32);
    assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, b);
    assert_eq!(
        token_hash("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[tokio::test]
async fn a_provider_without_a_gateway_is_refused_before_anything_is_stored() {
    let mut other = MockPaymentGateway::new();
    other.expect_provider().return_const(Provider::Stripe);
    // No store expectations: any store call fails the test.
    let s = service(MockPaymentStore::new(), vec![other]);
    let err = s.create(request(), None).await.unwrap_err();
    assert!(
        matches!(err, CreateError::ProviderDisabled(Provider::Xendit)),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_amount_the_provider_cannot_take_is_refused_before_anything_is_stored() {
    let mut g = MockPaymentGateway::new();
    g.expect_provider().return_const(Provider::Xendit);
    g.expect_check().returning(|_| {
        Err(GatewayError::Invalid {
            field: "amount",
            message: "whole rupiah".into(),
        })
    });
    let err = service(MockPaymentStore::new(), vec![g])
        .create(request(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, CreateError::Request(RequestError::Invalid { field: "amount", .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_created_payment_stores_only_the_token_hash_and_the_checkout() {
    let opened = Arc::new(Mutex::new(None::<NewPayment>));
    let mut store = MockPaymentStore::new();
    let seen = opened.clone();
    store.expect_open_payment().returning(move |new| {
        *seen.lock().unwrap() = Some(new.clone());
        Ok(Opened::New(payment_from(new)))
    });
    let recorded = opened.clone();
    store.expect_record_checkout().returning(move |_, checkout| {
        let mut p = payment_from(recorded.lock().unwrap().as_ref().unwrap());
        p.provider_ref = Some(checkout.provider_ref.clone());
        p.checkout_url = checkout.checkout_url.clone();
        Ok(p)
    });
    let mut g = gateway();
    g.expect_create_checkout().returning(|r| {
        assert!(r.callback_token.is_none(), "xendit authenticates with its own token");
        Ok(Checkout {
            provider_ref: "inv_1".into(),
            checkout_url: Some("https://checkout.example/inv_1".into()),
            qr_text: None,
            expires_at: None,
            extras: Value::Null,
            client_secret: None,
        })
    });
    let created = service(store, vec![g]).create(request(), Some("key-1")).await.unwrap();
    assert!(!created.replayed);
    assert_eq!(created.payment.provider_ref.as_deref(), Some("inv_1"));
    let new = opened.lock().unwrap().clone().unwrap();
    assert_eq!(new.client_token_hash, created.client_token.as_deref().map(token_hash));
    assert_eq!(new.callback_token_hash, None);
    assert_eq!(
        new.idempotency,
        Some(Idempotency {
            key: "key-1".into(),
            fingerprint: request().fingerprint()
        })
    );
}

#[tokio::test]
async fn a_provider_failure_the_store_cannot_record_is_a_store_error() {
    let mut store = MockPaymentStore::new();
    store
        .expect_open_payment()
        .returning(|new| Ok(Opened::New(payment_from(new))));
    store
        .expect_record_creation_failure()
        .withf(|_, reason, _| reason.contains("503"))
        .times(1)
        .returning(|_, _, _| Err(StoreError::Conflict("ignored by the caller's answer".into())));
    let mut g = gateway();
    g.expect_create_checkout().returning(|_| {
        Err(GatewayError::Unavailable {
            provider: Provider::Xendit,
            message: "503 SERVER_ERROR".into(),
        })
    });
    let err = service(store, vec![g]).create(request(), None).await.unwrap_err();
    // The store refused too: the caller learns the store is the problem (503), not a half-truth.
    assert!(matches!(err, CreateError::Store(_)), "{err:?}");
}

#[tokio::test]
async fn a_provider_refusal_is_a_provider_error_naming_the_payment() {
    let mut store = MockPaymentStore::new();
    store
        .expect_open_payment()
        .returning(|new| Ok(Opened::New(payment_from(new))));
    store
        .expect_record_creation_failure()
        .times(1)
        .returning(|id, reason, _| {
            let mut p = payment_from(&sample_new(id));
            p.status = PaymentStatus::Failed;
            p.failure_reason = Some(reason.to_owned());
            Ok(p)
        });
    let mut g = gateway();
    g.expect_create_checkout().returning(|_| {
        Err(GatewayError::Rejected {
            provider: Provider::Xendit,
            status: 400,
            message: "400 API_VALIDATION_ERROR: bad email".into(),
        })
    });
    match service(store, vec![g]).create(request(), None).await.unwrap_err() {
        CreateError::Provider {
            payment_id: Some(_),
            reason,
        } => assert!(reason.contains("API_VALIDATION_ERROR"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

fn sample_new(id: PaymentId) -> NewPayment {
    NewPayment {
        account: String::new(),
        id,
        provider: Provider::Xendit,
        provider_ref: None,
        merchant_ref: None,
        amount: request().amount,
        customer_email: None,
        description: None,
        metadata: json!({}),
        created_at: now(),
        client_token_hash: None,
        callback_token_hash: None,
        idempotency: None,
        next_reconcile_at: None,
    }
}

/// A store whose `open_payment` finds `existing` under the key, first used with `fingerprint`.
fn store_with(existing: Payment, fingerprint: String) -> MockPaymentStore {
    let mut store = MockPaymentStore::new();
    store.expect_open_payment().returning(move |_| {
        Ok(Opened::Existing {
            payment: existing.clone(),
            fingerprint: fingerprint.clone(),
        })
    });
    store
}

fn existing(created_secs_ago: i64) -> Payment {
    let mut p = payment_from(&sample_new(PaymentId::from_uuid(uuid::Uuid::new_v4())));
    p.created_at = now() - chrono::Duration::seconds(created_secs_ago);
    p
}

#[tokio::test]
async fn a_key_reused_with_another_request_is_refused() {
    let s = service(store_with(existing(1), "other".into()), vec![gateway()]);
    let err = s.create(request(), Some("key-1")).await.unwrap_err();
    assert!(matches!(err, CreateError::KeyReused), "{err:?}");
}

#[tokio::test]
async fn a_repeat_while_the_first_waits_for_the_provider_is_a_conflict() {
    let s = service(store_with(existing(5), request().fingerprint()), vec![gateway()]);
    let err = s.create(request(), Some("key-1")).await.unwrap_err();
    assert!(matches!(err, CreateError::InFlight), "{err:?}");
}

#[tokio::test]
async fn a_creation_abandoned_by_a_dead_process_is_closed_as_failed() {
    let mut store = store_with(existing(600), request().fingerprint());
    store
        .expect_record_creation_failure()
        .withf(|_, reason, _| reason.contains("interrupted"))
        .times(1)
        .returning(|id, reason, _| {
            let mut p = payment_from(&sample_new(id));
            p.status = PaymentStatus::Failed;
            p.failure_reason = Some(reason.to_owned());
            Ok(p)
        });
    let err = service(store, vec![gateway()])
        .create(request(), Some("key-1"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CreateError::Provider {
                payment_id: Some(_),
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_repeat_of_a_created_payment_returns_it_and_keeps_its_token() {
    let mut first = existing(5);
    first.provider_ref = Some("inv_1".into());
    let id = first.id;
    let mut store = store_with(first, request().fingerprint());
    // Rotating the token on a replay would cut off the browser holding the first one.
    store.expect_replace_client_token().never();
    let created = service(store, vec![gateway()])
        .create(request(), Some("key-1"))
        .await
        .unwrap();
    assert!(created.replayed);
    assert_eq!(created.payment.id, id);
    assert_eq!(created.client_token, None);
}

#[tokio::test]
async fn malformed_idempotency_keys_are_refused() {
    let s = service(MockPaymentStore::new(), vec![gateway()]);
    for key in ["", "has space", &"k".repeat(256)] {
        let err = s.create(request(), Some(key)).await.unwrap_err();
        assert!(matches!(err, CreateError::InvalidIdempotencyKey(_)), "{key:?}: {err:?}");
    }
}
