//! End to end: Stripe webhooks through the real server into a real Postgres database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payhook_domain::source::{AuthError, Delivery, ParseError, Parsed, WebhookSource};
use payhook_domain::{PrimaryFields, Provider};
use payhook_e2e::*;
use serde_json::{json, Value};
use std::sync::Arc;

fn succeeded(event_id: &str, pi: &str) -> Vec<u8> {
    stripe_event(
        event_id,
        "payment_intent.succeeded",
        now_unix(),
        payment_intent(pi, "succeeded", 2000, 2000),
    )
}

async fn accepted_event_is_logged_stored_and_applied(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = succeeded("evt_accept_1", "pi_accept_1");
    let signature = sign(&body);

    let res = app.post_stripe(&body, Some(&signature)).await;
    assert_eq!(res.status(), 200);
    let reply: Value = res.json().await.unwrap();
    assert_eq!(reply, json!({ "status": "accepted", "event_id": "evt_accept_1" }));

    // Forensic row: verbatim body, redacted signature, primary fields, outcome.
    let logs = app.logs().await;
    assert_eq!(logs.len(), 1);
    let log = &logs[0];
    assert_eq!(log.raw_body.0, body, "raw body stored byte for byte");
    assert_eq!(
        (log.provider.as_str(), log.method.as_str(), log.path.as_str()),
        ("stripe", "POST", "/webhooks/stripe")
    );
    assert_eq!(log.header("stripe-signature").as_deref(), Some("[redacted]"));
    assert_eq!(log.header("content-type").as_deref(), Some("application/json"));
    assert!(
        !log.headers.0.to_string().contains(&signature[10..]),
        "signature leaked into stored headers"
    );
    assert_eq!(log.event_id.as_deref(), Some("evt_accept_1"));
    assert_eq!(log.event_type.as_deref(), Some("payment_intent.succeeded"));
    assert_eq!(log.external_id.as_deref(), Some("pi_accept_1"));
    assert_eq!(log.provider_status.as_deref(), Some("succeeded"));
    assert_eq!(log.amount, Some(2000));
    assert_eq!(
        (log.http_status, log.processing_result.as_deref()),
        (Some(200), Some("accepted"))
    );
    assert!(log.completed);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM webhook_events WHERE event_id = 'evt_accept_1'")
            .await,
        1
    );

    // The worker creates the unseen PaymentIntent's payment and applies the event.
    app.wait_for_count(
        "SELECT count(*) AS n FROM webhook_events WHERE status = 'processed' AND result = 'applied'",
        1,
    )
    .await;
    let id = app.payment_id("pi_accept_1").await;
    let payment: Value = app.get(&format!("/payments/{id}")).await.json().await.unwrap();
    assert_eq!(payment["status"], "paid");
    assert_eq!(payment["amount"], 2000);
    assert_eq!(payment["currency"], "USD");
    assert_eq!(payment["paid_amount"], 2000);
    assert_eq!(payment["provider"], "stripe");
    assert_eq!(payment["customer_email"], "buyer@example.com");
    assert_eq!(payment["history"].as_array().unwrap().len(), 1);
    assert_eq!(payment["history"][0]["from_status"], "pending");
    assert_eq!(payment["history"][0]["to_status"], "paid");
    assert_eq!(payment["history"][0]["applied"], true);
    assert_eq!(payment["history"][0]["event_id"], "evt_accept_1");
    assert_eq!(
        app.count("SELECT count(*) AS n FROM outbox WHERE topic = 'payment.paid'")
            .await,
        1
    );
}

async fn bad_signature_is_401_logged_and_not_stored(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = succeeded("evt_badsig", "pi_badsig");
    let forged = payhook_stripe::signature_header("whsec_not_the_secret", now_unix(), &body);
    let res = app.post_stripe(&body, Some(&forged)).await;
    assert_eq!(res.status(), 401);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "invalid_signature");
    assert!(err["error"]["message"].as_str().unwrap().len() > 10);
    assert!(
        !err.to_string().contains(&forged[10..]),
        "signature echoed in the error"
    );

    let logs = app.logs().await;
    assert_eq!(logs.len(), 1);
    assert_eq!(
        (logs[0].http_status, logs[0].processing_result.as_deref()),
        (Some(401), Some("invalid_signature"))
    );
    assert_eq!(logs[0].raw_body.0, body);
    assert_eq!(logs[0].header("stripe-signature").as_deref(), Some("[redacted]"));
    assert_eq!(app.count("SELECT count(*) AS n FROM webhook_events").await, 0);
}

