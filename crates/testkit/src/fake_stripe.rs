//! A fake of the Stripe PaymentIntents API (only what payhook calls), served by a real
//! HTTP server on 127.0.0.1: `POST /v1/payment_intents` (form-encoded, as Stripe takes
//! it) and `GET /v1/payment_intents/{id}`. Checks the bearer key, answers with complete
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
}

pub struct FakeStripe {
    pub base_url: String,
    state: Arc<Mutex<State>>,
}

impl FakeStripe {
    /// Starts the fake; requests must carry `Authorization: Bearer <api_key>`.
    pub async fn start(api_key: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            api_key: api_key.to_owned(),
            ..State::default()
        }));
        let shared = web::Data::from(state.clone());
        let base_url = crate::loopback::serve(move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(shared.clone())
                .route("/v1/payment_intents", web::post().to(create))
                .route("/v1/payment_intents/{id}", web::get().to(fetch));
        });
        Self { base_url, state }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().journal.requests()
    }

    /// Answer the next requests with these HTTP statuses (then behave again).
    pub fn fail_next(&self, statuses: &[u16]) {
        self.state.lock().unwrap().journal.fail_next(statuses);
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
