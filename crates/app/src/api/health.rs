//! Liveness and readiness probes.

use super::{ApiError, AppState};
use actix_web::{web, HttpResponse};
use payhook_domain::ports::{StoreError, StoreHealth};
use std::sync::Arc;
use std::time::Duration;

#[utoipa::path(get, path = "/healthz", tag = "probes", responses((status = 200, description = "The process is up")))]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// How long readiness waits for the store: a load balancer's probe must get an
/// answer (503) from a gateway whose database hangs, not time out itself.
pub const READY_WITHIN: Duration = Duration::from_secs(1);

/// Ready only when the store answers: a gateway that cannot record webhooks must
/// not receive them.
#[utoipa::path(get, path = "/readyz", tag = "probes", responses((status = 200, description = "The store answers"), (status = 503, description = "`store_unavailable`", body = crate::api::openapi::ErrorBody)))]
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    check_within(&state.store_runtime, state.health.clone(), READY_WITHIN).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })))
}

async fn check_within(
    runtime: &tokio::runtime::Handle,
    health: Arc<dyn StoreHealth>,
    limit: Duration,
) -> Result<(), StoreError> {
    super::store_call(runtime, limit, async move { health.check().await }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store that never answers (a database stopped with SIGSTOP).
    struct Hung;

    #[async_trait::async_trait]
    impl StoreHealth for Hung {
        async fn check(&self) -> Result<(), StoreError> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_hung_store_is_not_ready_instead_of_hanging_the_probe() {
        let runtime = tokio::runtime::Handle::current();
        let answer = check_within(&runtime, Arc::new(Hung), Duration::from_millis(20)).await;
        assert!(matches!(answer, Err(StoreError::Unavailable(_))), "{answer:?}");
    }
}
