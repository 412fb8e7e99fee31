//! Xendit callbacks: invoice callbacks (`id`, `external_id` (payhook's payment id),
//! `status` (`PENDING`, `PAID`, `SETTLED`, `EXPIRED`), major-unit `amount` and
//! `paid_amount`, `currency`, timestamps, optional `metadata`), and refund callbacks
//! (`{"event": "refund.succeeded" | "refund.failed", "data": {…}}`).

use chrono::{DateTime, Utc};
use payhook_domain::source::{ParseError, Parsed};
use payhook_domain::{
    Currency, EventId, Money, PaymentChange, PaymentId, PaymentRef, PaymentStatus, PrimaryFields, ProcessingResult,
    Provider, RefundId, RefundReport, RefundStatus, WebhookEvent,
};
use serde::Deserialize;
use serde_json::{Number, Value};

#[derive(Deserialize)]
struct InvoiceCallback {
    id: String,
    external_id: String,
    status: String,
    amount: Number,
    paid_amount: Option<Number>,
    currency: String,
    paid_at: Option<String>,
    updated: Option<String>,
    created: Option<String>,
    #[serde(default)]
    metadata: Value,
}

fn malformed(what: impl std::fmt::Display) -> ParseError {
    ParseError(format!("not a Xendit invoice callback: {what}"))
}

/// Parses an authenticated invoice callback. `PAID`/`SETTLED` → paid (with the paid
/// amount), `EXPIRED` → expired; `PENDING` and unknown statuses need nothing.
/// Deduplicated on invoice id + status, so retries of one state change collapse and
/// `PAID` then `SETTLED` are two events.
pub fn parse_callback(body: &[u8], app_tag: &str) -> Result<Parsed, ParseError> {
    if let Ok(refund) = serde_json::from_slice::<RefundCallback>(body) {
        return parse_refund(refund);
    }
    let cb: InvoiceCallback = serde_json::from_slice(body).map_err(malformed)?;
    if cb.id.trim().is_empty() || cb.status.trim().is_empty() {
        return Err(malformed("empty invoice id or status"));
    }
    let event_id = format!("{}:{}", cb.id, cb.status);
    let Some(payment_id) = PaymentId::parse(&cb.external_id) else {
        // Not an invoice payhook created (a legacy or another app's): acknowledge, so
        // Xendit stops retrying.
        return Ok(ignored(
            event_id,
            ProcessingResult::IgnoredNonUuidExternalId,
            "external_id is not a payhook payment id",
        ));
    };
    if let Some(app) = cb.metadata.get("app").and_then(Value::as_str) {
        if app != app_tag {
            return Ok(ignored(
                event_id,
                ProcessingResult::IgnoredOtherApp,
                &format!("invoice belongs to app {app:?}"),
            ));
        }
    }
    let currency = Currency::parse(&cb.currency).map_err(malformed)?;
    let amount = Money::from_major(&cb.amount.to_string(), currency).map_err(malformed)?;
    let change = match cb.status.as_str() {
        "PAID" | "SETTLED" => {
            let paid = match &cb.paid_amount {
                Some(n) => Money::from_major(&n.to_string(), currency).map_err(malformed)?,
                None => amount,
            };
            PaymentChange::paid(Some(paid.amount_minor()))
        }
        "EXPIRED" => PaymentChange::status(PaymentStatus::Expired),
        other => {
            let reason = format!("invoice status {other} needs no action");
            return Ok(ignored(event_id, ProcessingResult::UnhandledEventType, &reason));
        }
    };
    let occurred_at = [&cb.updated, &cb.paid_at, &cb.created]
        .into_iter()
        .flatten()
        .find_map(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| malformed("no valid updated, paid_at or created timestamp"))?;
    Ok(Parsed::Event(Box::new(WebhookEvent {
        mirror: None,
        subscription: None,
        provider: Provider::Xendit,
        event_id: EventId::parse(event_id).map_err(malformed)?,
        event_type: format!("invoice.{}", cb.status.to_ascii_lowercase()),
        occurred_at,
        payment: PaymentRef {
            account: None,
            payment_id: Some(payment_id),
            provider_ref: Some(cb.id),
            aliases: Vec::new(),
        },
        change,
        // payhook creates every Xendit invoice it handles, so it never creates one here.
        details: None,
        confirm_with_provider: false,
    })))
}

