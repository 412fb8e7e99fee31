//! `POST /plans`, `GET /plans`, `GET /plans/{id}` through the real server, on both
//! stores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payhook_e2e::*;
use serde_json::{json, Value};

on_every_store!(
    a_plan_is_created_once_per_code_and_read_back,
    bad_plans_name_the_field_and_store_nothing,
);

async fn post_plan(app: &TestApp, body: &Value) -> (u16, Value) {
    let res = app
        .client
        .post(format!("{}/plans", app.address))
        .json(body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

fn pro() -> Value {
    json!({ "code": "pro-monthly", "name": "Pro", "amount": 9900, "currency": "USD", "interval": "month",
            "trial_days": 14, "stripe_price_id": "price_1Pro" })
}

async fn a_plan_is_created_once_per_code_and_read_back(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, plan) = post_plan(&app, &pro()).await;
    assert_eq!(status, 201, "{plan}");
    assert_eq!(
        (
            plan["code"].as_str(),
            plan["interval"].as_str(),
            plan["interval_count"].as_u64()
        ),
        (Some("pro-monthly"), Some("month"), Some(1))
    );
    assert_eq!(
        (plan["trial_days"].as_u64(), plan["active"].as_bool()),
        (Some(14), Some(true))
    );
    let (status, taken) = post_plan(&app, &pro()).await;
    assert_eq!(
        (status, taken["error"]["code"].as_str()),
        (409, Some("plan_code_taken"))
    );
    let (status, _) = post_plan(
        &app,
        &json!({ "code": "basic.yearly", "name": "Basic", "amount": 50000, "currency": "IDR", "interval": "year" }),
    )
    .await;
    assert_eq!(status, 201);
    let by_id: Value = app
        .get(&format!("/plans/{}", plan["id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_id, plan);
    let by_code: Value = app.get("/plans/pro-monthly").await.json().await.unwrap();
    assert_eq!(by_code, plan);
    let listed: Value = app.get("/plans").await.json().await.unwrap();
    let codes: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["pro-monthly", "basic.yearly"]);
    let missing = app.get("/plans/nothing-here").await;
    assert_eq!(missing.status(), 404);
    let missing: Value = missing.json().await.unwrap();
    assert_eq!(missing["error"]["code"], "plan_not_found");
    let anonymous = reqwest::Client::new()
        .get(format!("{}/plans", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

async fn bad_plans_name_the_field_and_store_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let with = |field: &str, value: Value| {
        let mut body = pro();
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = pro();
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let cases = [
        (without("code"), "code"),
        (with("code", json!("has space")), "code"),
        (without("name"), "name"),
        (with("amount", json!(0)), "amount"),
        (with("amount", json!("9900")), "amount"),
        (with("currency", json!("XXX")), "currency"),
        (with("interval", json!("fortnight")), "interval"),
        (with("interval_count", json!(13)), "interval_count"),
        (with("interval_count", json!(0)), "interval_count"),
        (with("trial_days", json!(731)), "trial_days"),
        (with("stripe_price_id", json!("prod_1")), "stripe_price_id"),
        (with("colour", json!("blue")), "body"),
    ];
    for (body, field) in cases {
        let (status, error) = post_plan(&app, &body).await;
        assert_eq!(status, 422, "{body}: {error}");
        assert_eq!(error["error"]["code"], "validation_failed", "{body}");
        assert_eq!(error["error"]["field"], field, "{body}: {error}");
    }
    let res = app
        .client
        .post(format!("{}/plans", app.address))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let listed: Value = app.get("/plans").await.json().await.unwrap();
    assert_eq!(listed["data"], json!([]), "nothing stored");
}
