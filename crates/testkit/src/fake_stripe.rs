//! A fake of the Stripe PaymentIntents API (only what payhook calls), served by a real
//! HTTP server on 127.0.0.1: `POST /v1/payment_intents` (form-encoded, as Stripe takes
//! it), `GET /v1/payment_intents/{id}` and `GET /v1/payment_intents/search` (the one
//! query payhook makes: `metadata['key']:'value'`), and Checkout Sessions (create,
//! retrieve, expire; `POST /_fake/pay/cs_…` completes one and sends the succeeded
//! PaymentIntent's event). Checks the bearer key, answers with complete
//! PaymentIntent objects (the SDK's parse is strict), records requests, and can be told
//! to fail the next ones.

#[path = "fake_stripe_billing.rs"]
mod billing;

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
    /// Checkout Sessions, by id.
    sessions: HashMap<String, Value>,
    /// Refunds, by id.
    refunds: HashMap<String, Value>,
    /// Each session's `payment_intent_data.metadata`, for the PaymentIntent made when
    /// it is paid.
    session_intent_metadata: HashMap<String, Value>,
    /// PaymentIntent ids by the Idempotency-Key that created them.
    idempotent: HashMap<String, String>,
    /// Where events go, and the endpoint secret they are signed with.
    webhook: Option<(String, String)>,
    /// Billing objects (customers, invoices, …) by account (`""`: the platform) and
    /// collection (`customers`), in the order they were put: what `GET /v1/{collection}`
    /// lists, newest first, and `GET /v1/{collection}/{id}` reads.
    objects: HashMap<(String, String), Vec<Value>>,
    /// Each subscription-mode session's `subscription_data.metadata`.
    session_subscription_metadata: HashMap<String, Value>,
    /// The `created` of the last billing event sent (they go a second apart at least).
    last_event: i64,
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
                .route("/v1/refunds", web::post().to(create_refund))
                .route("/v1/refunds/{id}", web::get().to(fetch_refund))
                .route("/_fake/refunds/{id}/{status}", web::post().to(settle_refund))
                .route("/v1/checkout/sessions", web::post().to(create_session))
                .route("/v1/checkout/sessions/{id}", web::get().to(fetch_session))
                .route("/v1/checkout/sessions/{id}/expire", web::post().to(expire_session))
                .route("/_fake/pay/{id}", web::post().to(pay))
                .route("/_fake/objects/{collection}", web::post().to(put_object_over_http))
                .configure(billing::routes)
                .route("/v1/{collection}", web::get().to(list_objects))
                .route("/v1/{collection}/{id}", web::get().to(fetch_object));
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

    /// The customer pays Checkout Session `id` (no event is sent): it completes, with
    /// a succeeded PaymentIntent; that PaymentIntent's id.
    pub fn complete_session(&self, id: &str) -> Option<String> {
        let intent = complete_session(&mut self.state.lock().unwrap(), id)?;
        intent["id"].as_str().map(str::to_owned)
    }

    /// Marks a PaymentIntent succeeded, as if the customer had paid.
    /// How many refunds Stripe made.
    pub fn refund_count(&self) -> usize {
        self.state.lock().unwrap().refunds.len()
    }

    /// Settles a refund as the provider would, sending no webhook (a lost one).
    pub fn set_refund_status(&self, id: &str, status: &str) {
        if let Some(refund) = self.state.lock().unwrap().refunds.get_mut(id) {
            refund["status"] = serde_json::json!(status);
        }
    }

    /// Puts a billing object (customer, invoice, …, with its `id`) in `collection`
    /// (`customers`, `invoices`, …) of `account` (`""`: the platform), replacing one with
    /// the same id: what retrieve and list answer.
    pub fn put_object(&self, account: &str, collection: &str, object: Value) {
        put(&mut self.state.lock().unwrap(), account, collection, object);
    }

    pub fn succeed(&self, id: &str) {
        if let Some(intent) = self.state.lock().unwrap().intents.get_mut(id) {
            intent["status"] = json!("succeeded");
            intent["amount_received"] = intent["amount"].clone();
        }
    }
}

fn put(s: &mut State, account: &str, collection: &str, object: Value) {
    let objects = s
        .objects
        .entry((account.to_owned(), collection.to_owned()))
        .or_default();
    match objects.iter_mut().find(|o| o["id"] == object["id"]) {
        Some(stored) => *stored = object,
        None => objects.push(object),
    }
}

