//! The merchant and admin API, the probes, and what every HTTP handler shares: the
//! route table of the whole server (each stage's routes included), the state the
//! handlers are given, body reading within a limit, and the mapping of every
//! failure to the contract's status codes and `{"error":{"code","message"}}` bodies.

mod admin;
pub(crate) mod error;
mod health;
pub mod metrics;
pub mod payment_requests;
mod payments;

pub use error::ApiError;

use crate::api::payment_requests::PaymentRequests;
use crate::receiving::ingest::IngestService;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use metrics_exporter_prometheus::PrometheusHandle;
use payhook_domain::ports::{Outbox, PaymentStore, StoreHealth, WebhookInbox};
use secrecy::SecretString;
use std::sync::Arc;
use tokio::sync::Notify;

/// What the handlers share.
pub struct AppState {
    pub ingest: IngestService,
    pub payments: Arc<dyn PaymentStore>,
    pub payment_requests: PaymentRequests,
    /// Domain events as they are delivered, for the status streams.
    pub bus: crate::publishing::bus::EventBus,
    pub inbox: Arc<dyn WebhookInbox>,
    pub outbox: Arc<dyn Outbox>,
    pub health: Arc<dyn StoreHealth>,
    pub max_body_bytes: usize,
    pub admin_token: Option<SecretString>,
    /// Wakes the worker (a replayed event is due now).
    pub wake_worker: Arc<Notify>,
    pub metrics: PrometheusHandle,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    // A malformed query string gets the contract's JSON error, not actix's plain text.
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|err, _| ApiError::InvalidQuery(format!("invalid query string: {err}")).into()),
    );
    cfg.service(
        // Every method reaches the handler, so even a wrong-method request is logged.
        web::resource("/webhooks/{provider}").route(web::route().to(crate::receiving::http::receive)),
    )
    .route("/payments", web::post().to(payments::create))
    .route("/payments/{id}", web::get().to(payments::show))
    .route(
        "/payments/{id}/events",
        web::get().to(crate::publishing::status_stream::stream),
    )
    .route("/admin/webhooks", web::get().to(admin::list))
    .route("/admin/webhooks/{id}/replay", web::post().to(admin::replay))
    .route("/healthz", web::get().to(health::live))
    .route("/readyz", web::get().to(health::ready))
    .route("/metrics", web::get().to(metrics))
    .default_service(web::to(|| async {
        Err::<actix_web::HttpResponse, _>(ApiError::NotFound)
    }));
}

/// Reads at most `limit` bytes. A body announced or found to be larger is flagged
/// and not read further; the part read is kept for the forensic log. A body whose
/// stream breaks off is kept as far as it arrived.
pub(super) async fn read_limited(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> (Vec<u8>, bool) {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|len| len > limit) {
        return (Vec::new(), true);
    }
    let mut body = Vec::with_capacity(announced.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            break;
        };
        if body.len() + chunk.len() > limit {
            let room = limit - body.len();
            body.extend(chunk.iter().take(room));
            return (body, true);
        }
        body.extend_from_slice(&chunk);
    }
    (body, false)
}

async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let text = crate::api::metrics::render(&state.metrics, state.inbox.as_ref(), state.outbox.as_ref()).await?;
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(text))
}
