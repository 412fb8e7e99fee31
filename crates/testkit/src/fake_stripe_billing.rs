//! The fake Stripe's billing: Products and Prices (`POST /v1/products`,
//! `POST /v1/prices`), Checkout Sessions in subscription mode, and the subscription a
//! paid one starts, with the events Stripe sends about it:
//!
//! - `POST /_fake/pay/cs_…` of a subscription-mode session: the subscription starts
//!   (`customer.subscription.created`, active) and its first invoice is paid
//!   (`invoice.paid`, `billing_reason: subscription_create`);
//! - `POST /_fake/subscriptions/{id}/renew`: the next period's invoice is paid
//!   (`invoice.paid`, then `customer.subscription.updated` with the new period);
//! - `POST /_fake/subscriptions/{id}/fail`: the renewal fails (`invoice.payment_failed`,
//!   then `customer.subscription.updated`, past_due);
//! - `POST /v1/subscriptions/{id}` with `cancel_at_period_end=true`, and
//!   `DELETE /v1/subscriptions/{id}`: cancellation (`customer.subscription.updated`,
//!   `customer.subscription.deleted`).
//!
//! Events are stamped one second apart at least (`created`), as Stripe's days-apart
//! renewals are, so a test running them in a millisecond keeps their order.

use super::{error, metadata_of, put, record, State};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;

