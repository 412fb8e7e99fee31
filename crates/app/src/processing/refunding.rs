//! `POST /payments/{id}/refunds`: reserves the refund (so refunds asked for at once can
//! never together exceed what was paid), then asks the provider, idempotently on the
//! refund's id. The refund stays `pending` until the provider settles it: its webhook
//! (the worker settles the refund rows and the payment's refunded total) or, when it
//! answers at once that the refund succeeded, an event payhook stores for the worker
//! in the same way. Beside the reconciler for the same reasons as cancellation.

use super::{count, Reconciler};
use payhook_domain::ports::StoreError;
use payhook_domain::{
    GatewayError, NewRefund, PaymentChange, PaymentId, Refund, RefundId, RefundReport, RefundRequest, RefundStatus,
    Reservation,
};

/// The event type, and so the history reason, of a refund payhook made that the
/// provider reported succeeded at once.
pub const REFUNDED_BY_MERCHANT: &str = "refunded_by_merchant";

#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    #[error("no payment with id {0}")]
    NotFound(PaymentId),
    /// Not paid, already refunded in full, or not known to its provider yet.
    #[error("payment {id} cannot be refunded: {why}")]
    NotRefundable { id: PaymentId, why: String },
    #[error("{amount} is more than the {available} {currency} left to refund")]
    Exceeds {
        amount: String,
        available: i64,
        currency: String,
    },
    #[error("{0}")]
    Unsupported(String),
    /// The provider refused or did not answer; the refund is failed, or (no answer)
    /// still pending and asked again by a retry with the same `Idempotency-Key`.
    #[error("{message}")]
    Provider { refund_id: RefundId, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Reconciler {
    /// Refunds `amount` (all that is left when `None`) of payment `id`.
    pub async fn refund(
        &self,
        id: PaymentId,
        amount: Option<i64>,
        reason: Option<String>,
        idempotency_key: Option<String>,
    ) -> Result<Refund, RefundError> {
        let refunds = self
            .refunds
            .as_ref()
            .ok_or_else(|| RefundError::Unsupported("refunds are not offered by this payhook".into()))?;
        let payment = self.payments.payment(id).await?.ok_or(RefundError::NotFound(id))?;
        let provider = payment.provider;
        let (gateway, limiter) = self
            .gateways
            .get(&provider)
            .ok_or_else(|| RefundError::Unsupported(format!("{provider} has no payment API configured here")))?;
        let payment_ref = payment.provider_ref.clone().ok_or_else(|| RefundError::NotRefundable {
            id,
            why: "its provider has no reference for it".into(),
        })?;
        let new = NewRefund {
            id: RefundId::from_uuid(uuid::Uuid::new_v4()),
            payment_id: id,
            amount,
            reason: reason.clone(),
            idempotency_key,
            created_at: self.clock.now(),
        };
        let refund = match refunds.reserve_refund(&new).await? {
            Reservation::New(refund) => refund,
            // A repeat: answered as it stands, unless the provider never answered it
            // (asked again, under the same provider idempotency key).
            Reservation::Existing(refund)
                if refund.provider_ref.is_some() || refund.status != RefundStatus::Pending =>
            {
                return Ok(refund)
            }
            Reservation::Existing(refund) => refund,
            Reservation::NoPayment => return Err(RefundError::NotFound(id)),
            Reservation::NotRefundable(status) => {
                return Err(RefundError::NotRefundable {
                    id,
                    why: format!("it is {status}"),
                })
            }
            Reservation::Exceeds { available, currency } => {
                return Err(RefundError::Exceeds {
                    amount: amount.map_or_else(|| "nothing".to_owned(), |a| a.to_string()),
                    available,
                    currency: currency.code().to_owned(),
                })
            }
        };
        let request = RefundRequest {
            refund_id: refund.id,
            payment_id: id,
            payment_ref: payment_ref.clone(),
            amount: refund.amount,
            reason,
        };
        limiter.until_ready().await;
        let now = self.clock.now();
        let answer = match gateway.refund(&request).await {
            Ok(answer) => answer,
            Err(e @ GatewayError::Unsupported { .. }) => {
                refunds
                    .record_refund_answer(refund.id, None, RefundStatus::Canceled, Some(e.to_string()), now)
                    .await?;
                return Err(RefundError::Unsupported(e.to_string()));
            }
            Err(e @ GatewayError::Unavailable { .. }) => {
                count(provider, "error");
                return Err(RefundError::Provider {
                    refund_id: refund.id,
                    message: e.to_string(),
                });
            }
            Err(refused) => {
                refunds
                    .record_refund_answer(refund.id, None, RefundStatus::Failed, Some(refused.to_string()), now)
                    .await?;
                return Err(RefundError::Provider {
                    refund_id: refund.id,
                    message: refused.to_string(),
                });
            }
        };
        // Pending for now even when the provider says succeeded: the event below
        // settles it through the worker, with the payment's refunded total.
        let recorded = refunds
            .record_refund_answer(
                refund.id,
                Some(answer.provider_ref.clone()),
                match answer.status {
                    RefundStatus::Succeeded => RefundStatus::Pending,
                    other => other,
                },
                answer.failure_reason.clone(),
                now,
            )
            .await?;
        if answer.status == RefundStatus::Succeeded {
            let report = RefundReport::One {
                provider_ref: answer.provider_ref.clone(),
                refund_id: Some(refund.id),
                amount: refund.amount.amount_minor(),
                currency: refund.amount.currency(),
                status: RefundStatus::Succeeded,
            };
            let body =
                serde_json::json!({ "refund": refund.id, "provider_ref": answer.provider_ref, "status": "succeeded" });
            self.store_event(
                &payment,
                Some(&payment_ref),
                body,
                format!("refund:{}:succeeded", refund.id),
                REFUNDED_BY_MERCHANT,
                PaymentChange::RefundUpdate { refund: report },
            )
            .await?;
            self.wake_worker.notify_one();
        }
        Ok(recorded)
    }
}
