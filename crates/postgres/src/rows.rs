//! Row types and their mapping to domain types.

use crate::schema::{payment_status_history, payments, webhook_logs};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use payhook_domain::ports::StoreError;
use payhook_domain::{
    Currency, EventId, HistoryEntry, Money, Outcome, Payment, PaymentId, WebhookRequest,
};
use uuid::Uuid;

#[derive(Insertable)]
#[diesel(table_name = webhook_logs)]
pub(crate) struct NewLogRow<'a> {
    provider: &'a str,
    received_at: DateTime<Utc>,
    method: &'a str,
    path: &'a str,
    query: &'a str,
    headers: serde_json::Value,
    raw_body: &'a [u8],
    remote_addr: Option<&'a str>,
    event_id: Option<&'a str>,
    event_type: Option<&'a str>,
    external_id: Option<&'a str>,
    provider_status: Option<&'a str>,
    amount: Option<i64>,
    http_status: Option<i32>,
    processing_result: Option<&'a str>,
    processing_error: Option<&'a str>,
    completed_at: Option<DateTime<Utc>>,
}

impl<'a> NewLogRow<'a> {
    pub(crate) fn new(
        req: &'a WebhookRequest,
        outcome: Option<&'a Outcome>,
        completed_at: DateTime<Utc>,
    ) -> Self {
        let p = &req.primary;
        Self {
            provider: &req.provider,
            received_at: req.received_at,
            method: &req.method,
            path: &req.path,
            query: &req.query,
            headers: serde_json::json!(req.headers),
            raw_body: &req.body,
            remote_addr: req.remote_addr.as_deref(),
            event_id: p.event_id.as_deref(),
            event_type: p.event_type.as_deref(),
            external_id: p.external_id.as_deref(),
            provider_status: p.provider_status.as_deref(),
            amount: p.amount,
            http_status: outcome.map(|o| i32::from(o.http_status)),
            processing_result: outcome.map(|o| o.result.as_str()),
            processing_error: outcome.and_then(|o| o.error.as_deref()),
            completed_at: outcome.map(|_| completed_at),
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = payments)]
pub(crate) struct PaymentRow {
    id: Uuid,
    provider: String,
    provider_ref: Option<String>,
    merchant_ref: Option<String>,
    amount: i64,
    currency: String,
    status: String,
    paid_amount: i64,
    refunded_amount: i64,
    dispute_status: Option<String>,
    checkout_url: Option<String>,
    metadata: serde_json::Value,
    customer_email: Option<String>,
    description: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    paid_at: Option<DateTime<Utc>>,
    version: i64,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

impl TryFrom<PaymentRow> for Payment {
    type Error = StoreError;
    fn try_from(r: PaymentRow) -> Result<Self, StoreError> {
        let currency = Currency::parse(&r.currency).map_err(|e| corrupt("payments.currency", e))?;
        Ok(Payment {
            id: PaymentId::from_uuid(r.id),
            provider: r
                .provider
                .parse()
                .map_err(|e| corrupt("payments.provider", e))?,
            provider_ref: r.provider_ref,
            merchant_ref: r.merchant_ref,
            amount: Money::new(r.amount, currency).map_err(|e| corrupt("payments.amount", e))?,
            status: r
                .status
                .parse()
                .map_err(|e| corrupt("payments.status", e))?,
            paid_amount: r.paid_amount,
            refunded_amount: r.refunded_amount,
            dispute_status: r
                .dispute_status
                .map(|d| d.parse())
                .transpose()
                .map_err(|e| corrupt("payments.dispute_status", e))?,
            checkout_url: r.checkout_url,
            customer_email: r.customer_email,
            description: r.description,
            metadata: r.metadata,
            created_at: r.created_at,
            updated_at: r.updated_at,
            paid_at: r.paid_at,
            version: r.version,
        })
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = payment_status_history)]
pub(crate) struct HistoryRow {
    from_status: String,
    to_status: String,
    applied: bool,
    event_id: Option<String>,
    reason: String,
    at: DateTime<Utc>,
}

impl TryFrom<HistoryRow> for HistoryEntry {
    type Error = StoreError;
    fn try_from(r: HistoryRow) -> Result<Self, StoreError> {
        Ok(HistoryEntry {
            from_status: r
                .from_status
                .parse()
                .map_err(|e| corrupt("history.from_status", e))?,
            to_status: r
                .to_status
                .parse()
                .map_err(|e| corrupt("history.to_status", e))?,
            applied: r.applied,
            event_id: r
                .event_id
                .map(EventId::parse)
                .transpose()
                .map_err(|e| corrupt("history.event_id", e))?,
            reason: r.reason,
            at: r.at,
        })
    }
}
