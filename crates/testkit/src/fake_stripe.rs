//! A fake of the Stripe PaymentIntents API (only what payhook calls), served by a real
//! HTTP server on 127.0.0.1: `POST /v1/payment_intents` (form-encoded, as Stripe takes
//! it), `GET /v1/payment_intents/{id}` and `GET /v1/payment_intents/search` (the one
//! query payhook makes: `metadata['key']:'value'`). Checks the bearer key, answers with complete
//! PaymentIntent objects (the SDK's parse is strict), records requests, and can be told
//! to fail the next ones.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One request the fake received.
pub type Recorded = crate::loopback::Recorded<HashMap<String, String>>;

#[derive(Default)]
struct State {
    journal: crate::loopback::Journal<HashMap<String, String>>,
    api_key: String,
    intents: HashMap<String, Value>,
    /// PaymentIntent ids by the Idempotency-Key that created them.
    idempotent: HashMap<String, String>,
    /// Where events go, and the endpoint secret they are signed with.
    webhook: Option<(String, String)>,
}

pub struct FakeStripe {
    pub base_url: String,
    state: Arc<Mutex<State>>,
    stall: crate::loopback::Stall,
}

impl FakeStripe {
    /// Starts the fake; requests must carry `Authorization: Bearer <api_key>`.
    pub async fn start(api_key: &str) -> Self {
        Self::start_on(0, api_key).await.expect("a free loopback port")
    }

    /// Starts the fake on 127.0.0.1:`port` (0: any free port); fails when the port is taken.
    pub async fn start_on(port: u16, api_key: &str) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(State {
            api_key: api_key.to_owned(),
            ..State::default()
        }));
        let shared = web::Data::from(state.clone());
        let stall = crate::loopback::Stall::default();
        let base_url = crate::loopback::serve(port, stall.clone(), move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(shared.clone())
                .route("/v1/payment_intents", web::post().to(create))
                .route("/v1/payment_intents/search", web::get().to(search))
                .route("/v1/payment_intents/{id}", web::get().to(fetch))
                .route("/v1/payment_intents/{id}/cancel", web::post().to(cancel))
                .route("/_fake/pay/{id}", web::post().to(pay));
        })?;
        Ok(Self { base_url, state, stall })
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().journal.requests()
    }

    /// Answer the next requests with these HTTP statuses (then behave again).
    pub fn fail_next(&self, statuses: &[u16]) {
        self.state.lock().unwrap().journal.fail_next(statuses);
    }

    /// Wait this long before answering every later API request (to provoke timeouts,
    /// or hold a call in flight); `Duration::ZERO` stops it.
    pub fn stall(&self, delay: std::time::Duration) {
        self.stall.set(delay);
    }

    /// How many requests are waiting in a stall now.
    pub fn stalled(&self) -> usize {
        self.stall.waiting()
    }

    /// Where `POST /_fake/pay/{id}` sends its `payment_intent.succeeded` event, signed
    /// with `secret` (`whsec_…`) as Stripe signs.
    pub fn send_webhooks_to(&self, url: &str, secret: &str) {
        self.state.lock().unwrap().webhook = Some((url.to_owned(), secret.to_owned()));
    }

    /// Sets a PaymentIntent's `status` and `amount_received` (a held payment is
    /// `requires_capture` with 0; a partial capture `succeeded` with less).
    pub fn set_status(&self, id: &str, status: &str, amount_received: i64) {
        if let Some(intent) = self.state.lock().unwrap().intents.get_mut(id) {
            intent["status"] = json!(status);
            intent["amount_received"] = json!(amount_received);
        }
    }

    /// Marks a PaymentIntent succeeded, as if the customer had paid.
    pub fn succeed(&self, id: &str) {
        if let Some(intent) = self.state.lock().unwrap().intents.get_mut(id) {
            intent["status"] = json!("succeeded");
            intent["amount_received"] = intent["amount"].clone();
        }
    }
}

fn error(status: u16, kind: &str, message: &str) -> HttpResponse {
    let code = actix_web::http::StatusCode::from_u16(status).unwrap();
    HttpResponse::build(code).json(json!({ "error": { "type": kind, "message": message } }))
}

/// Records the request; `Some` is the error answer to give instead of a normal one.
fn record(state: &Mutex<State>, req: &HttpRequest, form: HashMap<String, String>) -> Option<HttpResponse> {
    let mut s = state.lock().unwrap();
    let (authorization, failure) = s.journal.record(req, form);
    if let Some(status) = failure {
        let kind = if status >= 500 {
            "api_error"
        } else {
            "invalid_request_error"
        };
        return Some(error(status, kind, &format!("fake Stripe answered {status}")));
    }
    if authorization.as_deref() != Some(format!("Bearer {}", s.api_key).as_str()) {
        return Some(error(401, "invalid_request_error", "Invalid API Key provided"));
    }
    None
}

