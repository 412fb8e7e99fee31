//! End to end: QPay and JunglePay, the providers that sign nothing. Payments are
//! created through `POST /payments` against the fake APIs; callbacks carry the
//! per-payment token; the worker believes only what the provider's API confirms.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payhook_e2e::*;
use payhook_testkit::fake_junglepay::FakeJunglePay;
use payhook_testkit::fake_qpay::FakeQPay;
use serde_json::{json, Value};

const QPAY_ID: &str = "payhook-e2e";
const QPAY_SECRET: &str = "qpay-secret-e2e";
const JUNGLE_KEY: &str = "sk_jungle_e2e";
/// Where the providers are told to call; tests send the same path and query to the app.
const CALLBACK_BASE: &str = "https://pay.example.test";

on_every_store!(
    a_qpay_payment_is_paid_once_the_check_confirms_it,
    qpay_callbacks_without_the_right_token_are_401_and_change_nothing,
    a_qpay_callback_before_the_check_agrees_is_retried_then_paid,
    a_partial_qpay_payment_is_recorded_then_paid_when_complete,
    a_junglepay_payment_takes_the_status_the_api_confirms,
    a_junglepay_refund_is_settled_by_the_status_the_api_confirms,
    a_junglepay_postback_the_api_contradicts_is_not_applied,
    a_junglepay_postback_before_the_api_agrees_is_retried_then_paid,
    junglepay_postbacks_without_the_right_token_are_401,
);

async fn qpay_app(backend: Backend, fake: &FakeQPay) -> TestApp {
    spawn_app_with(
        backend,
        &[
            ("PAYHOOK__PROVIDERS__QPAY__ENABLED", "true"),
            ("PAYHOOK__PROVIDERS__QPAY__CLIENT_ID", QPAY_ID),
            ("PAYHOOK__PROVIDERS__QPAY__CLIENT_SECRET", QPAY_SECRET),
            ("PAYHOOK__PROVIDERS__QPAY__INVOICE_CODE", "PAYHOOK_E2E"),
            ("PAYHOOK__PROVIDERS__QPAY__API_BASE_URL", &fake.base_url),
            ("PAYHOOK__PROVIDERS__QPAY__CALLBACK_BASE_URL", CALLBACK_BASE),
        ],
        Vec::new(),
    )
    .await
}

async fn junglepay_app(backend: Backend, fake: &FakeJunglePay) -> TestApp {
    spawn_app_with(
        backend,
        &[
            ("PAYHOOK__PROVIDERS__JUNGLEPAY__ENABLED", "true"),
            ("PAYHOOK__PROVIDERS__JUNGLEPAY__SECRET_KEY", JUNGLE_KEY),
            ("PAYHOOK__PROVIDERS__JUNGLEPAY__API_BASE_URL", &fake.base_url),
            ("PAYHOOK__PROVIDERS__JUNGLEPAY__CALLBACK_BASE_URL", CALLBACK_BASE),
        ],
        Vec::new(),
    )
    .await
}

/// Creates a payment; returns its id, provider reference and the whole answer.
async fn create(app: &TestApp, body: Value) -> (String, String, String) {
    let response = app
        .client
        .post(format!("{}/payments", app.address))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let text = response.text().await.unwrap();
    let created: Value = serde_json::from_str(&text).unwrap();
    (
        created["id"].as_str().unwrap().to_owned(),
        created["provider_ref"].as_str().unwrap().to_owned(),
        text,
    )
}

/// Sends `method` to the app at the path and query of a callback URL the provider holds.
async fn call_back(app: &TestApp, method: reqwest::Method, url: &str, body: Option<&Value>) -> reqwest::Response {
    let path_and_query = url.strip_prefix(CALLBACK_BASE).expect("a callback to payhook");
    let mut req = app.client.request(method, format!("{}{path_and_query}", app.address));
    if let Some(body) = body {
        req = req.json(body);
    }
    req.send().await.unwrap()
}

