//! Stripe event envelopes mapped onto domain events. Parsing is deliberately
//! tolerant: only the fields payhook uses are read, so Stripe adding fields or an
//! older API version omitting unrelated ones never rejects an authentic event.

use chrono::{DateTime, Utc};
use payhook_domain::source::{ParseError, Parsed};
use payhook_domain::{
    Currency, DisputeReport, DisputeStatus, EventId, MirrorWrite, Money, PaymentChange, PaymentDetails, PaymentId,
    PaymentRef, PaymentStatus, PrimaryFields, ProcessingResult, Provider, RefundId, RefundReport, WebhookEvent,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// Metadata key payhook sets on PaymentIntents it creates.
pub const PAYMENT_ID_METADATA_KEY: &str = "payhook_payment_id";
/// Metadata key payhook sets on refunds it creates.
pub const REFUND_ID_METADATA_KEY: &str = "payhook_refund_id";

#[derive(Deserialize)]
struct Envelope<'a> {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    created: i64,
    /// The connected account the event is about (Connect); absent for the platform's.
    account: Option<String>,
    #[serde(borrow)]
    data: EnvelopeData<'a>,
}

/// Event types that delete their object: the mirror keeps it, marked deleted.
const DELETIONS: [&str; 3] = ["customer.deleted", "product.deleted", "price.deleted"];

#[derive(Deserialize)]
struct EnvelopeData<'a> {
    /// Kept as text until the event's type says what it is (Stripe sends `type` after
    /// `data`), then read once into that type: building a `Value` of it first was most
    /// of the cost of parsing an event.
    #[serde(borrow)]
    object: &'a RawValue,
}

#[derive(Deserialize)]
struct PaymentIntentObject {
    id: String,
    amount: i64,
    amount_received: Option<i64>,
    currency: String,
    #[serde(default)]
    metadata: Value,
    description: Option<String>,
    receipt_email: Option<String>,
}

#[derive(Deserialize)]
struct ChargeObject {
    id: String,
    amount: i64,
    amount_captured: Option<i64>,
    /// `false` while the funds are only held (a manual-capture PaymentIntent).
    captured: Option<bool>,
    #[serde(default)]
    amount_refunded: i64,
    #[serde(default)]
    refunded: bool,
    currency: String,
    payment_intent: Option<String>,
    #[serde(default)]
    metadata: Value,
    description: Option<String>,
    receipt_email: Option<String>,
}

#[derive(Deserialize)]
struct DisputeObject {
    id: Option<String>,
    status: String,
    amount: Option<i64>,
    currency: Option<String>,
    reason: Option<String>,
    evidence_details: Option<EvidenceDetails>,
    charge: Option<String>,
    payment_intent: Option<String>,
    #[serde(default)]
    metadata: Value,
}

#[derive(Deserialize)]
struct EvidenceDetails {
    due_by: Option<i64>,
}

#[derive(Deserialize)]
struct RefundObject {
    id: Option<String>,
    amount: i64,
    currency: String,
    status: Option<String>,
    charge: Option<String>,
    payment_intent: Option<String>,
    #[serde(default)]
    metadata: Value,
}

/// Parses an authenticated Stripe event body. The 17 event types that say something
/// about a payment become domain events; so does any other event whose object payhook
/// mirrors (a customer, an invoice, …: `PaymentChange::Nothing`, with only its object
/// to write). Every event's object of a mirrored type travels with it (`mirror`), with
/// the event's Connect `account`. Anything else is `Ignored` (`unhandled_event_type`).
pub fn parse_event(body: &[u8]) -> Result<Parsed, ParseError> {
    parse(body, true)
}

/// [`parse_event`] for a payhook that keeps no Stripe mirror: no event carries its
/// object, and events about billing objects only are `Ignored`.
pub fn parse_event_without_mirror(body: &[u8]) -> Result<Parsed, ParseError> {
    parse(body, false)
}