async fn expired_signature_is_401(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = succeeded("evt_old", "pi_old");
    let old = payhook_stripe::signature_header(STRIPE_SECRET, now_unix() - 3600, &body);
    assert_eq!(app.post_stripe(&body, Some(&old)).await.status(), 401);
    assert_eq!(
        app.logs().await[0].processing_result.as_deref(),
        Some("invalid_signature")
    );
}

async fn missing_signature_header_is_401(backend: Backend) {
    let app = spawn_app(backend).await;
    let res = app.post_stripe(&succeeded("evt_nosig", "pi_nosig"), None).await;
    assert_eq!(res.status(), 401);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "missing_signature");
    let logs = app.logs().await;
    assert_eq!(
        (logs[0].http_status, logs[0].processing_result.as_deref()),
        (Some(401), Some("missing_signature"))
    );
}

async fn malformed_json_with_valid_signature_is_400(backend: Backend) {
    let app = spawn_app(backend).await;
    for body in [
        &b"{\"id\": \"evt_broken\", "[..],
        b"{\"id\":\"evt_x\",\"type\":\"payment_intent.succeeded\",\"created\":1,\"data\":{\"object\":{\"id\":\"pi\"}}}",
    ] {
        let res = app.deliver(body).await;
        assert_eq!(res.status(), 400);
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["error"]["code"], "malformed_payload");
    }
    let logs = app.logs().await;
    assert_eq!(logs.len(), 2);
    for log in &logs {
        assert_eq!(
            (log.http_status, log.processing_result.as_deref()),
            (Some(400), Some("malformed_payload"))
        );
        assert!(log.processing_error.is_some());
    }
    assert_eq!(logs[0].raw_body.0, b"{\"id\": \"evt_broken\", ");
    assert_eq!(app.count("SELECT count(*) AS n FROM webhook_events").await, 0);
}

async fn body_over_the_limit_is_413(backend: Backend) {
    let app = spawn_app_with(backend, &[("PAYHOOK__SERVER__MAX_BODY_BYTES", "4096")], Vec::new()).await;
    let mut object = payment_intent("pi_big", "succeeded", 100, 100);
    object["description"] = json!("x".repeat(5000));
    let body = stripe_event("evt_big", "payment_intent.succeeded", now_unix(), object);
    let res = app.deliver(&body).await;
    assert_eq!(res.status(), 413);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "payload_too_large");
    let logs = app.logs().await;
    assert_eq!(
        (logs[0].http_status, logs[0].processing_result.as_deref()),
        (Some(413), Some("payload_too_large"))
    );
    assert!(logs[0].raw_body.0.len() <= 4096);
    assert_eq!(app.count("SELECT count(*) AS n FROM webhook_events").await, 0);
}

async fn unknown_provider_is_404_and_logged(backend: Backend) {
    let app = spawn_app(backend).await;
    let res = app
        .client
        .post(format!("{}/webhooks/paypal?x=1", app.address))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "unknown_provider");
    let logs = app.logs().await;
    assert_eq!(logs[0].provider, "paypal");
    assert_eq!(logs[0].query, "x=1");
    assert_eq!(
        (logs[0].http_status, logs[0].processing_result.as_deref()),
        (Some(404), Some("unknown_provider"))
    );
}

async fn disabled_stripe_is_404_provider_disabled_and_logged(backend: Backend) {
    let app = spawn_app_with(backend, &[("PAYHOOK__PROVIDERS__STRIPE__ENABLED", "false")], Vec::new()).await;
    let res = app.deliver(&succeeded("evt_disabled", "pi_disabled")).await;
    assert_eq!(res.status(), 404);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "provider_disabled");
    let logs = app.logs().await;
    assert_eq!(
        (logs[0].http_status, logs[0].processing_result.as_deref()),
        (Some(404), Some("provider_disabled"))
    );
    assert_eq!(app.count("SELECT count(*) AS n FROM webhook_events").await, 0);
}

async fn wrong_method_is_405_and_logged(backend: Backend) {
    let app = spawn_app(backend).await;
    let res = app.get("/webhooks/stripe").await;
    assert_eq!(res.status(), 405);
    let logs = app.logs().await;
    assert_eq!((logs[0].method.as_str(), logs[0].http_status), ("GET", Some(405)));
}

