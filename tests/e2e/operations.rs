//! End to end, on both stores: what an operator relies on during an outage —
//! dead letters and replay, domain event delivery, the fallback log, metrics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use payhook_e2e::*;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ADMIN_TOKEN: &str = "admin-token-for-e2e-tests";
const NOTIFY_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn succeeded(event_id: &str, pi: &str) -> Vec<u8> {
    stripe_event(
        event_id,
        "payment_intent.succeeded",
        now_unix(),
        payment_intent(pi, "succeeded", 700, 700),
    )
}

/// Admin calls with the bearer token.
async fn admin_get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .get(format!("{}{path}", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
}

async fn admin_post(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .post(format!("{}{path}", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
}

async fn admin_api_is_off_without_a_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let res = admin_get(&app, "/admin/webhooks").await;
    assert_eq!(res.status(), 404);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "not_found");
}

async fn admin_api_requires_its_bearer_token(backend: Backend) {
    let app = spawn_app_with(backend, &[("PAYHOOK__ADMIN__TOKEN", ADMIN_TOKEN)], Vec::new()).await;
    let url = format!("{}/admin/webhooks", app.address);
    let missing = app.client.get(&url).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let err: Value = missing.json().await.unwrap();
    assert_eq!(err["error"]["code"], "unauthorized");
    assert_eq!(
        app.client
            .get(&url)
            .bearer_auth("admin-token-for-e2e-testX")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        app.client
            .post(format!("{url}/1/replay"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(admin_get(&app, "/admin/webhooks").await.status(), 200);
    let bad = admin_get(&app, "/admin/webhooks?status=zombie").await;
    assert_eq!(bad.status(), 400);
    let err: Value = bad.json().await.unwrap();
    assert_eq!(err["error"]["code"], "invalid_query");
    let not_a_number = admin_get(&app, "/admin/webhooks?limit=abc").await;
    assert_eq!(not_a_number.status(), 400);
    let err: Value = not_a_number.json().await.unwrap();
    assert_eq!(err["error"]["code"], "invalid_query");
}

async fn dead_events_are_listed_and_replayed(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[
            ("PAYHOOK__ADMIN__TOKEN", ADMIN_TOKEN),
            ("PAYHOOK__WORKER__MAX_ATTEMPTS", "2"),
            ("PAYHOOK__WORKER__BACKOFF_BASE_MS", "50"),
            ("PAYHOOK__WORKER__BACKOFF_MAX_MS", "100"),
        ],
        Vec::new(),
    )
    .await;
    // A dispute for a payment payhook does not know yet: it cannot be applied.
    let dispute = stripe_event(
        "evt_early_dispute",
        "charge.dispute.created",
        now_unix(),
        json!({ "id": "dp_1", "object": "dispute", "amount": 700, "currency": "usd",
                "status": "needs_response", "charge": "ch_1", "payment_intent": "pi_late" }),
    );
    assert_eq!(app.deliver(&dispute).await.status(), 200);
    app.wait_for_count("SELECT count(*) AS n FROM webhook_events WHERE status = 'dead'", 1)
        .await;

    let listed: Value = admin_get(&app, "/admin/webhooks?status=dead&provider=stripe")
        .await
        .json()
        .await
        .unwrap();
    let events = listed["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event_id"], "evt_early_dispute");
    assert_eq!(events[0]["attempts"], 2);
    assert!(
        events[0]["last_error"]
            .as_str()
            .unwrap()
            .starts_with("payment_not_found"),
        "{}",
        events[0]
    );
    let none: Value = admin_get(&app, "/admin/webhooks?status=dead&provider=xendit")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["events"].as_array().unwrap().len(), 0);

    // The payment arrives; the operator replays the dead events in bulk.
    assert_eq!(app.deliver(&succeeded("evt_late_paid", "pi_late")).await.status(), 200);
    app.wait_for_count("SELECT count(*) AS n FROM webhook_events WHERE status = 'processed'", 1)
        .await;
    let id = events[0]["id"].as_i64().unwrap();
    let bad = admin_post(&app, "/admin/webhooks/replay?status=dead&since=yesterday").await;
    assert_eq!(bad.status(), 400);
    let later = admin_post(&app, "/admin/webhooks/replay?status=dead&since=2999-01-01T00:00:00Z").await;
    assert_eq!(later.json::<Value>().await.unwrap(), json!({ "replayed": 0 }));
    let replay = admin_post(&app, "/admin/webhooks/replay?status=dead&provider=stripe").await;
    assert_eq!(replay.status(), 202);
    assert_eq!(replay.json::<Value>().await.unwrap(), json!({ "replayed": 1 }));
    let twice = admin_post(&app, "/admin/webhooks/replay?status=dead&provider=stripe").await;
    assert_eq!(
        twice.json::<Value>().await.unwrap(),
        json!({ "replayed": 0 }),
        "idempotent"
    );
    app.wait_for_count("SELECT count(*) AS n FROM webhook_events WHERE status = 'processed'", 2)
        .await;
    let payment: Value = app
        .get(&format!("/payments/{}", app.payment_id("pi_late").await))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(payment["status"], "paid");
    assert_eq!(payment["dispute_status"], "open");

    // Replaying a processed event is allowed and changes nothing.
    assert_eq!(
        admin_post(&app, &format!("/admin/webhooks/{id}/replay")).await.status(),
        202
    );
    app.wait_for_count("SELECT count(*) AS n FROM webhook_events WHERE status = 'processed'", 2)
        .await;
    let again: Value = app
        .get(&format!("/payments/{}", app.payment_id("pi_late").await))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (again["status"].clone(), again["dispute_status"].clone()),
        (json!("paid"), json!("open"))
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM payment_status_history WHERE applied")
            .await,
        2
    );

    let missing = admin_post(&app, "/admin/webhooks/999999/replay").await;
    assert_eq!(missing.status(), 404);
    let err: Value = missing.json().await.unwrap();
    assert_eq!(err["error"]["code"], "event_not_found");
}