fn parse(body: &[u8], mirroring: bool) -> Result<Parsed, ParseError> {
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|e| ParseError(format!("not a Stripe event: {e}")))?;
    let event_id = EventId::parse(envelope.id.clone()).map_err(|e| ParseError(e.to_string()))?;
    let occurred_at = DateTime::<Utc>::from_timestamp(envelope.created, 0)
        .ok_or_else(|| ParseError("created is not a valid unix timestamp".into()))?;
    let object = envelope.data.object;
    let account = envelope.account.clone().filter(|a| !a.is_empty());
    let mirror = mirroring
        .then(|| mirror_write(&envelope, account.as_deref().unwrap_or_default()))
        .flatten();
    let mut signal = None;
    let mapped = match envelope.event_type.as_str() {
        "payment_intent.succeeded" => from_payment_intent(object, |pi| match pi.amount_received {
            // Succeeded for less than its amount: the merchant captured part of it.
            Some(received) if received > 0 && received < pi.amount => capture(received, &pi.currency),
            received => Ok(PaymentChange::paid(received)),
        })?,
        "payment_intent.amount_capturable_updated" => {
            from_payment_intent(object, |_| Ok(PaymentChange::status(PaymentStatus::Authorized)))?
        }
        "payment_intent.payment_failed" => {
            from_payment_intent(object, |_| Ok(PaymentChange::status(PaymentStatus::Failed)))?
        }
        "payment_intent.canceled" => {
            from_payment_intent(object, |_| Ok(PaymentChange::status(PaymentStatus::Canceled)))?
        }
        "payment_intent.requires_action" => {
            from_payment_intent(object, |_| Ok(PaymentChange::status(PaymentStatus::RequiresAction)))?
        }
        // An uncaptured charge (`captured: false`) holds the funds: authorized, not paid.
        "charge.succeeded" | "charge.captured" => from_charge(object, |ch| match (ch.captured, ch.amount_captured) {
            (Some(false), _) => Ok(PaymentChange::status(PaymentStatus::Authorized)),
            (_, Some(captured)) if captured > 0 && captured < ch.amount => capture(captured, &ch.currency),
            (_, captured) => Ok(PaymentChange::paid(Some(
                captured.filter(|a| *a > 0).unwrap_or(ch.amount),
            ))),
        })?,
        "charge.failed" => from_charge(object, |_| Ok(PaymentChange::status(PaymentStatus::Failed)))?,
        "charge.refunded" => from_charge(object, |ch| {
            // `refunded` is Stripe's word that the charge is refunded in full.
            let total = if ch.refunded {
                ch.amount_refunded.max(ch.amount)
            } else {
                ch.amount_refunded
            };
            Ok(PaymentChange::Refund {
                refunded_total: total,
                currency: currency(&ch.currency)?,
            })
        })?,
        "charge.dispute.created"
        | "charge.dispute.updated"
        | "charge.dispute.closed"
        | "charge.dispute.funds_withdrawn"
        | "charge.dispute.funds_reinstated" => from_dispute(object)?,
        "refund.created" | "refund.updated" | "refund.failed" => from_refund(object)?,
        kind if crate::billing::SUBSCRIPTION_EVENTS.contains(&kind) => {
            signal = Some(crate::billing::from_subscription(object, envelope.created)?);
            Some((PaymentRef::default(), PaymentChange::Nothing, None))
        }
        "invoice.paid" | "invoice.payment_failed" => {
            match crate::billing::from_invoice(object, envelope.created, envelope.event_type == "invoice.paid")? {
                Some((payment, change, details, said)) => {
                    signal = Some(said);
                    Some((payment, change, Some(details)))
                }
                None => None,
            }
        }
        _ => None,
    };
    let mapped = match (mapped, &mirror) {
        (None, Some(_)) => Some((PaymentRef::default(), PaymentChange::Nothing, None)),
        (mapped, _) => mapped,
    };
    let Some((mut payment, change, details)) = mapped else {
        return Ok(Parsed::Ignored {
            event_id: Some(envelope.id),
            result: ProcessingResult::UnhandledEventType,
            reason: if envelope.event_type.starts_with("refund.") {
                "the refund has not succeeded, so no money moved".to_owned()
            } else {
                format!("event type {} is not handled", envelope.event_type)
            },
        });
    };
    payment.account = account;
    Ok(Parsed::Event(Box::new(WebhookEvent {
        provider: Provider::Stripe,
        event_id,
        event_type: envelope.event_type,
        occurred_at,
        payment,
        change,
        details,
        confirm_with_provider: false,
        mirror: mirror.map(Box::new),
        subscription: signal.map(Box::new),
    })))
}

