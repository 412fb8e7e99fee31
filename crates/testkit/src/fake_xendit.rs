//! A fake of the Xendit invoice API (only what payhook calls), served by a real HTTP
//! server on 127.0.0.1 with a random port: `POST /v2/invoices`, `GET /v2/invoices/{id}`
//! and `GET /v2/invoices?external_id=`. It checks Basic auth like Xendit, answers with
//! Xendit's shapes, records every request, and can be told to fail or stall the next
//! requests, or to make an invoice and then hold its answer back.

use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the fake received.
pub type Recorded = crate::loopback::Recorded<Value>;

#[derive(Default)]
struct State {
    journal: crate::loopback::Journal<Value>,
    secret_key: String,
    base_url: String,
    invoices: HashMap<String, Value>,
    /// Refunds (Refunds API), by id.
    refunds: HashMap<String, Value>,
    /// Creations make their invoice, then wait this long before answering.
    hold_answers: Option<Duration>,
    stall: crate::loopback::Stall,
    /// Where paid invoices are reported, and the callback token to report them with.
    callback: Option<(String, String)>,
}

pub struct FakeXendit {
    pub base_url: String,
    state: Arc<Mutex<State>>,
}

impl FakeXendit {
    /// Starts the fake on a random loopback port; requests must authenticate with `secret_key`.
    pub async fn start(secret_key: &str) -> Self {
        Self::start_on(0, secret_key).await.expect("a free loopback port")
    }

    /// Starts the fake on 127.0.0.1:`port` (0: any free port); fails when the port is taken.
    pub async fn start_on(port: u16, secret_key: &str) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(State {
            secret_key: secret_key.to_owned(),
            ..State::default()
        }));
        let shared = web::Data::from(state.clone());
        let stall = crate::loopback::Stall::default();
        let base_url = crate::loopback::serve(port, stall.clone(), {
            let shared = shared.clone();
            move |cfg: &mut web::ServiceConfig| {
                cfg.app_data(shared.clone())
                    .route("/v2/invoices", web::post().to(create))
                    .route("/v2/invoices", web::get().to(list))
                    .route("/v2/invoices/{id}", web::get().to(fetch))
                    .route("/invoices/{id}/expire!", web::post().to(expire))
                    .route("/refunds", web::post().to(create_refund))
                    .route("/refunds/{id}", web::get().to(fetch_refund))
                    .route("/_fake/refunds/{id}/{status}", web::post().to(settle_refund))
                    .route("/_fake/pay/{id}", web::post().to(pay));
            }
        })?;
        {
            let mut s = shared.lock().unwrap();
            s.base_url = base_url.clone();
            s.stall = stall;
        }
        Ok(Self { base_url, state })
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().journal.requests()
    }

    /// Answer the next requests with these HTTP statuses (then behave again).
    pub fn fail_next(&self, statuses: &[u16]) {
        self.state.lock().unwrap().journal.fail_next(statuses);
    }

    /// Wait this long before answering every later request (to provoke timeouts);
    /// `Duration::ZERO` stops stalling requests that come after.
    pub fn stall(&self, delay: Duration) {
        self.state.lock().unwrap().stall.set(delay);
    }

    /// Make each later invoice at once but answer its creation only after `delay`:
    /// Xendit has the invoice while its creator still waits for the answer.
    pub fn hold_answers(&self, delay: Duration) {
        self.state.lock().unwrap().hold_answers = (!delay.is_zero()).then_some(delay);
    }

    /// How many requests are waiting in a stall or a held answer now.
    pub fn stalled(&self) -> usize {
        self.state.lock().unwrap().stall.waiting()
    }

    /// The invoices made so far, oldest first.
    pub fn invoices(&self) -> Vec<Value> {
        let mut invoices: Vec<Value> = self.state.lock().unwrap().invoices.values().cloned().collect();
        invoices.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        invoices
    }

    /// Where `POST /_fake/pay/{id}` reports a paid invoice (Xendit's callback URL is set
    /// per account), with the account's callback token.
    pub fn send_callbacks_to(&self, url: &str, callback_token: &str) {
        self.state.lock().unwrap().callback = Some((url.to_owned(), callback_token.to_owned()));
    }

    /// Marks an invoice paid, as if the customer had paid it in full.
    /// Settles a refund as the provider would, sending no webhook (a lost one).
    pub fn set_refund_status(&self, id: &str, status: &str) {
        if let Some(refund) = self.state.lock().unwrap().refunds.get_mut(id) {
            refund["status"] = serde_json::json!(status);
        }
    }

    pub fn mark_paid(&self, invoice_id: &str) {
        if let Some(invoice) = self.state.lock().unwrap().invoices.get_mut(invoice_id) {
            invoice["status"] = json!("PAID");
            invoice["paid_amount"] = invoice["amount"].clone();
        }
    }
}