/// The account a request acts as: its `Stripe-Account` header, `""` for the platform.
fn account_of(req: &HttpRequest) -> String {
    req.headers()
        .get("stripe-account")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// `POST /_fake/objects/{collection}?account=`: puts the JSON body there.
async fn put_object_over_http(
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
    body: web::Json<Value>,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    let account = query.get("account").cloned().unwrap_or_default();
    put(&mut state.lock().unwrap(), &account, &path, body.into_inner());
    HttpResponse::Ok().json(json!({ "stored": true }))
}

/// `GET /v1/{collection}/{id}` of a billing object, as the `Stripe-Account` header's
/// account.
async fn fetch_object(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    if let Some(response) = record(&state, &req, HashMap::new()) {
        return response;
    }
    let (collection, id) = path.into_inner();
    let s = state.lock().unwrap();
    let found = s
        .objects
        .get(&(account_of(&req), collection.clone()))
        .and_then(|objects| objects.iter().find(|o| o["id"] == id.as_str()));
    match found {
        Some(object) => HttpResponse::Ok().json(object),
        None => error(404, "invalid_request_error", &format!("No such {collection}: '{id}'")),
    }
}

/// `GET /v1/{collection}?limit=&starting_after=&created[gte]=`: newest first (the
/// order put, reversed), `has_more` when more follow.
async fn list_objects(req: HttpRequest, path: web::Path<String>, state: web::Data<Mutex<State>>) -> HttpResponse {
    if let Some(response) = record(&state, &req, HashMap::new()) {
        return response;
    }
    let query: HashMap<String, String> = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let limit: usize = query.get("limit").and_then(|l| l.parse().ok()).unwrap_or(10);
    let since: i64 = query
        .get("created[gte]")
        .and_then(|c| c.parse().ok())
        .unwrap_or(i64::MIN);
    let s = state.lock().unwrap();
    let all: Vec<&Value> = s
        .objects
        .get(&(account_of(&req), path.into_inner()))
        .map(|objects| {
            objects
                .iter()
                .rev()
                .filter(|o| o["created"].as_i64().unwrap_or(0) >= since)
                .collect()
        })
        .unwrap_or_default();
    let start = match query.get("starting_after") {
        Some(after) => match all.iter().position(|o| o["id"] == after.as_str()) {
            Some(i) => i + 1,
            None => return error(400, "invalid_request_error", "No such object for starting_after"),
        },
        None => 0,
    };
    let page: Vec<&Value> = all.iter().skip(start).take(limit).copied().collect();
    let has_more = start + page.len() < all.len();
    HttpResponse::Ok().json(json!({ "object": "list", "data": page, "has_more": has_more, "url": "/v1/list" }))
}

/// The `metadata[key]=value` fields of a form-encoded request, as Stripe reads them.
fn metadata_of(form: &HashMap<String, String>) -> HashMap<&str, &String> {
    form.iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[")
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (k, v))
        })
        .collect()
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
    let metadata = metadata_of(&form);
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

/// `POST /v1/refunds` (form-encoded): a `pending` refund of a succeeded PaymentIntent
/// (as a card refund starts); more than is left is refused like Stripe refuses it.
async fn create_refund(
    req: HttpRequest,
    form: web::Form<HashMap<String, String>>,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    let form = form.into_inner();
    if let Some(response) = record(&state, &req, form.clone()) {
        return response;
    }
    let mut s = state.lock().unwrap();
    let key = req.headers().get("idempotency-key").and_then(|v| v.to_str().ok());
    if let Some(first) = key.and_then(|k| s.idempotent.get(k)).and_then(|id| s.refunds.get(id)) {
        return HttpResponse::Ok().json(first);
    }
    let Some(intent) = form.get("payment_intent").and_then(|pi| s.intents.get(pi)).cloned() else {
        return error(400, "invalid_request_error", "No such payment_intent.");
    };
    if intent["status"] != "succeeded" {
        return error(
            400,
            "invalid_request_error",
            "This PaymentIntent does not have a successful charge to refund.",
        );
    }
    let received = intent["amount_received"].as_i64().unwrap_or_default();
    let refunded: i64 = s
        .refunds
        .values()
        .filter(|r| r["payment_intent"] == intent["id"] && r["status"] != "failed" && r["status"] != "canceled")
        .filter_map(|r| r["amount"].as_i64())
        .sum();
    let amount = form
        .get("amount")
        .and_then(|a| a.parse::<i64>().ok())
        .unwrap_or(received - refunded);
    if amount <= 0 || amount > received - refunded {
        return error(
            400,
            "invalid_request_error",
            &format!(
                "Refund amount ({amount}) is greater than unrefunded amount on charge ({}).",
                received - refunded
            ),
        );
    }
    let id = format!("re_fake{:020}", s.refunds.len() + 1);
    if let Some(key) = key {
        s.idempotent.insert(key.to_owned(), id.clone());
    }
    let metadata = metadata_of(&form);
    let refund = json!({
        "id": id, "object": "refund", "amount": amount, "currency": intent["currency"], "status": "pending",
        "payment_intent": intent["id"], "charge": format!("ch_for_{}", intent["id"].as_str().unwrap_or_default()),
        "reason": form.get("reason"), "metadata": metadata, "created": chrono::Utc::now().timestamp(),
    });
    s.refunds.insert(id, refund.clone());
    HttpResponse::Ok().json(refund)
}

