//! The normalized webhook event: what every provider adapter turns a delivery into,
//! what the inbox stores, and what the worker applies to a payment.

use crate::{Currency, DisputeStatus, EventId, Money, PaymentId, PaymentStatus, Provider};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEvent {
    pub provider: Provider,
    /// Deduplication key within the provider.
    pub event_id: EventId,
    /// The provider's event type, kept verbatim (`payment_intent.succeeded`).
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub payment: PaymentRef,
    pub change: PaymentChange,
    /// What the provider says about the payment itself; lets the worker create a
    /// payment it has not seen yet (an existing Stripe account pointed at payhook).
    pub details: Option<PaymentDetails>,
    /// The delivery is a claim only (the provider signs nothing): the worker asks the
    /// provider's API where the payment stands and applies that instead of `change`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub confirm_with_provider: bool,
    /// The provider's object to keep in the Stripe mirror, written in the same
    /// transaction as the event's other effects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Box<crate::MirrorWrite>>,
    /// What the event says about a subscription the provider runs (Stripe), applied
    /// to payhook's subscription before the event is marked processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<Box<crate::SubscriptionSignal>>,
}

impl WebhookEvent {
    /// The event says nothing about a payment (a Stripe customer or invoice event):
    /// only its object is mirrored.
    pub fn is_mirror_only(&self) -> bool {
        matches!(self.change, PaymentChange::Nothing)
    }

    /// Nothing but the mirror to write: no payment, no subscription.
    pub fn only_mirrors(&self) -> bool {
        self.is_mirror_only() && self.subscription.is_none()
    }
}

/// How an event names its payment. The worker tries payhook's own id first, then
/// the provider's reference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRef {
    pub payment_id: Option<PaymentId>,
    pub provider_ref: Option<String>,
    /// Other ids the provider uses for the same payment (a Stripe charge id beside its
    /// PaymentIntent): remembered when the event is applied, so a later event that
    /// names only one of them (a dispute on an older API version) still finds it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// The Stripe Connect account the payment belongs to (`acct_…`); `None` for the
    /// platform's own payments and for providers without accounts. A provider
    /// reference is unique only within its account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

impl PaymentRef {
    /// A short text for the inbox's `payment_ref` column and for log lines.
    pub fn describe(&self) -> Option<String> {
        self.payment_id
            .map(|id| id.to_string())
            .or_else(|| self.provider_ref.clone())
    }
}

/// The payment as the provider describes it in the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentDetails {
    pub amount: Money,
    pub description: Option<String>,
    pub customer_email: Option<String>,
    pub metadata: serde_json::Value,
}

/// What an event asks to happen to its payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PaymentChange {
    /// Move to a status. `paid_amount` is the amount received, when the provider says it.
    Status {
        to: PaymentStatus,
        paid_amount: Option<i64>,
    },
    /// Money went back to the customer. `refunded_total` is cumulative when the provider
    /// gives a cumulative figure (Stripe `charge.amount_refunded`); a single refund's
    /// amount is a lower bound of it, and applying takes the larger value, so replays
    /// and reordering never lower the refunded amount.
    Refund { refunded_total: i64, currency: Currency },
    /// A dispute (chargeback) opened, moved or closed: `status` is the payment's
    /// summary; `detail`, when the provider gives it, the dispute itself, kept as a
    /// row of its own (amount, reason, evidence deadline).
    Dispute {
        status: DisputeStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<Box<crate::DisputeReport>>,
    },
    /// One refund, as the provider describes it (any status). The worker settles the
    /// payment's refund rows by it, then applies the payment's new refunded total.
    RefundUpdate { refund: crate::RefundReport },
    /// Held funds were captured, in full or in part (Stripe `charge.captured`, or a
    /// PaymentIntent that succeeded for less than its amount): the merchant chose the
    /// amount, so the payment is paid, with `paid_amount` what was captured. Unlike a
    /// customer paying less than asked (`Status` to paid with a smaller amount), which
    /// is not paid.
    Capture { amount: i64, currency: Currency },
    /// Nothing happens to a payment: the event only updates the Stripe mirror (a
    /// customer, a product, an invoice…).
    Nothing,
}

impl PaymentChange {
    pub fn paid(paid_amount: Option<i64>) -> Self {
        Self::Status {
            to: PaymentStatus::Paid,
            paid_amount,
        }
    }

    pub fn status(to: PaymentStatus) -> Self {
        Self::Status { to, paid_amount: None }
    }
}