/// A refund callback (Refunds API): `{"event": "refund.succeeded" | "refund.failed",
/// "data": {id, invoice_id, amount (major units), currency, status, reference_id, …}}`.
/// payhook sends its refund id as `reference_id` and its ids in `metadata`.
#[derive(Deserialize)]
struct RefundCallback {
    event: String,
    created: Option<String>,
    data: RefundData,
}

#[derive(Deserialize)]
struct RefundData {
    id: String,
    invoice_id: Option<String>,
    amount: Number,
    currency: String,
    status: String,
    reference_id: Option<String>,
    #[serde(default)]
    metadata: Value,
    updated: Option<String>,
}

/// Deduplicated on refund id + status.
fn parse_refund(cb: RefundCallback) -> Result<Parsed, ParseError> {
    let data = cb.data;
    let event_id = format!("{}:{}", data.id, data.status);
    let Some(invoice) = data.invoice_id.clone() else {
        return Ok(ignored(
            event_id,
            ProcessingResult::UnhandledEventType,
            "a refund of a payment that is not an invoice: not one payhook made",
        ));
    };
    let currency = Currency::parse(&data.currency).map_err(malformed)?;
    let amount = Money::from_major(&data.amount.to_string(), currency).map_err(malformed)?;
    let status = match data.status.as_str() {
        "SUCCEEDED" => RefundStatus::Succeeded,
        "FAILED" => RefundStatus::Failed,
        _ => RefundStatus::Pending,
    };
    let occurred_at = [&data.updated, &cb.created]
        .into_iter()
        .flatten()
        .find_map(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
    let payment_id = data
        .metadata
        .get("payhook_payment_id")
        .and_then(Value::as_str)
        .and_then(PaymentId::parse);
    Ok(Parsed::Event(Box::new(WebhookEvent {
        mirror: None,
        subscription: None,
        provider: Provider::Xendit,
        event_id: EventId::parse(event_id).map_err(malformed)?,
        event_type: cb.event,
        occurred_at,
        payment: PaymentRef {
            account: None,
            payment_id,
            provider_ref: Some(invoice),
            aliases: Vec::new(),
        },
        change: PaymentChange::RefundUpdate {
            refund: RefundReport::One {
                provider_ref: data.id,
                refund_id: data.reference_id.as_deref().and_then(RefundId::parse),
                amount: amount.amount_minor(),
                currency,
                status,
            },
        },
        details: None,
        confirm_with_provider: false,
    })))
}

fn ignored(event_id: String, result: ProcessingResult, reason: &str) -> Parsed {
    Parsed::Ignored {
        event_id: Some(event_id),
        result,
        reason: reason.to_owned(),
    }
}

/// Invoice id + status, status, external id and amount (minor units) for the forensic log.
pub fn primary_fields(body: &[u8]) -> PrimaryFields {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return PrimaryFields::default();
    };
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let status = text("status");
    let amount = v.get("amount").and_then(|a| {
        let currency = Currency::parse(v.get("currency")?.as_str()?).ok()?;
        Money::from_major(&a.to_string(), currency)
            .ok()
            .map(|m| m.amount_minor())
    });
    PrimaryFields {
        event_id: text("id").zip(status.clone()).map(|(id, st)| format!("{id}:{st}")),
        event_type: status.as_deref().map(|s| format!("invoice.{}", s.to_ascii_lowercase())),
        external_id: text("external_id"),
        provider_status: status,
        amount,
    }
}

#[cfg(test)]
#[path = "callback_tests.rs"]
mod tests;
