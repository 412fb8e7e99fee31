//! End to end: `POST /payments` against fake provider APIs on loopback, then the
//! provider's callback, through the real server, on both stores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payhook_app::api::payment_requests::token_hash;
use payhook_e2e::*;
use payhook_testkit::fake_stripe::FakeStripe;
use payhook_testkit::fake_xendit::FakeXendit;
use serde_json::{json, Value};
use std::time::Duration;

const XENDIT_KEY: &str = "xnd_development_e2e_secret_key";
const XENDIT_TOKEN: &str = "xnd_callback_token_for_e2e_0123456789";
const STRIPE_KEY: &str = "sk_test_e2e_key";

on_every_store!(
    a_xendit_payment_is_created_then_paid_by_its_callback,
    a_stripe_payment_is_created_then_paid_by_its_webhook,
    invalid_requests_name_the_field_and_store_nothing,
    unknown_disabled_and_unconfigured_providers_are_bad_requests,
    a_provider_failure_is_a_502_and_the_payment_is_marked_failed,
    an_idempotency_key_returns_the_first_payment,
    a_repeat_while_the_first_waits_for_the_provider_is_a_conflict,
    an_oversized_request_is_413_and_stores_nothing,
    the_status_stream_follows_the_payment_for_its_client_token_only,
    a_payment_whose_callback_never_came_is_settled_by_asking_the_provider,
    an_operator_asks_the_provider_about_a_payment_now,
    checks_stay_under_the_providers_call_rate,
    payments_are_listed_newest_first_a_page_at_a_time,
    a_finding_and_a_callback_reporting_the_same_payment_make_one_history_entry,
    interrupted_creations_are_adopted_if_the_provider_made_them_else_failed,
    a_pending_payment_is_canceled_once_the_provider_agrees,
    a_payment_paid_at_the_provider_is_not_canceled,
    cancel_errors_follow_the_contract,
    a_payment_intent_answers_its_client_secret_once,
    a_checkout_session_payment_is_paid_and_refunded_through_its_payment_intent,
    a_stripe_payment_is_refunded_in_part_then_in_full_settled_by_webhooks,
    twenty_concurrent_refunds_never_exceed_what_was_paid,
    refund_errors_follow_the_contract,
    a_xendit_payment_is_refunded_and_settled_by_its_refund_callback,
    a_refund_whose_webhook_never_came_is_settled_by_asking_stripe,
);

async fn xendit_app(backend: Backend, fake: &FakeXendit) -> TestApp {
    xendit_app_with(backend, fake, &[]).await
}

/// Xendit enabled against `fake`, with `extra` settings on top.
async fn xendit_app_with(backend: Backend, fake: &FakeXendit, extra: &[(&str, &str)]) -> TestApp {
    spawn_app_with(backend, &xendit_settings(fake, extra), Vec::new()).await
}

fn xendit_settings<'a>(fake: &'a FakeXendit, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut settings = vec![
        ("PAYHOOK__PROVIDERS__XENDIT__ENABLED", "true"),
        ("PAYHOOK__PROVIDERS__XENDIT__CALLBACK_TOKEN", XENDIT_TOKEN),
        ("PAYHOOK__PROVIDERS__XENDIT__SECRET_KEY", XENDIT_KEY),
        ("PAYHOOK__PROVIDERS__XENDIT__API_BASE_URL", fake.base_url.as_str()),
    ];
    settings.extend_from_slice(extra);
    settings
}

async fn create(app: &TestApp, body: &Value, key: Option<&str>) -> reqwest::Response {
    let mut req = app.client.post(format!("{}/payments", app.address)).json(body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    req.send().await.unwrap()
}

fn idr_order() -> Value {
    json!({
        "provider": "xendit", "amount": 15_000_000, "currency": "IDR", "merchant_ref": "order-77",
        "customer_email": "budi@example.co.id", "description": "Order 77", "metadata": { "cart": "c-9" },
    })
}

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["error"].clone())
}

async fn a_xendit_payment_is_created_then_paid_by_its_callback(backend: Backend) {
    let fake = FakeXendit::start(XENDIT_KEY).await;
    let app = xendit_app(backend, &fake).await;

    let response = create(&app, &idr_order(), None).await;
    assert_eq!(response.status().as_u16(), 201);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let invoice = created["provider_ref"].as_str().unwrap().to_owned();
    assert_eq!(created["status"], "pending");
    assert_eq!(created["amount"], 15_000_000);
    assert_eq!(created["currency"], "IDR");
    assert_eq!(created["checkout_url"], format!("{}/web/{invoice}", fake.base_url));
    let token = created["client_token"].as_str().unwrap();
    assert!(
        token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{token}"
    );

    // What Xendit was asked for: our id as external_id, major units, our app tag.
    let sent = &fake.requests()[0];
    assert_eq!(sent.body["external_id"], id.as_str());
    assert_eq!(sent.body["amount"], 150_000);
    assert_eq!(sent.body["metadata"]["app"], "payhook");

    // Only the token's hash is stored.
    let stored = app
        .text(&format!(
            "SELECT client_token_hash AS v FROM payments WHERE provider_ref = '{invoice}'"
        ))
        .await;
    assert_eq!(stored, Some(token_hash(token)));

    let callback = serde_json::to_vec(&json!({
        "id": invoice, "external_id": id, "user_id": "5f1e2d3c4b5a69788796a5b4", "status": "PAID",
        "amount": 150000, "paid_amount": 150000, "currency": "IDR", "payment_method": "BANK_TRANSFER",
        "payment_channel": "BCA", "paid_at": "2026-11-20T08:15:30.123Z", "metadata": { "app": "payhook" },
    }))
    .unwrap();
    let answer = app.post_xendit(&callback, Some(XENDIT_TOKEN)).await;
    assert_eq!(answer.status().as_u16(), 200);
    app.wait_for_count(
        &format!("SELECT count(*) AS n FROM payments WHERE provider_ref = '{invoice}' AND status = 'paid'"),
        1,
    )
    .await;
    let payment: Value = app.get(&format!("/payments/{id}")).await.json().await.unwrap();
    assert_eq!(payment["status"], "paid");
    assert_eq!(payment["paid_amount"], 15_000_000);
    assert_eq!(payment["merchant_ref"], "order-77");
    assert_eq!(payment["metadata"], json!({ "cart": "c-9" }));
    let history = payment["history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0]["from_status"].as_str(), history[0]["to_status"].as_str()),
        (Some("pending"), Some("paid"))
    );
}

