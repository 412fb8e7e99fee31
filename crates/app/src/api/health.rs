//! Liveness and readiness probes.

use super::{ApiError, AppState};
use actix_web::{web, HttpResponse};

pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Ready only when the store answers: a gateway that cannot record webhooks must
/// not receive them.
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.health.check().await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })))
}