async fn unhandled_event_type_is_acknowledged_as_ignored(backend: Backend) {
    let app = spawn_app(backend).await;
    // A coupon: neither a payment's event nor an object payhook mirrors.
    let body = stripe_event(
        "evt_coupon",
        "coupon.created",
        now_unix(),
        json!({ "id": "25OFF", "object": "coupon" }),
    );
    let res = app.deliver(&body).await;
    assert_eq!(res.status(), 200);
    let reply: Value = res.json().await.unwrap();
    assert_eq!(
        reply,
        json!({ "status": "ignored", "event_id": "evt_coupon", "reason": "unhandled_event_type" })
    );
    let logs = app.logs().await;
    assert_eq!(
        (logs[0].http_status, logs[0].processing_result.as_deref()),
        (Some(200), Some("unhandled_event_type"))
    );
    assert_eq!(app.count("SELECT count(*) AS n FROM webhook_events").await, 0);
}

async fn duplicate_event_is_acknowledged_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = succeeded("evt_dup", "pi_dup");
    let first: Value = app.deliver(&body).await.json().await.unwrap();
    let second_res = app.deliver(&body).await;
    assert_eq!(second_res.status(), 200);
    let second: Value = second_res.json().await.unwrap();
    assert_eq!(first["status"], "accepted");
    assert_eq!(second, json!({ "status": "duplicate", "event_id": "evt_dup" }));
    assert_eq!(app.count("SELECT count(*) AS n FROM webhook_events").await, 1);
    let results: Vec<_> = app
        .logs()
        .await
        .into_iter()
        .map(|l| l.processing_result.unwrap())
        .collect();
    assert_eq!(results, vec!["accepted", "duplicate"]);
}

async fn twenty_concurrent_deliveries_make_one_inbox_row_and_one_change(backend: Backend) {
    let app = Arc::new(spawn_app(backend).await);
    let body = Arc::new(succeeded("evt_storm", "pi_storm"));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (app, body) = (app.clone(), body.clone());
            tokio::spawn(async move { app.deliver(&body).await.status().as_u16() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(app.count("SELECT count(*) AS n FROM webhook_events").await, 1);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM webhook_logs WHERE processing_result = 'accepted'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM webhook_logs WHERE processing_result = 'duplicate'")
            .await,
        19
    );
    app.wait_for_count("SELECT count(*) AS n FROM webhook_events WHERE status = 'processed'", 1)
        .await;
    assert_eq!(app.count("SELECT count(*) AS n FROM payments").await, 1);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM payment_status_history WHERE applied")
            .await,
        1
    );
    assert_eq!(app.count("SELECT count(*) AS n FROM outbox").await, 1);
}

async fn late_failure_does_not_regress_paid_payment(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = now_unix();
    let success = stripe_event(
        "evt_ooo_ok",
        "payment_intent.succeeded",
        t,
        payment_intent("pi_ooo", "succeeded", 900, 900),
    );
    let older_failure = stripe_event(
        "evt_ooo_fail",
        "payment_intent.payment_failed",
        t - 60,
        payment_intent("pi_ooo", "requires_payment_method", 900, 0),
    );
    assert_eq!(app.deliver(&success).await.status(), 200);
    app.wait_for_count("SELECT count(*) AS n FROM webhook_events WHERE status = 'processed'", 1)
        .await;
    assert_eq!(app.deliver(&older_failure).await.status(), 200);
    app.wait_for_count("SELECT count(*) AS n FROM webhook_events WHERE status = 'processed'", 2)
        .await;

    let id = app.payment_id("pi_ooo").await;
    let payment: Value = app.get(&format!("/payments/{id}")).await.json().await.unwrap();
    assert_eq!(payment["status"], "paid");
    let history = payment["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(
        (history[1]["to_status"].as_str(), history[1]["applied"].as_bool()),
        (Some("failed"), Some(false))
    );
    assert_eq!(
        app.text("SELECT result AS v FROM webhook_events WHERE event_id = 'evt_ooo_fail'")
            .await
            .as_deref(),
        Some("stale_transition")
    );
}