/// The event's object, for the mirror, when it is of a type payhook mirrors.
fn mirror_write(envelope: &Envelope, account: &str) -> Option<MirrorWrite> {
    MirrorWrite::of_object(
        account,
        envelope.data.object.get(),
        DELETIONS.contains(&envelope.event_type.as_str()),
        envelope.id.clone(),
        envelope.created,
    )
}

type Mapped = Option<(PaymentRef, PaymentChange, Option<PaymentDetails>)>;

fn object<T: for<'de> Deserialize<'de>>(value: &RawValue, what: &str) -> Result<T, ParseError> {
    serde_json::from_str(value.get()).map_err(|e| ParseError(format!("data.object is not a {what}: {e}")))
}

fn currency(code: &str) -> Result<Currency, ParseError> {
    Currency::parse(code).map_err(|e| ParseError(e.to_string()))
}

fn money(amount: i64, code: &str) -> Result<Money, ParseError> {
    Money::new(amount, currency(code)?).map_err(|e| ParseError(e.to_string()))
}

/// payhook's own id when payhook created the PaymentIntent, else Stripe's reference.
fn reference(metadata: &Value, provider_ref: Option<String>) -> PaymentRef {
    PaymentRef {
        account: None,
        payment_id: metadata
            .get(PAYMENT_ID_METADATA_KEY)
            .and_then(Value::as_str)
            .and_then(PaymentId::parse),
        provider_ref,
        aliases: Vec::new(),
    }
}

fn capture(amount: i64, code: &str) -> Result<PaymentChange, ParseError> {
    Ok(PaymentChange::Capture {
        amount,
        currency: currency(code)?,
    })
}

fn from_payment_intent(
    value: &RawValue,
    change: impl Fn(&PaymentIntentObject) -> Result<PaymentChange, ParseError>,
) -> Result<Mapped, ParseError> {
    let pi: PaymentIntentObject = object(value, "payment_intent")?;
    let details = PaymentDetails {
        amount: money(pi.amount, &pi.currency)?,
        description: pi.description.clone(),
        customer_email: pi.receipt_email.clone(),
        metadata: pi.metadata.clone(),
    };
    Ok(Some((
        reference(&pi.metadata, Some(pi.id.clone())),
        change(&pi)?,
        Some(details),
    )))
}

fn from_charge(
    value: &RawValue,
    change: impl Fn(&ChargeObject) -> Result<PaymentChange, ParseError>,
) -> Result<Mapped, ParseError> {
    let ch: ChargeObject = object(value, "charge")?;
    let details = PaymentDetails {
        amount: money(ch.amount, &ch.currency)?,
        description: ch.description.clone(),
        customer_email: ch.receipt_email.clone(),
        metadata: ch.metadata.clone(),
    };
    // A charge belongs to its PaymentIntent; a legacy charge without one stands alone.
    let provider_ref = ch.payment_intent.clone().unwrap_or_else(|| ch.id.clone());
    let mut payment = reference(&ch.metadata, Some(provider_ref));
    if ch.payment_intent.is_some() {
        // Disputes and refunds may name only the charge: remember it for the payment.
        payment.aliases.push(ch.id.clone());
    }
    Ok(Some((payment, change(&ch)?, Some(details))))
}

