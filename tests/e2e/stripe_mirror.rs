//! The Stripe mirror and Connect, end to end: signed Stripe events through the real
//! server into `stripe_objects`, read back through `GET /stripe/objects…`, on both
//! stores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures_util::StreamExt;
use payhook_e2e::*;
use serde_json::{json, Value};

on_every_store!(
    an_out_of_order_duplicated_burst_leaves_the_state_in_order_delivery_leaves,
    objects_are_kept_exactly_as_sent_and_deletions_keep_their_data,
    the_same_ids_under_two_accounts_and_the_platform_are_three_objects_and_three_payments,
    a_connect_endpoint_secret_is_accepted_and_a_foreign_secret_is_not,
    listing_pages_by_id_and_filters_by_customer,
    reading_errors_follow_the_contract,
    a_tie_is_settled_by_reading_the_object_from_stripe_else_the_first_is_kept,
    with_the_mirror_off_nothing_is_copied_and_billing_events_are_ignored,
);

const CONNECT_SECRET: &str = "whsec_connect_e2e_0123456789";

/// A signed Stripe event, for `account` when given; its body.
fn event(id: &str, event_type: &str, created: i64, account: Option<&str>, object: Value) -> Vec<u8> {
    let mut envelope = json!({
        "id": id, "object": "event", "type": event_type, "created": created, "livemode": false,
        "api_version": "2024-06-20", "pending_webhooks": 1, "data": { "object": object },
    });
    if let Some(account) = account {
        envelope["account"] = json!(account);
    }
    serde_json::to_vec(&envelope).unwrap()
}

async fn object(app: &TestApp, path: &str) -> (u16, Value) {
    let res = app
        .client
        .get(format!("{}/stripe/objects/{path}", app.address))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn all_processed(app: &TestApp, n: i64) {
    app.wait_for_count("SELECT count(*) AS n FROM webhook_events WHERE status = 'processed'", n)
        .await;
}

/// A deterministic shuffle (no randomness in tests): a linear congruential sequence.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let j = (seed >> 33) as usize % (i + 1);
        items.swap(i, j);
    }
}

/// 20 objects (customers, products, invoices, subscriptions), 10 events each: later
/// seconds, and for invoices and subscriptions runs of the same second told apart by
/// status. Delivered shuffled, 40 of them twice, 8 at a time: each object ends as its
/// last event in order left it.
async fn an_out_of_order_duplicated_burst_leaves_the_state_in_order_delivery_leaves(backend: Backend) {
    let app = spawn_app(backend).await;
    let base = now_unix() - 3_600;
    let mut events: Vec<(String, Vec<u8>)> = Vec::new();
    let mut last: Vec<(String, String, Value, String)> = Vec::new(); // type, id, object, event id
    for n in 0..20 {
        let (kind, event_type, id) = match n % 4 {
            0 => ("customer", "customer.updated", format!("cus_burst{n}")),
            1 => ("product", "product.updated", format!("prod_burst{n}")),
            2 => ("invoice", "invoice.updated", format!("in_burst{n}")),
            _ => ("subscription", "customer.subscription.updated", format!("sub_burst{n}")),
        };
        // (second, status) of each step: ranked types share seconds in pairs whose
        // second status is later (the status decides); the others move a second a step.
        let steps: Vec<(i64, &str)> = match kind {
            "invoice" => vec![
                (0, "draft"),
                (0, "open"),
                (1, "open"),
                (1, "paid"),
                (2, "paid"),
                (3, "paid"),
                (4, "paid"),
                (5, "void"),
                (6, "void"),
                (7, "void"),
            ],
            "subscription" => vec![
                (0, "incomplete"),
                (0, "active"),
                (1, "active"),
                (1, "past_due"),
                (2, "past_due"),
                (3, "active"),
                (4, "active"),
                (4, "canceled"),
                (5, "canceled"),
                (6, "canceled"),
            ],
            _ => (0..10).map(|s| (s, "")).collect(),
        };
        for (step, (second, status)) in steps.into_iter().enumerate() {
            let created = base + second;
            let mut object = json!({ "id": id, "object": kind, "step": step, "livemode": false });
            if !status.is_empty() {
                object["status"] = json!(status);
            }
            if kind != "customer" && kind != "product" {
                object["customer"] = json!("cus_burst0");
            }
            let event_id = format!("evt_burst_{n}_{step}");
            events.push((
                event_id.clone(),
                event(&event_id, event_type, created, None, object.clone()),
            ));
            if step == 9 {
                last.push((kind.to_owned(), id.clone(), object, event_id));
            }
        }
    }
    let mut deliveries: Vec<Vec<u8>> = events.iter().map(|(_, b)| b.clone()).collect();
    deliveries.extend(events.iter().step_by(5).map(|(_, b)| b.clone()));
    assert_eq!(deliveries.len(), 240);
    shuffle(&mut deliveries, 42);
    let app_ref = &app;
    futures_util::stream::iter(deliveries)
        .for_each_concurrent(8, |body| async move {
            assert_eq!(app_ref.deliver(&body).await.status(), 200);
        })
        .await;
    all_processed(&app, 200).await;
    for (kind, id, expected, event_id) in &last {
        let (status, got) = object(&app, &format!("{kind}/{id}")).await;
        assert_eq!(status, 200, "{kind} {id}: {got}");
        assert_eq!(&got["object"], expected, "{kind} {id}");
        assert_eq!(got["source_event_id"], event_id.as_str(), "{kind} {id}");
    }
    assert_eq!(app.count("SELECT count(*) AS n FROM stripe_objects").await, 20);
}