/// A signed event ready to send: url, headers, body.
pub(super) type Outgoing = (String, Vec<(&'static str, String)>, Vec<u8>);

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/products", web::post().to(create_product))
        .route("/v1/prices", web::post().to(create_price))
        .route("/v1/subscriptions/{id}", web::post().to(update_subscription))
        .route("/v1/subscriptions/{id}", web::delete().to(delete_subscription))
        .route("/_fake/subscriptions/{id}/renew", web::post().to(renew))
        .route("/_fake/subscriptions/{id}/fail", web::post().to(fail));
}

/// The answer to a repeated Idempotency-Key, or `None` for a new request.
fn replayed(s: &State, req: &HttpRequest, collection: &str) -> Option<Value> {
    let key = req.headers().get("idempotency-key")?.to_str().ok()?;
    let id = s.idempotent.get(key)?;
    s.objects
        .get(&(String::new(), collection.to_owned()))?
        .iter()
        .find(|o| o["id"] == json!(id))
        .cloned()
}

fn remember(s: &mut State, req: &HttpRequest, id: &str) {
    if let Some(key) = req.headers().get("idempotency-key").and_then(|v| v.to_str().ok()) {
        s.idempotent.insert(key.to_owned(), id.to_owned());
    }
}

async fn create_product(
    req: HttpRequest,
    form: web::Form<HashMap<String, String>>,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    let form = form.into_inner();
    if let Some(response) = record(&state, &req, form.clone()) {
        return response;
    }
    let mut s = state.lock().unwrap();
    if let Some(first) = replayed(&s, &req, "products") {
        return HttpResponse::Ok().json(first);
    }
    let Some(name) = form.get("name") else {
        return error(400, "invalid_request_error", "Missing required param: name.");
    };
    let id = format!("prod_fake{:014}", s.objects.values().map(Vec::len).sum::<usize>() + 1);
    let product = json!({ "id": id, "object": "product", "name": name, "active": true,
        "metadata": metadata_of(&form), "created": 1_800_000_000, "livemode": false });
    remember(&mut s, &req, &id);
    put(&mut s, "", "products", product.clone());
    HttpResponse::Ok().json(product)
}

async fn create_price(
    req: HttpRequest,
    form: web::Form<HashMap<String, String>>,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    let form = form.into_inner();
    if let Some(response) = record(&state, &req, form.clone()) {
        return response;
    }
    let mut s = state.lock().unwrap();
    if let Some(first) = replayed(&s, &req, "prices") {
        return HttpResponse::Ok().json(first);
    }
    let (Some(product), Some(amount), Some(currency), Some(interval)) = (
        form.get("product"),
        form.get("unit_amount").and_then(|a| a.parse::<i64>().ok()),
        form.get("currency"),
        form.get("recurring[interval]"),
    ) else {
        return error(
            400,
            "invalid_request_error",
            "Missing required param: product, unit_amount, currency or recurring[interval].",
        );
    };
    let count = form
        .get("recurring[interval_count]")
        .and_then(|c| c.parse::<u32>().ok())
        .unwrap_or(1);
    let id = format!("price_fake{:014}", s.objects.values().map(Vec::len).sum::<usize>() + 1);
    let price = json!({ "id": id, "object": "price", "product": product, "unit_amount": amount,
        "currency": currency, "type": "recurring", "active": true, "livemode": false, "created": 1_800_000_000,
        "recurring": { "interval": interval, "interval_count": count, "usage_type": "licensed" },
        "metadata": metadata_of(&form) });
    remember(&mut s, &req, &id);
    put(&mut s, "", "prices", price.clone());
    HttpResponse::Ok().json(price)
}

fn find(s: &State, collection: &str, id: &str) -> Option<Value> {
    s.objects
        .get(&(String::new(), collection.to_owned()))?
        .iter()
        .find(|o| o["id"] == json!(id))
        .cloned()
}

/// A subscription-mode Checkout Session, for `create_session`: `None` when the form
/// is not for one.
pub(super) fn subscription_session(
    s: &mut State,
    form: &HashMap<String, String>,
    id: &str,
) -> Option<Result<Value, HttpResponse>> {
    if form.get("mode").map(String::as_str) != Some("subscription") {
        return None;
    }
    let Some(price) = form.get("line_items[0][price]").and_then(|p| find(s, "prices", p)) else {
        return Some(Err(error(
            400,
            "invalid_request_error",
            "No such price: line_items[0][price].",
        )));
    };
    let Some(success_url) = form.get("success_url") else {
        return Some(Err(error(
            400,
            "invalid_request_error",
            "Missing required param: success_url.",
        )));
    };
    let prefixed = |prefix: &str| -> HashMap<String, String> {
        form.iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(prefix)
                    .and_then(|k| k.strip_suffix(']'))
                    .map(|k| (k.to_owned(), v.clone()))
            })
            .collect()
    };
    s.session_subscription_metadata
        .insert(id.to_owned(), json!(prefixed("subscription_data[metadata][")));
    Some(Ok(json!({
        "id": id, "object": "checkout.session", "mode": "subscription", "status": "open",
        "payment_status": "unpaid", "amount_total": price["unit_amount"], "currency": price["currency"],
        "url": format!("https://checkout.stripe.com/c/pay/{id}"), "success_url": success_url,
        "cancel_url": form.get("cancel_url"), "client_reference_id": form.get("client_reference_id"),
        "customer_email": form.get("customer_email"), "metadata": prefixed("metadata["),
        "line_items_price": price["id"], "subscription": null, "payment_intent": null,
        "expires_at": chrono::Utc::now().timestamp() + 86_400, "livemode": false,
    })))
}

/// The end of a period of `price` that starts at `start` (the fake counts a month as
/// 30 days: the shape of the events is what is under test, not Stripe's calendar).
fn period_end(price: &Value, start: i64) -> i64 {
    let unit = match price["recurring"]["interval"].as_str() {
        Some("day") => 86_400,
        Some("week") => 7 * 86_400,
        Some("year") => 365 * 86_400,
        _ => 30 * 86_400,
    };
    start + unit * price["recurring"]["interval_count"].as_i64().unwrap_or(1)
}

/// The next event time: now, and at least a second after the last.
fn tick(s: &mut State) -> i64 {
    let now = chrono::Utc::now().timestamp().max(s.last_event + 1);
    s.last_event = now;
    now
}