fn from_dispute(value: &RawValue) -> Result<Mapped, ParseError> {
    let dp: DisputeObject = object(value, "dispute")?;
    let status = match dp.status.as_str() {
        "won" | "warning_closed" => DisputeStatus::Won,
        "lost" => DisputeStatus::Lost,
        // needs_response, under_review, warning_needs_response, warning_under_review
        _ => DisputeStatus::Open,
    };
    let detail = dp.id.as_ref().map(|id| {
        Box::new(DisputeReport {
            provider_ref: id.clone(),
            amount: dp.amount,
            currency: dp.currency.as_deref().and_then(|c| Currency::parse(c).ok()),
            reason: dp.reason.clone(),
            status: dp.status.clone(),
            evidence_due_by: dp
                .evidence_details
                .as_ref()
                .and_then(|e| e.due_by)
                .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0)),
            closed: status != DisputeStatus::Open,
        })
    });
    let provider_ref = dp.payment_intent.or(dp.charge);
    Ok(Some((
        reference(&dp.metadata, provider_ref),
        PaymentChange::Dispute { status, detail },
        None,
    )))
}

fn from_refund(value: &RawValue) -> Result<Mapped, ParseError> {
    let rf: RefundObject = object(value, "refund")?;
    let currency = currency(&rf.currency)?;
    let change = match rf.id.clone() {
        // The refund itself, whatever its status: the worker settles payhook's row.
        Some(id) => PaymentChange::RefundUpdate {
            refund: RefundReport::One {
                provider_ref: id,
                refund_id: rf
                    .metadata
                    .get(REFUND_ID_METADATA_KEY)
                    .and_then(Value::as_str)
                    .and_then(RefundId::parse),
                amount: rf.amount,
                currency,
                status: crate::gateway::refund_status(rf.status.as_deref()),
            },
        },
        // No id (a hand-made body): only a succeeded amount says anything.
        None if rf.status.as_deref() == Some("succeeded") => PaymentChange::Refund {
            refunded_total: rf.amount,
            currency,
        },
        None => return Ok(None),
    };
    let provider_ref = rf.payment_intent.or(rf.charge);
    Ok(Some((reference(&rf.metadata, provider_ref), change, None)))
}

/// Event id, type, object id, status and amount for the forensic log, from any body.
pub fn primary_fields(body: &[u8]) -> PrimaryFields {
    // Only these fields are built; the rest of the body is skipped. Building a `Value`
    // of the whole event cost more than the rest of classifying a delivery.
    if let Ok(envelope) = serde_json::from_slice::<PrimaryEnvelope>(body) {
        let object = envelope.data.and_then(|d| d.object).unwrap_or_default();
        return primary_from(
            &envelope.id,
            &envelope.event_type,
            &object.id,
            &object.status,
            &object.amount,
        );
    }
    // A body shaped otherwise (`data.object` not an object, say): whatever can be found.
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return PrimaryFields::default();
    };
    let field = |object: Option<&Value>, name: &str| object.and_then(|o| o.get(name)).cloned().unwrap_or_default();
    let object = v.pointer("/data/object");
    primary_from(
        &field(Some(&v), "id"),
        &field(Some(&v), "type"),
        &field(object, "id"),
        &field(object, "status"),
        &field(object, "amount"),
    )
}

fn primary_from(event_id: &Value, event_type: &Value, id: &Value, status: &Value, amount: &Value) -> PrimaryFields {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    PrimaryFields {
        event_id: text(event_id),
        event_type: text(event_type),
        external_id: text(id),
        provider_status: text(status),
        amount: amount.as_i64(),
    }
}

#[derive(Deserialize)]
struct PrimaryEnvelope {
    #[serde(default)]
    id: Value,
    #[serde(default, rename = "type")]
    event_type: Value,
    data: Option<PrimaryData>,
}

#[derive(Deserialize)]
struct PrimaryData {
    object: Option<PrimaryObject>,
}

#[derive(Deserialize, Default)]
struct PrimaryObject {
    #[serde(default)]
    id: Value,
    #[serde(default)]
    status: Value,
    #[serde(default)]
    amount: Value,
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
