//! `POST /payments`: create a payment request; `GET /payments`: list them, newest
//! first, a page at a time; `GET /payments/{id}`: status, amounts and history; `POST /payments/{id}/client_token`: a new client token (the
//! merchant's routes). `GET /payments/{id}/status?token=`: what a customer's browser
//! may read of its payment.

use super::credentials::{check_client_token, Merchant};
use super::{merchant_body, ApiError, AppState};
use crate::api::payment_requests::PaymentRequest;
use crate::publishing::status_stream::StreamQuery;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use payhook_domain::{Dispute, HistoryEntry, PageCursor, Payment, PaymentFilter, PaymentStatus, Refund, MAX_PAGE};
use serde::{Deserialize, Serialize};

/// The answer to `POST /payments`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CreatedView<'a> {
    id: String,
    status: &'a str,
    provider: &'a str,
    provider_ref: Option<&'a str>,
    merchant_ref: Option<&'a str>,
    amount: i64,
    currency: String,
    checkout_url: Option<&'a str>,
    qr_text: Option<&'a str>,
    expires_at: Option<DateTime<Utc>>,
    /// Provider-specific ways to pay (QPay: `qr_image`, `short_url`, bank `urls`).
    #[schema(value_type = Option<Object>)]
    provider_checkout: Option<&'a serde_json::Value>,
    /// Only in the first answer; `null` in an idempotent replay (the first stays valid).
    client_token: Option<&'a str>,
    /// A Stripe PaymentIntent's `client_secret`, for Stripe.js: only in the first
    /// answer, never stored; `null` otherwise.
    client_secret: Option<&'a str>,
}