/// The HTTP status payhook answers a callback with.
async fn status_of_call_back(app: &TestApp, method: reqwest::Method, url: &str, body: Option<&Value>) -> u16 {
    call_back(app, method, url, body).await.status().as_u16()
}

fn token_of(url: &str) -> String {
    url.split("token=").nth(1).unwrap().to_owned()
}

async fn status_of(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/payments/{id}")).await.json().await.unwrap()
}

fn mnt_order() -> Value {
    json!({ "provider": "qpay", "amount": 5_000_000, "currency": "MNT", "description": "Order 5" })
}

async fn a_qpay_payment_is_paid_once_the_check_confirms_it(backend: Backend) {
    let fake = FakeQPay::start(QPAY_ID, QPAY_SECRET).await;
    let app = qpay_app(backend, &fake).await;
    let (id, invoice, answer) = create(&app, mnt_order()).await;
    let created: Value = serde_json::from_str(&answer).unwrap();
    assert!(created["qr_text"].as_str().unwrap().contains(&invoice));
    assert_eq!(created["checkout_url"], format!("https://qpay.mn/s/{invoice}"));
    assert!(created["provider_checkout"]["qr_image"].is_string());
    assert!(created["provider_checkout"]["urls"][0]["link"].is_string());
    assert_eq!(fake.invoice_amount(&invoice), Some(50_000), "whole tögrög");

    let url = fake.callback_url(&invoice).unwrap();
    let token = token_of(&url);
    assert_eq!(token.len(), 32);
    assert!(
        !answer.contains(&token),
        "the callback token never leaves payhook but to QPay"
    );
    assert_eq!(
        app.text(&format!(
            "SELECT callback_token_hash AS v FROM payments WHERE provider_ref = '{invoice}'"
        ))
        .await,
        Some(payhook_app::api::payment_requests::token_hash(&token)),
        "only its hash is stored"
    );

    fake.pay(&invoice, 50_000).unwrap();
    let reply = call_back(&app, reqwest::Method::GET, &url, None).await;
    assert_eq!(reply.status().as_u16(), 200);
    assert_eq!(reply.text().await.unwrap(), "SUCCESS");
    app.wait_for_count("SELECT count(*) AS n FROM payments WHERE status = 'paid'", 1)
        .await;
    let payment = status_of(&app, &id).await;
    assert_eq!(payment["paid_amount"], 5_000_000);
    assert_eq!(payment["history"].as_array().unwrap().len(), 1);

    // QPay calls again (POST, with a body this time): acknowledged, changes nothing.
    let again = call_back(
        &app,
        reqwest::Method::POST,
        &url,
        Some(&json!({ "invoice_id": invoice })),
    )
    .await;
    assert_eq!(
        (again.status().as_u16(), again.text().await.unwrap().as_str()),
        (200, "SUCCESS")
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM webhook_events").await,
        1,
        "a duplicate"
    );
    assert_eq!(status_of(&app, &id).await["history"].as_array().unwrap().len(), 1);

    // The forensic log keeps the query with the token redacted.
    let logs = app.logs().await;
    assert!(
        logs.iter().all(|l| !l.query.contains(&token)),
        "{:?}",
        logs.iter().map(|l| &l.query).collect::<Vec<_>>()
    );
    assert!(logs[0].query.contains("token=[redacted]"));
}

