//! Who may reach what: merchant routes behind `api.keys`, the public and internal
//! listeners, the browser's status read by client token, and slow clients.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payhook_e2e::*;
use payhook_testkit::fake_xendit::FakeXendit;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const XENDIT_KEY: &str = "xnd_development_e2e_secret_key";
const XENDIT_TOKEN: &str = "xnd_callback_token_for_e2e_0123456789";

on_every_store!(
    every_merchant_route_needs_a_key,
    without_keys_the_merchant_api_is_disabled,
    the_internal_listener_alone_serves_merchants_and_operators,
    a_browser_reads_its_payment_status_and_nothing_personal,
    a_replay_keeps_the_first_token_and_a_new_one_is_issued_on_purpose,
    a_body_that_does_not_arrive_in_time_is_408_and_logged,
    headers_that_do_not_arrive_in_time_close_the_connection,
);

async fn xendit_app(backend: Backend, fake: &FakeXendit, extra: &[(&str, &str)]) -> TestApp {
    let mut overrides = vec![
        ("PAYHOOK__PROVIDERS__XENDIT__ENABLED", "true"),
        ("PAYHOOK__PROVIDERS__XENDIT__CALLBACK_TOKEN", XENDIT_TOKEN),
        ("PAYHOOK__PROVIDERS__XENDIT__SECRET_KEY", XENDIT_KEY),
        ("PAYHOOK__PROVIDERS__XENDIT__API_BASE_URL", &fake.base_url),
    ];
    overrides.extend_from_slice(extra);
    spawn_app_with(backend, &overrides, Vec::new()).await
}

fn order() -> Value {
    json!({ "provider": "xendit", "amount": 15_000_000, "currency": "IDR", "merchant_ref": "order-9",
            "customer_email": "budi@example.co.id", "description": "Order 9" })
}

async fn create(client: &reqwest::Client, base: &str, key: Option<&str>) -> reqwest::Response {
    let mut req = client.post(format!("{base}/payments")).json(&order());
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    req.send().await.unwrap()
}

async fn code_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["error"]["code"].as_str().unwrap_or_default().to_owned())
}

