//! What one client, or one stuck database, may cost the others: store timeouts,
//! rejected-request floods, status streams.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payhook_e2e::*;
use serde_json::{json, Value};
use std::time::Duration;

on_every_store!(
    a_store_that_holds_writes_gets_503_within_the_statement_timeout_then_recovers,
    rejected_requests_beyond_the_limit_get_429_and_store_nothing,
    an_unauthenticated_body_is_stored_cut_with_its_length_and_digest,
    status_streams_are_bounded_per_payment_in_all_and_in_age,
);

fn paid_event(id: &str, pi: &str) -> Vec<u8> {
    stripe_event(
        id,
        "payment_intent.succeeded",
        now_unix(),
        payment_intent(pi, "succeeded", 2000, 2000),
    )
}

async fn a_store_that_holds_writes_gets_503_within_the_statement_timeout_then_recovers(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[("PAYHOOK__DATABASE__STATEMENT_TIMEOUT_MS", "300")],
        Vec::new(),
    )
    .await;
    let lock = app.store.hold_write_lock().await;
    // The client gives up long before a hung request would have been answered.
    let body = paid_event("evt_locked", "pi_locked");
    let answer = app
        .client
        .post(format!("{}/webhooks/stripe", app.address))
        .header("Stripe-Signature", sign(&body))
        .body(body.clone())
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("answered while the store held its writes");
    assert_eq!(answer.status().as_u16(), 503);
    lock.release().await;
    // Recovery without a restart: the provider's retries are stored (a pooled
    // connection that a timeout left broken may fail one attempt first).
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let status = app.deliver(&body).await.status().as_u16();
        statuses.push(status);
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
    assert_eq!(
        app.count("SELECT count(*) AS n FROM webhook_events WHERE event_id = 'evt_locked'")
            .await,
        1
    );
}

async fn rejected_requests_beyond_the_limit_get_429_and_store_nothing(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[("PAYHOOK__LIMITS__REJECTED_PER_IP_PER_MINUTE", "3")],
        Vec::new(),
    )
    .await;
    let body = paid_event("evt_forged", "pi_forged");
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let answer = app.post_stripe(&body, Some("t=1,v1=00")).await;
        let status = answer.status().as_u16();
        if status == 429 {
            let retry_after: u64 = answer.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry_after), "{retry_after}");
            let error: Value = answer.json().await.unwrap();
            assert_eq!(error["error"]["code"], "rate_limited");
        }
        statuses.push(status);
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429, 429]);
    assert_eq!(app.logs().await.len(), 3, "a refused request costs no row of its own");

    // Authenticated traffic from the same address is never limited.
    for i in 0..5 {
        let answer = app
            .deliver(&paid_event(&format!("evt_ok_{i}"), &format!("pi_ok_{i}")))
            .await;
        assert_eq!(answer.status().as_u16(), 200);
    }
}

async fn an_unauthenticated_body_is_stored_cut_with_its_length_and_digest(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut big = json!({ "id": "evt_big", "pad": "x".repeat(200_000) })
        .to_string()
        .into_bytes();
    big.truncate(150_000);
    let answer = app.post_stripe(&big, Some("t=1,v1=00")).await;
    assert_eq!(answer.status().as_u16(), 401);
    let rows: Vec<BodyRow> = app
        .store
        .rows("SELECT raw_body, body_length, body_sha256 FROM webhook_logs")
        .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].raw_body.0, big[..64 * 1024].to_vec());
    assert_eq!(rows[0].body_length, Some(150_000));
    assert_eq!(rows[0].body_sha256.as_deref(), Some(sha256_hex(&big).as_str()));

    // An authentic body is kept whole, however large.
    let authentic = stripe_event(
        "evt_whole",
        "payment_intent.succeeded",
        now_unix(),
        json!({ "id": "pi_whole", "object": "payment_intent", "status": "succeeded", "amount": 2000,
                "amount_received": 2000, "currency": "usd", "metadata": { "pad": "y".repeat(100_000) } }),
    );
    assert_eq!(app.deliver(&authentic).await.status().as_u16(), 200);
    let rows: Vec<BodyRow> = app
        .store
        .rows("SELECT raw_body, body_length, body_sha256 FROM webhook_logs WHERE event_id = 'evt_whole'")
        .await;
    assert_eq!(rows[0].raw_body.0, authentic);
    assert_eq!((rows[0].body_length, rows[0].body_sha256.clone()), (None, None));
}

/// A payment the status routes can serve, created as `POST /payments` would, and its
/// client token.
async fn payment_with_token(app: &TestApp, provider_ref: &str) -> (String, String) {
    let token = format!("tok_{provider_ref}_0123456789abcdef");
    let id = payhook_domain::PaymentId::from_uuid(uuid::Uuid::new_v4());
    let new = payhook_domain::NewPayment {
        account: String::new(),
        id,
        provider: payhook_domain::Provider::Stripe,
        provider_ref: Some(provider_ref.into()),
        merchant_ref: None,
        amount: payhook_domain::Money::new(2000, payhook_domain::Currency::parse("USD").unwrap()).unwrap(),
        customer_email: None,
        description: None,
        metadata: json!({}),
        created_at: chrono::Utc::now(),
        client_token_hash: Some(payhook_app::api::payment_requests::token_hash(&token)),
        callback_token_hash: None,
        idempotency: None,
        next_reconcile_at: None,
    };
    app.stores.payments.create_payment(&new).await.unwrap();
    (id.to_string(), token)
}

async fn status_streams_are_bounded_per_payment_in_all_and_in_age(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[
            ("PAYHOOK__LIMITS__STREAMS_PER_PAYMENT", "2"),
            ("PAYHOOK__LIMITS__STREAMS_TOTAL", "3"),
            ("PAYHOOK__LIMITS__STREAM_MAX_SECS", "2"),
        ],
        Vec::new(),
    )
    .await;
    let (a, token_a) = payment_with_token(&app, "pi_stream_a").await;
    let (b, token_b) = payment_with_token(&app, "pi_stream_b").await;
    let open = |id: &str, token: &str| {
        app.client
            .get(format!("{}/payments/{id}/events?token={token}", app.address))
            .send()
    };
    let mut first = open(&a, &token_a).await.unwrap();
    let _second = open(&a, &token_a).await.unwrap();
    let third = open(&a, &token_a).await.unwrap();
    assert_eq!(third.status().as_u16(), 429);
    let error: Value = third.json().await.unwrap();
    assert_eq!(error["error"]["code"], "too_many_streams");
    let _on_b = open(&b, &token_b).await.unwrap();
    assert_eq!(
        open(&b, &token_b).await.unwrap().status().as_u16(),
        429,
        "three open in all"
    );

    // Each stream ends at its maximum age (the browser reconnects)...
    assert!(first.chunk().await.unwrap().is_some(), "the current status comes first");
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while first.chunk().await.unwrap().is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived limits.stream_max_secs");
    // ...and its place is free again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if open(&a, &token_a).await.unwrap().status().as_u16() == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ended stream still holds its place"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
