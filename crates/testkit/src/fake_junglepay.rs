//! A fake of the JunglePay v1 API (only what payhook calls), on 127.0.0.1 with a
//! random port, under `/v1`: `POST /transactions` and `GET /transactions/{id}` with
//! Basic `secret:x`. Transactions start `waiting_payment`; [`FakeJunglePay::set_status`]
//! moves one, as a customer or the acquirer would.

use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub type Recorded = crate::loopback::Recorded<Value>;

struct State {
    journal: crate::loopback::Journal<Value>,
    basic: String,
    transactions: HashMap<String, Value>,
}

pub struct FakeJunglePay {
    /// Includes `/v1`, as `providers.junglepay.api_base_url` does.
    pub base_url: String,
    state: Arc<Mutex<State>>,
    stall: crate::loopback::Stall,
}

impl FakeJunglePay {
    pub async fn start(secret_key: &str) -> Self {
        Self::start_on(0, secret_key).await.expect("a free loopback port")
    }

    /// Starts the fake on 127.0.0.1:`port` (0: any free port); fails when the port is taken.
    pub async fn start_on(port: u16, secret_key: &str) -> std::io::Result<Self> {
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{secret_key}:x"))
        );
        let state = Arc::new(Mutex::new(State {
            journal: crate::loopback::Journal::default(),
            basic,
            transactions: HashMap::new(),
        }));
        let shared = web::Data::from(state.clone());
        let stall = crate::loopback::Stall::default();
        let root = crate::loopback::serve(port, stall.clone(), move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(shared.clone())
                .route("/v1/transactions", web::post().to(create))
                .route("/v1/transactions/{id}", web::get().to(fetch))
                .route("/v1/transactions/{id}/refund", web::post().to(refund))
                .route("/_fake/pay/{id}", web::post().to(fake_pay))
                .route("/_fake/status/{id}/{status}", web::post().to(fake_status))
                .route("/_fake/callback-url/{id}", web::get().to(fake_callback_url));
        })?;
        Ok(Self {
            base_url: format!("{root}/v1"),
            state,
            stall,
        })
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

    /// Moves a transaction to `status` (`paid`, `refused`, `refunded`, `chargedback`, …)
    /// and returns the postback JunglePay would send: its URL and body.
    pub fn set_status(&self, id: &str, status: &str) -> Option<(String, Value)> {
        move_transaction(&self.state, id, status)
    }

    /// Changes the amount the transaction says it is for (to test mismatches).
    pub fn set_amount(&self, id: &str, cents: i64) {
        if let Some(t) = self.state.lock().unwrap().transactions.get_mut(id) {
            t["amount"] = json!(cents);
        }
    }
}

fn admit(state: &Mutex<State>, req: &HttpRequest, body: Value) -> Option<HttpResponse> {
    let mut s = state.lock().unwrap();
    let (authorization, failure) = s.journal.record(req, body);
    if let Some(status) = failure {
        let code = actix_web::http::StatusCode::from_u16(status).unwrap();
        return Some(HttpResponse::build(code).json(json!({ "message": format!("fake JunglePay answered {status}") })));
    }
    (authorization.as_deref() != Some(s.basic.as_str()))
        .then(|| HttpResponse::Unauthorized().json(json!({ "message": "Invalid credentials" })))
}

async fn create(req: HttpRequest, body: web::Json<Value>, state: web::Data<Mutex<State>>) -> HttpResponse {
    if let Some(answer) = admit(&state, &req, body.0.clone()) {
        return answer;
    }
    let Some(amount) = body["amount"].as_i64() else {
        return HttpResponse::BadRequest().json(json!({ "message": "amount is required" }));
    };
    let mut s = state.lock().unwrap();
    let id = (s.transactions.len() + 282).to_string();
    let now = chrono::Utc::now().to_rfc3339();
    let transaction = json!({
        "id": id.parse::<i64>().unwrap(), "amount": amount, "refundedAmount": 0, "installments": 1,
        "paymentMethod": body["paymentMethod"], "status": "waiting_payment", "postbackUrl": body["postbackUrl"],
        "metadata": body["metadata"], "secureId": format!("secure-{id}"),
        "secureUrl": format!("https://link.compra.com.br/pagar/secure-{id}"), "createdAt": now, "updatedAt": now,
        "customer": body["customer"], "items": body["items"],
        "pix": { "qrcode": format!("00020101021226850014br.gov.bcb.pix{id}"), "expirationDate": "2030-01-01" },
    });
    s.transactions.insert(id, transaction.clone());
    HttpResponse::Ok().json(transaction)
}