async fn refund_and_dispute_follow_the_payment(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = now_unix();
    app.deliver(&succeeded("evt_rd_paid", "pi_rd")).await;
    let charge = |refunded: i64, full: bool| {
        json!({ "id": "ch_rd", "object": "charge", "amount": 2000, "amount_captured": 2000,
                "amount_refunded": refunded, "refunded": full, "currency": "usd",
                "payment_intent": "pi_rd", "status": "succeeded", "metadata": {} })
    };
    app.deliver(&stripe_event(
        "evt_rd_partial",
        "charge.refunded",
        t,
        charge(500, false),
    ))
    .await;
    app.deliver(&stripe_event(
        "evt_rd_dispute",
        "charge.dispute.created",
        t,
        json!({ "id": "dp_rd", "object": "dispute", "amount": 1500, "currency": "usd",
                "status": "needs_response", "charge": "ch_rd", "payment_intent": "pi_rd" }),
    ))
    .await;
    app.wait_for_count("SELECT count(*) AS n FROM webhook_events WHERE status = 'processed'", 3)
        .await;
    let id = app.payment_id("pi_rd").await;
    let payment: Value = app.get(&format!("/payments/{id}")).await.json().await.unwrap();
    assert_eq!(payment["status"], "partially_refunded");
    assert_eq!(payment["refunded_amount"], 500);
    assert_eq!(payment["dispute_status"], "open");
}

/// Two disputes on one payment: each a row (amount, reason, status, deadline), moved
/// by `updated`, closed by `closed`; `dispute.opened` and `dispute.closed` published
/// once each, whatever arrives twice; the payment keeps its summary.
async fn disputes_are_rows_of_their_own_with_their_events(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut events = app.events.resubscribe();
    let t = now_unix();
    app.deliver(&succeeded("evt_dsp_paid", "pi_dsp")).await;
    let dispute = |id: &str, status: &str, amount: i64| {
        json!({ "id": id, "object": "dispute", "amount": amount, "currency": "usd", "reason": "fraudulent",
                "status": status, "evidence_details": { "due_by": t + 604_800 },
                "charge": "ch_dsp", "payment_intent": "pi_dsp" })
    };
    let deliveries = [
        (
            "evt_dsp_1",
            "charge.dispute.created",
            dispute("dp_a", "needs_response", 2000),
        ),
        (
            "evt_dsp_1",
            "charge.dispute.created",
            dispute("dp_a", "needs_response", 2000),
        ),
        (
            "evt_dsp_2",
            "charge.dispute.updated",
            dispute("dp_a", "under_review", 2000),
        ),
        ("evt_dsp_3", "charge.dispute.closed", dispute("dp_a", "won", 2000)),
        (
            "evt_dsp_4",
            "charge.dispute.created",
            dispute("dp_b", "warning_needs_response", 500),
        ),
    ];
    for (id, kind, object) in deliveries {
        app.deliver(&stripe_event(id, kind, t, object)).await;
    }
    app.wait_for_count("SELECT count(*) AS n FROM webhook_events WHERE status = 'processed'", 5)
        .await;
    let id = app.payment_id("pi_dsp").await;
    let payment: Value = app.get(&format!("/payments/{id}")).await.json().await.unwrap();
    let disputes = payment["disputes"].as_array().unwrap();
    assert_eq!(disputes.len(), 2, "{payment}");
    let a = disputes.iter().find(|d| d["provider_ref"] == "dp_a").unwrap();
    assert_eq!((a["status"].as_str(), a["amount"].as_i64()), (Some("won"), Some(2000)));
    assert_eq!(a["reason"], "fraudulent");
    assert!(a["evidence_due_by"].is_string() && a["closed_at"].is_string());
    let b = disputes.iter().find(|d| d["provider_ref"] == "dp_b").unwrap();
    assert_eq!(b["closed_at"], Value::Null);
    assert_eq!(payment["status"], "paid");

    let mut topics = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while topics.len() < 3 {
            let message = events.recv().await.unwrap();
            if message.topic.starts_with("dispute.") {
                topics.push((
                    message.topic.clone(),
                    message.payload["provider_ref"].as_str().unwrap().to_owned(),
                ));
            }
        }
    })
    .await;
    topics.sort();
    assert_eq!(
        topics,
        vec![
            ("dispute.closed".to_owned(), "dp_a".to_owned()),
            ("dispute.opened".to_owned(), "dp_a".to_owned()),
            ("dispute.opened".to_owned(), "dp_b".to_owned()),
        ]
    );
}