type Received = Arc<Mutex<Vec<(Vec<(String, String)>, Vec<u8>)>>>;

/// A merchant endpoint on loopback that fails its first request with 503.
async fn merchant_endpoint() -> (String, Received) {
    let received: Received = Arc::default();
    let sink = received.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let sink = sink.clone();
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let sink = sink.clone();
            async move {
                let headers = req
                    .headers()
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                    .collect();
                let mut r = sink.lock().unwrap();
                r.push((headers, body.to_vec()));
                if r.len() == 1 {
                    HttpResponse::ServiceUnavailable().finish()
                } else {
                    HttpResponse::Ok().finish()
                }
            }
        }))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}/payhook-events"), received)
}

async fn an_undeliverable_domain_event_is_dead_listed_and_replayed_to_its_endpoint_only(backend: Backend) {
    let (url, received) = merchant_endpoint().await;
    let mut app = spawn_app_with(
        backend,
        &[
            ("PAYHOOK__NOTIFY__URL", &url),
            ("PAYHOOK__NOTIFY__SECRET", NOTIFY_SECRET),
            ("PAYHOOK__NOTIFY__MAX_ATTEMPTS", "1"),
            ("PAYHOOK__OUTBOX__SWEEP_INTERVAL_MS", "100"),
            ("PAYHOOK__ADMIN__TOKEN", ADMIN_TOKEN),
        ],
        Vec::new(),
    )
    .await;
    assert_eq!(
        app.deliver(&succeeded("evt_dead_out", "pi_dead_out")).await.status(),
        200
    );
    let first = tokio::time::timeout(Duration::from_secs(10), app.events.recv())
        .await
        .unwrap()
        .unwrap();
    // The endpoint refused its only attempt: dead.
    app.wait_for_count("SELECT count(*) AS n FROM outbox WHERE dead_at IS NOT NULL", 1)
        .await;
    let dead: Value = admin_get(&app, "/admin/outbox?status=dead").await.json().await.unwrap();
    assert_eq!(dead["messages"].as_array().unwrap().len(), 1);
    assert_eq!(dead["messages"][0]["id"], first.id);
    assert!(
        dead["messages"][0]["last_error"].as_str().unwrap().contains("503"),
        "{dead}"
    );
    let retrying: Value = admin_get(&app, "/admin/outbox").await.json().await.unwrap();
    assert!(retrying["messages"].as_array().unwrap().is_empty());
    let metrics = admin_get(&app, "/metrics").await.text().await.unwrap();
    assert!(metrics.contains("payhook_outbox_dead 1"), "{metrics}");

    let replayed = admin_post(&app, &format!("/admin/outbox/{}/replay", first.id)).await;
    assert_eq!(replayed.status().as_u16(), 202);
    app.wait_for_count("SELECT count(*) AS n FROM outbox WHERE published_at IS NOT NULL", 1)
        .await;
    assert_eq!(received.lock().unwrap().len(), 2, "the endpoint got it again");
    // The in-process bus had taken it the first time: it is not fed it twice.
    let again = tokio::time::timeout(Duration::from_millis(500), app.events.recv()).await;
    assert!(again.is_err(), "the bus was fed the replayed message: {again:?}");
    let missing = admin_post(&app, "/admin/outbox/999999/replay").await;
    assert_eq!(missing.status().as_u16(), 404);
    let delivered = admin_post(&app, &format!("/admin/outbox/{}/replay", first.id)).await;
    assert_eq!(delivered.status().as_u16(), 409);
}