async fn a_stripe_payment_is_created_then_paid_by_its_webhook(backend: Backend) {
    let fake = FakeStripe::start(STRIPE_KEY).await;
    let app = spawn_app_with(
        backend,
        &[
            ("PAYHOOK__PROVIDERS__STRIPE__API_KEY", STRIPE_KEY),
            ("PAYHOOK__PROVIDERS__STRIPE__API_BASE_URL", &fake.base_url),
        ],
        Vec::new(),
    )
    .await;
    let response = create(
        &app,
        &json!({ "provider": "stripe", "amount": 2_500, "currency": "EUR", "merchant_ref": "order-17" }),
        None,
    )
    .await;
    assert_eq!(response.status().as_u16(), 201);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let intent = created["provider_ref"].as_str().unwrap().to_owned();
    assert!(intent.starts_with("pi_fake"), "{intent}");
    let sent = &fake.requests()[0];
    assert_eq!(sent.body.get("metadata[payhook_payment_id]"), Some(&id));
    assert_eq!(sent.idempotency_key.as_deref(), Some(id.as_str()));

    // The event names the payment by metadata, as Stripe echoes it.
    let mut object = payment_intent(&intent, "succeeded", 2_500, 2_500);
    object["currency"] = json!("eur");
    object["metadata"] = json!({ "payhook_payment_id": id });
    let event = stripe_event("evt_created_then_paid", "payment_intent.succeeded", now_unix(), object);
    assert_eq!(app.deliver(&event).await.status().as_u16(), 200);
    app.wait_for_count(
        &format!("SELECT count(*) AS n FROM payments WHERE provider_ref = '{intent}' AND status = 'paid'"),
        1,
    )
    .await;
    assert_eq!(
        app.count("SELECT count(*) AS n FROM payments").await,
        1,
        "no second payment from the event"
    );
    assert_eq!(
        created["client_secret"],
        format!("{intent}_secret_fake"),
        "the PaymentIntent's client_secret, for Stripe.js"
    );
}

/// `providers.stripe.checkout = payment_intent` (the default): the 201 carries the
/// PaymentIntent's `client_secret` once. It is not stored: `GET /payments/{id}` and an
/// idempotent replay do not have it.
async fn a_payment_intent_answers_its_client_secret_once(backend: Backend) {
    let fake = FakeStripe::start(STRIPE_KEY).await;
    let app = spawn_app_with(
        backend,
        &[
            ("PAYHOOK__PROVIDERS__STRIPE__API_KEY", STRIPE_KEY),
            ("PAYHOOK__PROVIDERS__STRIPE__API_BASE_URL", &fake.base_url),
        ],
        Vec::new(),
    )
    .await;
    let order = json!({ "provider": "stripe", "amount": 2_500, "currency": "EUR" });
    let created: Value = create(&app, &order, Some("order-secret")).await.json().await.unwrap();
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    assert!(secret.ends_with("_secret_fake"), "{secret}");
    let id = created["id"].as_str().unwrap();
    let shown = app.get(&format!("/payments/{id}")).await.text().await.unwrap();
    assert!(!shown.contains(&secret), "GET shows the client_secret: {shown}");
    let replay: Value = create(&app, &order, Some("order-secret")).await.json().await.unwrap();
    assert_eq!(replay["id"], id);
    assert_eq!(replay["client_secret"], Value::Null);
    let stored = app
        .count(
            "SELECT count(*) AS n FROM payments WHERE checkout_url LIKE '%secret%' OR qr_text LIKE '%secret%' \
             OR CAST(checkout_extras AS TEXT) LIKE '%secret%' OR CAST(metadata AS TEXT) LIKE '%secret%'",
        )
        .await;
    assert_eq!(stored, 0, "the client_secret is stored nowhere");
}

