//! `POST /payments/{id}/cancel`: cancels an unpaid payment at its provider. payhook
//! moves the payment to `canceled` only once the provider agrees, and through the
//! same path as every other change: the provider's answer is stored as an inbox event
//! (`cancel:{payment}`, history reason `canceled_by_merchant`) that the worker applies,
//! with its domain event and status-stream update. It lives beside the reconciler
//! because it needs the same things: each provider's API under its rate limit, and a
//! way to store what a provider said.

use super::{count, Reconciler};
use payhook_domain::ports::{PaymentGateway, StoreError};
use payhook_domain::{GatewayError, Payment, PaymentChange, PaymentId, PaymentStatus};
use std::time::Duration;

/// The event type, and so the history reason, of a cancellation the provider agreed to.
pub const CANCELED_BY_MERCHANT: &str = "canceled_by_merchant";

/// How long a cancellation waits for the worker to apply it before answering anyway.
const APPLY_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no payment with id {0}")]
    NotFound(PaymentId),
    /// Paid, refunded, failed, expired, still being created, or the provider refused.
    #[error("payment {id} cannot be canceled: {why}")]
    NotCancelable { id: PaymentId, why: String },
    /// The provider's API cannot cancel, or payhook has no API for it configured.
    #[error("{0}")]
    Unsupported(String),
    /// The provider did not answer (5xx, timeout, refused connection).
    #[error("the provider did not answer: {0}")]
    Provider(GatewayError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Reconciler {
    /// Cancels payment `id` at its provider and answers the payment once the worker
    /// has applied the cancellation (or after a few seconds, as it stands then). A
    /// payment already canceled is answered as it is.
    pub async fn cancel(&self, id: PaymentId) -> Result<Payment, CancelError> {
        let payment = self.payments.payment(id).await?.ok_or(CancelError::NotFound(id))?;
        if payment.status == PaymentStatus::Canceled {
            return Ok(payment);
        }
        if !payment.status.can_move_to(PaymentStatus::Canceled) {
            return Err(CancelError::NotCancelable {
                id,
                why: format!("it is {}; only a payment not yet paid can be", payment.status),
            });
        }
        let provider = payment.provider;
        let (gateway, limiter) = self
            .gateways
            .get(&provider)
            .ok_or_else(|| CancelError::Unsupported(format!("{provider} has no payment API configured here")))?;
        let reference = payment.provider_ref.clone().ok_or_else(|| CancelError::NotCancelable {
            id,
            why: "it is still being created; retry in a minute".into(),
        })?;
        limiter.until_ready().await;
        let found = match gateway.cancel(&reference).await {
            Ok(found) => found,
            Err(e @ GatewayError::Unsupported { .. }) => return Err(CancelError::Unsupported(e.to_string())),
            Err(e @ GatewayError::Unavailable { .. }) => return Err(CancelError::Provider(e)),
            Err(refused) => return Err(self.refused(&payment, &reference, gateway.as_ref(), refused).await),
        };
        if found.status != PaymentStatus::Canceled {
            // It moved first (paid, say): what the provider says is stored, like a
            // reconciliation finding, and the payment stays as the provider has it.
            self.take_answer(&payment, &reference, &found).await?;
            self.wake_worker.notify_one();
            return Err(CancelError::NotCancelable {
                id,
                why: format!("{provider} says it is {}", found.status),
            });
        }
        count(provider, "canceled");
        let answer = serde_json::json!({ "provider_ref": reference, "canceled": found });
        let change = PaymentChange::status(PaymentStatus::Canceled);
        let event_id = format!("cancel:{id}");
        self.store_event(
            &payment,
            Some(&reference),
            answer,
            event_id,
            CANCELED_BY_MERCHANT,
            change,
        )
        .await?;
        self.wake_worker.notify_one();
        self.applied(id).await
    }

    /// The provider refused to cancel: usually because the payment moved on there. Its
    /// status is read back (and stored when it differs), and the refusal explained.
    async fn refused(
        &self,
        payment: &Payment,
        reference: &str,
        gateway: &dyn PaymentGateway,
        refused: GatewayError,
    ) -> CancelError {
        if let Ok(found) = gateway.fetch_status(reference).await {
            if let Err(e) = self.take_answer(payment, reference, &found).await {
                return CancelError::Store(e);
            }
            self.wake_worker.notify_one();
        }
        CancelError::NotCancelable {
            id: payment.id,
            why: refused.to_string(),
        }
    }

    /// The payment once the worker has applied its cancellation, or as it stands after
    /// [`APPLY_WAIT`].
    async fn applied(&self, id: PaymentId) -> Result<Payment, CancelError> {
        let deadline = tokio::time::Instant::now() + APPLY_WAIT;
        loop {
            let payment = self.payments.payment(id).await?.ok_or(CancelError::NotFound(id))?;
            if payment.status == PaymentStatus::Canceled || tokio::time::Instant::now() >= deadline {
                return Ok(payment);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