async fn qpay_callbacks_without_the_right_token_are_401_and_change_nothing(backend: Backend) {
    let fake = FakeQPay::start(QPAY_ID, QPAY_SECRET).await;
    let app = qpay_app(backend, &fake).await;
    let (id, invoice, _) = create(&app, mnt_order()).await;
    fake.pay(&invoice, 50_000).unwrap();
    let unknown = uuid::Uuid::new_v4();
    let right = token_of(&fake.callback_url(&invoice).unwrap());
    for (query, code) in [
        (
            format!("payment_id={id}&token={}", "0".repeat(32)),
            "invalid_callback_token",
        ),
        (format!("payment_id={id}"), "missing_callback_token"),
        (String::new(), "missing_callback_token"),
        // Someone else's payment with this one's token: no oracle for which ids exist.
        (format!("payment_id={unknown}&token={right}"), "invalid_callback_token"),
    ] {
        let reply = app
            .client
            .post(format!("{}/webhooks/qpay?{query}", app.address))
            .send()
            .await
            .unwrap();
        let status = reply.status().as_u16();
        let body: Value = reply.json().await.unwrap();
        assert_eq!((status, body["error"]["code"].as_str()), (401, Some(code)), "{query}");
    }
    assert_eq!(app.count("SELECT count(*) AS n FROM webhook_events").await, 0);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM webhook_logs WHERE http_status = 401")
            .await,
        4
    );
    assert_eq!(status_of(&app, &id).await["status"], "pending");
}

async fn a_qpay_callback_before_the_check_agrees_is_retried_then_paid(backend: Backend) {
    let fake = FakeQPay::start(QPAY_ID, QPAY_SECRET).await;
    let app = qpay_app(backend, &fake).await;
    let (id, invoice, _) = create(&app, mnt_order()).await;
    fake.pay(&invoice, 50_000).unwrap();
    fake.next_checks_unpaid(2);
    let url = fake.callback_url(&invoice).unwrap();
    assert_eq!(status_of_call_back(&app, reqwest::Method::POST, &url, None).await, 200);
    app.wait_for_count("SELECT count(*) AS n FROM payments WHERE status = 'paid'", 1)
        .await;
    assert_eq!(
        app.count("SELECT count(*) AS n FROM webhook_events WHERE attempts = 2 AND status = 'processed'")
            .await,
        1,
        "two unconfirmed attempts, then applied"
    );
    let checks = fake.requests().iter().filter(|r| r.path == "/v2/payment/check").count();
    assert_eq!(checks, 3);
    assert_eq!(status_of(&app, &id).await["status"], "paid");
}