/// Records the request; `Some` is the error answer to give instead of a normal one.
fn record(state: &Mutex<State>, req: &HttpRequest, body: Value) -> Option<HttpResponse> {
    let mut s = state.lock().unwrap();
    let (authorization, failure) = s.journal.record(req, body);
    if let Some(status) = failure {
        let code = actix_web::http::StatusCode::from_u16(status).unwrap();
        return Some(
            HttpResponse::build(code).json(
                json!({ "error_code": "SIMULATED_FAILURE", "message": format!("fake Xendit answered {status}") }),
            ),
        );
    }
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:", s.secret_key))
    );
    if authorization.as_deref() != Some(expected.as_str()) {
        return Some(
            HttpResponse::Unauthorized()
                .json(json!({ "error_code": "INVALID_API_KEY", "message": "API key is invalid" })),
        );
    }
    None
}

async fn create(req: HttpRequest, body: web::Json<Value>, state: web::Data<Mutex<State>>) -> HttpResponse {
    if let Some(response) = record(&state, &req, body.0.clone()) {
        return response;
    }
    let (invoice, hold) = {
        let mut s = state.lock().unwrap();
        let id = format!("inv_fake_{:04}", s.invoices.len() + 1);
        let invoice = json!({
            "id": id, "external_id": body["external_id"], "user_id": "fake_user", "status": "PENDING",
            "merchant_name": "payhook fake", "amount": body["amount"], "currency": body.get("currency").cloned().unwrap_or(json!("IDR")),
            "payer_email": body.get("payer_email"), "description": body.get("description"),
            "expiry_date": "2030-01-01T00:00:00.000Z", "invoice_url": format!("{}/web/{id}", s.base_url),
            "metadata": body.get("metadata"),
        });
        s.invoices.insert(id, invoice.clone());
        (invoice, (s.hold_answers, s.stall.clone()))
    };
    let (hold, stall) = hold;
    stall.wait(hold).await;
    HttpResponse::Ok().json(invoice)
}

/// `POST /refunds`: a `PENDING` refund of a paid invoice (one `Idempotency-key` makes
/// one refund); more than is left is refused.
async fn create_refund(req: HttpRequest, body: web::Json<Value>, state: web::Data<Mutex<State>>) -> HttpResponse {
    if let Some(response) = record(&state, &req, body.0.clone()) {
        return response;
    }
    let mut s = state.lock().unwrap();
    let key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(first) = s
        .refunds
        .values()
        .find(|r| key.is_some() && r["_idempotency_key"].as_str() == key.as_deref())
    {
        return HttpResponse::Ok().json(first);
    }
    let invoice_id = body["invoice_id"].as_str().unwrap_or_default().to_owned();
    let Some(invoice) = s.invoices.get(&invoice_id).cloned() else {
        return HttpResponse::NotFound()
            .json(json!({ "error_code": "DATA_NOT_FOUND", "message": "Invoice not found" }));
    };
    if invoice["status"] != "PAID" && invoice["status"] != "SETTLED" {
        return HttpResponse::BadRequest()
            .json(json!({ "error_code": "INELIGIBLE_TRANSACTION", "message": "The invoice is not paid" }));
    }
    let amount = body["amount"].as_f64().unwrap_or_default();
    let refunded: f64 = s
        .refunds
        .values()
        .filter(|r| r["invoice_id"] == invoice_id.as_str() && r["status"] != "FAILED")
        .filter_map(|r| r["amount"].as_f64())
        .sum();
    let paid = invoice["paid_amount"].as_f64().unwrap_or_default();
    if amount <= 0.0 || amount + refunded > paid {
        return HttpResponse::BadRequest().json(
            json!({ "error_code": "REFUND_AMOUNT_EXCEEDED", "message": "The refund amount exceeds what is left" }),
        );
    }
    let id = format!("rfd-fake-{:04}", s.refunds.len() + 1);
    let refund = json!({
        "id": id, "invoice_id": invoice_id, "payment_id": null, "amount": body["amount"],
        "currency": body["currency"], "status": "PENDING", "reason": body["reason"],
        "reference_id": body["reference_id"], "failure_code": null, "metadata": body["metadata"],
        "created": chrono::Utc::now().to_rfc3339(), "updated": chrono::Utc::now().to_rfc3339(),
        "_idempotency_key": key,
    });
    s.refunds.insert(id, refund.clone());
    HttpResponse::Ok().json(refund)
}

/// `GET /refunds/{id}` (Get refund).
async fn fetch_refund(req: HttpRequest, id: web::Path<String>, state: web::Data<Mutex<State>>) -> HttpResponse {
    if let Some(response) = record(&state, &req, Value::Null) {
        return response;
    }
    match state.lock().unwrap().refunds.get(id.as_str()) {
        Some(refund) => HttpResponse::Ok().json(refund),
        None => HttpResponse::NotFound().json(json!({ "error_code": "DATA_NOT_FOUND", "message": "Refund not found" })),
    }
}

