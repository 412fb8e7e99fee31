//! `POST /payments/{id}/refunds`: reserves the refund (so refunds asked for at once can
//! never together exceed what was paid), then asks the provider, idempotently on the
//! refund's id. The refund stays `pending` until the provider settles it: its webhook
//! (the worker settles the refund rows and the payment's refunded total) or, when it
//! answers at once that the refund succeeded, an event payhook stores for the worker
//! in the same way. Beside the reconciler for the same reasons as cancellation.
//!
//! A refund that stays `pending` (its webhook lost, or the provider's answer to
//! payhook's request lost) is asked about on the reconciler's schedule, counted from
//! the refund's creation: the provider's refund is read (Stripe, Xendit) or the
//! payment's refunded total (JunglePay), and what settles it goes through the inbox
//! like any finding; a request never answered is sent again under the same
//! idempotency key.

use super::{count, Reconciler, RoundReport, CHECK_LEASE, CLAIM_BATCH};
use payhook_domain::ports::{DueRefundCheck, RefundStore, StoreError};
use payhook_domain::{
    GatewayError, NewRefund, Payment, PaymentChange, PaymentId, Refund, RefundId, RefundLookup, RefundReport,
    RefundRequest, RefundStatus, Reservation,
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
        if !self.gateways.contains_key(&provider) {
            return Err(RefundError::Unsupported(format!(
                "{provider} has no payment API configured here"
            )));
        }
        let payment_ref = payment.provider_ref.clone().ok_or_else(|| RefundError::NotRefundable {
            id,
            why: "its provider has no reference for it".into(),
        })?;
        let new = NewRefund {
            id: RefundId::from_uuid(uuid::Uuid::new_v4()),
            payment_id: id,
            amount,
            reason,
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
        self.send_refund(&payment, &payment_ref, &refund).await
    }

    /// Asks the provider for a reserved refund, idempotently on its id, and records
    /// the answer: the merchant's request, its retry, or the reconciler's when the
    /// provider's first answer was lost.
    pub(super) async fn send_refund(
        &self,
        payment: &Payment,
        payment_ref: &str,
        refund: &Refund,
    ) -> Result<Refund, RefundError> {
        let refunds = self
            .refunds
            .as_ref()
            .ok_or_else(|| RefundError::Unsupported("refunds are not offered by this payhook".into()))?;
        let provider = payment.provider;
        let (gateway, limiter) = self
            .gateways
            .get(&provider)
            .ok_or_else(|| RefundError::Unsupported(format!("{provider} has no payment API configured here")))?;
        let request = RefundRequest {
            refund_id: refund.id,
            payment_id: payment.id,
            payment_ref: payment_ref.to_owned(),
            amount: refund.amount,
            reason: refund.reason.clone(),
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
                payment,
                Some(payment_ref),
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

/// The event id of a refund check's finding, made of what the provider says, so the
/// same finding is stored once.
fn refund_finding_id(refund: &Refund, report: &RefundReport) -> String {
    match report {
        RefundReport::One { status, .. } => format!("refund-check:{}:{}", refund.id, status.as_str()),
        RefundReport::Total { refunded_total, .. } => {
            format!("refund-check:{}:total:{refunded_total}", refund.payment_id)
        }
    }
}

impl Reconciler {
    /// Asks the providers about pending refunds due for a check: refunds whose
    /// webhook never came, and refunds whose provider never answered payhook's
    /// request (asked again, under the same idempotency key). On the payments'
    /// schedule, counted from the refund's creation.
    pub(super) async fn check_refunds(&self, report: &mut RoundReport) -> Result<(), StoreError> {
        let Some(refunds) = self.refunds.clone() else {
            return Ok(());
        };
        loop {
            let now = self.clock.now();
            let lease = chrono::Duration::from_std(CHECK_LEASE).unwrap_or(chrono::Duration::minutes(5));
            let due = refunds.claim_due_refund_checks(now, CLAIM_BATCH, now + lease).await?;
            let claimed = due.len();
            for check in due {
                self.check_refund(refunds.as_ref(), check, report).await?;
            }
            if claimed < CLAIM_BATCH as usize {
                return Ok(());
            }
        }
    }

    async fn check_refund(
        &self,
        refunds: &dyn RefundStore,
        due: DueRefundCheck,
        report: &mut RoundReport,
    ) -> Result<(), StoreError> {
        let DueRefundCheck {
            refund,
            provider,
            payment_ref,
            checks,
        } = due;
        let now = self.clock.now();
        match self.schedule.due_after(refund.created_at, checks) {
            // Not due yet (a refund is claimable from its creation): put on its
            // schedule without asking.
            Some(at) if at > now => return refunds.schedule_refund_check(refund.id, checks, Some(at)).await,
            Some(_) => {}
            None => {
                tracing::warn!(refund_id = %refund.id, %provider,
                    "a refund is still pending past reconcile.give_up_after_hours; no longer asking its provider");
                count(provider, "refund_given_up");
                return refunds.schedule_refund_check(refund.id, checks, None).await;
            }
        }
        let next = self.schedule.due_after(refund.created_at, checks + 1);
        let (Some((gateway, limiter)), Some(payment_ref)) = (self.gateways.get(&provider), payment_ref) else {
            report.skipped += 1;
            count(provider, "skipped");
            return refunds.schedule_refund_check(refund.id, checks + 1, next).await;
        };
        let Some(payment) = self.payments.payment(refund.payment_id).await? else {
            return Err(StoreError::Corrupt(format!("refund {} of no payment", refund.id)));
        };
        match refund.provider_ref.clone() {
            // The provider never answered payhook's request: asked again, under the
            // same idempotency key, so it is made once whatever happened to the first.
            None => match self.send_refund(&payment, &payment_ref, &refund).await {
                Ok(answered) => {
                    report.checked += 1;
                    report.drifted += u32::from(answered != refund);
                    count(provider, "refund_resent");
                }
                Err(RefundError::Store(e)) => return Err(e),
                Err(error) => {
                    report.failed += 1;
                    tracing::warn!(refund_id = %refund.id, %provider, %error,
                        "asking again for a refund its provider never answered failed");
                }
            },
            Some(refund_ref) => {
                let lookup = RefundLookup {
                    refund_id: refund.id,
                    refund_ref,
                    payment_ref: payment_ref.clone(),
                    amount: refund.amount,
                };
                limiter.until_ready().await;
                match gateway.fetch_refund(&lookup).await {
                    Ok(found) => {
                        report.checked += 1;
                        let settles = match &found {
                            RefundReport::One { status, .. } => *status != RefundStatus::Pending,
                            RefundReport::Total { refunded_total, .. } => *refunded_total > payment.refunded_amount,
                        };
                        if settles {
                            report.drifted += 1;
                            count(provider, "refund_settled");
                            let answer = serde_json::json!({ "refund": refund.id, "found": found });
                            self.store_event(
                                &payment,
                                Some(&payment_ref),
                                answer,
                                refund_finding_id(&refund, &found),
                                super::FINDING,
                                PaymentChange::RefundUpdate { refund: found },
                            )
                            .await?;
                            tracing::info!(refund_id = %refund.id, %provider,
                                "a pending refund's check found it settled: its webhook never came");
                        } else {
                            count(provider, "unchanged");
                        }
                    }
                    Err(error) => {
                        report.failed += 1;
                        count(provider, "error");
                        tracing::warn!(refund_id = %refund.id, %provider, %error,
                            "checking a pending refund failed; asking again later");
                    }
                }
            }
        }
        refunds.schedule_refund_check(refund.id, checks + 1, next).await
    }
}