/// `providers.stripe.checkout = checkout_session`: the 201 carries Stripe's hosted page.
/// The customer pays there; the PaymentIntent's event finds the payment by
/// `metadata.payhook_payment_id`, and teaches payhook the PaymentIntent's id, so a
/// later refund naming only it finds the payment.
async fn a_checkout_session_payment_is_paid_and_refunded_through_its_payment_intent(backend: Backend) {
    let fake = FakeStripe::start(STRIPE_KEY).await;
    let app = spawn_app_with(
        backend,
        &[
            ("PAYHOOK__PROVIDERS__STRIPE__API_KEY", STRIPE_KEY),
            ("PAYHOOK__PROVIDERS__STRIPE__API_BASE_URL", &fake.base_url),
            ("PAYHOOK__PROVIDERS__STRIPE__CHECKOUT", "checkout_session"),
            ("PAYHOOK__PROVIDERS__STRIPE__SUCCESS_URL", "https://shop.example/thanks"),
        ],
        Vec::new(),
    )
    .await;
    fake.send_webhooks_to(&format!("{}/webhooks/stripe", app.address), STRIPE_SECRET);
    let order = json!({ "provider": "stripe", "amount": 2_500, "currency": "EUR",
                        "cancel_url": "https://shop.example/cart", "customer_email": "ana@example.com" });
    let response = create(&app, &order, None).await;
    assert_eq!(response.status().as_u16(), 201);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let session = created["provider_ref"].as_str().unwrap().to_owned();
    assert!(session.starts_with("cs_"), "{created}");
    assert_eq!(
        created["checkout_url"],
        format!("https://checkout.stripe.com/c/pay/{session}")
    );
    assert_eq!(created["client_secret"], Value::Null);
    assert!(created["expires_at"].is_string(), "a session expires: {created}");
    let sent = &fake.requests()[0];
    assert_eq!(sent.path, "/v1/checkout/sessions");
    assert_eq!(sent.body.get("mode").map(String::as_str), Some("payment"));
    assert_eq!(
        sent.body.get("success_url").map(String::as_str),
        Some("https://shop.example/thanks")
    );
    assert_eq!(
        sent.body.get("cancel_url").map(String::as_str),
        Some("https://shop.example/cart")
    );
    assert_eq!(
        sent.body
            .get("line_items[0][price_data][unit_amount]")
            .map(String::as_str),
        Some("2500")
    );
    assert_eq!(
        sent.body.get("payment_intent_data[metadata][payhook_payment_id]"),
        Some(&id)
    );
    assert_eq!(sent.idempotency_key.as_deref(), Some(id.as_str()));

    let paid: Value = reqwest::Client::new()
        .post(format!("{}/_fake/pay/{session}", fake.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(paid["webhook"]["status"], 200, "{paid}");
    app.wait_for_count(
        &format!("SELECT count(*) AS n FROM payments WHERE id = '{id}' AND status = 'paid'"),
        1,
    )
    .await;
    let session_now: Value = reqwest::Client::new()
        .get(format!("{}/v1/checkout/sessions/{session}", fake.base_url))
        .bearer_auth(STRIPE_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let intent = session_now["payment_intent"].as_str().unwrap().to_owned();
    let refund = json!({ "id": "ch_session", "object": "charge", "amount": 2500, "amount_captured": 2500,
                         "amount_refunded": 1000, "refunded": false, "currency": "eur",
                         "payment_intent": intent, "status": "succeeded", "metadata": {} });
    app.deliver(&stripe_event(
        "evt_session_refund",
        "charge.refunded",
        now_unix(),
        refund,
    ))
    .await;
    app.wait_for_count(
        &format!("SELECT count(*) AS n FROM payments WHERE id = '{id}' AND status = 'partially_refunded'"),
        1,
    )
    .await;
    assert_eq!(
        app.count("SELECT count(*) AS n FROM payments").await,
        1,
        "no stray payment"
    );

    let unpaid: Value = create(
        &app,
        &json!({ "provider": "stripe", "amount": 900, "currency": "EUR" }),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let canceled: Value = app
        .client
        .post(format!(
            "{}/payments/{}/cancel",
            app.address,
            unpaid["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        canceled["status"], "canceled",
        "the session is expired at Stripe: {canceled}"
    );
}

async fn invalid_requests_name_the_field_and_store_nothing(backend: Backend) {
    let fake = FakeXendit::start(XENDIT_KEY).await;
    let app = xendit_app(backend, &fake).await;
    let mut with_sen = idr_order();
    with_sen["amount"] = json!(15_000_050);
    let mut no_currency = idr_order();
    no_currency.as_object_mut().unwrap().remove("currency");
    let mut bad_email = idr_order();
    bad_email["customer_email"] = json!("budi at example");
    for (body, field) in [
        (with_sen, "amount"),
        (no_currency, "currency"),
        (bad_email, "customer_email"),
    ] {
        let (status, error) = error_of(create(&app, &body, None).await).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(error["code"], "validation_failed");
        assert_eq!(error["field"], field, "{error}");
        assert!(error["message"].as_str().unwrap().starts_with(field), "{error}");
    }
    let malformed = app
        .client
        .post(format!("{}/payments", app.address))
        .header("content-type", "application/json")
        .body("{\"provider\":")
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(malformed).await;
    assert_eq!((status, error["code"].as_str()), (400, Some("malformed_json")));
    assert_eq!(app.count("SELECT count(*) AS n FROM payments").await, 0);
    assert!(fake.requests().is_empty(), "nothing reached the provider");
}

async fn unknown_disabled_and_unconfigured_providers_are_bad_requests(backend: Backend) {
    // Stripe is enabled for webhooks in every test app, but has no API key here.
    let app = spawn_app(backend).await;
    for (provider, code) in [
        ("paypal", "unknown_provider"),
        ("xendit", "provider_disabled"),
        ("stripe", "provider_disabled"),
    ] {
        let (status, error) = error_of(
            create(
                &app,
                &json!({ "provider": provider, "amount": 100, "currency": "USD" }),
                None,
            )
            .await,
        )
        .await;
        assert_eq!(
            (status, error["code"].as_str()),
            (400, Some(code)),
            "{provider}: {error}"
        );
    }
    assert_eq!(app.count("SELECT count(*) AS n FROM payments").await, 0);
}

async fn a_provider_failure_is_a_502_and_the_payment_is_marked_failed(backend: Backend) {
    let fake = FakeXendit::start(XENDIT_KEY).await;
    let app = xendit_app(backend, &fake).await;
    fake.fail_next(&[503]);
    let (status, error) = error_of(create(&app, &idr_order(), Some("order-77-try-1")).await).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (502, Some("provider_error")),
        "{error}"
    );
    assert!(error["message"].as_str().unwrap().contains("503"), "{error}");
    let id = error["payment_id"].as_str().unwrap();

    let payment: Value = app.get(&format!("/payments/{id}")).await.json().await.unwrap();
    assert_eq!(payment["status"], "failed");
    assert!(payment["failure_reason"].as_str().unwrap().contains("503"), "{payment}");
    assert_eq!(payment["history"][0]["to_status"], "failed");

    // The same key gets the same answer; a new key tries again.
    let (status, again) = error_of(create(&app, &idr_order(), Some("order-77-try-1")).await).await;
    assert_eq!((status, again["payment_id"].as_str()), (502, Some(id)));
    assert_eq!(fake.requests().len(), 1, "the failed key is not sent again");
    assert_eq!(
        create(&app, &idr_order(), Some("order-77-try-2"))
            .await
            .status()
            .as_u16(),
        201
    );
}

async fn an_idempotency_key_returns_the_first_payment(backend: Backend) {
    let fake = FakeXendit::start(XENDIT_KEY).await;
    let app = xendit_app(backend, &fake).await;
    let first = create(&app, &idr_order(), Some("order-77")).await;
    assert_eq!(first.status().as_u16(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();

    // Same request, keys reordered: the first payment again.
    let reordered: Value = serde_json::from_str(
        r#"{"metadata":{"cart":"c-9"},"description":"Order 77","customer_email":"budi@example.co.id",
            "merchant_ref":"order-77","currency":"IDR","amount":15000000,"provider":"xendit"}"#,
    )
    .unwrap();
    let again = create(&app, &reordered, Some("order-77")).await;
    assert_eq!(again.status().as_u16(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    for field in ["id", "status", "provider_ref", "checkout_url", "amount", "currency"] {
        assert_eq!(first[field], again[field], "{field}");
    }
    // Only hashes are kept: the replay carries no token, and the first one stays current.
    assert_eq!(again["client_token"], Value::Null);
    let token = first["client_token"].as_str().unwrap();
    assert_eq!(
        app.text("SELECT client_token_hash AS v FROM payments").await,
        Some(token_hash(token))
    );
    assert_eq!(app.count("SELECT count(*) AS n FROM payments").await, 1);
    assert_eq!(fake.requests().len(), 1, "the provider was asked once");

    let mut changed = idr_order();
    changed["amount"] = json!(20_000_000);
    let (status, error) = error_of(create(&app, &changed, Some("order-77")).await).await;
    assert_eq!((status, error["code"].as_str()), (422, Some("idempotency_key_reused")));
}

async fn a_repeat_while_the_first_waits_for_the_provider_is_a_conflict(backend: Backend) {
    let fake = FakeXendit::start(XENDIT_KEY).await;
    let app = xendit_app(backend, &fake).await;
    fake.stall(Duration::from_millis(1500));
    let first = {
        let (client, url) = (app.client.clone(), format!("{}/payments", app.address));
        tokio::spawn(async move {
            client
                .post(url)
                .header("Idempotency-Key", "slow-1")
                .json(&idr_order())
                .send()
                .await
                .unwrap()
        })
    };
    // The first has its row and is waiting for the (stalled) provider.
    app.wait_for_count("SELECT count(*) AS n FROM payments", 1).await;
    let (status, error) = error_of(create(&app, &idr_order(), Some("slow-1")).await).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (409, Some("idempotency_key_in_flight"))
    );
    assert_eq!(first.await.unwrap().status().as_u16(), 201);
    assert_eq!(create(&app, &idr_order(), Some("slow-1")).await.status().as_u16(), 201);
    assert_eq!(app.count("SELECT count(*) AS n FROM payments").await, 1);
}

async fn an_oversized_request_is_413_and_stores_nothing(backend: Backend) {
    let fake = FakeXendit::start(XENDIT_KEY).await;
    let app = spawn_app_with(
        backend,
        &[
            ("PAYHOOK__SERVER__MAX_BODY_BYTES", "1024"),
            ("PAYHOOK__PROVIDERS__XENDIT__ENABLED", "true"),
            ("PAYHOOK__PROVIDERS__XENDIT__CALLBACK_TOKEN", XENDIT_TOKEN),
            ("PAYHOOK__PROVIDERS__XENDIT__SECRET_KEY", XENDIT_KEY),
            ("PAYHOOK__PROVIDERS__XENDIT__API_BASE_URL", &fake.base_url),
        ],
        Vec::new(),
    )
    .await;
    let mut big = idr_order();
    big["description"] = json!("d".repeat(900));
    big["metadata"] = json!({ "notes": "n".repeat(900) });
    let (status, error) = error_of(create(&app, &big, None).await).await;
    assert_eq!((status, error["code"].as_str()), (413, Some("payload_too_large")));
    assert_eq!(app.count("SELECT count(*) AS n FROM payments").await, 0);
    assert!(fake.requests().is_empty());
}

/// Reads the stream until `needle` has arrived (10 s at most); returns all it read.
async fn read_until(stream: &mut reqwest::Response, needle: &str) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(needle) {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in time; got {seen:?}"))
            .unwrap()
            .expect("the stream ended");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    seen
}

async fn the_status_stream_follows_the_payment_for_its_client_token_only(backend: Backend) {
    let fake = FakeXendit::start(XENDIT_KEY).await;
    let app = xendit_app(backend, &fake).await;
    let created: Value = create(&app, &idr_order(), None).await.json().await.unwrap();
    let (id, token) = (
        created["id"].as_str().unwrap(),
        created["client_token"].as_str().unwrap(),
    );
    let url = |query: &str| format!("{}/payments/{id}/events{query}", app.address);

    for (query, status, code) in [
        (String::new(), 401, "missing_client_token"),
        (format!("?token={}", "0".repeat(32)), 401, "invalid_client_token"),
    ] {
        let (got, error) = error_of(app.client.get(url(&query)).send().await.unwrap()).await;
        assert_eq!((got, error["code"].as_str()), (status, Some(code)), "{query}");
    }
    let unknown = format!("{}/payments/{}/events?token={token}", app.address, uuid::Uuid::new_v4());
    assert_eq!(app.client.get(unknown).send().await.unwrap().status().as_u16(), 404);

    let mut stream = app.client.get(url(&format!("?token={token}"))).send().await.unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let first = read_until(&mut stream, "\n\n").await;
    assert!(first.starts_with("event: status\ndata: "), "{first}");
    assert!(first.contains("\"status\":\"pending\""), "{first}");

    let callback = serde_json::to_vec(&json!({
        "id": created["provider_ref"], "external_id": id, "user_id": "5f1e2d3c4b5a69788796a5b4",
        "status": "PAID", "amount": 150000, "paid_amount": 150000, "currency": "IDR",
        "payment_method": "BANK_TRANSFER", "payment_channel": "BCA", "paid_at": "2026-11-20T08:15:30.123Z",
        "metadata": { "app": "payhook" },
    }))
    .unwrap();
    assert_eq!(
        app.post_xendit(&callback, Some(XENDIT_TOKEN)).await.status().as_u16(),
        200
    );
    let next = read_until(&mut stream, "\"status\":\"paid\"").await;
    assert!(next.contains(&format!("\"payment_id\":\"{id}\"")), "{next}");
    // Paid settles the checkout: the stream ends, freeing its place.
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = stream.chunk().await.unwrap() {
            assert!(chunk.starts_with(b": heartbeat") || chunk.is_empty(), "{chunk:?}");
        }
    })
    .await;
    assert!(end.is_ok(), "the stream stayed open after a settling status");
}

/// The customer paid, but Xendit's callback never came (the fake sends none): the
/// reconciler asks Xendit, and its answer goes through the inbox and the state machine
/// like a callback, with the history reason `reconciled`.
async fn a_payment_whose_callback_never_came_is_settled_by_asking_the_provider(backend: Backend) {
    let fake = FakeXendit::start(XENDIT_KEY).await;
    let app = xendit_app_with(
        backend,
        &fake,
        &[
            ("PAYHOOK__RECONCILE__PENDING_AFTER_SECS", "0"),
            ("PAYHOOK__RECONCILE__INTERVAL_SECS", "1"),
        ],
    )
    .await;
    let created: Value = create(&app, &idr_order(), None).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let invoice = created["provider_ref"].as_str().unwrap().to_owned();
    fake.mark_paid(&invoice);

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let payment = loop {
        let payment: Value = app
            .client
            .get(format!("{}/payments/{id}", app.address))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if payment["status"] == "paid" {
            break payment;
        }
        assert!(std::time::Instant::now() < deadline, "never reconciled: {payment}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(payment["paid_amount"], 15_000_000);
    let history = payment["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["reason"], "reconciled");
    assert!(history[0]["event_id"]
        .as_str()
        .unwrap()
        .starts_with(&format!("reconcile:{id}:paid:")));
    // The finding is one inbox row, from the provider's answer, with its forensic row.
    assert_eq!(
        app.count("SELECT count(*) AS n FROM webhook_events WHERE event_type = 'reconciled'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM webhook_logs WHERE path = '/reconcile/xendit'")
            .await,
        1
    );
    let asked = fake
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(&invoice))
        .count();
    assert!(asked >= 1, "Xendit was asked");
}

/// `POST /admin/payments/{id}/reconcile` asks now, whatever the schedule (here: none
/// before an hour), answers what the provider says, and a difference is applied.
async fn an_operator_asks_the_provider_about_a_payment_now(backend: Backend) {
    const ADMIN: &str = "admin-token-for-reconcile-tests";
    let fake = FakeXendit::start(XENDIT_KEY).await;
    let app = xendit_app_with(
        backend,
        &fake,
        &[
            ("PAYHOOK__RECONCILE__PENDING_AFTER_SECS", "3600"),
            ("PAYHOOK__ADMIN__TOKEN", ADMIN),
        ],
    )
    .await;
    let created: Value = create(&app, &idr_order(), None).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let ask = |id: String| {
        app.client
            .post(format!("{}/admin/payments/{id}/reconcile", app.address))
            .bearer_auth(ADMIN)
            .send()
    };
    let unchanged: Value = ask(id.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(unchanged["drift"], false, "{unchanged}");
    assert_eq!(unchanged["provider_says"]["status"], "pending");

    fake.mark_paid(created["provider_ref"].as_str().unwrap());
    let answer = ask(id.clone()).await.unwrap();
    assert_eq!(answer.status().as_u16(), 202);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["held"]["status"], "pending");
    assert_eq!(answer["provider_says"]["status"], "paid");
    assert_eq!(answer["drift"], true);
    app.wait_for_count(
        &format!("SELECT count(*) AS n FROM payments WHERE id = '{id}' AND status = 'paid'"),
        1,
    )
    .await;

    let unknown = ask("6a1f8c0e-7d7b-4a47-9a3c-0c9b1f7e2d10".into()).await.unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    let anonymous = reqwest::Client::new()
        .post(format!("{}/admin/payments/{id}/reconcile", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
}

/// Two instances on one Postgres: each due payment is asked about once per round,
/// however many instances claim (counted at the fake provider).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_ask_about_each_due_payment_once() {
    if !postgres_available().await {
        return;
    }
    let fake = FakeXendit::start(XENDIT_KEY).await;
    let overrides = xendit_settings(
        &fake,
        &[
            // Due 2 s after creation, then not before 8 s: one check each in between.
            ("PAYHOOK__RECONCILE__PENDING_AFTER_SECS", "2"),
            ("PAYHOOK__RECONCILE__INTERVAL_SECS", "1"),
            ("PAYHOOK__RECONCILE__MAX_CALLS_PER_SECOND", "1000"),
        ],
    );
    let app = spawn_app_with(Backend::Postgres, &overrides, Vec::new()).await;
    let _other = app.another_instance(&overrides).await;
    let mut invoices = Vec::new();
    for n in 0..20 {
        let mut order = idr_order();
        order["merchant_ref"] = json!(format!("order-{n}"));
        let created: Value = create(&app, &order, None).await.json().await.unwrap();
        invoices.push(created["provider_ref"].as_str().unwrap().to_owned());
    }
    let asked = |invoice: &str| {
        fake.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with(invoice))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(7);
    while invoices.iter().any(|i| asked(i) == 0) {
        assert!(
            std::time::Instant::now() < deadline,
            "not every payment was asked about"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Two more rounds of both instances, still before the second check is due.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let counts: Vec<usize> = invoices.iter().map(|i| asked(i)).collect();
    assert!(counts.iter().all(|&n| n == 1), "calls per payment: {counts:?}");
}

/// 200 payments due at once and `reconcile.max_calls_per_second = 20`: the fake sees
/// the 200 checks spread over at least (200 - 1) / 20 s, and never more than 20 in any
/// second.
async fn checks_stay_under_the_providers_call_rate(backend: Backend) {
    let fake = FakeXendit::start(XENDIT_KEY).await;
    let app = xendit_app_with(
        backend,
        &fake,
        &[
            // First checks from 5 s after creation; the second not before 20 s.
            ("PAYHOOK__RECONCILE__PENDING_AFTER_SECS", "5"),
            ("PAYHOOK__RECONCILE__INTERVAL_SECS", "1"),
            ("PAYHOOK__RECONCILE__MAX_CALLS_PER_SECOND", "20"),
        ],
    )
    .await;
    for n in 0..200 {
        let mut order = idr_order();
        order["merchant_ref"] = json!(format!("order-{n}"));
        assert_eq!(create(&app, &order, None).await.status().as_u16(), 201);
    }
    let checks = || -> Vec<std::time::Instant> {
        fake.requests()
            .into_iter()
            .filter(|r| r.method == "GET")
            .map(|r| r.at)
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while checks().len() < 200 {
        assert!(std::time::Instant::now() < deadline, "only {} checks", checks().len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut at = checks();
    at.sort();
    assert_eq!(at.len(), 200, "each payment asked once");
    let spread = at[199] - at[0];
    assert!(spread >= Duration::from_millis(9_900), "200 checks in {spread:?}");
    let busiest = at
        .iter()
        .map(|start| {
            at.iter()
                .filter(|t| **t >= *start && **t < *start + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap();
    assert!(busiest <= 20, "{busiest} checks in one second");
}

/// `GET /payments`: newest first, `limit` a page, `next_cursor` to the next one (null on
/// the last), filters; bad parameters are 400 `invalid_query`.
async fn payments_are_listed_newest_first_a_page_at_a_time(backend: Backend) {
    let fake = FakeXendit::start(XENDIT_KEY).await;
    let app = xendit_app(backend, &fake).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let mut order = idr_order();
        order["merchant_ref"] = json!(format!("order-list-{n}"));
        let created: Value = create(&app, &order, None).await.json().await.unwrap();
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let list = |query: &str| app.client.get(format!("{}/payments?{query}", app.address)).send();
    let first: Value = list("limit=2").await.unwrap().json().await.unwrap();
    let listed = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(listed(&first), vec![ids[2].clone(), ids[1].clone()]);
    assert!(first["data"][0].get("history").is_none(), "lists leave history out");
    let cursor = first["next_cursor"].as_str().unwrap();
    let second: Value = list(&format!("limit=2&cursor={cursor}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed(&second), vec![ids[0].clone()]);
    assert_eq!(second["next_cursor"], Value::Null);

    let one: Value = list("merchant_ref=order-list-1&provider=xendit&status=pending")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed(&one), vec![ids[1].clone()]);
    let none: Value = list("status=paid").await.unwrap().json().await.unwrap();
    assert_eq!(none["data"], json!([]));

    for bad in [
        "limit=0",
        "limit=101",
        "cursor=nonsense",
        "status=sleeping",
        "provider=paypal",
        "subscription_id=sub_1",
    ] {
        let (status, error) = error_of(list(bad).await.unwrap()).await;
        assert_eq!((status, error["code"].as_str()), (400, Some("invalid_query")), "{bad}");
    }
}

/// The reconciler finds a payment paid before its callback comes; then the callback
/// comes: one history entry (`reconciled`), whichever came first.
async fn a_finding_and_a_callback_reporting_the_same_payment_make_one_history_entry(backend: Backend) {
    const ADMIN: &str = "admin-token-for-reconcile-tests";
    let fake = FakeXendit::start(XENDIT_KEY).await;
    let app = xendit_app_with(
        backend,
        &fake,
        &[
            ("PAYHOOK__RECONCILE__PENDING_AFTER_SECS", "3600"),
            ("PAYHOOK__ADMIN__TOKEN", ADMIN),
        ],
    )
    .await;
    let created: Value = create(&app, &idr_order(), None).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let invoice = created["provider_ref"].as_str().unwrap().to_owned();
    fake.mark_paid(&invoice);
    let asked = app
        .client
        .post(format!("{}/admin/payments/{id}/reconcile", app.address))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status().as_u16(), 202);
    app.wait_for_count(
        &format!("SELECT count(*) AS n FROM payments WHERE id = '{id}' AND status = 'paid'"),
        1,
    )
    .await;

    let callback = serde_json::to_vec(&json!({
        "id": invoice, "external_id": id, "user_id": "5f1e2d3c4b5a69788796a5b4", "status": "PAID",
        "amount": 150000, "paid_amount": 150000, "currency": "IDR", "payment_method": "BANK_TRANSFER",
        "payment_channel": "BCA", "paid_at": "2026-11-20T08:15:30.123Z", "metadata": { "app": "payhook" },
    }))
    .unwrap();
    assert_eq!(
        app.post_xendit(&callback, Some(XENDIT_TOKEN)).await.status().as_u16(),
        200
    );
    app.wait_for_count("SELECT count(*) AS n FROM webhook_events WHERE status = 'processed'", 2)
        .await;
    let payment: Value = app
        .client
        .get(format!("{}/payments/{id}", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let history = payment["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["reason"], "reconciled");
}

/// A payment row as a process killed between asking Xendit and recording the answer
/// leaves it: no provider reference, opened `opened`, due for a check now.
async fn interrupted_creation(app: &TestApp, opened: chrono::DateTime<chrono::Utc>) -> payhook_domain::PaymentId {
    let id = payhook_domain::PaymentId::from_uuid(uuid::Uuid::new_v4());
    let new = payhook_domain::NewPayment {
        account: String::new(),
        id,
        provider: payhook_domain::Provider::Xendit,
        provider_ref: None,
        merchant_ref: Some("order-interrupted".into()),
        amount: payhook_domain::Money::new(15_000_000, payhook_domain::Currency::parse("IDR").unwrap()).unwrap(),
        customer_email: None,
        description: None,
        metadata: json!({}),
        created_at: opened,
        client_token_hash: None,
        callback_token_hash: None,
        idempotency: None,
        next_reconcile_at: Some(chrono::Utc::now()),
    };
    app.stores.payments.open_payment(&new).await.unwrap();
    id
}

async fn payment_json(app: &TestApp, id: &str) -> Value {
    app.client
        .get(format!("{}/payments/{id}", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Two creations interrupted two minutes ago. Xendit had made the first one's invoice
/// (and the customer paid it): the reconciler finds it by `external_id`, records it and
/// settles the payment. Xendit has nothing for the second: it fails with history reason
/// `creation_interrupted`, and `payment.failed` is published.
async fn interrupted_creations_are_adopted_if_the_provider_made_them_else_failed(backend: Backend) {
    let fake = FakeXendit::start(XENDIT_KEY).await;
    let app = xendit_app_with(backend, &fake, &[("PAYHOOK__RECONCILE__INTERVAL_SECS", "1")]).await;
    let mut events = app.events.resubscribe();
    let opened = chrono::Utc::now() - chrono::Duration::minutes(2);
    let made = interrupted_creation(&app, opened).await;
    let never = interrupted_creation(&app, opened).await;
    let invoice: Value = reqwest::Client::new()
        .post(format!("{}/v2/invoices", fake.base_url))
        .basic_auth(XENDIT_KEY, Some(""))
        .json(&json!({ "external_id": made.to_string(), "amount": 150000, "currency": "IDR" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let invoice = invoice["id"].as_str().unwrap().to_owned();
    fake.mark_paid(&invoice);

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (adopted, failed) = loop {
        let adopted = payment_json(&app, &made.to_string()).await;
        let failed = payment_json(&app, &never.to_string()).await;
        if adopted["status"] == "paid" && failed["status"] == "failed" {
            break (adopted, failed);
        }
        assert!(std::time::Instant::now() < deadline, "not resolved: {adopted} {failed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(adopted["provider_ref"], invoice.as_str());
    assert_eq!(
        adopted["checkout_url"],
        format!("{}/web/{invoice}", fake.base_url),
        "the invoice's checkout is recorded"
    );
    let history = adopted["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["reason"], "reconciled");

    let history = failed["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["reason"], "creation_interrupted");
    assert_eq!(history[0]["event_id"], format!("interrupted:{never}"));
    let published = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let message = events.recv().await.unwrap();
            if message.topic == "payment.failed" && message.payload["payment_id"] == never.to_string() {
                return message;
            }
        }
    })
    .await;
    assert!(published.is_ok(), "payment.failed was not published");

    let lookups: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == "/v2/invoices")
        .map(|r| r.body["query"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(lookups.len(), 2, "each looked up once: {lookups:?}");
    assert!(lookups.contains(&format!("external_id={made}")));
    assert!(lookups.contains(&format!("external_id={never}")));
}

async fn cancel(app: &TestApp, id: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/payments/{id}/cancel", app.address))
        .send()
        .await
        .unwrap()
}

/// `POST /payments/{id}/cancel` expires the Xendit invoice, and the payment becomes
/// `canceled` (history reason `canceled_by_merchant`, `payment.canceled` published);
/// asking again answers the same. The customer can no longer pay it.
async fn a_pending_payment_is_canceled_once_the_provider_agrees(backend: Backend) {
    let fake = FakeXendit::start(XENDIT_KEY).await;
    let app = xendit_app(backend, &fake).await;
    let mut events = app.events.resubscribe();
    let created: Value = create(&app, &idr_order(), None).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    let invoice = created["provider_ref"].as_str().unwrap();

    let answer = cancel(&app, id).await;
    assert_eq!(answer.status().as_u16(), 200);
    let canceled: Value = answer.json().await.unwrap();
    assert_eq!(canceled["status"], "canceled", "{canceled}");
    let history = canceled["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["reason"], "canceled_by_merchant");
    assert_eq!(history[0]["event_id"], format!("cancel:{id}"));
    let expired_at_xendit = fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == format!("/invoices/{invoice}/expire!"))
        .count();
    assert_eq!(expired_at_xendit, 1);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM webhook_logs WHERE method = 'POST' AND path = '/cancel/xendit'")
            .await,
        1,
        "the forensic row says what payhook asked"
    );
    let published = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let m = events.recv().await.unwrap();
            if m.topic == "payment.canceled" && m.payload["payment_id"] == id {
                return m;
            }
        }
    })
    .await;
    assert!(published.is_ok(), "payment.canceled was not published");

    let again = cancel(&app, id).await;
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["status"], "canceled");
    let paying: reqwest::Response = reqwest::Client::new()
        .post(format!("{}/_fake/pay/{invoice}", fake.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(paying.status().as_u16(), 400, "Xendit no longer takes the payment");
}

/// The customer paid, but the callback has not arrived: Xendit refuses to expire a
/// paid invoice, so the cancel answers 409 `payment_not_cancelable`, and what Xendit
/// says is stored, so the payment becomes paid.
async fn a_payment_paid_at_the_provider_is_not_canceled(backend: Backend) {
    let fake = FakeXendit::start(XENDIT_KEY).await;
    let app = xendit_app(backend, &fake).await;
    let created: Value = create(&app, &idr_order(), None).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    fake.mark_paid(created["provider_ref"].as_str().unwrap());

    let (status, error) = error_of(cancel(&app, id).await).await;
    assert_eq!(status, 409);
    assert_eq!(error["code"], "payment_not_cancelable", "{error}");
    app.wait_for_count(
        &format!("SELECT count(*) AS n FROM payments WHERE id = '{id}' AND status = 'paid'"),
        1,
    )
    .await;
    let (status, error) = error_of(cancel(&app, id).await).await;
    assert_eq!((status, error["code"].as_str()), (409, Some("payment_not_cancelable")));
}

/// 404 for an unknown payment, 401 without a key, 502 when the provider is down
/// (and the payment stays pending), 422 `cancel_not_supported` for a provider whose
/// API cannot cancel.
async fn cancel_errors_follow_the_contract(backend: Backend) {
    let fake = FakeXendit::start(XENDIT_KEY).await;
    let app = xendit_app(backend, &fake).await;
    let (status, error) = error_of(cancel(&app, "6a1f8c0e-7d7b-4a47-9a3c-0c9b1f7e2d10").await).await;
    assert_eq!((status, error["code"].as_str()), (404, Some("payment_not_found")));
    let (status, error) = error_of(cancel(&app, "not-a-uuid").await).await;
    assert_eq!((status, error["code"].as_str()), (404, Some("payment_not_found")));

    let created: Value = create(&app, &idr_order(), None).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    let anonymous = reqwest::Client::new()
        .post(format!("{}/payments/{id}/cancel", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);

    fake.fail_next(&[503]);
    let (status, error) = error_of(cancel(&app, id).await).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (502, Some("provider_error")),
        "{error}"
    );
    let payment: Value = app.get(&format!("/payments/{id}")).await.json().await.unwrap();
    assert_eq!(payment["status"], "pending");

    // A JunglePay payment (its API has no cancel), set up as POST /payments would.
    let jp = payhook_domain::PaymentId::from_uuid(uuid::Uuid::new_v4());
    app.stores
        .payments
        .create_payment(&payhook_domain::NewPayment {
            account: String::new(),
            id: jp,
            provider: payhook_domain::Provider::Junglepay,
            provider_ref: Some("282".into()),
            merchant_ref: None,
            amount: payhook_domain::Money::new(10_000, payhook_domain::Currency::parse("BRL").unwrap()).unwrap(),
            customer_email: None,
            description: None,
            metadata: json!({}),
            created_at: chrono::Utc::now(),
            client_token_hash: None,
            callback_token_hash: None,
            idempotency: None,
            next_reconcile_at: None,
        })
        .await
        .unwrap();
    let (status, error) = error_of(cancel(&app, &jp.to_string()).await).await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["code"], "cancel_not_supported");
}

/// A Stripe app against `fake` (webhooks from the fake reach the app), and a paid
/// payment of 2,500 EUR cents: its id and PaymentIntent.
async fn paid_stripe_payment(backend: Backend, fake: &FakeStripe) -> (TestApp, String, String) {
    paid_stripe_payment_with(backend, fake, &[]).await
}

/// [`paid_stripe_payment`], with `extra` settings on top.
async fn paid_stripe_payment_with(
    backend: Backend,
    fake: &FakeStripe,
    extra: &[(&str, &str)],
) -> (TestApp, String, String) {
    let mut settings = vec![
        ("PAYHOOK__PROVIDERS__STRIPE__API_KEY", STRIPE_KEY),
        ("PAYHOOK__PROVIDERS__STRIPE__API_BASE_URL", fake.base_url.as_str()),
    ];
    settings.extend_from_slice(extra);
    let app = spawn_app_with(backend, &settings, Vec::new()).await;
    fake.send_webhooks_to(&format!("{}/webhooks/stripe", app.address), STRIPE_SECRET);
    let created: Value = create(
        &app,
        &json!({ "provider": "stripe", "amount": 2_500, "currency": "EUR" }),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let intent = created["provider_ref"].as_str().unwrap().to_owned();
    reqwest::Client::new()
        .post(format!("{}/_fake/pay/{intent}", fake.base_url))
        .send()
        .await
        .unwrap();
    app.wait_for_count(
        &format!("SELECT count(*) AS n FROM payments WHERE id = '{id}' AND status = 'paid'"),
        1,
    )
    .await;
    (app, id, intent)
}

/// `GET /refunds/{id}` of a refund as the API answered it.
async fn refund_view(app: &TestApp, refund: &Value) -> Value {
    app.get(&format!("/refunds/{}", refund["id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap()
}

async fn refund(app: &TestApp, id: &str, body: Value, key: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .post(format!("{}/payments/{id}/refunds", app.address))
        .json(&body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    req.send().await.unwrap()
}

/// 1,000 refunded, then the rest: each `pending` until Stripe's `refund.updated`
/// settles it; the payment ends `refunded` with `refunded_amount` the sum of the two,
/// and `refund.succeeded` is published for each.
async fn a_stripe_payment_is_refunded_in_part_then_in_full_settled_by_webhooks(backend: Backend) {
    let fake = FakeStripe::start(STRIPE_KEY).await;
    let (app, id, intent) = paid_stripe_payment(backend, &fake).await;
    let mut events = app.events.resubscribe();

    let first = refund(
        &app,
        &id,
        json!({ "amount": 1_000, "reason": "requested_by_customer" }),
        Some("r-1"),
    )
    .await;
    assert_eq!(first.status().as_u16(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(
        (first["status"].as_str(), first["amount"].as_i64()),
        (Some("pending"), Some(1_000))
    );
    assert_eq!(first["origin"], "merchant");
    let sent = fake.requests().into_iter().rfind(|r| r.path == "/v1/refunds").unwrap();
    assert_eq!(sent.body.get("payment_intent"), Some(&intent));
    assert_eq!(sent.body.get("amount").map(String::as_str), Some("1000"));
    assert_eq!(
        sent.body.get("reason").map(String::as_str),
        Some("requested_by_customer")
    );
    assert_eq!(sent.idempotency_key.as_deref(), first["id"].as_str());
    let again: Value = refund(&app, &id, json!({ "amount": 1_000 }), Some("r-1"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["id"], first["id"], "the same key answers the first refund");

    let payment: Value = app.get(&format!("/payments/{id}")).await.json().await.unwrap();
    assert_eq!(
        (payment["status"].as_str(), payment["refunded_amount"].as_i64()),
        (Some("paid"), Some(0))
    );

    let settle = |re: String| {
        let base = fake.base_url.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{base}/_fake/refunds/{re}/succeeded"))
                .send()
                .await
                .unwrap()
        }
    };
    settle(first["provider_ref"].as_str().unwrap().to_owned()).await;
    app.wait_for_count(
        &format!("SELECT count(*) AS n FROM payments WHERE id = '{id}' AND status = 'partially_refunded' AND refunded_amount = 1000"),
        1,
    )
    .await;
    let rest: Value = refund(&app, &id, json!({}), None).await.json().await.unwrap();
    assert_eq!(rest["amount"], 1_500, "the rest by default");
    settle(rest["provider_ref"].as_str().unwrap().to_owned()).await;
    app.wait_for_count(
        &format!(
            "SELECT count(*) AS n FROM payments WHERE id = '{id}' AND status = 'refunded' AND refunded_amount = 2500"
        ),
        1,
    )
    .await;
    let listed: Value = app
        .client
        .get(format!("{}/payments/{id}/refunds", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let statuses: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["succeeded", "succeeded"]);
    let one = refund_view(&app, &rest).await;
    assert_eq!(one["status"], "succeeded");
    let payment: Value = app.get(&format!("/payments/{id}")).await.json().await.unwrap();
    assert_eq!(payment["refunds"].as_array().unwrap().len(), 2);

    let mut published = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while published.len() < 2 {
            let m = events.recv().await.unwrap();
            if m.topic == "refund.succeeded" {
                published.push(m.payload["amount"].as_i64().unwrap());
            }
        }
    })
    .await;
    published.sort();
    assert_eq!(published, vec![1_000, 1_500]);
    let (status, error) = error_of(refund(&app, &id, json!({}), None).await).await;
    assert_eq!((status, error["code"].as_str()), (409, Some("payment_not_refundable")));
}

/// Twenty refunds of 200 at once on a payment of 2,500: twelve are made, the others
/// refused (422), and what was refunded never exceeds what was paid.
async fn twenty_concurrent_refunds_never_exceed_what_was_paid(backend: Backend) {
    let fake = FakeStripe::start(STRIPE_KEY).await;
    let (app, id, _) = paid_stripe_payment(backend, &fake).await;
    let asks = (0..20).map(|_| refund(&app, &id, json!({ "amount": 200 }), None));
    let answers = futures_util::future::join_all(asks).await;
    let codes: Vec<u16> = answers.iter().map(|a| a.status().as_u16()).collect();
    let made = codes.iter().filter(|c| **c == 201).count();
    assert_eq!(made, 12, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 201 || *c == 422), "{codes:?}");
    let asked = fake.requests().iter().filter(|r| r.path == "/v1/refunds").count();
    assert_eq!(asked, 12, "only reserved refunds reach Stripe");
}

/// 404 unknown payment, 409 not paid, 422 more than is left or a bad body, 422 for a
/// provider payhook cannot refund through, 502 when Stripe fails (a failed refund).
async fn refund_errors_follow_the_contract(backend: Backend) {
    let fake = FakeStripe::start(STRIPE_KEY).await;
    let (app, id, _) = paid_stripe_payment(backend, &fake).await;
    let (status, error) = error_of(refund(&app, "6a1f8c0e-7d7b-4a47-9a3c-0c9b1f7e2d10", json!({}), None).await).await;
    assert_eq!((status, error["code"].as_str()), (404, Some("payment_not_found")));
    let (status, error) = error_of(refund(&app, &id, json!({ "amount": 2_501 }), None).await).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (422, Some("refund_exceeds_available"))
    );
    for bad in [
        json!({ "amount": 0 }),
        json!({ "amount": "5" }),
        json!({ "amont": 5 }),
        json!({ "reason": "" }),
    ] {
        let (status, error) = error_of(refund(&app, &id, bad.clone(), None).await).await;
        assert_eq!(
            (status, error["code"].as_str()),
            (422, Some("validation_failed")),
            "{bad}"
        );
    }
    fake.fail_next(&[402]);
    let (status, error) = error_of(refund(&app, &id, json!({ "amount": 100 }), None).await).await;
    assert_eq!((status, error["code"].as_str()), (502, Some("provider_error")));
    let failed: Value = app
        .client
        .get(format!(
            "{}/refunds/{}",
            app.address,
            error["refund_id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(failed["status"], "failed");

    let unpaid: Value = create(
        &app,
        &json!({ "provider": "stripe", "amount": 900, "currency": "EUR" }),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let (status, error) = error_of(refund(&app, unpaid["id"].as_str().unwrap(), json!({}), None).await).await;
    assert_eq!((status, error["code"].as_str()), (409, Some("payment_not_refundable")));

    let (status, error) = error_of(
        app.client
            .get(format!("{}/refunds/6a1f8c0e-7d7b-4a47-9a3c-0c9b1f7e2d10", app.address))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, error["code"].as_str()), (404, Some("refund_not_found")));
}

/// Xendit: the refund goes to its Refunds API, stays pending until Xendit's
/// `refund.succeeded` callback, which settles it and the payment's refunded total.
async fn a_xendit_payment_is_refunded_and_settled_by_its_refund_callback(backend: Backend) {
    let fake = FakeXendit::start(XENDIT_KEY).await;
    let app = xendit_app(backend, &fake).await;
    fake.send_callbacks_to(&format!("{}/webhooks/xendit", app.address), XENDIT_TOKEN);
    let created: Value = create(&app, &idr_order(), None).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let invoice = created["provider_ref"].as_str().unwrap().to_owned();
    reqwest::Client::new()
        .post(format!("{}/_fake/pay/{invoice}", fake.base_url))
        .send()
        .await
        .unwrap();
    app.wait_for_count(
        &format!("SELECT count(*) AS n FROM payments WHERE id = '{id}' AND status = 'paid'"),
        1,
    )
    .await;

    let answer = refund(&app, &id, json!({ "amount": 5_000_000 }), None).await;
    assert_eq!(answer.status().as_u16(), 201);
    let made: Value = answer.json().await.unwrap();
    assert_eq!(made["status"], "pending");
    let rfd = made["provider_ref"].as_str().unwrap().to_owned();
    let settled: Value = reqwest::Client::new()
        .post(format!("{}/_fake/refunds/{rfd}/SUCCEEDED", fake.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(settled["callback"]["status"], 200, "{settled}");
    app.wait_for_count(
        &format!(
            "SELECT count(*) AS n FROM payments WHERE id = '{id}' AND status = 'partially_refunded' AND refunded_amount = 5000000"
        ),
        1,
    )
    .await;
    let shown = refund_view(&app, &made).await;
    assert_eq!(shown["status"], "succeeded");
}

/// A refund Stripe settles without its webhook reaching payhook: the reconciler reads
/// the refund back and settles it through the inbox (`refund.succeeded` published, the
/// payment `partially_refunded`). A refund Stripe never answered (a 503) is sent again
/// under the same id, and Stripe makes it once.
async fn a_refund_whose_webhook_never_came_is_settled_by_asking_stripe(backend: Backend) {
    let fake = FakeStripe::start(STRIPE_KEY).await;
    let (app, id, _intent) = paid_stripe_payment_with(
        backend,
        &fake,
        &[
            ("PAYHOOK__RECONCILE__PENDING_AFTER_SECS", "0"),
            ("PAYHOOK__RECONCILE__INTERVAL_SECS", "1"),
        ],
    )
    .await;
    let mut events = app.events.resubscribe();
    let made: Value = refund(&app, &id, json!({ "amount": 1_000 }), None)
        .await
        .json()
        .await
        .unwrap();
    let re = made["provider_ref"].as_str().unwrap().to_owned();
    fake.set_refund_status(&re, "succeeded");
    app.wait_for_count(
        &format!("SELECT count(*) AS n FROM payments WHERE id = '{id}' AND status = 'partially_refunded' AND refunded_amount = 1000"),
        1,
    )
    .await;
    let one = refund_view(&app, &made).await;
    assert_eq!(one["status"], "succeeded");
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.method == "GET" && r.path == format!("/v1/refunds/{re}")),
        "Stripe was asked about the refund"
    );
    let finding = format!("refund-check:{}:succeeded", made["id"].as_str().unwrap());
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) AS n FROM webhook_events WHERE event_id = '{finding}' AND event_type = 'reconciled'"
        ))
        .await,
        1
    );
    let published = loop {
        let message = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("refund.succeeded is published")
            .unwrap();
        if message.topic == "refund.succeeded" {
            break message;
        }
    };
    assert_eq!(published.payload["refund_id"], made["id"]);

    // Stripe fails the next request: the refund stays pending without Stripe's id,
    // and the reconciler asks again under the same idempotency key.
    fake.fail_next(&[503]);
    let lost = refund(&app, &id, json!({ "amount": 500 }), None).await;
    assert_eq!(lost.status().as_u16(), 502);
    let lost: Value = lost.json().await.unwrap();
    let lost_id = lost["error"]["refund_id"].as_str().unwrap().to_owned();
    app.wait_for_count(
        &format!("SELECT count(*) AS n FROM refunds WHERE id = '{lost_id}' AND provider_ref IS NOT NULL"),
        1,
    )
    .await;
    let keys: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/v1/refunds")
        .filter_map(|r| r.idempotency_key)
        .filter(|k| *k == lost_id)
        .collect();
    assert!(keys.len() >= 2, "sent again under its own id: {keys:?}");
    assert_eq!(
        fake.refund_count(),
        2,
        "Stripe made the second refund once, however often it was asked"
    );
}
