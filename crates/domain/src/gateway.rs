//! Creating payments at a provider and asking it where they stand.

use crate::{Money, PaymentId, PaymentStatus, Provider};
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
    /// The per-payment token for providers that sign nothing (see
    /// `PaymentGateway::needs_callback_token`): the adapter puts it in the callback
    /// URL it gives the provider.
    pub callback_token: Option<CallbackToken>,
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
}

/// The provider's own view of a payment, for reconciliation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderPaymentStatus {
    pub status: PaymentStatus,
    /// Minor units received, when the provider says.
    pub paid_amount: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The request cannot be made as asked (an IDR amount in sen, say): nothing was sent.
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// The provider refused the request (4xx); the message summarizes its answer.
    #[error("{provider} refused the request: {message}")]
    Rejected { provider: Provider, message: String },
    /// The provider failed or did not answer (5xx, timeout, connection): retryable.
    #[error("{provider} is unavailable: {message}")]
    Unavailable { provider: Provider, message: String },
}
