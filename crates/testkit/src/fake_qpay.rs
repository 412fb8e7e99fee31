//! A fake of the QPay v2 merchant API (only what payhook calls), on 127.0.0.1 with a
//! random port, under `/v2`: `POST /auth/token` (Basic), `POST /invoice` and
//! `POST /payment/check` (Bearer). Scriptable: how long tokens live and whether
//! `expires_in` is an epoch, "the next checks say unpaid", failures; an invoice is
//! paid (fully or partly) with [`FakeQPay::pay`].

use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub type Recorded = crate::loopback::Recorded<Value>;

struct Invoice {
    amount: i64,
    paid: i64,
    callback_url: String,
    canceled: bool,
}

struct State {
    journal: crate::loopback::Journal<Value>,
    basic: String,
    token_lifetime_secs: i64,
    epoch_expiry: bool,
    issued: Vec<(String, i64)>,
    invoices: HashMap<String, Invoice>,
    unpaid_checks: usize,
}

pub struct FakeQPay {
    /// Includes `/v2`, as `providers.qpay.api_base_url` does.
    pub base_url: String,
    state: Arc<Mutex<State>>,
    stall: crate::loopback::Stall,
}

impl FakeQPay {
    pub async fn start(client_id: &str, client_secret: &str) -> Self {
        Self::start_on(0, client_id, client_secret)
            .await
            .expect("a free loopback port")
    }

    /// Starts the fake on 127.0.0.1:`port` (0: any free port); fails when the port is taken.
    pub async fn start_on(port: u16, client_id: &str, client_secret: &str) -> std::io::Result<Self> {
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{client_secret}"))
        );
        let state = Arc::new(Mutex::new(State {
            journal: crate::loopback::Journal::default(),
            basic,
            token_lifetime_secs: 3600,
            epoch_expiry: false,
            issued: Vec::new(),
            invoices: HashMap::new(),
            unpaid_checks: 0,
        }));
        let shared = web::Data::from(state.clone());
        let stall = crate::loopback::Stall::default();
        let root = crate::loopback::serve(port, stall.clone(), move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(shared.clone())
                .route("/v2/auth/token", web::post().to(token))
                .route("/v2/invoice", web::post().to(invoice))
                .route("/v2/payment/check", web::post().to(check))
                .route("/v2/invoice/{id}", web::delete().to(cancel))
                .route("/_fake/pay/{id}", web::post().to(fake_pay))
                .route("/_fake/callback-url/{id}", web::get().to(fake_callback_url));
        })?;
        Ok(Self {
            base_url: format!("{root}/v2"),
            state,
            stall,
        })
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().journal.requests()
    }

    /// How many access tokens were asked for.
    pub fn token_requests(&self) -> usize {
        self.requests().iter().filter(|r| r.path == "/v2/auth/token").count()
    }

    /// Tokens issued from now on live this long; with `as_epoch`, `expires_in` is the
    /// absolute expiry time (as the QPay sandbox answers).
    pub fn token_lifetime(&self, secs: i64, as_epoch: bool) {
        let mut s = self.state.lock().unwrap();
        s.token_lifetime_secs = secs;
        s.epoch_expiry = as_epoch;
    }

    /// Invalidates every token issued so far, as QPay does when a session ends early.
    pub fn revoke_tokens(&self) {
        self.state.lock().unwrap().issued.clear();
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

    /// The next `n` payment checks answer "nothing paid" whatever was paid (QPay's
    /// check can lag behind its callback).
    pub fn next_checks_unpaid(&self, n: usize) {
        self.state.lock().unwrap().unpaid_checks = n;
    }

    /// Records a payment of `major` tögrög on the invoice; returns its callback URL.
    pub fn pay(&self, invoice_id: &str, major: i64) -> Option<String> {
        let mut s = self.state.lock().unwrap();
        let invoice = s.invoices.get_mut(invoice_id)?;
        invoice.paid += major;
        Some(invoice.callback_url.clone())
    }

    /// The invoice's amount in tögrög, as payhook asked for it.
    pub fn invoice_amount(&self, invoice_id: &str) -> Option<i64> {
        self.state.lock().unwrap().invoices.get(invoice_id).map(|i| i.amount)
    }

    /// The callback URL payhook gave for the invoice (it holds the payment's token).
    pub fn callback_url(&self, invoice_id: &str) -> Option<String> {
        self.state
            .lock()
            .unwrap()
            .invoices
            .get(invoice_id)
            .map(|i| i.callback_url.clone())
    }
}

fn error(status: u16, code: &str) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status).unwrap();
    HttpResponse::build(status).json(json!({ "error": code, "message": format!("fake QPay: {code}") }))
}

/// Records the request and checks `expected` credentials; `Some` is the answer to give instead.
fn admit(state: &Mutex<State>, req: &HttpRequest, body: Value, bearer: bool) -> Option<HttpResponse> {
    let mut s = state.lock().unwrap();
    let (authorization, failure) = s.journal.record(req, body);
    if let Some(status) = failure {
        return Some(error(status, "SIMULATED_FAILURE"));
    }
    let now = chrono::Utc::now().timestamp();
    let ok = match (bearer, authorization) {
        (false, Some(a)) => a == s.basic,
        (true, Some(a)) => s
            .issued
            .iter()
            .any(|(t, expires)| a == format!("Bearer {t}") && *expires > now),
        _ => false,
    };
    (!ok).then(|| error(401, if bearer { "NO_CREDENTIALS" } else { "CLIENT_NOTFOUND" }))
}

