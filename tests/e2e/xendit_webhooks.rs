//! End to end: Xendit invoice callbacks through the real server, on both stores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payhook_domain::{Currency, Money, NewPayment, PaymentId, Provider};
use payhook_e2e::*;
use serde_json::{json, Value};

const TOKEN: &str = "xnd_callback_token_for_e2e_0123456789";

async fn xendit_app(backend: Backend) -> TestApp {
    spawn_app_with(
        backend,
        &[
            ("PAYHOOK__PROVIDERS__XENDIT__ENABLED", "true"),
            ("PAYHOOK__PROVIDERS__XENDIT__CALLBACK_TOKEN", TOKEN),
        ],
        Vec::new(),
    )
    .await
}

/// A payment of 150,000 IDR as payhook would have created it for invoice `invoice`.
async fn idr_payment(app: &TestApp, invoice: &str) -> PaymentId {
    let id = PaymentId::from_uuid(uuid::Uuid::new_v4());
    app.stores
        .payments
        .create_payment(&NewPayment {
            account: String::new(),
            id,
            provider: Provider::Xendit,
            provider_ref: Some(invoice.to_owned()),
            merchant_ref: Some("order-77".into()),
            amount: Money::new(15_000_000, Currency::parse("IDR").unwrap()).unwrap(),
            customer_email: Some("budi@example.co.id".into()),
            description: Some("Order 77".into()),
            metadata: json!({}),
            created_at: chrono::Utc::now(),
            client_token_hash: None,
            callback_token_hash: None,
            idempotency: None,
            next_reconcile_at: None,
        })
        .await
        .unwrap();
    id
}

fn callback(payment: &str, invoice: &str, status: &str, paid_major: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": invoice, "external_id": payment, "user_id": "5f1e2d3c4b5a69788796a5b4", "status": status,
        "amount": 150000, "paid_amount": paid_major, "currency": "IDR", "payment_method": "BANK_TRANSFER",
        "payment_channel": "BCA", "paid_at": "2026-11-20T08:15:30.123Z", "created": "2026-11-20T08:00:00.000Z",
        "updated": "2026-11-20T08:15:31.000Z", "payer_email": "budi@example.co.id", "description": "Order 77",
        "metadata": { "app": "payhook" },
    }))
    .unwrap()
}

async fn payment_json(app: &TestApp, id: PaymentId) -> Value {
    app.get(&format!("/payments/{id}")).await.json().await.unwrap()
}

async fn paid_callback_marks_the_payment_paid(backend: Backend) {
    let app = xendit_app(backend).await;
    let id = idr_payment(&app, "inv_paid").await;
    let res = app
        .post_xendit(&callback(&id.to_string(), "inv_paid", "PAID", 150000), Some(TOKEN))
        .await;
    assert_eq!(res.status(), 200);
    let reply: Value = res.json().await.unwrap();
    assert_eq!(reply, json!({ "status": "accepted", "event_id": "inv_paid:PAID" }));
    app.wait_for_count("SELECT count(*) AS n FROM webhook_events WHERE status = 'processed'", 1)
        .await;
    let p = payment_json(&app, id).await;
    assert_eq!(
        (p["status"].as_str(), p["paid_amount"].as_i64()),
        (Some("paid"), Some(15_000_000))
    );
    assert_eq!(p["history"][0]["reason"], "invoice.paid");

    let logs = app.logs().await;
    assert_eq!(
        logs[0].header("x-callback-token").as_deref(),
        Some("[redacted]"),
        "the token is never stored"
    );
    assert_eq!(logs[0].event_id.as_deref(), Some("inv_paid:PAID"));
    assert_eq!(logs[0].amount, Some(15_000_000));

    // A retry of the same callback, then SETTLED: one change only.
    let again = app
        .post_xendit(&callback(&id.to_string(), "inv_paid", "PAID", 150000), Some(TOKEN))
        .await;
    assert_eq!(again.json::<Value>().await.unwrap()["status"], "duplicate");
    app.post_xendit(&callback(&id.to_string(), "inv_paid", "SETTLED", 150000), Some(TOKEN))
        .await;
    app.wait_for_count("SELECT count(*) AS n FROM webhook_events WHERE status = 'processed'", 2)
        .await;
    assert_eq!(
        app.count("SELECT count(*) AS n FROM payment_status_history WHERE applied")
            .await,
        1
    );
}

