//! Refunds as rows of their own. A refund the merchant asks for is reserved first:
//! in one store transaction that holds the payment's row, its amount is checked
//! against what is left to refund (what was paid, less every refund pending or
//! succeeded), so refunds asked for at the same moment can never together exceed the
//! payment. It is then sent to the provider and stays `pending` until the provider
//! settles it.

use crate::{Currency, Money, PaymentId, PaymentStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

crate::ids::uuid_id!(
    /// payhook's own refund id.
    RefundId
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    Pending,
    Succeeded,
    Failed,
    Canceled,
}

impl RefundStatus {
    pub const ALL: [RefundStatus; 4] = [Self::Pending, Self::Succeeded, Self::Failed, Self::Canceled];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    /// Whether the refund's money still counts against what is left to refund.
    pub fn holds_money(self) -> bool {
        matches!(self, Self::Pending | Self::Succeeded)
    }
}

impl FromStr for RefundStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown refund status {s:?}"))
    }
}

/// Who asked for the refund: the merchant through payhook's API, or someone at the
/// provider (its dashboard), seen only in the provider's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundOrigin {
    Merchant,
    Provider,
}

impl RefundOrigin {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Merchant => "merchant",
            Self::Provider => "provider",
        }
    }
}

impl FromStr for RefundOrigin {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "merchant" => Ok(Self::Merchant),
            "provider" => Ok(Self::Provider),
            other => Err(format!("unknown refund origin {other:?}")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub id: RefundId,
    pub payment_id: PaymentId,
    /// The provider's id of the refund, once it answered.
    pub provider_ref: Option<String>,
    pub amount: Money,
    pub reason: Option<String>,
    pub status: RefundStatus,
    pub origin: RefundOrigin,
    pub idempotency_key: Option<String>,
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A refund the merchant asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefund {
    pub id: RefundId,
    pub payment_id: PaymentId,
    /// Minor units; `None`: all that is left to refund.
    pub amount: Option<i64>,
    pub reason: Option<String>,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// What reserving a refund found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Reserved: a new `pending` refund, to be sent to the provider.
    New(Refund),
    /// The payment already has a refund under this idempotency key: that one.
    Existing(Refund),
    /// No such payment.
    NoPayment,
    /// The payment holds no money to refund (not paid, or refunded in full).
    NotRefundable(PaymentStatus),
    /// More than is left to refund (`available`, minor units), or nothing.
    Exceeds { available: i64, currency: Currency },
}

/// What a provider says about a payment's refunds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RefundReport {
    /// One refund, as the provider describes it (Stripe `refund.*`).
    One {
        /// The provider's id of the refund.
        provider_ref: String,
        /// payhook's id, when the refund carries it (payhook's own refunds).
        refund_id: Option<RefundId>,
        amount: i64,
        currency: Currency,
        status: RefundStatus,
    },
    /// How much of the payment the provider has refunded in all (Stripe
    /// `charge.amount_refunded`, a fetched status).
    Total { refunded_total: i64, currency: Currency },
}

/// What settling a report did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Settlement {
    /// The sum of the payment's succeeded refunds, after the report.
    pub succeeded_total: i64,
    /// Refunds the report settled (succeeded or failed) or made (origin `provider`).
    pub changed: Vec<Refund>,
}

impl Refund {
    /// The domain event payload for `refund.succeeded` / `refund.failed`.
    pub fn event_payload(&self) -> serde_json::Value {
        serde_json::json!({
            "refund_id": self.id,
            "payment_id": self.payment_id,
            "provider_ref": self.provider_ref,
            "amount": self.amount.amount_minor(),
            "currency": self.amount.currency().code(),
            "reason": self.reason,
            "status": self.status,
            "origin": self.origin,
            "failure_reason": self.failure_reason,
        })
    }
}
