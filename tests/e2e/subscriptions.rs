//! Subscriptions end to end, through the real server on both stores: on Xendit, where
//! payhook runs the schedule (its clock moved with `POST /admin/clock`, the scheduler
//! run with `POST /admin/subscriptions/run`: a test clock, no sleeps for time to pass);
//! on Stripe, where a Checkout Session starts it and Stripe's events drive it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payhook_e2e::*;
use payhook_testkit::fake_stripe::FakeStripe;
use payhook_testkit::fake_xendit::FakeXendit;
use serde_json::{json, Value};
use std::time::Duration;

on_every_store!(
    a_xendit_subscription_activates_renews_once_and_ends_at_its_period_end,
    an_unpaid_xendit_renewal_lapses_expires_and_comes_back_when_paid,
    subscription_errors_follow_the_contract,
    a_stripe_subscription_starts_at_checkout_and_follows_stripes_events,
    fifty_concurrent_duplicate_invoice_paid_events_make_one_renewal,
    a_late_created_incomplete_after_updated_active_in_the_same_second_leaves_active,
    without_the_mirror_stripes_subscription_events_still_drive_subscriptions,
);

const XENDIT_KEY: &str = "xnd_development_e2e_secret_key";
const XENDIT_TOKEN: &str = "xnd_callback_token_for_e2e_0123456789";
const STRIPE_KEY: &str = "sk_test_e2e_key";
const ADMIN: &str = "admin-token-for-subscription-tests";

async fn xendit_app(backend: Backend, fake: &FakeXendit) -> TestApp {
    let app = spawn_app_with(
        backend,
        &[
            ("PAYHOOK__PROVIDERS__XENDIT__ENABLED", "true"),
            ("PAYHOOK__PROVIDERS__XENDIT__CALLBACK_TOKEN", XENDIT_TOKEN),
            ("PAYHOOK__PROVIDERS__XENDIT__SECRET_KEY", XENDIT_KEY),
            ("PAYHOOK__PROVIDERS__XENDIT__API_BASE_URL", fake.base_url.as_str()),
            ("PAYHOOK__ADMIN__TOKEN", ADMIN),
            ("PAYHOOK__ADMIN__TIME_TRAVEL", "true"),
            // The scheduler runs when the test asks (`POST /admin/subscriptions/run`).
            ("PAYHOOK__RECONCILE__INTERVAL_SECS", "86400"),
        ],
        Vec::new(),
    )
    .await;
    fake.send_callbacks_to(&format!("{}/webhooks/xendit", app.address), XENDIT_TOKEN);
    app
}

async fn stripe_app(backend: Backend, fake: &FakeStripe) -> TestApp {
    let app = spawn_app_with(
        backend,
        &[
            ("PAYHOOK__PROVIDERS__STRIPE__API_KEY", STRIPE_KEY),
            ("PAYHOOK__PROVIDERS__STRIPE__API_BASE_URL", fake.base_url.as_str()),
            ("PAYHOOK__PROVIDERS__STRIPE__SUCCESS_URL", "https://shop.example/thanks"),
            ("PAYHOOK__ADMIN__TOKEN", ADMIN),
        ],
        Vec::new(),
    )
    .await;
    fake.send_webhooks_to(&format!("{}/webhooks/stripe", app.address), STRIPE_SECRET);
    app
}

async fn post(app: &TestApp, path: &str, body: &Value, key: Option<&str>) -> (u16, Value, bool) {
    let mut req = app.client.post(format!("{}{path}", app.address)).json(body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    let res = req.send().await.unwrap();
    let replayed = res.headers().get("idempotent-replayed").is_some();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null), replayed)
}

async fn admin(app: &TestApp, path: &str, body: Value) -> Value {
    let res = reqwest::Client::new()
        .post(format!("{}{path}", app.address))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200, "{path}");
    res.json().await.unwrap()
}