/// The object's text is kept byte for byte (key order, spacing, unicode), and a
/// `customer.deleted` marks the row deleted, keeps its data, and is not undone by an
/// older update arriving later.
async fn objects_are_kept_exactly_as_sent_and_deletions_keep_their_data(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = now_unix() - 60;
    let exact = format!(
        r#"{{"id":"evt_exact","object":"event","type":"customer.created","created":{t},"data":{{"object":{{"object":"customer","id":"cus_exact","name":"Zoë  Ñ","metadata":{{"z":1,"a":2}},"email":"z@example.com"}}}}}}"#
    );
    assert_eq!(app.deliver(exact.as_bytes()).await.status(), 200);
    all_processed(&app, 1).await;
    let row = app
        .text("SELECT data AS v FROM stripe_objects WHERE object_id = 'cus_exact'")
        .await
        .unwrap();
    assert_eq!(
        row,
        r#"{"object":"customer","id":"cus_exact","name":"Zoë  Ñ","metadata":{"z":1,"a":2},"email":"z@example.com"}"#
    );
    let deleted = json!({ "id": "cus_exact", "object": "customer", "deleted": true });
    app.deliver(&event("evt_del", "customer.deleted", t + 10, None, deleted))
        .await;
    let stale = json!({ "id": "cus_exact", "object": "customer", "name": "old" });
    app.deliver(&event("evt_stale", "customer.updated", t + 5, None, stale))
        .await;
    all_processed(&app, 3).await;
    let (status, got) = object(&app, "customer/cus_exact").await;
    assert_eq!(status, 200);
    assert_eq!(got["deleted"], true);
    assert_eq!(got["source_event_id"], "evt_del");
    assert_eq!(got["object"]["deleted"], true, "the deletion's data is kept");
    let result = app
        .text("SELECT result AS v FROM webhook_events WHERE event_id = 'evt_stale'")
        .await;
    assert_eq!(
        result.as_deref(),
        Some("stale_transition"),
        "an older write is recorded, not applied"
    );
}