async fn a_partial_qpay_payment_is_recorded_then_paid_when_complete(backend: Backend) {
    let fake = FakeQPay::start(QPAY_ID, QPAY_SECRET).await;
    let app = qpay_app(backend, &fake).await;
    let (id, invoice, _) = create(&app, mnt_order()).await;
    let url = fake.pay(&invoice, 20_000).unwrap();
    assert_eq!(status_of_call_back(&app, reqwest::Method::GET, &url, None).await, 200);
    app.wait_for_count("SELECT count(*) AS n FROM webhook_events WHERE status = 'processed'", 1)
        .await;
    let payment = status_of(&app, &id).await;
    assert_eq!(payment["status"], "pending");
    let history = payment["history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["applied"], false);
    assert!(
        history[0]["reason"].as_str().unwrap().contains("partial"),
        "{history:?}"
    );

    // The customer pays the rest; QPay calls back again under the same dedup key.
    let rest = fake.invoice_amount(&invoice).unwrap() - 20_000;
    let url = fake.pay(&invoice, rest).unwrap();
    assert_eq!(status_of_call_back(&app, reqwest::Method::GET, &url, None).await, 200);
    app.wait_for_count(
        "SELECT count(*) AS n FROM payment_status_history WHERE applied AND to_status = 'paid'",
        1,
    )
    .await;
    assert_eq!(status_of(&app, &id).await["status"], "paid");
}

fn brl_order() -> Value {
    json!({
        "provider": "junglepay", "amount": 10_000, "currency": "BRL", "customer_email": "ana@example.com.br",
        "metadata": { "customer_name": "Ana", "customer_document": "12345678910" },
    })
}

async fn a_junglepay_payment_takes_the_status_the_api_confirms(backend: Backend) {
    let fake = FakeJunglePay::start(JUNGLE_KEY).await;
    let app = junglepay_app(backend, &fake).await;
    let (id, transaction, answer) = create(&app, brl_order()).await;
    let created: Value = serde_json::from_str(&answer).unwrap();
    assert!(created["qr_text"].as_str().unwrap().contains("br.gov.bcb.pix"));
    assert!(created["checkout_url"]
        .as_str()
        .unwrap()
        .starts_with("https://link.compra.com.br/"));

    let (url, postback) = fake.set_status(&transaction, "paid").unwrap();
    assert!(
        !answer.contains(&token_of(&url)),
        "the postback token is not in the API answer"
    );
    let reply = call_back(&app, reqwest::Method::POST, &url, Some(&postback)).await;
    assert_eq!(reply.status().as_u16(), 200);
    assert_eq!(reply.json::<Value>().await.unwrap()["status"], "accepted");
    app.wait_for_count("SELECT count(*) AS n FROM payments WHERE status = 'paid'", 1)
        .await;

    // A chargeback: the dispute is lost, the status stays paid.
    let (_, chargeback) = fake.set_status(&transaction, "chargedback").unwrap();
    assert_eq!(
        status_of_call_back(&app, reqwest::Method::POST, &url, Some(&chargeback)).await,
        200
    );
    app.wait_for_count("SELECT count(*) AS n FROM payments WHERE dispute_status = 'lost'", 1)
        .await;
    assert_eq!(status_of(&app, &id).await["status"], "paid");
    // JunglePay says only "chargedback": the dispute is a row named by the transaction,
    // for the payment's amount, closed (lost).
    let shown: Value = app
        .client
        .get(format!("{}/payments/{id}", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let disputes = shown["disputes"].as_array().unwrap();
    assert_eq!(disputes.len(), 1, "{shown}");
    assert_eq!(disputes[0]["provider_ref"], transaction.as_str());
    assert_eq!(disputes[0]["status"], "lost");
    assert_eq!(disputes[0]["amount"], shown["amount"]);
    assert!(disputes[0]["closed_at"].is_string());
    let fetched = fake
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == format!("/v1/transactions/{transaction}"))
        .count();
    assert_eq!(fetched, 2, "every postback was checked with the API");
}

async fn a_junglepay_postback_the_api_contradicts_is_not_applied(backend: Backend) {
    let fake = FakeJunglePay::start(JUNGLE_KEY).await;
    let app = junglepay_app(backend, &fake).await;
    let (id, transaction, _) = create(&app, brl_order()).await;
    // A forged "paid" with a leaked token: the API still says waiting_payment.
    let (url, mut forged) = fake.set_status(&transaction, "waiting_payment").unwrap();
    forged["data"]["status"] = json!("paid");
    assert_eq!(
        status_of_call_back(&app, reqwest::Method::POST, &url, Some(&forged)).await,
        200
    );
    app.wait_for_count(
        "SELECT count(*) AS n FROM webhook_events WHERE attempts >= 2 AND last_error LIKE '%not_confirmed%'",
        1,
    )
    .await;
    assert_eq!(status_of(&app, &id).await["status"], "pending");

    // Paid at JunglePay, but for less than asked: recorded, not paid.
    fake.set_amount(&transaction, 5_000);
    let (_, paid) = fake.set_status(&transaction, "paid").unwrap();
    assert_eq!(
        status_of_call_back(&app, reqwest::Method::POST, &url, Some(&paid)).await,
        200
    );
    app.wait_for_count(
        "SELECT count(*) AS n FROM payment_status_history WHERE applied = false AND reason LIKE '%partial%'",
        1,
    )
    .await;
    assert_eq!(status_of(&app, &id).await["status"], "pending");
}

async fn junglepay_postbacks_without_the_right_token_are_401(backend: Backend) {
    let fake = FakeJunglePay::start(JUNGLE_KEY).await;
    let app = junglepay_app(backend, &fake).await;
    let (id, transaction, _) = create(&app, brl_order()).await;
    let (_, postback) = fake.set_status(&transaction, "paid").unwrap();
    let reply = app
        .client
        .post(format!(
            "{}/webhooks/junglepay?payment_id={id}&token=guess",
            app.address
        ))
        .json(&postback)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 401);
    assert_eq!(app.count("SELECT count(*) AS n FROM webhook_events").await, 0);
    assert_eq!(status_of(&app, &id).await["status"], "pending");
}

async fn a_junglepay_postback_before_the_api_agrees_is_retried_then_paid(backend: Backend) {
    let fake = FakeJunglePay::start(JUNGLE_KEY).await;
    let app = junglepay_app(backend, &fake).await;
    let (id, transaction, _) = create(&app, brl_order()).await;
    // The postback says paid; the API still says waiting_payment for a while.
    let (url, mut early) = fake.set_status(&transaction, "waiting_payment").unwrap();
    early["data"]["status"] = json!("paid");
    assert_eq!(
        status_of_call_back(&app, reqwest::Method::POST, &url, Some(&early)).await,
        200
    );
    app.wait_for_count("SELECT count(*) AS n FROM webhook_events WHERE attempts >= 1", 1)
        .await;
    assert_eq!(status_of(&app, &id).await["status"], "pending");
    fake.set_status(&transaction, "paid").unwrap();
    // The same stored event, retried with backoff, now finds it confirmed.
    app.wait_for_count("SELECT count(*) AS n FROM payments WHERE status = 'paid'", 1)
        .await;
    assert_eq!(app.count("SELECT count(*) AS n FROM webhook_events").await, 1);
}

/// A JunglePay refund of part of a paid PIX: sent to the transaction's refund
/// endpoint, pending until a postback, whose status (fetched from the API: still
/// `paid`, with `refundedAmount`) settles it; the rest, refunded in full, answers
/// `refunded` at once and settles through the worker.
async fn a_junglepay_refund_is_settled_by_the_status_the_api_confirms(backend: Backend) {
    let fake = FakeJunglePay::start(JUNGLE_KEY).await;
    let app = junglepay_app(backend, &fake).await;
    let (id, transaction, _) = create(&app, brl_order()).await;
    let (url, postback) = fake.set_status(&transaction, "paid").unwrap();
    assert_eq!(
        call_back(&app, reqwest::Method::POST, &url, Some(&postback))
            .await
            .status()
            .as_u16(),
        200
    );
    app.wait_for_count("SELECT count(*) AS n FROM payments WHERE status = 'paid'", 1)
        .await;

    let ask = |amount: Option<i64>| {
        let body = amount.map_or_else(|| json!({}), |a| json!({ "amount": a }));
        app.client
            .post(format!("{}/payments/{id}/refunds", app.address))
            .json(&body)
            .send()
    };
    let part: Value = ask(Some(4_000)).await.unwrap().json().await.unwrap();
    assert_eq!(
        (part["status"].as_str(), part["amount"].as_i64()),
        (Some("pending"), Some(4_000))
    );
    let sent = fake.requests().into_iter().rfind(|r| r.method == "POST").unwrap();
    assert_eq!(sent.path, format!("/v1/transactions/{transaction}/refund"));
    assert_eq!(sent.body["amount"], 4_000);
    // JunglePay posts the transaction again; payhook reads it back: 4,000 refunded.
    let (url, postback) = fake.set_status(&transaction, "paid").unwrap();
    assert_eq!(
        call_back(&app, reqwest::Method::POST, &url, Some(&postback))
            .await
            .status()
            .as_u16(),
        200
    );
    app.wait_for_count(
        "SELECT count(*) AS n FROM payments WHERE status = 'partially_refunded' AND refunded_amount = 4000",
        1,
    )
    .await;
    let rest: Value = ask(None).await.unwrap().json().await.unwrap();
    assert_eq!(rest["amount"], 6_000);
    app.wait_for_count(
        "SELECT count(*) AS n FROM payments WHERE status = 'refunded' AND refunded_amount = 10000",
        1,
    )
    .await;
    let shown = status_of(&app, &id).await;
    let statuses: Vec<&str> = shown["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["succeeded", "succeeded"], "{shown}");
}
