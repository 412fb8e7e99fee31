//! `GET /payments/{id}`: status, amounts and history.

use super::{ApiError, AppState};
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use payhook_domain::{HistoryEntry, Payment, PaymentId};
use serde::Serialize;

#[derive(Serialize)]
struct PaymentView<'a> {
    id: String,
    provider: &'a str,
    provider_ref: Option<&'a str>,
    merchant_ref: Option<&'a str>,
    amount: i64,
    currency: String,
    status: &'a str,
    paid_amount: i64,
    refunded_amount: i64,
    dispute_status: Option<&'a str>,
    checkout_url: Option<&'a str>,
    customer_email: Option<&'a str>,
    description: Option<&'a str>,
    metadata: &'a serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    paid_at: Option<DateTime<Utc>>,
    history: Vec<HistoryView<'a>>,
}

#[derive(Serialize)]
struct HistoryView<'a> {
    from_status: &'a str,
    to_status: &'a str,
    applied: bool,
    event_id: Option<&'a str>,
    reason: &'a str,
    at: DateTime<Utc>,
}

pub async fn show(path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let id = PaymentId::parse(&raw).ok_or_else(|| ApiError::PaymentNotFound(raw.clone()))?;
    let payment = state
        .payments
        .payment(id)
        .await?
        .ok_or(ApiError::PaymentNotFound(raw))?;
    let history = state.payments.history(id).await?;
    Ok(HttpResponse::Ok().json(view(&payment, &history)))
}

fn view<'a>(p: &'a Payment, history: &'a [HistoryEntry]) -> PaymentView<'a> {
    PaymentView {
        id: p.id.to_string(),
        provider: p.provider.as_str(),
        provider_ref: p.provider_ref.as_deref(),
        merchant_ref: p.merchant_ref.as_deref(),
        amount: p.amount.amount_minor(),
        currency: p.amount.currency().to_string(),
        status: p.status.as_str(),
        paid_amount: p.paid_amount,
        refunded_amount: p.refunded_amount,
        dispute_status: p.dispute_status.map(|d| d.as_str()),
        checkout_url: p.checkout_url.as_deref(),
        customer_email: p.customer_email.as_deref(),
        description: p.description.as_deref(),
        metadata: &p.metadata,
        created_at: p.created_at,
        updated_at: p.updated_at,
        paid_at: p.paid_at,
        history: history
            .iter()
            .map(|h| HistoryView {
                from_status: h.from_status.as_str(),
                to_status: h.to_status.as_str(),
                applied: h.applied,
                event_id: h.event_id.as_ref().map(|e| e.as_str()),
                reason: &h.reason,
                at: h.at,
            })
            .collect(),
    }
}