/// A paid (or failed) invoice of `subscription` for the period [start, end], with its
/// PaymentIntent.
fn invoice(s: &mut State, subscription: &Value, paid: bool, reason: &str) -> Value {
    let n = s.intents.len() + 1;
    let pi = format!("pi_fake{n:020}");
    let price = &subscription["items"]["data"][0]["price"];
    let amount = price["unit_amount"].clone();
    let intent = json!({
        "id": pi, "object": "payment_intent", "amount": amount, "amount_capturable": 0,
        "amount_received": if paid { amount.clone() } else { json!(0) },
        "capture_method": "automatic", "client_secret": format!("{pi}_secret_fake"), "confirmation_method": "automatic",
        "created": 1_800_000_000, "currency": price["currency"], "description": "Subscription update", "livemode": false,
        "metadata": {}, "payment_method_types": ["card"], "receipt_email": null,
        "status": if paid { "succeeded" } else { "requires_payment_method" },
        "automatic_payment_methods": { "allow_redirects": "always", "enabled": true },
    });
    s.intents.insert(pi.clone(), intent);
    let id = format!("in_fake{n:014}");
    let invoice = json!({
        "id": id, "object": "invoice", "status": if paid { "paid" } else { "open" }, "paid": paid,
        "billing_reason": reason, "customer": subscription["customer"], "customer_email": null,
        "subscription": subscription["id"], "payment_intent": pi, "currency": price["currency"],
        "amount_due": amount, "amount_paid": if paid { amount.clone() } else { json!(0) },
        "number": format!("FAKE-{n:04}"), "livemode": false,
        "subscription_details": { "metadata": subscription["metadata"] },
        "lines": { "object": "list", "has_more": false, "data": [{
            "id": format!("il_fake{n:014}"), "object": "line_item", "amount": amount,
            "period": { "start": subscription["current_period_start"], "end": subscription["current_period_end"] },
            "price": price,
        }]},
    });
    put(s, "", "invoices", invoice.clone());
    invoice
}

/// A signed event of `kind` about `object`, ready to send (url, headers, body).
fn event(s: &mut State, kind: &str, object: &Value) -> Option<Outgoing> {
    let (url, secret) = s.webhook.clone()?;
    let created = tick(s);
    let event = json!({
        "id": format!("evt_fake_{}", uuid::Uuid::new_v4().simple()), "object": "event", "type": kind,
        "created": created, "livemode": false, "api_version": "2024-06-20", "pending_webhooks": 1,
        "data": { "object": object },
    });
    let body = serde_json::to_vec(&event).unwrap();
    let now = chrono::Utc::now().timestamp();
    let signature = format!("t={now},v1={}", crate::signing::stripe_v1(&secret, now, &body));
    Some((url, vec![("stripe-signature", signature)], body))
}

async fn send(events: Vec<Option<Outgoing>>) -> Vec<Value> {
    let mut answers = Vec::new();
    for (url, headers, body) in events.into_iter().flatten() {
        answers.push(crate::loopback::deliver(&url, &headers, Some(body)).await);
    }
    answers
}

/// A paid subscription-mode session starts its subscription: the events to send.
pub(super) fn start_subscription(s: &mut State, session_id: &str) -> Option<Vec<Option<Outgoing>>> {
    let session = s.sessions.get(session_id)?.clone();
    if session["mode"] != "subscription" || session["status"] != "open" {
        return None;
    }
    let price = find(s, "prices", session["line_items_price"].as_str()?)?;
    let start = tick(s);
    let id = format!("sub_fake{:014}", s.objects.values().map(Vec::len).sum::<usize>() + 1);
    let customer = format!("cus_fake{:014}", s.sessions.len());
    let subscription = json!({
        "id": id, "object": "subscription", "status": "active", "customer": customer,
        "cancel_at_period_end": false, "current_period_start": start, "current_period_end": period_end(&price, start),
        "metadata": s.session_subscription_metadata.get(session_id).cloned().unwrap_or_default(),
        "items": { "object": "list", "data": [{ "id": format!("si_{id}"), "object": "subscription_item", "price": price }] },
        "livemode": false, "created": start,
    });
    put(s, "", "subscriptions", subscription.clone());
    if let Some(session) = s.sessions.get_mut(session_id) {
        session["status"] = json!("complete");
        session["payment_status"] = json!("paid");
        session["subscription"] = json!(id);
    }
    let invoice = invoice(s, &subscription, true, "subscription_create");
    Some(vec![
        event(s, "customer.subscription.created", &subscription),
        event(s, "invoice.paid", &invoice),
    ])
}

