//! The admin API (`/admin/*`): list inbox events and replay them; list the domain
//! events not delivered (dead or still retried) and replay them. Behind
//! `Authorization: Bearer <admin.token>`; without a configured token it does not exist.

use super::{ApiError, AppState};
use actix_web::{web, HttpRequest, HttpResponse};
use payhook_domain::{InboxFilter, InboxId, InboxStatus, Provider, Replay, ReplayFilter};
use secrecy::ExposeSecret;
use serde::Deserialize;
use subtle::ConstantTimeEq;

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    provider: Option<String>,
    limit: Option<u32>,
}

/// A `provider` query parameter, if given.
pub(super) fn provider_of(raw: Option<&str>) -> Result<Option<Provider>, ApiError> {
    raw.map(str::parse::<Provider>)
        .transpose()
        .map_err(|e| ApiError::InvalidQuery(e.to_string()))
}

pub(super) fn authorize(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let Some(token) = &state.admin_token else {
        return Err(ApiError::NotFound);
    };
    let presented = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if bool::from(presented.as_bytes().ct_eq(token.expose_secret().as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

#[utoipa::path(get, path = "/admin/webhooks", tag = "admin", security(("admin_token" = [])),
    params(("status" = Option<String>, Query, description = "pending, processed, ignored, failed or dead"),
           ("provider" = Option<String>, Query, description = "stripe, xendit, qpay or junglepay"),
           ("limit" = Option<u32>, Query, description = "1 to 500 (50)")),
    responses(
        (status = 200, description = "Inbox events, newest first", body = Object),
        (status = 400, description = "`invalid_query`", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "`unauthorized`", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no admin.token is configured", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn list(
    req: HttpRequest,
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let status = query
        .status
        .as_deref()
        .map(str::parse::<InboxStatus>)
        .transpose()
        .map_err(|e| ApiError::InvalidQuery(e.to_string()))?;
    let provider = provider_of(query.provider.as_deref())?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let events = state
        .inbox
        .list(&InboxFilter {
            status,
            provider,
            limit,
        })
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "events": events })))
}