async fn fetch(req: HttpRequest, id: web::Path<String>, state: web::Data<Mutex<State>>) -> HttpResponse {
    if let Some(answer) = admit(&state, &req, Value::Null) {
        return answer;
    }
    match state.lock().unwrap().transactions.get(id.as_str()) {
        Some(t) => HttpResponse::Ok().json(t),
        None => HttpResponse::NotFound().json(json!({ "message": "Transaction not found" })),
    }
}

/// `POST /v1/transactions/{id}/refund` `{amount}` (cents): refunds part or all of a
/// paid transaction (`refunded` once all is refunded); the transaction is the answer.
async fn refund(
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Json<Value>,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    if let Some(answer) = admit(&state, &req, body.0.clone()) {
        return answer;
    }
    let mut s = state.lock().unwrap();
    let Some(t) = s.transactions.get_mut(id.as_str()) else {
        return HttpResponse::NotFound().json(json!({ "message": "Transaction not found" }));
    };
    if t["status"] != "paid" {
        return HttpResponse::BadRequest().json(json!({ "message": "Transaction is not paid" }));
    }
    let total = t["amount"].as_i64().unwrap_or_default();
    let refunded = t["refundedAmount"].as_i64().unwrap_or_default();
    let amount = body["amount"].as_i64().unwrap_or(total - refunded);
    if amount <= 0 || refunded + amount > total {
        return HttpResponse::BadRequest().json(json!({ "message": "Refund amount exceeds what is left" }));
    }
    t["refundedAmount"] = json!(refunded + amount);
    if refunded + amount == total {
        t["status"] = json!("refunded");
    }
    HttpResponse::Ok().json(t.clone())
}

/// Moves a transaction to `status`; returns its postback URL and the postback.
fn move_transaction(state: &Mutex<State>, id: &str, status: &str) -> Option<(String, Value)> {
    let mut s = state.lock().unwrap();
    let t = s.transactions.get_mut(id)?;
    t["status"] = json!(status);
    t["updatedAt"] = json!(chrono::Utc::now().to_rfc3339());
    if status == "refunded" {
        t["refundedAmount"] = t["amount"].clone();
    }
    let postback = json!({
        "id": chrono::Utc::now().timestamp_micros(), "type": "transaction", "objectId": id,
        "url": t["postbackUrl"], "data": t,
    });
    Some((t["postbackUrl"].as_str().unwrap_or_default().to_owned(), postback))
}

/// Moves a transaction and sends its postback, as JunglePay would.
async fn move_and_post(state: &Mutex<State>, id: &str, status: &str) -> HttpResponse {
    let Some((url, postback)) = move_transaction(state, id, status) else {
        return HttpResponse::NotFound().json(json!({ "message": "Transaction not found" }));
    };
    let answer = crate::loopback::deliver(&url, &[], Some(serde_json::to_vec(&postback).unwrap())).await;
    HttpResponse::Ok().json(json!({ "transaction": id, "status": status, "postback": answer }))
}

/// `POST /_fake/pay/{id}`: the customer pays the PIX; the postback goes out.
async fn fake_pay(id: web::Path<String>, state: web::Data<Mutex<State>>) -> HttpResponse {
    move_and_post(&state, &id, "paid").await
}

/// `POST /_fake/status/{id}/{status}`: refused, refunded, chargedback, …; the postback goes out.
async fn fake_status(path: web::Path<(String, String)>, state: web::Data<Mutex<State>>) -> HttpResponse {
    let (id, status) = path.into_inner();
    move_and_post(&state, &id, &status).await
}

/// `GET /_fake/callback-url/{id}`: the postback URL payhook gave, token included.
async fn fake_callback_url(id: web::Path<String>, state: web::Data<Mutex<State>>) -> HttpResponse {
    match state.lock().unwrap().transactions.get(id.as_str()) {
        Some(t) => HttpResponse::Ok().json(json!({ "callback_url": t["postbackUrl"] })),
        None => HttpResponse::NotFound().json(json!({ "message": "Transaction not found" })),
    }
}
