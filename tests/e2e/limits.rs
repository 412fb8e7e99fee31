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
    drop(lock);
    // Recovery without a restart: the provider's retry is stored.
    assert_eq!(app.deliver(&body).await.status().as_u16(), 200);
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