/// `GET /v1/refunds/{id}` (Retrieve a refund).
async fn fetch_refund(req: HttpRequest, id: web::Path<String>, state: web::Data<Mutex<State>>) -> HttpResponse {
    if let Some(response) = record(&state, &req, HashMap::new()) {
        return response;
    }
    match state.lock().unwrap().refunds.get(id.as_str()) {
        Some(refund) => HttpResponse::Ok().json(refund),
        None => error(404, "invalid_request_error", &format!("No such refund: '{id}'")),
    }
}

/// `POST /_fake/refunds/{id}/{status}[?deliver=false]`: the refund settles
/// (`succeeded`, `failed`, `canceled`); a signed `refund.updated` (or `refund.failed`)
/// goes to the configured endpoint, like Stripe's, unless `deliver=false`.
async fn settle_refund(
    path: web::Path<(String, String)>,
    deliver: web::Query<crate::loopback::Deliver>,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    let (id, status) = path.into_inner();
    let (refund, webhook) = {
        let mut s = state.lock().unwrap();
        let webhook = s.webhook.clone();
        let Some(refund) = s.refunds.get_mut(&id) else {
            return error(404, "invalid_request_error", &format!("No such refund: '{id}'"));
        };
        refund["status"] = json!(status);
        (refund.clone(), webhook.filter(|_| deliver.deliver))
    };
    let Some((url, secret)) = webhook else {
        return HttpResponse::Ok().json(json!({ "refund": id, "webhook": null }));
    };
    let now = chrono::Utc::now().timestamp();
    let kind = if status == "failed" {
        "refund.failed"
    } else {
        "refund.updated"
    };
    let event = json!({
        "id": format!("evt_fake_{}", uuid::Uuid::new_v4().simple()), "object": "event", "type": kind,
        "created": now, "livemode": false, "api_version": "2024-06-20", "pending_webhooks": 1,
        "data": { "object": refund },
    });
    let body = serde_json::to_vec(&event).unwrap();
    let signature = format!("t={now},v1={}", crate::signing::stripe_v1(&secret, now, &body));
    let answer = crate::loopback::deliver(&url, &[("stripe-signature", signature)], Some(body)).await;
    HttpResponse::Ok().json(json!({ "refund": id, "webhook": answer }))
}

/// `POST /v1/checkout/sessions` (form-encoded): an open session with a hosted-page
/// URL; the PaymentIntent is made when the customer pays, as in current API versions.
async fn create_session(
    req: HttpRequest,
    form: web::Form<HashMap<String, String>>,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    let form = form.into_inner();
    if let Some(response) = record(&state, &req, form.clone()) {
        return response;
    }
    {
        let mut s = state.lock().unwrap();
        let key = req.headers().get("idempotency-key").and_then(|v| v.to_str().ok());
        if let Some(first) = key.and_then(|k| s.idempotent.get(k)).and_then(|id| s.sessions.get(id)) {
            return HttpResponse::Ok().json(first);
        }
        let id = format!("cs_test_fake{:020}", s.sessions.len() + 1);
        match billing::subscription_session(&mut s, &form, &id) {
            None => {}
            Some(Err(response)) => return response,
            Some(Ok(session)) => {
                if let Some(key) = key {
                    s.idempotent.insert(key.to_owned(), id.clone());
                }
                s.sessions.insert(id, session.clone());
                return HttpResponse::Ok().json(session);
            }
        }
    }
    let (Some(amount), Some(success_url)) = (
        form.get("line_items[0][price_data][unit_amount]")
            .and_then(|a| a.parse::<i64>().ok()),
        form.get("success_url"),
    ) else {
        return error(
            400,
            "invalid_request_error",
            "Missing required param: line_items or success_url.",
        );
    };
    let mut s = state.lock().unwrap();
    let key = req.headers().get("idempotency-key").and_then(|v| v.to_str().ok());
    if let Some(first) = key.and_then(|k| s.idempotent.get(k)).and_then(|id| s.sessions.get(id)) {
        return HttpResponse::Ok().json(first);
    }
    let id = format!("cs_test_fake{:020}", s.sessions.len() + 1);
    if let Some(key) = key {
        s.idempotent.insert(key.to_owned(), id.clone());
    }
    let metadata = |prefix: &str| -> HashMap<String, String> {
        form.iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(prefix)
                    .and_then(|k| k.strip_suffix(']'))
                    .map(|k| (k.to_owned(), v.clone()))
            })
            .collect()
    };
    let session = json!({
        "id": id, "object": "checkout.session", "mode": "payment", "status": "open", "payment_status": "unpaid",
        "amount_total": amount, "currency": form.get("line_items[0][price_data][currency]"),
        "url": format!("https://checkout.stripe.com/c/pay/{id}"), "success_url": success_url,
        "cancel_url": form.get("cancel_url"), "client_reference_id": form.get("client_reference_id"),
        "customer_email": form.get("customer_email"), "metadata": metadata("metadata["),
        "payment_intent": null, "expires_at": chrono::Utc::now().timestamp() + 86_400, "livemode": false,
    });
    let intent_metadata = json!(metadata("payment_intent_data[metadata]["));
    s.session_intent_metadata.insert(id.clone(), intent_metadata);
    s.sessions.insert(id, session.clone());
    HttpResponse::Ok().json(session)
}