/// `cus_same` and `pi_same` under acct_A, acct_B and the platform: three objects of each
/// and three payments; each read answers its own account's.
async fn the_same_ids_under_two_accounts_and_the_platform_are_three_objects_and_three_payments(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = now_unix() - 60;
    for (n, account) in [None, Some("acct_A"), Some("acct_B")].into_iter().enumerate() {
        let name = account.unwrap_or("platform");
        let customer = json!({ "id": "cus_same", "object": "customer", "name": name });
        app.deliver(&event(
            &format!("evt_cus_{n}"),
            "customer.created",
            t,
            account,
            customer,
        ))
        .await;
        let mut intent = payment_intent("pi_same", "succeeded", 1_000 * (n as i64 + 1), 1_000 * (n as i64 + 1));
        intent["description"] = json!(name);
        let res = app
            .deliver(&event(
                &format!("evt_pi_{n}"),
                "payment_intent.succeeded",
                t,
                account,
                intent,
            ))
            .await;
        assert_eq!(res.status(), 200);
    }
    all_processed(&app, 6).await;
    assert_eq!(
        app.count("SELECT count(*) AS n FROM payments WHERE provider_ref = 'pi_same' AND status = 'paid'")
            .await,
        3
    );
    assert_eq!(
        app.count("SELECT count(DISTINCT account) AS n FROM payments WHERE provider_ref = 'pi_same'")
            .await,
        3
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM payments WHERE provider_ref = 'pi_same' AND account = 'acct_B' AND amount = 3000")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM webhook_events WHERE account = 'acct_A'")
            .await,
        2,
        "the inbox row keeps the account"
    );
    let listed: Value = app.get("/payments").await.json().await.unwrap();
    let mut accounts: Vec<Option<&str>> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["account"].as_str())
        .collect();
    accounts.sort();
    assert_eq!(
        accounts,
        [None, Some("acct_A"), Some("acct_B")],
        "the API shows the account"
    );
    for (query, name) in [
        ("", "platform"),
        ("?account=acct_A", "acct_A"),
        ("?account=acct_B", "acct_B"),
    ] {
        let (status, got) = object(&app, &format!("customer/cus_same{query}")).await;
        assert_eq!(status, 200);
        assert_eq!(got["object"]["name"], name);
        assert_eq!(got["account"], name.strip_prefix("platform").map_or(name, |_| ""));
        let (_, intent) = object(&app, &format!("payment_intent/pi_same{query}")).await;
        assert_eq!(
            intent["object"]["description"], name,
            "the payment's object is mirrored too"
        );
    }
    let (status, _) = object(&app, "customer/cus_same?account=acct_C").await;
    assert_eq!(status, 404);
}

/// An event signed with a `connect_webhook_secrets` secret is accepted; one signed with
/// any other secret is refused (401) and stores nothing.
async fn a_connect_endpoint_secret_is_accepted_and_a_foreign_secret_is_not(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[("PAYHOOK__PROVIDERS__STRIPE__CONNECT_WEBHOOK_SECRETS", CONNECT_SECRET)],
        Vec::new(),
    )
    .await;
    let body = event(
        "evt_connect",
        "customer.created",
        now_unix(),
        Some("acct_C"),
        json!({ "id": "cus_c", "object": "customer" }),
    );
    let signed = payhook_stripe::signature_header(CONNECT_SECRET, now_unix(), &body);
    assert_eq!(app.post_stripe(&body, Some(&signed)).await.status(), 200);
    all_processed(&app, 1).await;
    let (status, got) = object(&app, "customer/cus_c?account=acct_C").await;
    assert_eq!((status, got["account"].as_str()), (200, Some("acct_C")));
    let foreign = payhook_stripe::signature_header("whsec_someone_else", now_unix(), &body);
    assert_eq!(app.post_stripe(&body, Some(&foreign)).await.status(), 401);
}

/// Listing: by id, a page at a time with `next_cursor`, one account's, and filtered by
/// customer.
async fn listing_pages_by_id_and_filters_by_customer(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = now_unix() - 60;
    for n in 0..5 {
        let customer = if n % 2 == 0 { "cus_even" } else { "cus_odd" };
        let invoice =
            json!({ "id": format!("in_list{n}"), "object": "invoice", "status": "open", "customer": customer });
        app.deliver(&event(&format!("evt_in_{n}"), "invoice.finalized", t, None, invoice))
            .await;
    }
    let other = json!({ "id": "in_other", "object": "invoice", "status": "open", "customer": "cus_even" });
    app.deliver(&event("evt_in_other", "invoice.finalized", t, Some("acct_X"), other))
        .await;
    all_processed(&app, 6).await;
    let (status, first) = object(&app, "invoice?limit=2").await;
    assert_eq!(status, 200);
    let ids = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&first), ["in_list0", "in_list1"]);
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (_, second) = object(&app, &format!("invoice?limit=2&cursor={cursor}")).await;
    assert_eq!(ids(&second), ["in_list2", "in_list3"]);
    let (_, last) = object(
        &app,
        &format!("invoice?limit=2&cursor={}", second["next_cursor"].as_str().unwrap()),
    )
    .await;
    assert_eq!(ids(&last), ["in_list4"]);
    assert!(last["next_cursor"].is_null());
    let (_, even) = object(&app, "invoice?customer=cus_even").await;
    assert_eq!(ids(&even), ["in_list0", "in_list2", "in_list4"]);
    let (_, theirs) = object(&app, "invoice?account=acct_X").await;
    assert_eq!(ids(&theirs), ["in_other"]);
}