async fn every_merchant_route_needs_a_key(backend: Backend) {
    let fake = FakeXendit::start(XENDIT_KEY).await;
    let app = xendit_app(backend, &fake, &[]).await;
    let created: Value = create(&app.client, &app.address, None).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();

    let anonymous = reqwest::Client::new();
    let routes = [
        ("POST", "/payments".to_owned()),
        ("GET", "/payments".to_owned()),
        ("GET", format!("/payments/{id}")),
        ("POST", format!("/payments/{id}/client_token")),
    ];
    for (method, path) in &routes {
        let url = format!("{}{path}", app.address);
        let request = |auth: Option<&str>| {
            let mut r = anonymous.request(method.parse().unwrap(), &url).json(&order());
            if let Some(auth) = auth {
                r = r.header("Authorization", auth);
            }
            r
        };
        let missing = request(None).send().await.unwrap();
        assert_eq!(missing.headers()["www-authenticate"], "Bearer");
        assert_eq!(
            code_of(missing).await,
            (401, "missing_api_key".into()),
            "{method} {path}"
        );
        let wrong = request(Some("Bearer merchant_key_for_e2e_testz")).send().await.unwrap();
        assert_eq!(code_of(wrong).await, (401, "invalid_api_key".into()), "{method} {path}");
    }
    // Nothing reached the provider but the one authenticated create.
    assert_eq!(fake.requests().len(), 1);
    assert_eq!(app.count("SELECT count(*) AS n FROM payments").await, 1);
    let shown = app
        .client
        .get(format!("{}/payments/{id}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(shown.status().as_u16(), 200);
}

async fn without_keys_the_merchant_api_is_disabled(backend: Backend) {
    let fake = FakeXendit::start(XENDIT_KEY).await;
    let app = xendit_app(backend, &fake, &[("PAYHOOK__API__KEYS", "")]).await;
    let answer = create(&app.client, &app.address, None).await;
    assert_eq!(code_of(answer).await, (404, "merchant_api_disabled".into()));
    let shown = app
        .client
        .get(format!("{}/payments/{}", app.address, uuid::Uuid::new_v4()))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(shown).await, (404, "merchant_api_disabled".into()));
    assert_eq!(fake.requests().len(), 0);
}

async fn the_internal_listener_alone_serves_merchants_and_operators(backend: Backend) {
    let fake = FakeXendit::start(XENDIT_KEY).await;
    let admin = "admin_token_for_e2e_tests";
    let app = xendit_app(
        backend,
        &fake,
        &[
            ("PAYHOOK__SERVER__INTERNAL_BIND", "127.0.0.1:0"),
            ("PAYHOOK__ADMIN__TOKEN", admin),
        ],
    )
    .await;
    let (public, internal) = (app.address.clone(), app.internal_address.clone().unwrap());
    assert_ne!(public, internal);

    // Merchant, admin and metrics: only on the internal listener.
    assert_eq!(code_of(create(&app.client, &public, None).await).await.0, 404);
    let created = create(&app.client, &internal, None).await;
    assert_eq!(created.status().as_u16(), 201);
    let created: Value = created.json().await.unwrap();
    let (id, token) = (
        created["id"].as_str().unwrap(),
        created["client_token"].as_str().unwrap(),
    );
    for (path, auth) in [
        (format!("/payments/{id}"), format!("Bearer {MERCHANT_KEY}")),
        ("/admin/webhooks".to_owned(), format!("Bearer {admin}")),
        ("/metrics".to_owned(), String::new()),
        ("/openapi.json".to_owned(), String::new()),
    ] {
        let on = |base: &str| {
            app.client
                .get(format!("{base}{path}"))
                .header("Authorization", auth.clone())
                .send()
        };
        assert_eq!(on(&public).await.unwrap().status().as_u16(), 404, "public {path}");
        assert_eq!(on(&internal).await.unwrap().status().as_u16(), 200, "internal {path}");
    }

    // Webhooks and the browser's routes: only on the public listener.
    let status = |base: &str| format!("{base}/payments/{id}/status?token={token}");
    assert_eq!(
        app.client.get(status(&public)).send().await.unwrap().status().as_u16(),
        200
    );
    assert_eq!(
        app.client
            .get(status(&internal))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    let callback = |base: &str| {
        app.client
            .post(format!("{base}/webhooks/xendit"))
            .header("x-callback-token", XENDIT_TOKEN)
            .body("{}")
            .send()
    };
    assert_eq!(callback(&internal).await.unwrap().status().as_u16(), 404);
    assert_eq!(callback(&public).await.unwrap().status().as_u16(), 400);
    // The probes answer on both.
    for base in [&public, &internal] {
        assert_eq!(
            app.client
                .get(format!("{base}/readyz"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
            200
        );
    }
}

async fn a_browser_reads_its_payment_status_and_nothing_personal(backend: Backend) {
    let fake = FakeXendit::start(XENDIT_KEY).await;
    let app = xendit_app(backend, &fake, &[]).await;
    let created: Value = create(&app.client, &app.address, None).await.json().await.unwrap();
    let (id, token) = (
        created["id"].as_str().unwrap(),
        created["client_token"].as_str().unwrap(),
    );
    let browser = reqwest::Client::new();
    let url = |query: &str| format!("{}/payments/{id}/status{query}", app.address);
    let read = browser.get(url(&format!("?token={token}"))).send().await.unwrap();
    assert_eq!(read.status().as_u16(), 200);
    let read: Value = read.json().await.unwrap();
    assert_eq!(
        read,
        json!({ "id": id, "status": "pending", "amount": 15_000_000, "currency": "IDR" })
    );
    assert_eq!(
        code_of(browser.get(url("")).send().await.unwrap()).await,
        (401, "missing_client_token".into())
    );
    assert_eq!(
        code_of(
            browser
                .get(url(&format!("?token={}", "0".repeat(32))))
                .send()
                .await
                .unwrap()
        )
        .await,
        (401, "invalid_client_token".into())
    );
    let unknown = format!("{}/payments/{}/status?token={token}", app.address, uuid::Uuid::new_v4());
    assert_eq!(browser.get(unknown).send().await.unwrap().status().as_u16(), 404);
}

async fn a_replay_keeps_the_first_token_and_a_new_one_is_issued_on_purpose(backend: Backend) {
    let fake = FakeXendit::start(XENDIT_KEY).await;
    let app = xendit_app(backend, &fake, &[]).await;
    let first: Value = create(&app.client, &app.address, Some("k-1"))
        .await
        .json()
        .await
        .unwrap();
    let again: Value = create(&app.client, &app.address, Some("k-1"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["id"], again["id"]);
    assert_eq!(again["client_token"], Value::Null);
    let id = first["id"].as_str().unwrap();
    let status = |token: &str| {
        reqwest::Client::new()
            .get(format!("{}/payments/{id}/status?token={token}", app.address))
            .send()
    };
    let first_token = first["client_token"].as_str().unwrap();
    assert_eq!(
        status(first_token).await.unwrap().status().as_u16(),
        200,
        "the replay kept it"
    );

    let issued = app
        .client
        .post(format!("{}/payments/{id}/client_token", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(issued.status().as_u16(), 201);
    let issued: Value = issued.json().await.unwrap();
    let new_token = issued["client_token"].as_str().unwrap();
    assert_eq!(status(new_token).await.unwrap().status().as_u16(), 200);
    assert_eq!(
        status(first_token).await.unwrap().status().as_u16(),
        401,
        "replaced on purpose"
    );
    let unknown = app
        .client
        .post(format!(
            "{}/payments/{}/client_token",
            app.address,
            uuid::Uuid::new_v4()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
}

async fn a_body_that_does_not_arrive_in_time_is_408_and_logged(backend: Backend) {
    let app = spawn_app_with(backend, &[("PAYHOOK__SERVER__BODY_READ_TIMEOUT_SECS", "1")], Vec::new()).await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Headers, then 5 of the 100 bytes announced, then nothing.
    socket
        .write_all(
            b"POST /webhooks/stripe HTTP/1.1\r\nHost: payhook\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"id\"",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection was held past the body timeout");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    let logs = app.logs().await;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].http_status, Some(408));
    assert_eq!(logs[0].processing_result.as_deref(), Some("request_timeout"));
    assert_eq!(logs[0].raw_body.0, b"{\"id\"".to_vec(), "what arrived is kept");
}

async fn headers_that_do_not_arrive_in_time_close_the_connection(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[("PAYHOOK__SERVER__HEADER_READ_TIMEOUT_SECS", "1")],
        Vec::new(),
    )
    .await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    socket
        .write_all(b"POST /webhooks/stripe HTTP/1.1\r\nHost: payhook\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection was held past the header timeout");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}