async fn domain_events_reach_the_bus_and_a_signed_merchant_endpoint(backend: Backend) {
    let (url, received) = merchant_endpoint().await;
    let mut app = spawn_app_with(
        backend,
        &[
            ("PAYHOOK__NOTIFY__URL", &url),
            ("PAYHOOK__NOTIFY__SECRET", NOTIFY_SECRET),
            ("PAYHOOK__OUTBOX__SWEEP_INTERVAL_MS", "100"),
        ],
        Vec::new(),
    )
    .await;
    assert_eq!(app.deliver(&succeeded("evt_notify", "pi_notify")).await.status(), 200);

    let message = tokio::time::timeout(Duration::from_secs(10), app.events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.topic, "payment.paid");
    assert_eq!(message.payload["provider_ref"], "pi_notify");
    assert_eq!(message.payload["status"], "paid");

    // The endpoint refused the first delivery; the relay retried with backoff.
    app.wait_for_count("SELECT count(*) AS n FROM outbox WHERE published_at IS NOT NULL", 1)
        .await;
    let requests = received.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "one refused delivery, one retry");
    let key = base64::engine::general_purpose::STANDARD
        .decode(&NOTIFY_SECRET[6..])
        .unwrap();
    for (headers, body) in &requests {
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap();
        let ts: i64 = get("webhook-timestamp").parse().unwrap();
        assert_eq!(
            get("webhook-signature"),
            payhook_outgoing_webhook::signature(&key, &get("webhook-id"), ts, body)
        );
        let json: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(json["type"], "payment.paid");
        assert_eq!(json["data"]["provider_ref"], "pi_notify");
    }
    let id = |i: usize| requests[i].0.iter().find(|(k, _)| k == "webhook-id").unwrap().1.clone();
    assert_eq!(
        id(0),
        id(1),
        "a retry keeps its webhook-id, so the merchant can deduplicate"
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM outbox WHERE attempts = 1").await,
        1
    );
}