async fn reading_errors_follow_the_contract(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, body) = object(&app, "coupon/25OFF").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("stripe_object_not_found"))
    );
    let (status, body) = object(&app, "customer/cus_nobody").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("stripe_object_not_found"))
    );
    let (status, body) = object(&app, "customer?limit=0").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_query")));
    let res = reqwest::Client::new()
        .get(format!("{}/stripe/objects/customer/cus_1", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "the merchant API needs its key");
}

/// Two updates of one customer in the same second (no status to order them): with an
/// API key, the object is read from Stripe and that is what the mirror keeps; without
/// one, the first stays.
async fn a_tie_is_settled_by_reading_the_object_from_stripe_else_the_first_is_kept(backend: Backend) {
    let fake = payhook_testkit::fake_stripe::FakeStripe::start("sk_test_ties").await;
    fake.put_object(
        "",
        "customers",
        json!({ "id": "cus_tie", "object": "customer", "name": "as Stripe has it" }),
    );
    let with_api = spawn_app_with(
        backend,
        &[
            ("PAYHOOK__PROVIDERS__STRIPE__API_KEY", "sk_test_ties"),
            ("PAYHOOK__PROVIDERS__STRIPE__API_BASE_URL", fake.base_url.as_str()),
        ],
        Vec::new(),
    )
    .await;
    let without_api = spawn_app(backend).await;
    let t = now_unix() - 60;
    for app in [&with_api, &without_api] {
        let first = json!({ "id": "cus_tie", "object": "customer", "name": "first" });
        app.deliver(&event("evt_tie_a", "customer.updated", t, None, first))
            .await;
        all_processed(app, 1).await;
        let second = json!({ "id": "cus_tie", "object": "customer", "name": "second" });
        app.deliver(&event("evt_tie_b", "customer.updated", t, None, second))
            .await;
        all_processed(app, 2).await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, got) = object(&with_api, "customer/cus_tie").await;
        if got["object"]["name"] == "as Stripe has it" {
            assert!(got["source_event_id"].as_str().unwrap().starts_with("resync:"), "{got}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the tie was never read from Stripe: {got}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(fake.requests().iter().any(|r| r.path == "/v1/customers/cus_tie"));
    let (_, kept) = object(&without_api, "customer/cus_tie").await;
    assert_eq!(
        (kept["object"]["name"].as_str(), kept["source_event_id"].as_str()),
        (Some("first"), Some("evt_tie_a"))
    );
}

/// `providers.stripe.mirror = false`: a payment's event applies as before and copies no
/// object; an event about a customer only is ignored, and stores nothing.
async fn with_the_mirror_off_nothing_is_copied_and_billing_events_are_ignored(backend: Backend) {
    let app = spawn_app_with(backend, &[("PAYHOOK__PROVIDERS__STRIPE__MIRROR", "false")], Vec::new()).await;
    let t = now_unix() - 60;
    let res = app
        .deliver(&event(
            "evt_off_pi",
            "payment_intent.succeeded",
            t,
            None,
            payment_intent("pi_off", "succeeded", 500, 500),
        ))
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .deliver(&event(
            "evt_off_cus",
            "customer.created",
            t,
            None,
            json!({ "id": "cus_off", "object": "customer" }),
        ))
        .await;
    let reply: Value = res.json().await.unwrap();
    assert_eq!(reply["status"], "ignored");
    all_processed(&app, 1).await;
    assert_eq!(
        app.count("SELECT count(*) AS n FROM payments WHERE provider_ref = 'pi_off' AND status = 'paid'")
            .await,
        1
    );
    assert_eq!(app.count("SELECT count(*) AS n FROM stripe_objects").await, 0);
}
