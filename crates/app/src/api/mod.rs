//! The merchant and admin API, the probes, and what every HTTP handler shares: the
//! route table of the whole server (each stage's routes included), the state the
//! handlers are given, body reading within a limit, and the mapping of every
//! failure to the contract's status codes and `{"error":{"code","message"}}` bodies.

mod admin;
pub mod credentials;
pub(crate) mod error;
mod health;
pub mod metrics;
pub mod openapi;
pub mod payment_requests;
mod payments;
mod plans;
mod refunds;
mod stripe_objects;
mod subscriptions;

pub use error::ApiError;

/// Runs a store call as a task on `runtime` (the one the store's connections belong
/// to) and waits at most `limit` for it. Dropping a store call half-way is not
/// safe everywhere (diesel-async's SQLite wrapper blocks in `Drop` until the call
/// finishes, which panics on actix's single-threaded worker runtimes), so a call
/// that takes too long is left to finish on its own while the caller moves on.
pub async fn store_call<T: Send + 'static>(
    runtime: &tokio::runtime::Handle,
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, payhook_domain::ports::StoreError>> + Send + 'static,
) -> Result<T, payhook_domain::ports::StoreError> {
    use payhook_domain::ports::StoreError;
    match tokio::time::timeout(limit, runtime.spawn(call)).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(stopped)) => Err(StoreError::Unavailable(format!("the store call stopped: {stopped}"))),
        Err(_) => Err(StoreError::timed_out(limit)),
    }
}

use crate::api::payment_requests::PaymentRequests;
use crate::receiving::ingest::IngestService;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use metrics_exporter_prometheus::PrometheusHandle;
use payhook_domain::ports::{Outbox, PaymentStore, StoreHealth, WebhookInbox};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// What the handlers share.
pub struct AppState {
    pub ingest: IngestService,
    pub payments: Arc<dyn PaymentStore>,
    pub disputes: Arc<dyn payhook_domain::ports::DisputeStore>,
    pub refunds: Arc<dyn payhook_domain::ports::RefundStore>,
    /// The Stripe mirror (`GET /stripe/objects…`).
    pub mirror: Arc<dyn payhook_domain::ports::StripeMirror>,
    pub plans: Arc<dyn payhook_domain::ports::PlanStore>,
    pub payment_requests: Arc<PaymentRequests>,
    /// `POST /subscriptions` and the rest of the subscription routes.
    pub subscriptions: Arc<crate::processing::subscribing::Subscriptions>,
    /// Moves the clock forward (`POST /admin/clock`), when `admin.time_travel` is on.
    pub clock_control: Option<Arc<crate::startup::clock::AdjustableClock>>,
    /// The open status streams, fed with domain events by payment.
    pub streams: Arc<crate::publishing::status_stream::StreamHub>,
    pub inbox: Arc<dyn WebhookInbox>,
    pub outbox: Arc<dyn Outbox>,
    pub health: Arc<dyn StoreHealth>,
    pub max_body_bytes: usize,
    /// How long a client has to send a request's body.
    pub body_read_timeout: Duration,
    pub admin_token: Option<SecretString>,
    pub merchant_keys: credentials::MerchantKeys,
    /// The runtime the store's connections belong to (see [`store_call`]).
    pub store_runtime: tokio::runtime::Handle,
    /// Wakes the worker (a replayed event is due now).
    pub wake_worker: Arc<Notify>,
    /// Wakes the outbox relay (a replayed domain event is due now).
    pub wake_relay: Arc<Notify>,
    pub metrics: PrometheusHandle,
    /// Asks providers now (`POST /admin/payments/{id}/reconcile`).
    pub reconciler: Arc<crate::processing::reconcile::Reconciler>,
    /// Read for the `payhook_reconcile_due` gauge.
    pub reconcile: Arc<dyn payhook_domain::ports::ReconcileQueue>,
}

/// Which routes a listener serves. Providers and browsers reach the public one;
/// merchant backends and operators the internal one, when `server.internal_bind`
/// gives them their own address (else one listener serves both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Public,
    Internal,
    Both,
}

impl Listener {
    pub fn routes(self) -> impl Fn(&mut web::ServiceConfig) + Clone {
        move |cfg| {
            // A malformed query string gets the contract's JSON error, not actix's plain text.
            cfg.app_data(
                web::QueryConfig::default()
                    .error_handler(|err, _| ApiError::InvalidQuery(format!("invalid query string: {err}")).into()),
            );
            if self != Listener::Internal {
                webhook_route(cfg);
                browser_routes(cfg);
            }
            if self != Listener::Public {
                internal_routes(cfg);
            }
            probe_routes(cfg);
            cfg.default_service(web::to(|| async {
                Err::<actix_web::HttpResponse, _>(ApiError::NotFound)
            }));
        }
    }
}