fn held_charge(id: &str, pi: &str, captured: Option<i64>) -> Value {
    json!({ "id": id, "object": "charge", "amount": 2000, "amount_captured": captured.unwrap_or(0),
            "captured": captured.is_some(), "amount_refunded": 0, "refunded": false, "currency": "usd",
            "payment_intent": pi, "status": "succeeded", "metadata": {} })
}

/// `charge.succeeded` with `captured: false` holds the funds: `authorized`, not paid.
/// `charge.captured` for 1500 of 2000 makes it paid, with paid_amount 1500; the
/// authorization arriving late changes nothing.
async fn held_funds_are_authorized_and_a_partial_capture_is_paid(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = now_unix();
    app.deliver(&stripe_event(
        "evt_held",
        "charge.succeeded",
        t,
        held_charge("ch_held", "pi_held", None),
    ))
    .await;
    app.wait_for_count("SELECT count(*) AS n FROM webhook_events WHERE status = 'processed'", 1)
        .await;
    let id = app.payment_id("pi_held").await;
    let payment: Value = app.get(&format!("/payments/{id}")).await.json().await.unwrap();
    assert_eq!(payment["status"], "authorized", "{payment}");
    assert_eq!(payment["paid_amount"], 0);

    app.deliver(&stripe_event(
        "evt_captured",
        "charge.captured",
        t + 1,
        held_charge("ch_held", "pi_held", Some(1500)),
    ))
    .await;
    app.deliver(&stripe_event(
        "evt_held_again",
        "payment_intent.amount_capturable_updated",
        t,
        payment_intent("pi_held", "requires_capture", 2000, 0),
    ))
    .await;
    app.wait_for_count("SELECT count(*) AS n FROM webhook_events WHERE status = 'processed'", 3)
        .await;
    let payment: Value = app.get(&format!("/payments/{id}")).await.json().await.unwrap();
    assert_eq!(payment["status"], "paid", "{payment}");
    assert_eq!(payment["paid_amount"], 1500);
}

/// A refund of 0 and a refund in another currency are recorded, not applied.
async fn zero_and_foreign_currency_refunds_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = now_unix();
    app.deliver(&succeeded("evt_zr_paid", "pi_zr")).await;
    let charge = |currency: &str, refunded: i64| {
        json!({ "id": "ch_zr", "object": "charge", "amount": 2000, "amount_captured": 2000,
                "amount_refunded": refunded, "refunded": false, "currency": currency,
                "payment_intent": "pi_zr", "status": "succeeded", "metadata": {} })
    };
    app.deliver(&stripe_event("evt_zr_zero", "charge.refunded", t, charge("usd", 0)))
        .await;
    app.deliver(&stripe_event("evt_zr_eur", "charge.refunded", t, charge("eur", 500)))
        .await;
    app.wait_for_count("SELECT count(*) AS n FROM webhook_events WHERE status = 'processed'", 3)
        .await;
    let id = app.payment_id("pi_zr").await;
    let payment: Value = app.get(&format!("/payments/{id}")).await.json().await.unwrap();
    assert_eq!(payment["status"], "paid", "{payment}");
    assert_eq!(payment["refunded_amount"], 0);
    let history = payment["history"].as_array().unwrap();
    let not_applied: Vec<&Value> = history.iter().filter(|h| h["applied"] == false).collect();
    assert_eq!(
        not_applied.len(),
        1,
        "the foreign one recorded, the zero one silent: {history:?}"
    );
    assert!(not_applied[0]["reason"].as_str().unwrap().contains("in EUR"));
}

async fn a_dispute_naming_only_the_charge_finds_its_payment(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = now_unix();
    let charge = json!({ "id": "ch_only", "object": "charge", "amount": 2000, "amount_captured": 2000,
                         "amount_refunded": 0, "refunded": false, "currency": "usd",
                         "payment_intent": "pi_charge_only", "status": "succeeded", "metadata": {} });
    app.deliver(&stripe_event("evt_ch_ok", "charge.succeeded", t, charge))
        .await;
    app.wait_for_count("SELECT count(*) AS n FROM webhook_events WHERE status = 'processed'", 1)
        .await;
    // Older API versions send disputes with payment_intent null.
    let dispute = json!({ "id": "dp_old", "object": "dispute", "amount": 2000, "currency": "usd",
                          "status": "warning_needs_response", "charge": "ch_only", "payment_intent": null });
    app.deliver(&stripe_event("evt_dp_old", "charge.dispute.created", t, dispute))
        .await;
    app.wait_for_count("SELECT count(*) AS n FROM webhook_events WHERE status = 'processed'", 2)
        .await;
    let id = app.payment_id("pi_charge_only").await;
    let payment: Value = app.get(&format!("/payments/{id}")).await.json().await.unwrap();
    assert_eq!(
        (payment["status"].as_str(), payment["dispute_status"].as_str()),
        (Some("paid"), Some("open"))
    );
}