/// `POST /_fake/refunds/{id}/{status}[?deliver=false]` (`SUCCEEDED`, `FAILED`): the
/// refund settles and its callback (`refund.succeeded` / `refund.failed`) goes to the
/// configured URL, unless `deliver=false` (a lost callback).
async fn settle_refund(
    path: web::Path<(String, String)>,
    deliver: web::Query<crate::loopback::Deliver>,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    let (id, status) = path.into_inner();
    let (refund, callback) = {
        let mut s = state.lock().unwrap();
        let callback = s.callback.clone();
        let Some(refund) = s.refunds.get_mut(&id) else {
            return HttpResponse::NotFound().json(json!({ "error": format!("no refund {id}") }));
        };
        refund["status"] = json!(status);
        refund["updated"] = json!(chrono::Utc::now().to_rfc3339());
        (refund.clone(), callback.filter(|_| deliver.deliver))
    };
    let Some((url, token)) = callback else {
        return HttpResponse::Ok().json(json!({ "refund": id, "callback": null }));
    };
    let event = if status == "FAILED" {
        "refund.failed"
    } else {
        "refund.succeeded"
    };
    let body = serde_json::to_vec(&json!({
        "event": event, "business_id": "fake_business", "created": chrono::Utc::now().to_rfc3339(),
        "data": refund,
    }))
    .unwrap();
    let answer = crate::loopback::deliver(&url, &[("x-callback-token", token)], Some(body)).await;
    HttpResponse::Ok().json(json!({ "refund": id, "callback": answer }))
}

/// `POST /invoices/{id}/expire!`: a pending invoice expires at once; a paid one is
/// refused.
async fn expire(req: HttpRequest, id: web::Path<String>, state: web::Data<Mutex<State>>) -> HttpResponse {
    if let Some(response) = record(&state, &req, Value::Null) {
        return response;
    }
    let mut s = state.lock().unwrap();
    match s.invoices.get_mut(id.as_str()) {
        None => HttpResponse::NotFound()
            .json(json!({ "error_code": "INVOICE_NOT_FOUND_ERROR", "message": "Invoice not found" })),
        Some(invoice) if invoice["status"] != "PENDING" => HttpResponse::BadRequest().json(json!({
            "error_code": "INVALID_INVOICE_STATUS", "message": format!("the invoice is {}", invoice["status"]),
        })),
        Some(invoice) => {
            invoice["status"] = json!("EXPIRED");
            HttpResponse::Ok().json(invoice.clone())
        }
    }
}

/// `GET /v2/invoices?external_id=…`: the invoices made with that `external_id`, as a
/// JSON array (empty when none).
async fn list(
    req: HttpRequest,
    query: web::Query<std::collections::HashMap<String, String>>,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    if let Some(response) = record(&state, &req, json!({ "query": req.query_string() })) {
        return response;
    }
    let external_id = query.get("external_id").cloned();
    let s = state.lock().unwrap();
    let mut found: Vec<&Value> = s
        .invoices
        .values()
        .filter(|invoice| external_id.is_none() || invoice["external_id"].as_str() == external_id.as_deref())
        .collect();
    found.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    HttpResponse::Ok().json(found)
}

async fn fetch(req: HttpRequest, id: web::Path<String>, state: web::Data<Mutex<State>>) -> HttpResponse {
    if let Some(response) = record(&state, &req, Value::Null) {
        return response;
    }
    match state.lock().unwrap().invoices.get(id.as_str()) {
        Some(invoice) => HttpResponse::Ok().json(invoice),
        None => HttpResponse::NotFound()
            .json(json!({ "error_code": "INVOICE_NOT_FOUND_ERROR", "message": "Invoice not found" })),
    }
}

/// `POST /_fake/pay/{id}[?drop_callback=true]`: the customer pays the invoice in full;
/// the callback goes to the configured URL, like Xendit's would, unless it is dropped.
/// `drop_callback=true` loses the callback, as one Xendit gave up on after its timeout.
async fn pay(
    id: web::Path<String>,
    query: web::Query<std::collections::HashMap<String, String>>,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    let drop_callback = query.get("drop_callback").is_some_and(|v| v == "true");
    let (invoice, callback) = {
        let mut s = state.lock().unwrap();
        let callback = s.callback.clone();
        let Some(invoice) = s.invoices.get_mut(id.as_str()) else {
            return HttpResponse::NotFound().json(json!({ "error": format!("no invoice {id}") }));
        };
        if invoice["status"] == "EXPIRED" {
            return HttpResponse::BadRequest().json(json!({ "error": format!("invoice {id} has expired") }));
        }
        invoice["status"] = json!("PAID");
        invoice["paid_amount"] = invoice["amount"].clone();
        invoice["paid_at"] = json!(chrono::Utc::now().to_rfc3339());
        (invoice.clone(), callback)
    };
    let Some((url, token)) = callback.filter(|_| !drop_callback) else {
        return HttpResponse::Ok().json(json!({ "paid": id.as_str(), "callback": null }));
    };
    let body = serde_json::to_vec(&invoice).unwrap();
    let answer = crate::loopback::deliver(&url, &[("x-callback-token", token)], Some(body)).await;
    HttpResponse::Ok().json(json!({ "paid": id.as_str(), "callback": answer }))
}