fn fallback_lines(dir: &std::path::Path) -> Vec<Value> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("payhook-webhook-fallback-") && name.ends_with(".jsonl"),
            "{name}"
        );
        let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
        assert!(name.contains(&date), "named by UTC date: {name}");
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            lines.push(serde_json::from_str(line).unwrap());
        }
    }
    lines
}

async fn refused_forensic_writes_go_to_the_fallback_file(backend: Backend) {
    let dir = TempDir::new("payhook-fallback");
    let dir_text = dir.0.to_string_lossy().into_owned();
    let app = spawn_app_with(
        backend,
        &[
            ("PAYHOOK__FALLBACK_LOG__ENABLED", "true"),
            ("PAYHOOK__FALLBACK_LOG__DIR", &dir_text),
        ],
        Vec::new(),
    )
    .await;
    assert_eq!(app.deliver(&succeeded("evt_before", "pi_before")).await.status(), 200);
    app.store.refuse_forensic_writes().await;

    let body = succeeded("evt_during", "pi_during");
    let forged = payhook_stripe::signature_header("whsec_wrong", now_unix(), &body);
    let rejected = app.post_stripe(&body, Some(&forged)).await;
    assert_eq!(
        rejected.status(),
        401,
        "the fallback file took the record, so the answer stands"
    );
    let unstored = app.deliver(&body).await;
    assert_eq!(
        unstored.status(),
        503,
        "the event is not in the inbox: the provider must retry"
    );

    let lines = fallback_lines(&dir.0);
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (lines[0]["http_status"].as_u64(), lines[0]["processing_result"].as_str()),
        (Some(401), Some("invalid_signature"))
    );
    assert_eq!(
        (lines[1]["http_status"].as_u64(), lines[1]["processing_result"].as_str()),
        (Some(503), Some("store_unavailable"))
    );
    let raw = base64::engine::general_purpose::STANDARD
        .decode(lines[1]["raw_body_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(raw, body);
    assert_eq!(lines[1]["event_id"], "evt_during");
    assert!(
        !lines[0].to_string().contains(&forged[10..]),
        "signatures are redacted in the fallback file too"
    );

    // The database recovers; the provider's retry is accepted.
    app.store.accept_forensic_writes_again().await;
    let retried = app.deliver(&body).await;
    assert_eq!(retried.status(), 200);
    let reply: Value = retried.json().await.unwrap();
    assert_eq!(reply["status"], "accepted");
}

async fn refused_forensic_writes_without_fallback_give_503(backend: Backend) {
    let app = spawn_app(backend).await;
    app.store.refuse_forensic_writes().await;
    let body = succeeded("evt_nofallback", "pi_nofallback");
    let forged = payhook_stripe::signature_header("whsec_wrong", now_unix(), &body);
    let res = app.post_stripe(&body, Some(&forged)).await;
    assert_eq!(
        res.status(),
        503,
        "nothing recorded, so nothing is answered but 'retry'"
    );
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "store_unavailable");
}

