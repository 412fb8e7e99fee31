//! Hostile bytes: the same answers on both stores, every byte recorded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payhook_e2e::*;
use serde_json::Value;

on_every_store!(
    an_authentic_event_with_nul_in_its_strings_is_accepted_and_applied,
    an_unsigned_request_with_nul_is_refused_and_recorded_verbatim,
);

/// A signed Stripe event whose id, metadata and description carry NUL characters.
fn event_with_nul() -> Vec<u8> {
    format!(
        r#"{{"id":"evt_nul\u0000x","object":"event","type":"payment_intent.succeeded","created":{now},
            "data":{{"object":{{"id":"pi_nul","object":"payment_intent","status":"succeeded","amount":2000,
            "amount_received":2000,"currency":"usd","description":"a\u0000b",
            "metadata":{{"note":"x\u0000y","k\u0000":"v"}}}}}}}}"#,
        now = now_unix()
    )
    .into_bytes()
}

async fn an_authentic_event_with_nul_in_its_strings_is_accepted_and_applied(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = event_with_nul();
    let answer = app.deliver(&body).await;
    assert_eq!(answer.status().as_u16(), 200);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["status"], "accepted");
    assert_eq!(
        app.deliver(&body).await.json::<Value>().await.unwrap()["status"],
        "duplicate"
    );
    app.wait_for_count("SELECT count(*) AS n FROM payments WHERE status = 'paid'", 1)
        .await;
    let logs = app.logs().await;
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[0].raw_body.0, body, "the raw body is kept byte for byte");
    assert_eq!(logs[0].event_id.as_deref(), Some("evt_nul\u{FFFD}x"));
}

async fn an_unsigned_request_with_nul_is_refused_and_recorded_verbatim(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = br#"{"id":"evt\u0000","type":"charge.\u0000","data":{"object":{}}}"#.to_vec();
    let answer = app.post_stripe(&body, Some("t=1,v1=00")).await;
    assert_eq!(answer.status().as_u16(), 401, "its content never makes it a 503");
    // Not even JSON, nor UTF-8.
    let garbage = vec![0u8, 0xff, 0xfe, b'{', 0, b'}'];
    assert_eq!(app.post_stripe(&garbage, None).await.status().as_u16(), 401);
    let logs = app.logs().await;
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[0].raw_body.0, body);
    assert_eq!(logs[0].event_id.as_deref(), Some("evt\u{FFFD}"));
    assert_eq!(logs[1].raw_body.0, garbage);
}
