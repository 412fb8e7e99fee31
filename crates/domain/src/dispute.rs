//! Disputes (chargebacks): rows of their own, several per payment, beside the
//! payment's one-word summary (`dispute_status`). A provider reports a dispute by its
//! own id; each report updates that dispute's row, and a closed dispute stays closed.

use crate::{Currency, PaymentId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a provider says about one dispute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeReport {
    /// The provider's id of the dispute (Stripe `dp_…`; JunglePay: the transaction).
    pub provider_ref: String,
    /// Minor units disputed, when said.
    pub amount: Option<i64>,
    pub currency: Option<Currency>,
    /// The provider's reason (`fraudulent`, `product_not_received`, …).
    pub reason: Option<String>,
    /// The provider's own word for where it stands (`needs_response`, `won`, …).
    pub status: String,
    /// The last moment to submit evidence, when the provider sets one.
    pub evidence_due_by: Option<DateTime<Utc>>,
    /// Decided (won or lost): final.
    pub closed: bool,
}

/// A dispute as payhook keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispute {
    pub id: uuid::Uuid,
    pub payment_id: PaymentId,
    pub provider_ref: String,
    pub amount: Option<i64>,
    pub currency: Option<Currency>,
    pub reason: Option<String>,
    pub status: String,
    pub evidence_due_by: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

/// What recording a report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeRecorded {
    pub dispute: Dispute,
    /// The first report of this dispute: `dispute.opened` was published.
    pub opened: bool,
    /// This report closed it: `dispute.closed` was published.
    pub closed: bool,
}

impl Dispute {
    /// The domain event payload for `dispute.opened` / `dispute.closed`.
    pub fn event_payload(&self) -> serde_json::Value {
        serde_json::json!({
            "dispute_id": self.id,
            "payment_id": self.payment_id,
            "provider_ref": self.provider_ref,
            "amount": self.amount,
            "currency": self.currency.map(|c| c.code().to_owned()),
            "reason": self.reason,
            "status": self.status,
            "evidence_due_by": self.evidence_due_by,
            "closed_at": self.closed_at,
        })
    }
}