/// Declares a listener's routes once, for the router and for [`ROUTES`] (which the
/// OpenAPI test holds the document to).
macro_rules! route_table {
    ($(#[$doc:meta])* fn $name:ident, const $list:ident: [$($method:ident $path:literal => $handler:path),* $(,)?]) => {
        $(#[$doc])*
        fn $name(cfg: &mut web::ServiceConfig) {
            $(cfg.route($path, web::$method().to($handler));)*
        }
        const $list: &[(&str, &str)] = &[$((stringify!($method), $path)),*];
    };
}

route_table! {
    /// The customer's browser (per-payment client token). Providers' webhooks are
    /// served too, by [`webhook_route`].
    fn browser_routes,
    const BROWSER_ROUTES: [
        get "/payments/{id}/events" => crate::publishing::status_stream::stream,
        get "/payments/{id}/status" => payments::status,
    ]
}

route_table! {
    /// The merchant API (`api.keys`), the admin API (`admin.token`), the metrics and
    /// the OpenAPI document.
    fn internal_routes,
    const INTERNAL_ROUTES: [
        post "/payments" => payments::create,
        get "/payments" => payments::list,
        get "/payments/{id}" => payments::show,
        post "/payments/{id}/cancel" => payments::cancel,
        post "/payments/{id}/refunds" => refunds::create,
        get "/payments/{id}/refunds" => refunds::list,
        get "/refunds/{id}" => refunds::show,
        post "/plans" => plans::create,
        get "/plans" => plans::list,
        get "/plans/{id}" => plans::show,
        post "/subscriptions" => subscriptions::create,
        get "/subscriptions" => subscriptions::list,
        get "/subscriptions/{id}" => subscriptions::show,
        post "/subscriptions/{id}/cancel" => subscriptions::cancel,
        get "/stripe/objects/{type}" => stripe_objects::list,
        get "/stripe/objects/{type}/{id}" => stripe_objects::show,
        post "/payments/{id}/client_token" => payments::issue_client_token,
        get "/admin/webhooks" => admin::list,
        post "/admin/webhooks/replay" => admin::replay_many,
        post "/admin/webhooks/{id}/replay" => admin::replay,
        get "/admin/outbox" => admin::list_outbox,
        post "/admin/outbox/{id}/replay" => admin::replay_outbox,
        post "/admin/payments/{id}/reconcile" => admin::reconcile,
        post "/admin/clock" => subscriptions::advance_clock,
        post "/admin/subscriptions/run" => subscriptions::run_scheduler,
        get "/metrics" => metrics,
        get "/openapi.json" => openapi::document,
    ]
}

route_table! {
    /// Liveness and readiness, on every listener.
    fn probe_routes,
    const PROBE_ROUTES: [
        get "/healthz" => health::live,
        get "/readyz" => health::ready,
    ]
}

/// Every route the server has, method and path (the webhook route takes any method;
/// providers POST, and QPay may GET).
pub const ROUTES: &[(&str, &str)] = &{
    const N: usize = BROWSER_ROUTES.len() + INTERNAL_ROUTES.len() + PROBE_ROUTES.len() + 1;
    let mut all = [("post", "/webhooks/{provider}"); N];
    let mut i = 0;
    let mut j = 0;
    while j < BROWSER_ROUTES.len() {
        all[i + 1] = BROWSER_ROUTES[j];
        i += 1;
        j += 1;
    }
    j = 0;
    while j < INTERNAL_ROUTES.len() {
        all[i + 1] = INTERNAL_ROUTES[j];
        i += 1;
        j += 1;
    }
    j = 0;
    while j < PROBE_ROUTES.len() {
        all[i + 1] = PROBE_ROUTES[j];
        i += 1;
        j += 1;
    }
    all
};

/// Providers' webhooks: every method reaches the handler, so even a wrong-method
/// request is logged.
fn webhook_route(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/webhooks/{provider}").route(web::route().to(crate::receiving::http::receive)));
}

/// The body did not arrive in time; what did arrive.
#[derive(Debug)]
pub struct BodyTimedOut(pub Vec<u8>);

/// Reads at most `limit` bytes within `timeout`. A body announced or found to be
/// larger is flagged and not read further; the part read is kept for the forensic
/// log. A body whose stream breaks off is kept as far as it arrived. A client that
/// sends too slowly gets `Err` with the part that arrived: one connection must not
/// be held for ever by a body sent a byte at a time.
/// The payment id in a route's path; anything that is not one names no payment (404).
pub(super) fn payment_id(raw: &str) -> Result<payhook_domain::PaymentId, ApiError> {
    payhook_domain::PaymentId::parse(raw).ok_or_else(|| ApiError::PaymentNotFound(raw.to_owned()))
}

/// The request's `Idempotency-Key`, checked like `POST /payments` checks it.
pub(super) fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().map_err(|_| {
        payment_requests::CreateError::InvalidIdempotencyKey("Idempotency-Key must be visible ASCII characters".into())
    })?;
    payment_requests::check_idempotency_key(key)?;
    Ok(Some(key.to_owned()))
}

/// A merchant request's JSON body, read within `server` limits: 408 when it does not
/// arrive in time, 413 when it is larger than allowed.
pub(super) async fn merchant_body(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Vec<u8>, ApiError> {
    let limit = state.max_body_bytes;
    let (body, oversized) = read_limited(req, payload, limit, state.body_read_timeout)
        .await
        .map_err(|_| ApiError::BodyTimeout(state.body_read_timeout.as_secs()))?;
    if oversized {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    Ok(body)
}

pub(super) async fn read_limited(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    timeout: Duration,
) -> Result<(Vec<u8>, bool), BodyTimedOut> {
    let mut body = Vec::new();
    match tokio::time::timeout(timeout, read_into(req, payload, limit, &mut body)).await {
        Ok(oversized) => Ok((body, oversized)),
        Err(_) => Err(BodyTimedOut(body)),
    }
}

async fn read_into(req: &HttpRequest, mut payload: web::Payload, limit: usize, body: &mut Vec<u8>) -> bool {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|len| len > limit) {
        return true;
    }
    body.reserve(announced.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            break;
        };
        if body.len() + chunk.len() > limit {
            let room = limit - body.len();
            body.extend(chunk.iter().take(room));
            return true;
        }
        body.extend_from_slice(&chunk);
    }
    false
}

#[utoipa::path(get, path = "/metrics", tag = "probes", responses((status = 200, description = "Prometheus text", content_type = "text/plain")))]
async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let text = crate::api::metrics::render(
        &state.metrics,
        state.inbox.as_ref(),
        state.outbox.as_ref(),
        state.reconcile.as_ref(),
    )
    .await?;
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(text))
}