#[utoipa::path(post, path = "/admin/webhooks/{id}/replay", tag = "admin", security(("admin_token" = [])),
    params(("id" = i64, Path, description = "The inbox event id")),
    responses(
        (status = 202, description = "Due again now", body = Object),
        (status = 401, description = "`unauthorized`", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "`event_not_found`", body = crate::api::openapi::ErrorBody),
        (status = 409, description = "`already_pending`", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn replay(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let raw = path.into_inner();
    let id = raw
        .parse::<i64>()
        .map(InboxId)
        .map_err(|_| ApiError::EventNotFound(raw.clone()))?;
    match state.inbox.replay(id, chrono::Utc::now()).await? {
        Replay::Requeued => {
            state.wake_worker.notify_one();
            Ok(HttpResponse::Accepted().json(serde_json::json!({ "status": "requeued", "id": id.0 })))
        }
        Replay::AlreadyPending => Err(ApiError::AlreadyPending(raw)),
        Replay::NotFound => Err(ApiError::EventNotFound(raw)),
    }
}

#[derive(Deserialize)]
pub struct OutboxQuery {
    /// `dead` (given up after `notify.max_attempts`) or `retrying` (the default).
    status: Option<String>,
    limit: Option<u32>,
}

/// `GET /admin/outbox?status=dead|retrying`: domain events not delivered, newest first.
#[utoipa::path(get, path = "/admin/outbox", tag = "admin", security(("admin_token" = [])),
    params(("status" = Option<String>, Query, description = "dead or pending")),
    responses(
        (status = 200, description = "Domain events not delivered", body = Object),
        (status = 400, description = "`invalid_query`", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "`unauthorized`", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn list_outbox(
    req: HttpRequest,
    query: web::Query<OutboxQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let dead = match query.status.as_deref() {
        None | Some("retrying") => false,
        Some("dead") => true,
        Some(other) => {
            return Err(ApiError::InvalidQuery(format!(
                "status must be dead or retrying, not {other:?}"
            )))
        }
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let messages = state.outbox.list_undelivered(dead, limit).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "messages": messages })))
}

/// `POST /admin/outbox/{id}/replay`: a dead (or retrying) domain event is due now,
/// its attempts counted afresh.
#[utoipa::path(post, path = "/admin/outbox/{id}/replay", tag = "admin", security(("admin_token" = [])),
    params(("id" = i64, Path, description = "The outbox message id")),
    responses(
        (status = 202, description = "Due again now", body = Object),
        (status = 401, description = "`unauthorized`", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "`message_not_found`", body = crate::api::openapi::ErrorBody),
        (status = 409, description = "`message_not_replayable`", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn replay_outbox(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let raw = path.into_inner();
    let id = raw.parse::<i64>().map_err(|_| ApiError::MessageNotFound(raw.clone()))?;
    match state.outbox.replay_message(id, chrono::Utc::now()).await? {
        Replay::Requeued => {
            state.wake_relay.notify_one();
            Ok(HttpResponse::Accepted().json(serde_json::json!({ "status": "requeued", "id": id })))
        }
        Replay::AlreadyPending => Err(ApiError::MessageNotReplayable(raw)),
        Replay::NotFound => Err(ApiError::MessageNotFound(raw)),
    }
}

#[derive(Deserialize)]
pub struct BulkReplayQuery {
    status: Option<String>,
    provider: Option<String>,
    /// RFC 3339; only events received at or after it.
    since: Option<String>,
}

/// `POST /admin/webhooks/replay?status=dead&provider=&since=`: every matching event
/// due again, in batches; 202 `{"replayed":n}`. Idempotent.
#[utoipa::path(post, path = "/admin/webhooks/replay", tag = "admin", security(("admin_token" = [])),
    params(("status" = String, Query, description = "dead, failed or processed"),
           ("provider" = Option<String>, Query, description = "only this provider's events"),
           ("since" = Option<String>, Query, description = "only events received since (RFC 3339)")),
    responses(
        (status = 202, description = "`{\"replayed\": n}`", body = Object),
        (status = 400, description = "`invalid_query`", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "`unauthorized`", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn replay_many(
    req: HttpRequest,
    query: web::Query<BulkReplayQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let status = query
        .status
        .as_deref()
        .ok_or_else(|| ApiError::InvalidQuery("status is required: dead, failed or processed".into()))?
        .parse::<InboxStatus>()
        .map_err(|e| ApiError::InvalidQuery(e.to_string()))?;
    if status == InboxStatus::Pending {
        return Err(ApiError::InvalidQuery("pending events are due already".into()));
    }
    let provider = provider_of(query.provider.as_deref())?;
    let since = query
        .since
        .as_deref()
        .map(chrono::DateTime::parse_from_rfc3339)
        .transpose()
        .map_err(|e| ApiError::InvalidQuery(format!("since must be an RFC 3339 time: {e}")))?
        .map(|t| t.with_timezone(&chrono::Utc));
    let filter = ReplayFilter {
        status,
        provider,
        since,
    };
    let replayed =
        crate::processing::replay::replay_matching(state.inbox.as_ref(), &filter, chrono::Utc::now()).await?;
    if replayed > 0 {
        state.wake_worker.notify_one();
    }
    Ok(HttpResponse::Accepted().json(serde_json::json!({ "replayed": replayed })))
}

/// `POST /admin/payments/{id}/reconcile`: asks the payment's provider now, whatever its
/// schedule; 202 with what the provider says. An answer that differs from what payhook
/// holds is stored for the worker (`"drift": true`) and applied a moment later.
#[utoipa::path(post, path = "/admin/payments/{id}/reconcile", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "The payment id")),
    responses(
        (status = 202, description = "What the provider says; `drift: true` when it differs (stored for the worker)", body = Object),
        (status = 401, description = "`unauthorized`", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "`payment_not_found`", body = crate::api::openapi::ErrorBody),
        (status = 409, description = "`not_reconcilable`", body = crate::api::openapi::ErrorBody),
        (status = 502, description = "`provider_error`", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn reconcile(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let raw = path.into_inner();
    let id = super::payment_id(&raw)?;
    let asked = state.reconciler.ask_now(id).await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({
        "payment_id": id.to_string(),
        "held": {
            "status": asked.payment.status,
            "paid_amount": asked.payment.paid_amount,
            "refunded_amount": asked.payment.refunded_amount,
            "dispute_status": asked.payment.dispute_status,
        },
        "provider_says": asked.found,
        "drift": asked.drift,
    })))
}
