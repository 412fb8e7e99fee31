//! Creating payments at a provider and asking it where they stand.

use crate::{DisputeStatus, Money, Payment, PaymentChange, PaymentId, PaymentStatus, Provider};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What payhook asks a provider to collect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckoutRequest {
    pub payment_id: PaymentId,
    pub amount: Money,
    pub merchant_ref: Option<String>,
    pub customer_email: Option<String>,
    pub description: Option<String>,
    /// The caller's metadata; a provider may take details it needs from it (JunglePay:
    /// `customer_name`, `customer_document`).
    pub metadata: serde_json::Value,
    /// The per-payment token for providers that sign nothing (see
    /// `source::Authentication::PaymentToken`): the adapter puts it in the callback
    /// URL it gives the provider.
    pub callback_token: Option<CallbackToken>,
    /// Where a hosted payment page sends the customer after paying, and after giving
    /// up (Stripe Checkout, Xendit invoices); the provider's or configured default
    /// when `None`.
    #[serde(default)]
    pub success_url: Option<String>,
    #[serde(default)]
    pub cancel_url: Option<String>,
}

/// A secret that authenticates a provider's callbacks for one payment. Its `Debug`
/// output is redacted, so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackToken(String);

impl CallbackToken {
    pub fn new(token: String) -> Self {
        Self(token)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for CallbackToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallbackToken([redacted])")
    }
}

/// How the customer pays, as the provider answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkout {
    /// The provider's id of the payment (invoice id, PaymentIntent id, ...).
    pub provider_ref: String,
    pub checkout_url: Option<String>,
    pub qr_text: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// What else the provider gave for paying, in its own terms (QPay: the QR image,
    /// short URL and bank app links); `Null` when nothing.
    pub extras: serde_json::Value,
    /// What the customer's browser confirms the payment with (a Stripe PaymentIntent's
    /// `client_secret`). Handed to the merchant once, in the creation's answer, and
    /// never stored.
    #[serde(skip)]
    pub client_secret: Option<ClientSecret>,
}

/// A secret for the customer's browser (a PaymentIntent's `client_secret`): never
/// stored, and redacted in `Debug` so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(String);

impl ClientSecret {
    pub fn new(secret: String) -> Self {
        Self(secret)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret([redacted])")
    }
}

/// The provider's own view of a payment, for reconciliation and for confirming
/// callbacks that carry no signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderPaymentStatus {
    pub status: PaymentStatus,
    /// Minor units received, when the provider says.
    pub paid_amount: Option<i64>,
    /// Minor units refunded in total, when the provider says.
    pub refunded_amount: Option<i64>,
    /// A dispute (chargeback) the provider reports beside the status.
    pub dispute: Option<DisputeStatus>,
    /// `paid_amount` is what the merchant captured of held funds (Stripe), so less
    /// than the amount is still paid; otherwise less is a partial payment, not paid.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub captured: bool,
}

impl ProviderPaymentStatus {
    pub fn new(status: PaymentStatus, paid_amount: Option<i64>) -> Self {
        Self {
            status,
            paid_amount,
            refunded_amount: None,
            dispute: None,
            captured: false,
        }
    }

    /// The change that brings `payment` to where the provider says it is.
    pub fn change_for(&self, payment: &Payment) -> PaymentChange {
        if let Some(status) = self.dispute {
            return PaymentChange::Dispute { status, detail: None };
        }
        match self.status {
            PaymentStatus::Refunded | PaymentStatus::PartiallyRefunded => PaymentChange::Refund {
                refunded_total: self.refunded_amount.unwrap_or(payment.amount.amount_minor()),
                currency: payment.amount.currency(),
            },
            PaymentStatus::Paid if self.captured => PaymentChange::Capture {
                amount: self.paid_amount.unwrap_or(payment.amount.amount_minor()),
                currency: payment.amount.currency(),
            },
            to => PaymentChange::Status {
                to,
                paid_amount: self.paid_amount,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The request cannot be made as asked (an IDR amount in sen, say): nothing was sent.
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// The provider refused the request with a 4xx `status`; the message summarizes
    /// its answer.
    #[error("{provider} refused the request: {message}")]
    Rejected {
        provider: Provider,
        status: u16,
        message: String,
    },
    /// The provider failed or did not answer (5xx, timeout, connection): retryable.
    #[error("{provider} is unavailable: {message}")]
    Unavailable { provider: Provider, message: String },
    /// The provider's API offers no such operation (`operation`: "cancel", "refund").
    #[error("{provider} offers no way to {operation} a payment through its API")]
    Unsupported {
        provider: Provider,
        operation: &'static str,
    },
}

/// A refund payhook asks a provider for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub refund_id: crate::RefundId,
    pub payment_id: crate::PaymentId,
    /// The payment's id at the provider.
    pub payment_ref: String,
    pub amount: Money,
    pub reason: Option<String>,
}

/// The provider's answer to a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRefund {
    pub provider_ref: String,
    /// `pending` until the provider settles it (its webhook, or a check).
    pub status: crate::RefundStatus,
    pub failure_reason: Option<String>,
}

/// What payhook asks a provider about one of its refunds still `pending` (its webhook
/// never came).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundLookup {
    pub refund_id: crate::RefundId,
    /// The provider's id of the refund.
    pub refund_ref: String,
    /// The payment's id at the provider.
    pub payment_ref: String,
    /// The refund's amount and currency.
    pub amount: Money,
}