async fn a_missing_or_wrong_callback_token_is_401(backend: Backend) {
    let app = xendit_app(backend).await;
    let id = idr_payment(&app, "inv_auth").await;
    let body = callback(&id.to_string(), "inv_auth", "PAID", 150000);
    let missing = app.post_xendit(&body, None).await;
    assert_eq!(missing.status(), 401);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["error"]["code"],
        "missing_callback_token"
    );
    let wrong = app
        .post_xendit(&body, Some("xnd_callback_token_for_e2e_0123456788"))
        .await;
    assert_eq!(wrong.status(), 401);
    let err: Value = wrong.json().await.unwrap();
    assert_eq!(err["error"]["code"], "invalid_callback_token");
    assert!(!err.to_string().contains("xnd_"), "the token is not echoed");
    let results: Vec<_> = app
        .logs()
        .await
        .into_iter()
        .map(|l| (l.http_status, l.processing_result))
        .collect();
    assert_eq!(
        results,
        vec![
            (Some(401), Some("missing_callback_token".into())),
            (Some(401), Some("invalid_callback_token".into()))
        ]
    );
    assert_eq!(app.count("SELECT count(*) AS n FROM webhook_events").await, 0);
}

async fn other_apps_invoices_are_acknowledged_and_ignored(backend: Backend) {
    let app = xendit_app(backend).await;
    let legacy = app
        .post_xendit(&callback("INV-2019-0042", "inv_legacy", "PAID", 150000), Some(TOKEN))
        .await;
    assert_eq!(legacy.status(), 200);
    assert_eq!(
        legacy.json::<Value>().await.unwrap()["reason"],
        "ignored_non_uuid_external_id"
    );

    let mut other: Value =
        serde_json::from_slice(&callback(&uuid::Uuid::new_v4().to_string(), "inv_other", "PAID", 1)).unwrap();
    other["metadata"]["app"] = json!("billing-v1");
    let res = app.post_xendit(&serde_json::to_vec(&other).unwrap(), Some(TOKEN)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["reason"], "ignored_other_app");

    let results: Vec<_> = app
        .logs()
        .await
        .into_iter()
        .map(|l| l.processing_result.unwrap())
        .collect();
    assert_eq!(results, vec!["ignored_non_uuid_external_id", "ignored_other_app"]);
    assert_eq!(app.count("SELECT count(*) AS n FROM webhook_events").await, 0);
}

async fn a_partial_payment_is_recorded_but_not_paid(backend: Backend) {
    let app = xendit_app(backend).await;
    let id = idr_payment(&app, "inv_partial").await;
    app.post_xendit(&callback(&id.to_string(), "inv_partial", "PAID", 100000), Some(TOKEN))
        .await;
    app.wait_for_count("SELECT count(*) AS n FROM webhook_events WHERE status = 'processed'", 1)
        .await;
    let p = payment_json(&app, id).await;
    assert_eq!(p["status"], "pending");
    assert_eq!(p["history"][0]["applied"], false);
    assert!(p["history"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("partial payment: 10000000 of 15000000"));
}

async fn expired_invoices_expire_the_payment(backend: Backend) {
    let app = xendit_app(backend).await;
    let id = idr_payment(&app, "inv_exp").await;
    app.post_xendit(&callback(&id.to_string(), "inv_exp", "EXPIRED", 0), Some(TOKEN))
        .await;
    app.wait_for_count("SELECT count(*) AS n FROM webhook_events WHERE status = 'processed'", 1)
        .await;
    assert_eq!(payment_json(&app, id).await["status"], "expired");
}

on_every_store!(
    paid_callback_marks_the_payment_paid,
    a_missing_or_wrong_callback_token_is_401,
    other_apps_invoices_are_acknowledged_and_ignored,
    a_partial_payment_is_recorded_but_not_paid,
    expired_invoices_expire_the_payment,
);
