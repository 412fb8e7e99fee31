//! Stripe Billing events read as words about a subscription Stripe runs
//! (`customer.subscription.*`, and `invoice.paid` / `invoice.payment_failed` of a
//! subscription's invoice). Read as tolerantly as the payment events: the period is
//! read where each API version puts it (the subscription before 2025-03, its items
//! after), the subscription of an invoice likewise (`subscription`, or
//! `parent.subscription_details`).

use chrono::{DateTime, Utc};
use payhook_domain::source::ParseError;
use payhook_domain::{
    Currency, Interval, Money, PaymentChange, PaymentDetails, PaymentRef, PaymentStatus, SignalPrice, SubscriptionId,
    SubscriptionSignal, SubscriptionStatus,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// Metadata key payhook sets on subscriptions it opens (and their Checkout Sessions).
pub const SUBSCRIPTION_ID_METADATA_KEY: &str = "payhook_subscription_id";

/// The subscription event types payhook applies.
pub const SUBSCRIPTION_EVENTS: [&str; 5] = [
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
];

#[derive(Deserialize)]
struct SubscriptionObject {
    id: String,
    status: String,
    #[serde(default)]
    cancel_at_period_end: bool,
    current_period_start: Option<i64>,
    current_period_end: Option<i64>,
    customer: Option<Value>,
    #[serde(default)]
    metadata: Value,
    items: Option<List<ItemObject>>,
}

#[derive(Deserialize)]
struct List<T> {
    #[serde(default = "Vec::new")]
    data: Vec<T>,
}

#[derive(Deserialize)]
struct ItemObject {
    price: Option<PriceObject>,
    current_period_start: Option<i64>,
    current_period_end: Option<i64>,
}

#[derive(Deserialize)]
struct PriceObject {
    id: String,
    unit_amount: Option<i64>,
    currency: String,
    recurring: Option<Recurring>,
    product: Option<Value>,
}

#[derive(Deserialize)]
struct Recurring {
    interval: String,
    #[serde(default = "one")]
    interval_count: u32,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
struct InvoiceObject {
    id: String,
    subscription: Option<Value>,
    parent: Option<InvoiceParent>,
    subscription_details: Option<SubscriptionDetails>,
    payment_intent: Option<Value>,
    #[serde(default)]
    amount_paid: i64,
    #[serde(default)]
    amount_due: i64,
    currency: String,
    customer: Option<Value>,
    customer_email: Option<String>,
    number: Option<String>,
    lines: Option<List<InvoiceLine>>,
}

#[derive(Deserialize)]
struct InvoiceParent {
    #[serde(rename = "type")]
    kind: Option<String>,
    subscription_details: Option<SubscriptionDetails>,
}

#[derive(Deserialize)]
struct SubscriptionDetails {
    subscription: Option<Value>,
    metadata: Option<Value>,
}

#[derive(Deserialize)]
struct InvoiceLine {
    period: Option<Period>,
    price: Option<PriceObject>,
}

#[derive(Deserialize)]
struct Period {
    start: i64,
    end: i64,
}

/// Stripe's subscription statuses in payhook's words. `unpaid` (Stripe gave up
/// retrying) and `paused` (a trial ended without a payment method) give no access:
/// `expired`, which a later payment brings back.
pub fn status(stripe: &str) -> Option<SubscriptionStatus> {
    Some(match stripe {
        "incomplete" => SubscriptionStatus::Pending,
        "trialing" => SubscriptionStatus::Trialing,
        "active" => SubscriptionStatus::Active,
        "past_due" => SubscriptionStatus::PastDue,
        "canceled" => SubscriptionStatus::Canceled,
        "incomplete_expired" | "unpaid" | "paused" => SubscriptionStatus::Expired,
        _ => return None,
    })
}

fn at(seconds: Option<i64>) -> Option<DateTime<Utc>> {
    seconds.and_then(|s| DateTime::from_timestamp(s, 0))
}

/// An id field that may come expanded (an object with an `id`).
fn id_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(o) => o.get("id").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

fn payhook_id(metadata: Option<&Value>) -> Option<SubscriptionId> {
    metadata?
        .get(SUBSCRIPTION_ID_METADATA_KEY)
        .and_then(Value::as_str)
        .and_then(SubscriptionId::parse)
}

fn price(p: &PriceObject) -> Option<SignalPrice> {
    let recurring = p.recurring.as_ref()?;
    Some(SignalPrice {
        id: p.id.clone(),
        amount: Money::new(p.unit_amount?, Currency::parse(&p.currency).ok()?).ok()?,
        interval: recurring.interval.parse().unwrap_or(Interval::Month),
        interval_count: recurring.interval_count.max(1),
        product_name: p
            .product
            .as_ref()
            .and_then(|product| product.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// A `customer.subscription.*` event's word about its subscription.
pub fn from_subscription(object: &RawValue, created: i64) -> Result<SubscriptionSignal, ParseError> {
    let s: SubscriptionObject = serde_json::from_str(object.get())
        .map_err(|e| ParseError(format!("data.object is not a subscription: {e}")))?;
    let item = s.items.as_ref().and_then(|items| items.data.first());
    Ok(SubscriptionSignal {
        provider_ref: s.id.clone(),
        subscription_id: payhook_id(Some(&s.metadata)),
        status: Some(
            status(&s.status).ok_or_else(|| ParseError(format!("unknown subscription status {:?}", s.status)))?,
        ),
        period_start: at(s.current_period_start.or(item.and_then(|i| i.current_period_start))),
        period_end: at(s.current_period_end.or(item.and_then(|i| i.current_period_end))),
        cancel_at_period_end: Some(s.cancel_at_period_end),
        customer: id_of(s.customer.as_ref()),
        customer_email: None,
        price: item.and_then(|i| i.price.as_ref()).and_then(price),
        created,
    })
}

/// An invoice event of a subscription's invoice: its payment (paid or failed) and,
/// for a paid one, the subscription active through the invoice's period. `None`: the
/// invoice is not a subscription's (a one-off or a quote's).
pub fn from_invoice(
    object: &RawValue,
    created: i64,
    paid: bool,
) -> Result<Option<(PaymentRef, PaymentChange, PaymentDetails, SubscriptionSignal)>, ParseError> {
    let invoice: InvoiceObject =
        serde_json::from_str(object.get()).map_err(|e| ParseError(format!("data.object is not an invoice: {e}")))?;
    let from_parent = invoice
        .parent
        .as_ref()
        .filter(|p| p.kind.as_deref() == Some("subscription_details"))
        .and_then(|p| p.subscription_details.as_ref());
    let details = from_parent.or(invoice.subscription_details.as_ref());
    let Some(subscription) =
        id_of(invoice.subscription.as_ref()).or_else(|| from_parent.and_then(|d| id_of(d.subscription.as_ref())))
    else {
        return Ok(None);
    };
    let currency = Currency::parse(&invoice.currency).map_err(|e| ParseError(e.to_string()))?;
    let amount = if paid { invoice.amount_paid } else { invoice.amount_due };
    let money = Money::new(amount.max(1), currency).map_err(|e| ParseError(e.to_string()))?;
    let line = invoice.lines.as_ref().and_then(|l| l.data.first());
    let period = line.and_then(|l| l.period.as_ref());
    // The payment is the invoice's PaymentIntent where the API version names it
    // (so `payment_intent.*` events of the same money find the same payment), else
    // the invoice itself.
    let provider_ref = id_of(invoice.payment_intent.as_ref()).unwrap_or_else(|| invoice.id.clone());
    let change = if paid {
        PaymentChange::paid(Some(invoice.amount_paid))
    } else {
        PaymentChange::status(PaymentStatus::Failed)
    };
    let payment = PaymentRef {
        account: None,
        payment_id: None,
        provider_ref: Some(provider_ref),
        aliases: if id_of(invoice.payment_intent.as_ref()).is_some() {
            vec![invoice.id.clone()]
        } else {
            Vec::new()
        },
    };
    let payment_details = PaymentDetails {
        amount: money,
        description: Some(match &invoice.number {
            Some(number) => format!("invoice {number}"),
            None => format!("invoice {}", invoice.id),
        }),
        customer_email: invoice.customer_email.clone(),
        metadata: serde_json::json!({ "stripe_invoice": invoice.id, "stripe_subscription": subscription }),
    };
    let signal = SubscriptionSignal {
        provider_ref: subscription,
        subscription_id: payhook_id(details.and_then(|d| d.metadata.as_ref())),
        // A failed payment says nothing certain about the subscription (the first
        // invoice's failure leaves it incomplete): Stripe's subscription event does.
        status: paid.then_some(SubscriptionStatus::Active),
        period_start: period.and_then(|p| at(Some(p.start))),
        period_end: period.and_then(|p| at(Some(p.end))),
        cancel_at_period_end: None,
        customer: id_of(invoice.customer.as_ref()),
        customer_email: invoice.customer_email,
        price: line.and_then(|l| l.price.as_ref()).and_then(price),
        created,
    };
    Ok(Some((payment, change, payment_details, signal)))
}