async fn metrics_report_webhooks_processing_inbox_and_outbox(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(app.deliver(&succeeded("evt_metrics", "pi_metrics")).await.status(), 200);
    app.wait_for_count("SELECT count(*) AS n FROM webhook_events WHERE status = 'processed'", 1)
        .await;
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = res.text().await.unwrap();
    for needle in [
        "payhook_webhooks_received_total{provider=\"stripe\",result=\"accepted\"}",
        "payhook_inbox_events{status=\"processed\"}",
        "payhook_inbox_events{status=\"dead\"}",
        "payhook_outbox_backlog",
        "payhook_reconcile_due 0",
        "payhook_processing_attempts_total{outcome=\"applied\"}",
        "payhook_processing_seconds_bucket",
        "payhook_webhook_ack_seconds_bucket{provider=\"stripe\",le=\"0.025\"}",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
}

/// The server's retention job deletes forensic rows past `retention.forensic_days`
/// and keeps the young ones and everything the inbox still needs.
async fn the_retention_job_purges_old_forensic_rows_and_keeps_the_rest(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[
            ("PAYHOOK__RETENTION__FORENSIC_DAYS", "30"),
            ("PAYHOOK__RETENTION__INTERVAL_SECS", "1"),
        ],
        Vec::new(),
    )
    .await;
    let res = app.deliver(&succeeded("evt_young", "pi_young")).await;
    assert_eq!(res.status(), 200);
    for age_days in [31, 400] {
        let old = payhook_domain::WebhookRequest::new(
            "stripe",
            "POST",
            "/webhooks/stripe",
            "",
            vec![],
            b"{\"customer_email\":\"old@example.com\"}".to_vec(),
            Some("192.0.2.1:443".into()),
            chrono::Utc::now() - chrono::Duration::days(age_days),
            &payhook_domain::Redaction::default(),
        );
        let outcome = payhook_domain::Outcome {
            http_status: 401,
            result: payhook_domain::ProcessingResult::InvalidSignature,
            error: None,
        };
        app.stores.forensic.record(&old, &outcome).await.unwrap();
    }
    app.wait_for_count("SELECT count(*) AS n FROM webhook_logs", 1).await;
    assert_eq!(
        app.count("SELECT count(*) AS n FROM webhook_logs WHERE event_id = 'evt_young'")
            .await,
        1
    );
    app.wait_for_count("SELECT count(*) AS n FROM webhook_events WHERE status = 'processed'", 1)
        .await;
}

on_every_store!(
    the_openapi_document_is_served_and_names_every_merchant_route,
    the_retention_job_purges_old_forensic_rows_and_keeps_the_rest,
    admin_api_is_off_without_a_token,
    admin_api_requires_its_bearer_token,
    dead_events_are_listed_and_replayed,
    domain_events_reach_the_bus_and_a_signed_merchant_endpoint,
    an_undeliverable_domain_event_is_dead_listed_and_replayed_to_its_endpoint_only,
    refused_forensic_writes_go_to_the_fallback_file,
    refused_forensic_writes_without_fallback_give_503,
    metrics_report_webhooks_processing_inbox_and_outbox,
);

/// docs/architecture.md: several instances share one Postgres, and a status stream on any of
/// them follows a change another instance applied (LISTEN/NOTIFY). Postgres only: the
/// embedded store serves one instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_hears_the_domain_events_of_a_webhook_another_instance_applied() {
    if !postgres_available().await {
        return;
    }
    let app = spawn_app(Backend::Postgres).await;
    // The other instance's relay sweeps once an hour, so it never delivers the message
    // itself: what it hears came from the first instance.
    let mut other = app
        .another_instance(&[("PAYHOOK__OUTBOX__SWEEP_INTERVAL_MS", "3600000")])
        .await;
    assert_eq!(app.deliver(&succeeded("evt_fan_out", "pi_fan_out")).await.status(), 200);
    let message = tokio::time::timeout(Duration::from_secs(10), other.events.recv())
        .await
        .expect("the other instance hears it within 10 s")
        .unwrap();
    assert_eq!(message.topic, "payment.paid");
    assert_eq!(message.payload["provider_ref"], "pi_fan_out");
    assert_eq!(message.payload["status"], "paid");
}

/// `GET /openapi.json` answers the OpenAPI 3.1 document, with the merchant routes and
/// their error codes.
async fn the_openapi_document_is_served_and_names_every_merchant_route(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status().as_u16(), 200);
    let doc: serde_json::Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for (path, method) in [
        ("/payments", "post"),
        ("/payments", "get"),
        ("/payments/{id}", "get"),
        ("/payments/{id}/cancel", "post"),
        ("/webhooks/{provider}", "post"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    let conflict = doc["paths"]["/payments/{id}/cancel"]["post"]["responses"]["409"]["description"]
        .as_str()
        .unwrap();
    assert!(conflict.contains("payment_not_cancelable"), "{conflict}");
}
