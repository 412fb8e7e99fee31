//! The actix-web adapter: routes, and the mapping of every failure to the
//! contract's status codes and `{"error":{"code","message"}}` bodies.

mod error;
mod health;
mod payments;
mod webhooks;

pub use error::ApiError;

use crate::ingest::IngestService;
use actix_web::web;
use payhook_domain::ports::{PaymentStore, StoreHealth};
use std::sync::Arc;

/// What the handlers share.
pub struct AppState {
    pub ingest: IngestService,
    pub payments: Arc<dyn PaymentStore>,
    pub health: Arc<dyn StoreHealth>,
    pub max_body_bytes: usize,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        // Every method reaches the handler, so even a wrong-method request is logged.
        web::resource("/webhooks/{provider}").route(web::route().to(webhooks::receive)),
    )
    .route("/payments/{id}", web::get().to(payments::show))
    .route("/healthz", web::get().to(health::live))
    .route("/readyz", web::get().to(health::ready))
    .default_service(web::to(|| async {
        Err::<actix_web::HttpResponse, _>(ApiError::NotFound)
    }));
}