async fn fetch_session(req: HttpRequest, id: web::Path<String>, state: web::Data<Mutex<State>>) -> HttpResponse {
    if let Some(response) = record(&state, &req, HashMap::new()) {
        return response;
    }
    match state.lock().unwrap().sessions.get(id.as_str()) {
        Some(session) => HttpResponse::Ok().json(session),
        None => error(
            404,
            "invalid_request_error",
            &format!("No such checkout.session: '{id}'"),
        ),
    }
}

/// `POST /v1/checkout/sessions/{id}/expire`: only an open session can be expired.
async fn expire_session(req: HttpRequest, id: web::Path<String>, state: web::Data<Mutex<State>>) -> HttpResponse {
    if let Some(response) = record(&state, &req, HashMap::new()) {
        return response;
    }
    let mut s = state.lock().unwrap();
    let Some(session) = s.sessions.get_mut(id.as_str()) else {
        return error(
            404,
            "invalid_request_error",
            &format!("No such checkout.session: '{id}'"),
        );
    };
    if session["status"] != "open" {
        return error(
            400,
            "invalid_request_error",
            &format!(
                "Only Checkout Sessions with a status of open can be expired; this one is {}.",
                session["status"]
            ),
        );
    }
    session["status"] = json!("expired");
    HttpResponse::Ok().json(session.clone())
}

/// The customer pays a Checkout Session: it completes, and a succeeded PaymentIntent
/// carrying the session's `payment_intent_data.metadata` is made.
fn complete_session(s: &mut State, id: &str) -> Option<Value> {
    let session = s.sessions.get(id)?.clone();
    if session["status"] != "open" {
        return None;
    }
    let pi = format!("pi_fake{:020}", s.intents.len() + 1);
    let amount = session["amount_total"].clone();
    let intent = json!({
        "id": pi, "object": "payment_intent", "amount": amount, "amount_capturable": 0, "amount_received": amount,
        "capture_method": "automatic_async", "client_secret": format!("{pi}_secret_fake"),
        "confirmation_method": "automatic", "created": 1_800_000_000, "currency": session["currency"],
        "description": null, "livemode": false, "metadata": s.session_intent_metadata.get(id).cloned().unwrap_or_default(),
        "payment_method_types": ["card"], "receipt_email": session["customer_email"], "status": "succeeded",
        "automatic_payment_methods": { "allow_redirects": "always", "enabled": true },
    });
    s.intents.insert(pi.clone(), intent.clone());
    if let Some(session) = s.sessions.get_mut(id) {
        session["status"] = json!("complete");
        session["payment_status"] = json!("paid");
        session["payment_intent"] = json!(pi);
    }
    Some(intent)
}

/// `POST /_fake/pay/{id}`: the customer pays; a signed `payment_intent.succeeded` goes
/// to the configured endpoint, like Stripe's would.
async fn pay(id: web::Path<String>, state: web::Data<Mutex<State>>) -> HttpResponse {
    let started = billing::start_subscription(&mut state.lock().unwrap(), id.as_str());
    if let Some(events) = started {
        let answers = billing::deliver(events).await;
        return HttpResponse::Ok().json(json!({ "paid": id.as_str(), "webhooks": answers }));
    }
    let (intent, webhook) = {
        let mut s = state.lock().unwrap();
        let webhook = s.webhook.clone();
        if id.starts_with("cs_") {
            let Some(intent) = complete_session(&mut s, id.as_str()) else {
                return error(
                    400,
                    "invalid_request_error",
                    &format!("Checkout Session {id} is not open."),
                );
            };
            (intent, webhook)
        } else {
            let Some(intent) = s.intents.get_mut(id.as_str()) else {
                return error(404, "invalid_request_error", &format!("No such payment_intent: '{id}'"));
            };
            if intent["status"] == "canceled" {
                return error(400, "invalid_request_error", "This PaymentIntent was canceled.");
            }
            intent["status"] = json!("succeeded");
            intent["amount_received"] = intent["amount"].clone();
            (intent.clone(), webhook)
        }
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