fn subscription_or_404(s: &State, id: &str) -> Result<Value, Box<HttpResponse>> {
    find(s, "subscriptions", id).ok_or_else(|| {
        Box::new(error(
            404,
            "invalid_request_error",
            &format!("No such subscription: '{id}'"),
        ))
    })
}

/// `POST /_fake/subscriptions/{id}/renew`: the next period is paid.
async fn renew(id: web::Path<String>, state: web::Data<Mutex<State>>) -> HttpResponse {
    let events = {
        let mut s = state.lock().unwrap();
        let mut subscription = match subscription_or_404(&s, &id) {
            Ok(sub) => sub,
            Err(response) => return *response,
        };
        let start = subscription["current_period_end"].as_i64().unwrap_or_default();
        let end = period_end(&subscription["items"]["data"][0]["price"], start);
        subscription["current_period_start"] = json!(start);
        subscription["current_period_end"] = json!(end);
        subscription["status"] = json!("active");
        put(&mut s, "", "subscriptions", subscription.clone());
        let invoice = invoice(&mut s, &subscription, true, "subscription_cycle");
        vec![
            event(&mut s, "invoice.paid", &invoice),
            event(&mut s, "customer.subscription.updated", &subscription),
        ]
    };
    HttpResponse::Ok().json(json!({ "renewed": id.as_str(), "webhooks": send(events).await }))
}

/// `POST /_fake/subscriptions/{id}/fail`: the renewal's payment fails.
async fn fail(id: web::Path<String>, state: web::Data<Mutex<State>>) -> HttpResponse {
    let events = {
        let mut s = state.lock().unwrap();
        let mut subscription = match subscription_or_404(&s, &id) {
            Ok(sub) => sub,
            Err(response) => return *response,
        };
        subscription["status"] = json!("past_due");
        put(&mut s, "", "subscriptions", subscription.clone());
        let invoice = invoice(&mut s, &subscription, false, "subscription_cycle");
        vec![
            event(&mut s, "invoice.payment_failed", &invoice),
            event(&mut s, "customer.subscription.updated", &subscription),
        ]
    };
    HttpResponse::Ok().json(json!({ "failed": id.as_str(), "webhooks": send(events).await }))
}

/// `POST /v1/subscriptions/{id}`: only `cancel_at_period_end` is understood.
async fn update_subscription(
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<HashMap<String, String>>,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    let form = form.into_inner();
    if let Some(response) = record(&state, &req, form.clone()) {
        return response;
    }
    let (subscription, events) = {
        let mut s = state.lock().unwrap();
        let mut subscription = match subscription_or_404(&s, &id) {
            Ok(sub) => sub,
            Err(response) => return *response,
        };
        if let Some(cancel) = form.get("cancel_at_period_end") {
            subscription["cancel_at_period_end"] = json!(cancel == "true");
        }
        put(&mut s, "", "subscriptions", subscription.clone());
        let events = vec![event(&mut s, "customer.subscription.updated", &subscription)];
        (subscription, events)
    };
    send(events).await;
    HttpResponse::Ok().json(subscription)
}

/// `DELETE /v1/subscriptions/{id}`: canceled now.
async fn delete_subscription(req: HttpRequest, id: web::Path<String>, state: web::Data<Mutex<State>>) -> HttpResponse {
    if let Some(response) = record(&state, &req, HashMap::new()) {
        return response;
    }
    let (subscription, events) = {
        let mut s = state.lock().unwrap();
        let mut subscription = match subscription_or_404(&s, &id) {
            Ok(sub) => sub,
            Err(response) => return *response,
        };
        if subscription["status"] == "canceled" {
            return error(400, "invalid_request_error", "This subscription is already canceled.");
        }
        subscription["status"] = json!("canceled");
        let at = tick(&mut s);
        subscription["canceled_at"] = json!(at);
        put(&mut s, "", "subscriptions", subscription.clone());
        let events = vec![event(&mut s, "customer.subscription.deleted", &subscription)];
        (subscription, events)
    };
    send(events).await;
    HttpResponse::Ok().json(subscription)
}

/// Sends the events of a started subscription (see `pay`).
pub(super) async fn deliver(events: Vec<Option<Outgoing>>) -> Vec<Value> {
    send(events).await
}
