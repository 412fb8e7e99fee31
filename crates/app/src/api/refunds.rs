//! `POST /payments/{id}/refunds`, `GET /payments/{id}/refunds`, `GET /refunds/{id}`
//! (the merchant's routes).

use super::credentials::Merchant;
use super::{merchant_body, ApiError, AppState};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use payhook_domain::{Refund, RefundId};
use serde::Serialize;
use serde_json::Value;

const MAX_REASON: usize = 255;

/// A refund, as the API answers it.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RefundView<'a> {
    id: String,
    payment_id: String,
    /// The provider's id of the refund, once it answered.
    provider_ref: Option<&'a str>,
    amount: i64,
    currency: String,
    reason: Option<&'a str>,
    /// `pending` until the provider settles it; `succeeded`, `failed` or `canceled`.
    status: &'a str,
    /// `merchant` (through this API) or `provider` (made at the provider).
    origin: &'a str,
    failure_reason: Option<&'a str>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

pub(crate) fn view(r: &Refund) -> RefundView<'_> {
    RefundView {
        id: r.id.to_string(),
        payment_id: r.payment_id.to_string(),
        provider_ref: r.provider_ref.as_deref(),
        amount: r.amount.amount_minor(),
        currency: r.amount.currency().code().to_owned(),
        reason: r.reason.as_deref(),
        status: r.status.as_str(),
        origin: r.origin.as_str(),
        failure_reason: r.failure_reason.as_deref(),
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

/// `{"data": [...]}`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RefundList<'a> {
    data: Vec<RefundView<'a>>,
}

/// The body of `POST /payments/{id}/refunds`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RefundRequestBody {
    /// Minor units; all that is left to refund when absent.
    pub amount: Option<i64>,
    /// Why (Stripe takes `duplicate`, `fraudulent`, `requested_by_customer`).
    pub reason: Option<String>,
}

fn invalid(field: &'static str, message: &str) -> ApiError {
    ApiError::Create(crate::api::payment_requests::CreateError::Request(
        crate::api::payment_requests::RequestError::Invalid {
            field,
            message: message.to_owned(),
        },
    ))
}

/// The amount and reason of a refund request.
fn read_body(body: &[u8]) -> Result<(Option<i64>, Option<String>), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((None, None));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::Create(crate::api::payment_requests::CreateError::Request(
            crate::api::payment_requests::RequestError::Malformed(e.to_string()),
        ))
    })?;
    let Value::Object(fields) = value else {
        return Err(invalid("body", "must be a JSON object"));
    };
    if let Some(unknown) = fields.keys().find(|k| !["amount", "reason"].contains(&k.as_str())) {
        return Err(invalid(
            "body",
            &format!("unknown field {unknown:?}; expected amount, reason"),
        ));
    }
    let amount = match fields.get("amount") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .filter(|a| *a > 0)
                .ok_or_else(|| invalid("amount", "must be a positive integer in minor units"))?,
        ),
    };
    let reason = match fields.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) if !r.trim().is_empty() && r.chars().count() <= MAX_REASON => Some(r.clone()),
        Some(_) => {
            return Err(invalid(
                "reason",
                "must be a non-empty string of at most 255 characters",
            ))
        }
    };
    Ok((amount, reason))
}

#[utoipa::path(post, path = "/payments/{id}/refunds", tag = "payments", security(("merchant_key" = [])),
    params(("id" = String, Path, description = "The payment id"),
           ("Idempotency-Key" = Option<String>, Header, description = "A repeat answers the first refund")),
    request_body(content = RefundRequestBody, description = "Both fields optional"),
    responses(
        (status = 201, description = "The refund, `pending` until the provider settles it", body = RefundView),
        (status = 400, description = "`malformed_json`, `invalid_idempotency_key`", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "`missing_api_key`, `invalid_api_key`", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "`payment_not_found`", body = crate::api::openapi::ErrorBody),
        (status = 409, description = "`payment_not_refundable`", body = crate::api::openapi::ErrorBody),
        (status = 422, description = "`validation_failed`, `refund_exceeds_available`, `refund_not_supported`", body = crate::api::openapi::ErrorBody),
        (status = 502, description = "`provider_error` (with `error.refund_id`)", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn create(
    _: Merchant,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let id = super::payment_id(&raw)?;
    let body = merchant_body(&req, payload, &state).await?;
    let (amount, reason) = read_body(&body)?;
    let key = super::idempotency_key(&req)?;
    let refund = state.reconciler.refund(id, amount, reason, key).await?;
    Ok(HttpResponse::Created().json(view(&refund)))
}

#[utoipa::path(get, path = "/payments/{id}/refunds", tag = "payments", security(("merchant_key" = [])),
    params(("id" = String, Path, description = "The payment id")),
    responses(
        (status = 200, description = "The payment's refunds, oldest first", body = RefundList),
        (status = 401, description = "`missing_api_key`, `invalid_api_key`", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "`payment_not_found`", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn list(_: Merchant, path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let id = super::payment_id(&raw)?;
    if state.payments.payment(id).await?.is_none() {
        return Err(ApiError::PaymentNotFound(raw));
    }
    let refunds = state.refunds.refunds_of(id).await?;
    Ok(HttpResponse::Ok().json(RefundList {
        data: refunds.iter().map(view).collect(),
    }))
}

#[utoipa::path(get, path = "/refunds/{id}", tag = "payments", security(("merchant_key" = [])),
    params(("id" = String, Path, description = "The refund id")),
    responses(
        (status = 200, description = "The refund", body = RefundView),
        (status = 401, description = "`missing_api_key`, `invalid_api_key`", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "`refund_not_found`", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn show(_: Merchant, path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let id = RefundId::parse(&raw).ok_or_else(|| ApiError::RefundNotFound(raw.clone()))?;
    let refund = state.refunds.refund(id).await?.ok_or(ApiError::RefundNotFound(raw))?;
    Ok(HttpResponse::Ok().json(view(&refund)))
}