#[utoipa::path(post, path = "/payments", tag = "payments", security(("merchant_key" = [])),
    request_body(content = crate::api::openapi::PaymentRequestBody, description = "The payment to create"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays of the same request get the first answer")),
    responses(
        (status = 201, description = "Created (or, with `idempotent-replayed: true`, the first answer again)", body = CreatedView),
        (status = 400, description = "`malformed_json`, `unknown_provider`, `provider_disabled`, `invalid_idempotency_key`", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "`missing_api_key`, `invalid_api_key`", body = crate::api::openapi::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`", body = crate::api::openapi::ErrorBody),
        (status = 413, description = "`payload_too_large`", body = crate::api::openapi::ErrorBody),
        (status = 422, description = "`validation_failed` (with `error.field`), `idempotency_key_reused`", body = crate::api::openapi::ErrorBody),
        (status = 502, description = "`provider_error` (with `error.payment_id`)", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn create(
    _: Merchant,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = merchant_body(&req, payload, &state).await?;
    let request = PaymentRequest::from_json(&body)?;
    let key = super::idempotency_key(&req)?;
    let created = state.payment_requests.create(request, key.as_deref()).await?;
    let mut response = HttpResponse::Created();
    if created.replayed {
        response.insert_header(("idempotent-replayed", "true"));
    }
    Ok(response.json(created_view(&created)))
}

/// A created payment as `POST /payments` (and `POST /subscriptions`) answers it.
pub(crate) fn created_view(created: &crate::api::payment_requests::Created) -> CreatedView<'_> {
    let p = &created.payment;
    CreatedView {
        id: p.id.to_string(),
        status: p.status.as_str(),
        provider: p.provider.as_str(),
        provider_ref: p.provider_ref.as_deref(),
        merchant_ref: p.merchant_ref.as_deref(),
        amount: p.amount.amount_minor(),
        currency: p.amount.currency().code().to_owned(),
        checkout_url: p.checkout_url.as_deref(),
        qr_text: p.qr_text.as_deref(),
        expires_at: p.expires_at,
        provider_checkout: p.checkout_extras.as_ref(),
        client_token: created.client_token.as_deref(),
        client_secret: created.client_secret.as_ref().map(|s| s.expose()),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct PaymentView<'a> {
    id: String,
    provider: &'a str,
    /// The Stripe Connect account (`acct_…`) of a payment learned from a connected
    /// account's events; absent for the platform's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<&'a str>,
    /// The subscription it pays for, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    subscription_id: Option<String>,
    provider_ref: Option<&'a str>,
    merchant_ref: Option<&'a str>,
    amount: i64,
    currency: String,
    status: &'a str,
    paid_amount: i64,
    refunded_amount: i64,
    dispute_status: Option<&'a str>,
    checkout_url: Option<&'a str>,
    qr_text: Option<&'a str>,
    expires_at: Option<DateTime<Utc>>,
    failure_reason: Option<&'a str>,
    #[schema(value_type = Option<Object>)]
    provider_checkout: Option<&'a serde_json::Value>,
    customer_email: Option<&'a str>,
    description: Option<&'a str>,
    #[schema(value_type = Object)]
    metadata: &'a serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    paid_at: Option<DateTime<Utc>>,
    /// In `GET /payments/{id}`; left out of lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<Vec<HistoryView<'a>>>,
    /// In `GET /payments/{id}`, oldest first; left out of lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    refunds: Option<Vec<super::refunds::RefundView<'a>>>,
    /// In `GET /payments/{id}`, oldest first; left out of lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    disputes: Option<Vec<DisputeView<'a>>>,
}

/// One dispute (chargeback) of a payment.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DisputeView<'a> {
    id: String,
    /// The provider's id of the dispute.
    provider_ref: &'a str,
    amount: Option<i64>,
    currency: Option<&'a str>,
    reason: Option<&'a str>,
    /// The provider's own word (`needs_response`, `under_review`, `won`, `lost`, …).
    status: &'a str,
    evidence_due_by: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    closed_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct HistoryView<'a> {
    from_status: &'a str,
    to_status: &'a str,
    applied: bool,
    event_id: Option<&'a str>,
    reason: &'a str,
    at: DateTime<Utc>,
}

/// `POST /payments/{id}/client_token`: replaces the payment's client token (for a
/// merchant who lost the first answer); the old token stops working.
#[utoipa::path(post, path = "/payments/{id}/client_token", tag = "payments", security(("merchant_key" = [])),
    params(("id" = String, Path, description = "The payment id")),
    responses(
        (status = 201, description = "A new client token; the old one stops working", body = crate::api::openapi::ClientTokenBody),
        (status = 401, description = "`missing_api_key`, `invalid_api_key`", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "`payment_not_found`", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn issue_client_token(
    _: Merchant,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let id = super::payment_id(&raw)?;
    let token = state
        .payment_requests
        .issue_client_token(id)
        .await?
        .ok_or(ApiError::PaymentNotFound(raw))?;
    Ok(HttpResponse::Created().json(serde_json::json!({ "id": id.to_string(), "client_token": token })))
}

/// `GET /payments/{id}/status?token=`: id, status, amount and currency; nothing
/// personal, as the token travels in the customer's browser.
#[utoipa::path(get, path = "/payments/{id}/status", tag = "browser",
    params(("id" = String, Path, description = "The payment id"), ("token" = String, Query, description = "The payment's client token")),
    responses(
        (status = 200, description = "id, status, amount and currency", body = crate::api::openapi::StatusBody),
        (status = 401, description = "`missing_client_token`, `invalid_client_token`", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "`payment_not_found`", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn status(
    path: web::Path<String>,
    query: web::Query<StreamQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let id = check_client_token(state.payments.as_ref(), &raw, query.token.as_deref()).await?;
    let payment = state
        .payments
        .payment(id)
        .await?
        .ok_or(ApiError::PaymentNotFound(raw))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "id": payment.id.to_string(),
        "status": payment.status.as_str(),
        "amount": payment.amount.amount_minor(),
        "currency": payment.amount.currency().code(),
    })))
}

#[utoipa::path(get, path = "/payments/{id}", tag = "payments", security(("merchant_key" = [])),
    params(("id" = String, Path, description = "The payment id")),
    responses(
        (status = 200, description = "The payment with its history", body = PaymentView),
        (status = 401, description = "`missing_api_key`, `invalid_api_key`", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "`payment_not_found`", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn show(_: Merchant, path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let id = super::payment_id(&raw)?;
    let payment = state
        .payments
        .payment(id)
        .await?
        .ok_or(ApiError::PaymentNotFound(raw))?;
    full(&state, &payment).await
}

/// `POST /payments/{id}/cancel`: cancels an unpaid payment at its provider; 200 with
/// the payment, `canceled` once the provider agreed.
#[utoipa::path(post, path = "/payments/{id}/cancel", tag = "payments", security(("merchant_key" = [])),
    params(("id" = String, Path, description = "The payment id")),
    responses(
        (status = 200, description = "The payment, `canceled` once the provider agreed", body = PaymentView),
        (status = 401, description = "`missing_api_key`, `invalid_api_key`", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "`payment_not_found`", body = crate::api::openapi::ErrorBody),
        (status = 409, description = "`payment_not_cancelable`", body = crate::api::openapi::ErrorBody),
        (status = 422, description = "`cancel_not_supported`", body = crate::api::openapi::ErrorBody),
        (status = 502, description = "`provider_error`", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn cancel(
    _: Merchant,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let id = super::payment_id(&raw)?;
    let payment = state.reconciler.cancel(id).await?;
    full(&state, &payment).await
}

/// `GET /payments` filters.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Payments with this `merchant_ref`.
    merchant_ref: Option<String>,
    /// Payments in this status.
    status: Option<String>,
    /// stripe, xendit, qpay or junglepay.
    provider: Option<String>,
    /// Payments of this customer.
    customer_email: Option<String>,
    /// Payments of this subscription (its first payment and renewals).
    subscription_id: Option<String>,
    /// 1 to 100 (20).
    limit: Option<u32>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

/// A page of `GET /payments` (a struct, not a JSON value, so each payment's fields keep
/// the order `GET /payments/{id}` gives them).
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct PageView<'a> {
    data: Vec<PaymentView<'a>>,
    next_cursor: Option<String>,
}

/// The page size when the client names none.
const DEFAULT_PAGE: u32 = 20;

/// `GET /payments?merchant_ref=&status=&provider=&customer_email=&subscription_id=&limit=&cursor=`:
/// newest first; `next_cursor` (null on the last page) fetches the next page.
#[utoipa::path(get, path = "/payments", tag = "payments", security(("merchant_key" = [])), params(ListQuery),
    responses(
        (status = 200, description = "A page, newest first", body = PageView),
        (status = 400, description = "`invalid_query`", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "`missing_api_key`, `invalid_api_key`", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn list(
    _: Merchant,
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let subscription_id = q
        .subscription_id
        .as_deref()
        .map(|id| {
            payhook_domain::SubscriptionId::parse(id)
                .ok_or_else(|| ApiError::InvalidQuery("subscription_id: not a subscription id".into()))
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::InvalidQuery(format!("limit must be 1 to {MAX_PAGE}")));
    }
    let status = q
        .status
        .as_deref()
        .map(str::parse::<PaymentStatus>)
        .transpose()
        .map_err(|e| ApiError::InvalidQuery(e.to_string()))?;
    let after = q
        .cursor
        .as_deref()
        .map(|c| PageCursor::decode(c).ok_or_else(|| ApiError::InvalidQuery("cursor: not one this API gave".into())))
        .transpose()?;
    let filter = PaymentFilter {
        merchant_ref: q.merchant_ref,
        status,
        provider: super::admin::provider_of(q.provider.as_deref())?,
        customer_email: q.customer_email,
        subscription_id,
        after,
        // One more than the page, to know whether another page follows.
        limit: limit + 1,
    };
    let mut page = state.payments.list_payments(&filter).await?;
    let more = page.len() > limit as usize;
    page.truncate(limit as usize);
    let next_cursor = page.last().filter(|_| more).map(|p| {
        PageCursor {
            created_at: p.created_at,
            id: p.id,
        }
        .encode()
    });
    Ok(HttpResponse::Ok().json(PageView {
        data: page.iter().map(|p| view(p, None)).collect(),
        next_cursor,
    }))
}

/// 200 with the payment's full record: its history, refunds and disputes.
async fn full(state: &AppState, payment: &Payment) -> Result<HttpResponse, ApiError> {
    let history = state.payments.history(payment.id).await?;
    let refunds = state.refunds.refunds_of(payment.id).await?;
    let disputes = state.disputes.disputes_of(payment.id).await?;
    Ok(HttpResponse::Ok().json(view(payment, Some((&history, &refunds, &disputes)))))
}

/// A payment's full record: its history, its refunds and its disputes.
type Detail<'a> = (&'a [HistoryEntry], &'a [Refund], &'a [Dispute]);

fn view<'a>(p: &'a Payment, detail: Option<Detail<'a>>) -> PaymentView<'a> {
    let (history, refunds, disputes) = match detail {
        Some((history, refunds, disputes)) => (Some(history), Some(refunds), Some(disputes)),
        None => (None, None, None),
    };
    PaymentView {
        id: p.id.to_string(),
        provider: p.provider.as_str(),
        account: Some(p.account.as_str()).filter(|a| !a.is_empty()),
        subscription_id: p.subscription_id.map(|id| id.to_string()),
        provider_ref: p.provider_ref.as_deref(),
        merchant_ref: p.merchant_ref.as_deref(),
        amount: p.amount.amount_minor(),
        currency: p.amount.currency().to_string(),
        status: p.status.as_str(),
        paid_amount: p.paid_amount,
        refunded_amount: p.refunded_amount,
        dispute_status: p.dispute_status.map(|d| d.as_str()),
        checkout_url: p.checkout_url.as_deref(),
        qr_text: p.qr_text.as_deref(),
        expires_at: p.expires_at,
        failure_reason: p.failure_reason.as_deref(),
        provider_checkout: p.checkout_extras.as_ref(),
        customer_email: p.customer_email.as_deref(),
        description: p.description.as_deref(),
        metadata: &p.metadata,
        created_at: p.created_at,
        updated_at: p.updated_at,
        paid_at: p.paid_at,
        history: history.map(|history| {
            history
                .iter()
                .map(|h| HistoryView {
                    from_status: h.from_status.as_str(),
                    to_status: h.to_status.as_str(),
                    applied: h.applied,
                    event_id: h.event_id.as_ref().map(|e| e.as_str()),
                    reason: &h.reason,
                    at: h.at,
                })
                .collect()
        }),
        refunds: refunds.map(|refunds| refunds.iter().map(super::refunds::view).collect()),
        disputes: disputes.map(|disputes| {
            disputes
                .iter()
                .map(|d| DisputeView {
                    id: d.id.to_string(),
                    provider_ref: &d.provider_ref,
                    amount: d.amount,
                    currency: d.currency.as_ref().map(|c| c.code()),
                    reason: d.reason.as_deref(),
                    status: &d.status,
                    evidence_due_by: d.evidence_due_by,
                    created_at: d.created_at,
                    updated_at: d.updated_at,
                    closed_at: d.closed_at,
                })
                .collect()
        }),
    }
}