/// Moves payhook's clock to `at` (forward only) and runs the scheduler once.
async fn run_scheduler_at(app: &TestApp, at: chrono::DateTime<chrono::Utc>) {
    let now: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(admin(app, "/admin/clock", json!({ "advance_secs": 0 })).await["now"].clone()).unwrap();
    // Whole seconds, rounded up: the clock lands at `at` or just after it.
    let ahead = ((at - now).num_milliseconds() + 999).div_euclid(1000).max(0);
    admin(app, "/admin/clock", json!({ "advance_secs": ahead })).await;
    admin(app, "/admin/subscriptions/run", json!({})).await;
}

async fn subscription(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/subscriptions/{id}")).await.json().await.unwrap()
}

/// Polls `GET /subscriptions/{id}` until `done` holds (the worker applies callbacks a
/// moment after they are acknowledged).
async fn wait_for(app: &TestApp, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let s = subscription(app, id).await;
        if done(&s) {
            return s;
        }
        assert!(std::time::Instant::now() < deadline, "never {what}: {s:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `POST` to a fake provider's own route (`/_fake/pay/…`): what its customer did.
async fn fake_call(base_url: &str, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base_url}{path}"))
        .send()
        .await
        .unwrap()
}

fn at(value: &Value) -> chrono::DateTime<chrono::Utc> {
    serde_json::from_value(value.clone()).unwrap()
}

async fn monthly_plan(app: &TestApp, code: &str, currency: &str, amount: i64) -> Value {
    let (status, plan, _) = post(
        app,
        "/plans",
        &json!({ "code": code, "name": "Pro", "amount": amount, "currency": currency, "interval": "month" }),
        None,
    )
    .await;
    assert_eq!(status, 201, "{plan}");
    plan
}

async fn topics(app: &TestApp) -> Vec<String> {
    app.texts("SELECT topic AS v FROM outbox WHERE topic LIKE 'subscription.%' ORDER BY id")
        .await
}

async fn a_xendit_subscription_activates_renews_once_and_ends_at_its_period_end(backend: Backend) {
    let fake = FakeXendit::start(XENDIT_KEY).await;
    let app = xendit_app(backend, &fake).await;
    monthly_plan(&app, "pro-idr", "IDR", 9_900_000).await;
    let body = json!({ "plan": "pro-idr", "provider": "xendit", "customer_ref": "user-42",
        "customer_email": "budi@example.co.id", "metadata": { "seat": 1 } });
    let (status, opened, replayed) = post(&app, "/subscriptions", &body, Some("sub-user-42")).await;
    assert_eq!(status, 201, "{opened}");
    assert!(!replayed);
    let id = opened["id"].as_str().unwrap().to_owned();
    assert_eq!(opened["status"], "pending");
    assert_eq!(opened["access"], false);
    let invoice = opened["payment"]["provider_ref"].as_str().unwrap().to_owned();
    assert!(opened["payment"]["checkout_url"].as_str().unwrap().contains(&invoice));
    assert!(opened["payment"]["client_token"].is_string());
    // The same key: the same subscription, and no second invoice at Xendit.
    let (status, again, replayed) = post(&app, "/subscriptions", &body, Some("sub-user-42")).await;
    assert_eq!((status, replayed), (201, true));
    assert_eq!(again["id"], opened["id"]);
    assert_eq!(fake.invoices().len(), 1);

    // The customer pays: Xendit calls back, the worker activates the subscription.
    let paid = fake_call(&fake.base_url, &format!("/_fake/pay/{invoice}")).await;
    assert_eq!(paid.status().as_u16(), 200);
    let active = wait_for(&app, &id, "active", |s| s["status"] == "active").await;
    assert_eq!(active["access"], true);
    let end = at(&active["current_period_end"]);
    assert_eq!(end, at(&active["current_period_start"]) + chrono::Months::new(1));
    let listed: Value = app
        .get("/subscriptions?customer_ref=user-42&status=active")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"][0]["id"], id.as_str());

    // Four days before the end: nothing; three days before: the renewal, once.
    run_scheduler_at(&app, end - chrono::Duration::hours(96)).await;
    assert_eq!(fake.invoices().len(), 1);
    run_scheduler_at(&app, end - chrono::Duration::hours(71)).await;
    run_scheduler_at(&app, end - chrono::Duration::hours(70)).await;
    assert_eq!(fake.invoices().len(), 2, "one renewal invoice");
    let payments: Value = app
        .get(&format!("/payments?subscription_id={id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(payments["data"].as_array().unwrap().len(), 2);
    let renewal = payments["data"][0]["provider_ref"].as_str().unwrap().to_owned();
    let due = app
        .text("SELECT CAST(payload AS TEXT) AS v FROM outbox WHERE topic = 'subscription.renewal_due'")
        .await
        .unwrap();
    let due: Value = serde_json::from_str(&due).unwrap();
    assert!(due["checkout_url"].as_str().unwrap().contains(&renewal), "{due}");
    assert_eq!(due["subscription_id"], id.as_str());

    // Paid early: the next period runs from the old end.
    fake_call(&fake.base_url, &format!("/_fake/pay/{renewal}")).await;
    let renewed = wait_for(&app, &id, "renewed", |s| {
        s["current_period_start"] != active["current_period_start"]
    })
    .await;
    assert_eq!(at(&renewed["current_period_start"]), end);
    assert_eq!(at(&renewed["current_period_end"]), end + chrono::Months::new(1));

    // Cancel at the period's end: access until then, canceled after.
    let (status, canceling, _) = post(
        &app,
        &format!("/subscriptions/{id}/cancel"),
        &json!({ "at_period_end": true }),
        None,
    )
    .await;
    assert_eq!(status, 200, "{canceling}");
    assert_eq!(
        (
            canceling["status"].as_str(),
            canceling["cancel_at_period_end"].as_bool()
        ),
        (Some("active"), Some(true))
    );
    let new_end = at(&renewed["current_period_end"]);
    run_scheduler_at(&app, new_end - chrono::Duration::hours(1)).await;
    assert_eq!(fake.invoices().len(), 2, "no renewal for a subscription that ends");
    run_scheduler_at(&app, new_end).await;
    let ended = subscription(&app, &id).await;
    assert_eq!(
        (ended["status"].as_str(), ended["access"].as_bool()),
        (Some("canceled"), Some(false))
    );
    let (status, refused, _) = post(&app, &format!("/subscriptions/{id}/cancel"), &json!({}), None).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("subscription_not_cancelable"))
    );

    let history: Vec<(String, String)> = ended["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["applied"] == true)
        .map(|h| {
            (
                h["from_status"].as_str().unwrap().to_owned(),
                h["to_status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(history.first(), Some(&("pending".to_owned(), "active".to_owned())));
    assert_eq!(history.last(), Some(&("active".to_owned(), "canceled".to_owned())));
    assert_eq!(ended["payments"].as_array().unwrap().len(), 2);
    assert_eq!(
        topics(&app).await,
        [
            "subscription.activated",
            "subscription.renewal_due",
            "subscription.renewed",
            "subscription.canceled"
        ]
    );
}

async fn an_unpaid_xendit_renewal_lapses_expires_and_comes_back_when_paid(backend: Backend) {
    let fake = FakeXendit::start(XENDIT_KEY).await;
    let app = xendit_app(backend, &fake).await;
    monthly_plan(&app, "pro-idr", "IDR", 9_900_000).await;
    let (_, opened, _) = post(
        &app,
        "/subscriptions",
        &json!({ "plan": "pro-idr", "provider": "xendit", "customer_ref": "user-7" }),
        None,
    )
    .await;
    let id = opened["id"].as_str().unwrap().to_owned();
    let first = opened["payment"]["provider_ref"].as_str().unwrap();
    fake_call(&fake.base_url, &format!("/_fake/pay/{first}")).await;
    let active = wait_for(&app, &id, "active", |s| s["status"] == "active").await;
    let end = at(&active["current_period_end"]);
    run_scheduler_at(&app, end - chrono::Duration::hours(72)).await;
    run_scheduler_at(&app, end).await;
    let lapsed = subscription(&app, &id).await;
    assert_eq!(
        (lapsed["status"].as_str(), lapsed["access"].as_bool()),
        (Some("past_due"), Some(true))
    );
    run_scheduler_at(&app, end + chrono::Duration::hours(72)).await;
    let expired = subscription(&app, &id).await;
    assert_eq!(
        (expired["status"].as_str(), expired["access"].as_bool()),
        (Some("expired"), Some(false))
    );
    let listed: Value = app
        .get("/subscriptions?customer_ref=user-7&status=active")
        .await
        .json()
        .await
        .unwrap();
    assert!(listed["data"].as_array().unwrap().is_empty(), "not subscribed now");
    // The renewal paid late: active again.
    let renewal = fake.invoices().last().unwrap()["id"].as_str().unwrap().to_owned();
    fake_call(&fake.base_url, &format!("/_fake/pay/{renewal}")).await;
    let back = wait_for(&app, &id, "back", |s| s["status"] == "active").await;
    assert!(at(&back["current_period_start"]) > end + chrono::Duration::hours(72));
    assert_eq!(
        topics(&app).await,
        [
            "subscription.activated",
            "subscription.renewal_due",
            "subscription.past_due",
            "subscription.expired",
            "subscription.activated"
        ]
    );
}

async fn subscription_errors_follow_the_contract(backend: Backend) {
    let fake = FakeXendit::start(XENDIT_KEY).await;
    let app = xendit_app(backend, &fake).await;
    monthly_plan(&app, "pro-idr", "IDR", 9_900_000).await;
    let ok = json!({ "plan": "pro-idr", "provider": "xendit", "customer_ref": "user-1" });
    let with = |field: &str, value: Value| {
        let mut body = ok.clone();
        body[field] = value;
        body
    };
    let cases = [
        (
            json!({ "plan": "nope", "provider": "xendit", "customer_ref": "u" }),
            404,
            "plan_not_found",
        ),
        (with("provider", json!("paypal")), 400, "unknown_provider"),
        (with("provider", json!("qpay")), 400, "provider_disabled"),
        (with("customer_ref", json!("")), 422, "validation_failed"),
        (with("customer_email", json!("not-an-email")), 422, "validation_failed"),
        (with("metadata", json!([1])), 422, "validation_failed"),
        (with("colour", json!("red")), 422, "validation_failed"),
        (json!([1, 2]), 400, "malformed_json"),
    ];
    for (body, status, code) in cases {
        let (got, error, _) = post(&app, "/subscriptions", &body, None).await;
        assert_eq!((got, error["error"]["code"].as_str()), (status, Some(code)), "{body}");
    }
    assert_eq!(
        app.count("SELECT count(*) AS n FROM subscriptions").await,
        0,
        "nothing stored"
    );
    let (_, _, _) = post(&app, "/subscriptions", &ok, Some("k")).await;
    let (status, error, _) = post(
        &app,
        "/subscriptions",
        &with("customer_ref", json!("user-2")),
        Some("k"),
    )
    .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    let missing = app.get("/subscriptions/00000000-0000-0000-0000-000000000000").await;
    assert_eq!(missing.status().as_u16(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "subscription_not_found");
    assert_eq!(app.get("/subscriptions/not-an-id").await.status().as_u16(), 404);
    assert_eq!(app.get("/subscriptions?status=sleeping").await.status().as_u16(), 400);
    assert_eq!(app.get("/subscriptions?limit=0").await.status().as_u16(), 400);
    assert_eq!(app.get("/payments?subscription_id=nope").await.status().as_u16(), 400);
    let anonymous = reqwest::Client::new()
        .get(format!("{}/subscriptions", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    // The clock stays put without `admin.time_travel`.
    let plain = spawn_app_with(backend, &[("PAYHOOK__ADMIN__TOKEN", ADMIN)], Vec::new()).await;
    let res = reqwest::Client::new()
        .post(format!("{}/admin/clock", plain.address))
        .bearer_auth(ADMIN)
        .json(&json!({ "advance_secs": 60 }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);
}

async fn a_stripe_subscription_starts_at_checkout_and_follows_stripes_events(backend: Backend) {
    let fake = FakeStripe::start(STRIPE_KEY).await;
    let app = stripe_app(backend, &fake).await;
    let plan = monthly_plan(&app, "pro-usd", "USD", 1_500).await;
    let body = |customer: &str| json!({ "plan": "pro-usd", "provider": "stripe", "customer_ref": customer });
    let (status, opened, _) = post(&app, "/subscriptions", &body("user-1"), Some("stripe-1")).await;
    assert_eq!(status, 201, "{opened}");
    let id = opened["id"].as_str().unwrap().to_owned();
    let checkout = opened["checkout_url"].as_str().unwrap();
    assert!(checkout.starts_with("https://checkout.stripe.com/"), "{checkout}");
    assert!(opened["payment"].is_null());
    // The plan's Price was made once, and kept on the plan.
    let kept: Value = app
        .get(&format!("/plans/{}", plan["id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    let price = kept["stripe_price_id"].as_str().unwrap().to_owned();
    let (_, second, _) = post(&app, "/subscriptions", &body("user-2"), None).await;
    let asked = |path: &str| fake.requests().iter().filter(|r| r.path == path).count();
    assert_eq!((asked("/v1/products"), asked("/v1/prices")), (1, 1));
    let session = fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/checkout/sessions")
        .unwrap();
    assert_eq!(session.body.get("mode").map(String::as_str), Some("subscription"));
    assert_eq!(session.body.get("line_items[0][price]"), Some(&price));
    assert_eq!(
        session.body.get("subscription_data[metadata][payhook_subscription_id]"),
        Some(&id)
    );

    // Cancelled before the customer pays: its Checkout page is closed at Stripe.
    let second_id = second["id"].as_str().unwrap();
    let second_session = second["provider_ref"].as_str().unwrap().to_owned();
    assert!(second_session.starts_with("cs_"), "{second}");
    let (status, closed, _) = post(&app, &format!("/subscriptions/{second_id}/cancel"), &json!({}), None).await;
    assert_eq!((status, closed["status"].as_str()), (200, Some("canceled")), "{closed}");
    assert_eq!(asked(&format!("/v1/checkout/sessions/{second_session}/expire")), 1);
    let refused = fake_call(&fake.base_url, &format!("/_fake/pay/{second_session}")).await;
    assert_eq!(refused.status().as_u16(), 400, "the page takes no payment any more");

    // The customer pays at Checkout: Stripe's events activate it.
    let session_id = checkout.rsplit('/').next().unwrap();
    let paid: Value = fake_call(&fake.base_url, &format!("/_fake/pay/{session_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(paid["webhooks"].as_array().is_some_and(|w| w.len() == 2), "{paid}");
    let active = wait_for(&app, &id, "active", |s| {
        s["status"] == "active"
            && s["payments"]
                .as_array()
                .is_some_and(|p| p.len() == 1 && p[0]["status"] == "paid")
    })
    .await;
    let stripe_sub = active["provider_ref"].as_str().unwrap().to_owned();
    assert!(stripe_sub.starts_with("sub_"), "{active}");

    // A renewal at Stripe: the period moves on, the invoice is one more payment.
    fake_call(&fake.base_url, &format!("/_fake/subscriptions/{stripe_sub}/renew")).await;
    let renewed = wait_for(&app, &id, "renewed", |s| {
        s["current_period_end"] != active["current_period_end"]
    })
    .await;
    assert_eq!(renewed["current_period_start"], active["current_period_end"]);
    let renewed = wait_for(&app, &id, "two payments", |s| {
        s["payments"].as_array().is_some_and(|p| p.len() == 2)
    })
    .await;
    assert_eq!(renewed["status"], "active");

    // A failed renewal: past_due, as Stripe says.
    fake_call(&fake.base_url, &format!("/_fake/subscriptions/{stripe_sub}/fail")).await;
    wait_for(&app, &id, "past_due", |s| s["status"] == "past_due").await;

    // Cancel at period end goes to Stripe, and Stripe's event confirms it; cancel now ends it.
    let (status, canceling, _) = post(
        &app,
        &format!("/subscriptions/{id}/cancel"),
        &json!({ "at_period_end": true }),
        None,
    )
    .await;
    assert_eq!(status, 200, "{canceling}");
    assert_eq!(canceling["cancel_at_period_end"], true);
    let update = fake
        .requests()
        .into_iter()
        .find(|r| r.path == format!("/v1/subscriptions/{stripe_sub}"))
        .unwrap();
    assert_eq!(
        update.body.get("cancel_at_period_end").map(String::as_str),
        Some("true")
    );
    let (status, canceled, _) = post(&app, &format!("/subscriptions/{id}/cancel"), &json!({}), None).await;
    assert_eq!(status, 200, "{canceled}");
    assert_eq!(canceled["status"], "canceled");
    // Stripe's word that it is deleted changes nothing more: canceled once.
    app.wait_for_count(
        "SELECT count(*) AS n FROM webhook_events WHERE event_type = 'customer.subscription.deleted' AND status = 'processed'",
        1,
    )
    .await;
    // The one cancelled before paying, then this one's life: canceled once each.
    let topics = topics(&app).await;
    assert_eq!(
        topics.iter().take(2).map(String::as_str).collect::<Vec<_>>(),
        ["subscription.canceled", "subscription.activated"]
    );
    assert_eq!(topics.iter().filter(|t| *t == "subscription.renewed").count(), 1);
    assert!(topics.contains(&"subscription.past_due".to_owned()));
    assert_eq!(topics.iter().filter(|t| *t == "subscription.canceled").count(), 2);
}

/// A Stripe subscription event, signed.
fn stripe_event(id: &str, kind: &str, created: i64, object: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id, "object": "event", "type": kind, "created": created, "livemode": false,
        "api_version": "2024-06-20", "pending_webhooks": 1, "data": { "object": object },
    }))
    .unwrap()
}

fn stripe_subscription(status: &str, start: i64, end: i64) -> Value {
    json!({ "id": "sub_adopted", "object": "subscription", "status": status, "customer": "cus_9",
        "cancel_at_period_end": false, "current_period_start": start, "current_period_end": end,
        "metadata": {}, "items": { "object": "list", "data": [{ "id": "si_1", "object": "subscription_item",
            "price": { "id": "price_adopted", "object": "price", "unit_amount": 2_000, "currency": "usd",
                "recurring": { "interval": "month", "interval_count": 1 } } }] } })
}

fn stripe_invoice(id: &str, pi: &str, start: i64, end: i64) -> Value {
    json!({ "id": id, "object": "invoice", "status": "paid", "customer": "cus_9", "subscription": "sub_adopted",
        "payment_intent": pi, "currency": "usd", "amount_due": 2_000, "amount_paid": 2_000,
        "billing_reason": "subscription_cycle",
        "lines": { "object": "list", "data": [{ "object": "line_item", "period": { "start": start, "end": end } }] } })
}

async fn adopted(app: &TestApp) -> Value {
    let listed: Value = app.get("/subscriptions?customer_ref=cus_9").await.json().await.unwrap();
    listed["data"][0].clone()
}

async fn fifty_concurrent_duplicate_invoice_paid_events_make_one_renewal(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = now_unix();
    let month = 30 * 86_400;
    // A subscription payhook did not open: adopted from Stripe's event.
    let created = stripe_event(
        "evt_sub_1",
        "customer.subscription.created",
        t - 40,
        stripe_subscription("active", t - month, t),
    );
    assert_eq!(
        app.post_stripe(&created, Some(&sign(&created))).await.status().as_u16(),
        200
    );
    app.wait_for_count("SELECT count(*) AS n FROM subscriptions WHERE status = 'active'", 1)
        .await;
    let first = adopted(&app).await;
    assert_eq!(first["plan"], "stripe:price_adopted");
    // The renewal's invoice.paid, 50 at once: 25 deliveries of one event, and 25
    // other events (Stripe's retries under new ids) of the same invoice.
    let invoice = stripe_invoice("in_renewal", "pi_renewal", t, t + month);
    let bodies: Vec<Vec<u8>> = (0..50)
        .map(|n| {
            let id = if n % 2 == 0 {
                "evt_paid_same".to_owned()
            } else {
                format!("evt_paid_{n}")
            };
            stripe_event(&id, "invoice.paid", t - 20, invoice.clone())
        })
        .collect();
    let signatures: Vec<String> = bodies.iter().map(|body| sign(body)).collect();
    let sends = bodies
        .iter()
        .zip(&signatures)
        .map(|(body, signature)| app.post_stripe(body, Some(signature)));
    for answer in futures_util::future::join_all(sends).await {
        assert_eq!(answer.status().as_u16(), 200);
    }
    // The subscription's event, and 26 distinct invoice events (one of them delivered 25 times).
    app.wait_for_count(
        "SELECT count(*) AS n FROM webhook_events WHERE status = 'processed'",
        27,
    )
    .await;
    let after = adopted(&app).await;
    assert_eq!(at(&after["current_period_end"]).timestamp(), t + month);
    let id = after["id"].as_str().unwrap();
    let detail = subscription(&app, id).await;
    assert_eq!(
        detail["payments"].as_array().unwrap().len(),
        1,
        "one payment for the invoice"
    );
    assert_eq!(
        topics(&app)
            .await
            .iter()
            .filter(|t| *t == "subscription.renewed")
            .count(),
        1,
        "one renewal"
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM subscriptions").await,
        1,
        "one subscription row"
    );
}

async fn a_late_created_incomplete_after_updated_active_in_the_same_second_leaves_active(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = now_unix();
    let updated = stripe_event(
        "evt_updated",
        "customer.subscription.updated",
        t,
        stripe_subscription("active", t, t + 86_400),
    );
    let created = stripe_event(
        "evt_created",
        "customer.subscription.created",
        t,
        stripe_subscription("incomplete", t, t + 86_400),
    );
    assert_eq!(
        app.post_stripe(&updated, Some(&sign(&updated))).await.status().as_u16(),
        200
    );
    app.wait_for_count("SELECT count(*) AS n FROM webhook_events WHERE status = 'processed'", 1)
        .await;
    assert_eq!(
        app.post_stripe(&created, Some(&sign(&created))).await.status().as_u16(),
        200
    );
    app.wait_for_count("SELECT count(*) AS n FROM webhook_events WHERE status = 'processed'", 2)
        .await;
    let s = adopted(&app).await;
    assert_eq!(s["status"], "active");
    let detail = subscription(&app, s["id"].as_str().unwrap()).await;
    let late = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["reason"].as_str().is_some_and(|r| r.starts_with("evt_created")))
        .cloned()
        .unwrap();
    assert_eq!(
        (late["to_status"].as_str(), late["applied"].as_bool()),
        (Some("pending"), Some(false))
    );
    assert_eq!(
        app.text("SELECT result AS v FROM webhook_events WHERE event_id = 'evt_created'")
            .await
            .as_deref(),
        Some("stale_transition")
    );
}

async fn without_the_mirror_stripes_subscription_events_still_drive_subscriptions(backend: Backend) {
    let app = spawn_app_with(backend, &[("PAYHOOK__PROVIDERS__STRIPE__MIRROR", "false")], Vec::new()).await;
    let t = now_unix();
    let created = stripe_event(
        "evt_nomirror",
        "customer.subscription.created",
        t,
        stripe_subscription("active", t, t + 86_400),
    );
    assert_eq!(
        app.post_stripe(&created, Some(&sign(&created))).await.status().as_u16(),
        200
    );
    app.wait_for_count(
        "SELECT count(*) AS n FROM webhook_events WHERE status = 'processed' AND result = 'applied'",
        1,
    )
    .await;
    assert_eq!(adopted(&app).await["status"], "active");
    assert_eq!(
        app.count("SELECT count(*) AS n FROM stripe_objects").await,
        0,
        "no object copied"
    );
}