async fn token(req: HttpRequest, state: web::Data<Mutex<State>>) -> HttpResponse {
    if let Some(answer) = admit(&state, &req, Value::Null, false) {
        return answer;
    }
    let mut s = state.lock().unwrap();
    let now = chrono::Utc::now().timestamp();
    let access = format!("fake-access-{}", s.issued.len() + 1);
    let expires_at = now + s.token_lifetime_secs;
    s.issued.push((access.clone(), expires_at));
    let expires_in = if s.epoch_expiry {
        expires_at
    } else {
        s.token_lifetime_secs
    };
    HttpResponse::Ok().json(json!({
        "token_type": "bearer", "access_token": access, "expires_in": expires_in,
        "refresh_token": "fake-refresh", "refresh_expires_in": expires_in, "scope": "get_token",
    }))
}

async fn invoice(req: HttpRequest, body: web::Json<Value>, state: web::Data<Mutex<State>>) -> HttpResponse {
    if let Some(answer) = admit(&state, &req, body.0.clone(), true) {
        return answer;
    }
    let (Some(amount), Some(callback_url)) = (body["amount"].as_i64(), body["callback_url"].as_str()) else {
        return error(400, "INVALID_AMOUNT_OR_CALLBACK");
    };
    let mut s = state.lock().unwrap();
    let id = format!("fake-invoice-{}", s.invoices.len() + 1);
    s.invoices.insert(
        id.clone(),
        Invoice {
            amount,
            paid: 0,
            callback_url: callback_url.to_owned(),
            canceled: false,
        },
    );
    HttpResponse::Ok().json(json!({
        "invoice_id": id, "qr_text": format!("0002010102121531{id}"), "qr_image": "iVBORw0KGgoAAAANSUhEUg==",
        "qPay_shortUrl": format!("https://qpay.mn/s/{id}"),
        "urls": [{ "name": "Khan Bank", "description": "Khan Bank app", "logo": "", "link": format!("khanbank://q?qPay_QRcode={id}") }],
    }))
}

async fn check(req: HttpRequest, body: web::Json<Value>, state: web::Data<Mutex<State>>) -> HttpResponse {
    if let Some(answer) = admit(&state, &req, body.0.clone(), true) {
        return answer;
    }
    let mut s = state.lock().unwrap();
    let id = body["object_id"].as_str().unwrap_or_default().to_owned();
    let lagging = s.unpaid_checks > 0;
    s.unpaid_checks = s.unpaid_checks.saturating_sub(1);
    let Some(invoice) = s.invoices.get(&id) else {
        return error(404, "INVOICE_NOTFOUND");
    };
    if lagging || invoice.paid == 0 {
        return HttpResponse::Ok().json(json!({ "count": 0, "paid_amount": 0, "rows": [] }));
    }
    let status = if invoice.paid >= invoice.amount {
        "PAID"
    } else {
        "PARTIAL"
    };
    HttpResponse::Ok().json(json!({
        "count": 1, "paid_amount": invoice.paid as f64,
        "rows": [{ "payment_id": format!("pay-{id}"), "payment_status": status,
                   "payment_amount": format!("{}.00", invoice.paid), "payment_currency": "MNT" }],
    }))
}

/// `DELETE /v2/invoice/{id}`: cancels an unpaid invoice (a paid one is refused).
async fn cancel(req: HttpRequest, id: web::Path<String>, state: web::Data<Mutex<State>>) -> HttpResponse {
    if let Some(answer) = admit(&state, &req, Value::Null, true) {
        return answer;
    }
    let mut s = state.lock().unwrap();
    match s.invoices.get_mut(id.as_str()) {
        None => error(404, "INVOICE_NOTFOUND"),
        Some(invoice) if invoice.paid > 0 => error(400, "INVOICE_PAID"),
        Some(invoice) => {
            invoice.canceled = true;
            HttpResponse::Ok().json(json!({ "invoice_id": id.as_str(), "invoice_status": "CANCELED" }))
        }
    }
}

/// `POST /_fake/pay/{invoice_id}`: the customer pays the invoice in full; QPay then
/// calls the invoice's callback URL.
async fn fake_pay(id: web::Path<String>, state: web::Data<Mutex<State>>) -> HttpResponse {
    let url = {
        let mut s = state.lock().unwrap();
        let Some(invoice) = s.invoices.get_mut(id.as_str()) else {
            return error(404, "INVOICE_NOTFOUND");
        };
        if invoice.canceled {
            return error(400, "INVOICE_CANCELED");
        }
        invoice.paid = invoice.amount;
        invoice.callback_url.clone()
    };
    let body = serde_json::to_vec(&json!({ "invoice_id": id.as_str() })).unwrap();
    let answer = crate::loopback::deliver(&url, &[], Some(body)).await;
    HttpResponse::Ok().json(json!({ "paid": id.as_str(), "callback": answer }))
}

/// `GET /_fake/callback-url/{invoice_id}`: the callback URL payhook gave, token included
/// (what QPay itself holds), for `payhook simulate qpay … --token`.
async fn fake_callback_url(id: web::Path<String>, state: web::Data<Mutex<State>>) -> HttpResponse {
    match state.lock().unwrap().invoices.get(id.as_str()) {
        Some(invoice) => HttpResponse::Ok().json(json!({ "callback_url": invoice.callback_url })),
        None => error(404, "INVOICE_NOTFOUND"),
    }
}