async fn create(
    req: HttpRequest,
    form: web::Form<HashMap<String, String>>,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    let form = form.into_inner();
    if let Some(response) = record(&state, &req, form.clone()) {
        return response;
    }
    let Some(amount) = form.get("amount").and_then(|a| a.parse::<i64>().ok()) else {
        return error(400, "invalid_request_error", "Missing required param: amount.");
    };
    let mut s = state.lock().unwrap();
    // Like Stripe: a repeated Idempotency-Key gets the first answer back.
    let key = req.headers().get("idempotency-key").and_then(|v| v.to_str().ok());
    if let Some(first) = key.and_then(|k| s.idempotent.get(k)).and_then(|id| s.intents.get(id)) {
        return HttpResponse::Ok().json(first);
    }
    let id = format!("pi_fake{:020}", s.intents.len() + 1);
    if let Some(key) = key {
        s.idempotent.insert(key.to_owned(), id.clone());
    }
    let metadata: HashMap<&str, &String> = form
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[")
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (k, v))
        })
        .collect();
    let intent = json!({
        "id": id, "object": "payment_intent", "amount": amount, "amount_capturable": 0, "amount_received": 0,
        "capture_method": "automatic_async", "client_secret": format!("{id}_secret_fake"),
        "confirmation_method": "automatic", "created": 1_800_000_000, "currency": form.get("currency"),
        "description": form.get("description"), "livemode": false, "metadata": metadata,
        "payment_method_types": ["card"], "receipt_email": form.get("receipt_email"),
        "status": "requires_payment_method",
        "automatic_payment_methods": { "allow_redirects": "always", "enabled": true },
    });
    s.intents.insert(id, intent.clone());
    HttpResponse::Ok().json(intent)
}

async fn fetch(req: HttpRequest, id: web::Path<String>, state: web::Data<Mutex<State>>) -> HttpResponse {
    if let Some(response) = record(&state, &req, HashMap::new()) {
        return response;
    }
    match state.lock().unwrap().intents.get(id.as_str()) {
        Some(intent) => HttpResponse::Ok().json(intent),
        None => error(404, "invalid_request_error", &format!("No such payment_intent: '{id}'")),
    }
}

/// `POST /v1/payment_intents/{id}/cancel`: as Stripe, refuses a PaymentIntent that
/// succeeded or is already canceled.
async fn cancel(req: HttpRequest, id: web::Path<String>, state: web::Data<Mutex<State>>) -> HttpResponse {
    if let Some(response) = record(&state, &req, HashMap::new()) {
        return response;
    }
    let mut s = state.lock().unwrap();
    let Some(intent) = s.intents.get_mut(id.as_str()) else {
        return error(404, "invalid_request_error", &format!("No such payment_intent: '{id}'"));
    };
    let status = intent["status"].as_str().unwrap_or_default().to_owned();
    if matches!(status.as_str(), "succeeded" | "canceled" | "processing") {
        return error(
            400,
            "invalid_request_error",
            &format!("You cannot cancel this PaymentIntent because it has a status of {status}."),
        );
    }
    intent["status"] = json!("canceled");
    intent["cancellation_reason"] = json!("requested_by_customer");
    HttpResponse::Ok().json(intent.clone())
}

/// `GET /v1/payment_intents/search?query=metadata['k']:'v'`: Stripe's search result
/// shape. Other queries are refused as Stripe refuses a query it cannot parse.
async fn search(
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    if let Some(response) = record(&state, &req, query.0.clone()) {
        return response;
    }
    let text = query.get("query").map(String::as_str).unwrap_or_default();
    let Some((key, value)) = text
        .strip_prefix("metadata['")
        .and_then(|rest| rest.split_once("']:'"))
        .and_then(|(key, rest)| rest.strip_suffix('\'').map(|value| (key, value)))
    else {
        return error(
            400,
            "invalid_request_error",
            &format!("the fake cannot parse the query {text:?}"),
        );
    };
    let s = state.lock().unwrap();
    let mut data: Vec<&Value> = s
        .intents
        .values()
        .filter(|intent| intent["metadata"][key].as_str() == Some(value))
        .collect();
    data.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    HttpResponse::Ok().json(json!({
        "object": "search_result", "url": "/v1/payment_intents/search", "has_more": false,
        "next_page": null, "total_count": data.len(), "data": data,
    }))
}

/// `POST /_fake/pay/{id}`: the customer pays; a signed `payment_intent.succeeded` goes
/// to the configured endpoint, like Stripe's would.
async fn pay(id: web::Path<String>, state: web::Data<Mutex<State>>) -> HttpResponse {
    let (intent, webhook) = {
        let mut s = state.lock().unwrap();
        let webhook = s.webhook.clone();
        let Some(intent) = s.intents.get_mut(id.as_str()) else {
            return error(404, "invalid_request_error", &format!("No such payment_intent: '{id}'"));
        };
        if intent["status"] == "canceled" {
            return error(400, "invalid_request_error", "This PaymentIntent was canceled.");
        }
        intent["status"] = json!("succeeded");
        intent["amount_received"] = intent["amount"].clone();
        (intent.clone(), webhook)
    };
    let Some((url, secret)) = webhook else {
        return HttpResponse::Ok().json(json!({ "paid": id.as_str(), "webhook": null }));
    };
    let now = chrono::Utc::now().timestamp();
    let event = json!({
        "id": format!("evt_fake_{}", uuid::Uuid::new_v4().simple()), "object": "event",
        "type": "payment_intent.succeeded", "created": now, "livemode": false, "api_version": "2024-06-20",
        "pending_webhooks": 1, "data": { "object": intent },
    });
    let body = serde_json::to_vec(&event).unwrap();
    let signature = format!("t={now},v1={}", crate::signing::stripe_v1(&secret, now, &body));
    let answer = crate::loopback::deliver(&url, &[("stripe-signature", signature)], Some(body)).await;
    HttpResponse::Ok().json(json!({ "paid": id.as_str(), "webhook": answer }))
}