async fn payments_endpoint_answers_404_for_unknown_or_invalid_ids(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in ["/payments/6a1f8c0e-7d7b-4a47-9a3c-0c9b1f7e2d10", "/payments/not-a-uuid"] {
        let res = app.get(path).await;
        assert_eq!(res.status(), 404);
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["error"]["code"], "payment_not_found");
    }
    let res = app.get("/nowhere").await;
    assert_eq!(res.status(), 404);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "not_found");
}

async fn health_and_readiness(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_postgres_gives_503_so_the_provider_retries() {
    // A port nothing listens on: the pool cannot connect. (Start-up itself would
    // refuse such a database, so the stores are built directly.)
    let url = "postgres://postgres@127.0.0.1:9/nothing";
    let settings = settings(url, &[]);
    let stores = payhook_app::Stores::from_one(payhook_postgres::PgStore::connect(url, 2).unwrap());
    let providers = payhook_app::startup::connect_providers(&settings).unwrap();
    let app = payhook_app::Application::build_with(settings, stores, providers)
        .await
        .unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let body = succeeded("evt_down", "pi_down");
    let res = client
        .post(format!("{address}/webhooks/stripe"))
        .header("Stripe-Signature", sign(&body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "store_unavailable");
    let ready = client.get(format!("{address}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
}

/// A source that panics while parsing, standing in for any bug on the ingest path.
struct PanickingSource;

impl WebhookSource for PanickingSource {
    fn provider(&self) -> Provider {
        Provider::Xendit
    }
    fn authenticate(&self, _: &Delivery<'_>) -> Result<(), AuthError> {
        Ok(())
    }
    fn parse(&self, _: &Delivery<'_>) -> Result<Parsed, ParseError> {
        panic!("simulated bug in an adapter")
    }
    fn primary_fields(&self, _: &[u8]) -> PrimaryFields {
        PrimaryFields {
            event_id: Some("cb_panic".into()),
            ..PrimaryFields::default()
        }
    }
}

async fn a_panic_still_leaves_a_forensic_row_and_a_json_500(backend: Backend) {
    let app = spawn_app_with(backend, &[], vec![Arc::new(PanickingSource)]).await;
    let res = app
        .client
        .post(format!("{}/webhooks/xendit", app.address))
        .header("x-callback-token", "secret-token-value")
        .body("{\"id\":\"cb_panic\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "internal_error");
    let logs = app.logs().await;
    assert_eq!(logs.len(), 1);
    assert_eq!(
        (logs[0].http_status, logs[0].processing_result.as_deref()),
        (Some(500), Some("internal_error"))
    );
    assert_eq!(logs[0].header("x-callback-token").as_deref(), Some("[redacted]"));
    assert_eq!(logs[0].raw_body.0, b"{\"id\":\"cb_panic\"}");
}

on_every_store!(
    accepted_event_is_logged_stored_and_applied,
    bad_signature_is_401_logged_and_not_stored,
    expired_signature_is_401,
    missing_signature_header_is_401,
    malformed_json_with_valid_signature_is_400,
    body_over_the_limit_is_413,
    unknown_provider_is_404_and_logged,
    disabled_stripe_is_404_provider_disabled_and_logged,
    wrong_method_is_405_and_logged,
    unhandled_event_type_is_acknowledged_as_ignored,
    duplicate_event_is_acknowledged_once,
    twenty_concurrent_deliveries_make_one_inbox_row_and_one_change,
    late_failure_does_not_regress_paid_payment,
    refund_and_dispute_follow_the_payment,
    held_funds_are_authorized_and_a_partial_capture_is_paid,
    disputes_are_rows_of_their_own_with_their_events,
    zero_and_foreign_currency_refunds_change_nothing,
    a_dispute_naming_only_the_charge_finds_its_payment,
    payments_endpoint_answers_404_for_unknown_or_invalid_ids,
    health_and_readiness,
    a_panic_still_leaves_a_forensic_row_and_a_json_500,
);
