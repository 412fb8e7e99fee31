//! The reconciler: asks each provider about open payments whose outcome payhook has not
//! heard of, on the schedule of `payhook_domain::ReconcileSchedule`.
//!
//! A provider's answer that differs from what payhook holds is not applied here: it is
//! stored as an event in the inbox, from the provider, with an id made of what it says
//! (`reconcile:{payment}:{status}:{paid}:{refunded}:{dispute}`), and the worker applies
//! it like any callback: the same state machine, history (reason `reconciled`), outbox
//! and status streams. The same finding twice is one inbox row. Its forensic row records
//! the provider's answer, under the path `/reconcile/{provider}`.
//!
//! A payment whose creation was interrupted (payhook stopped between asking the
//! provider and recording its answer) has no provider reference to ask by. Once no
//! live process can still be waiting for that answer, the reconciler looks the payment
//! up at its provider by payhook's own id: found, the checkout is recorded (adopted)
//! and checked like any other; not found, a `creation_interrupted` event fails it.

use crate::api::payment_requests::{abandoned, ABANDONED_AFTER};
use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use payhook_domain::ports::{Clock, DueCheck, PaymentGateway, PaymentStore, ReconcileQueue, StoreError, WebhookInbox};
use payhook_domain::{
    EventId, GatewayError, Payment, PaymentChange, PaymentId, PaymentRef, PaymentStatus, Provider,
    ProviderPaymentStatus, ReconcileSchedule, Redaction, WebhookEvent, WebhookRequest, CREATION_INTERRUPTED,
};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Payments claimed at a time.
pub const CLAIM_BATCH: u32 = 100;

/// How long a claimed payment is held: enough for a batch's calls at the slowest
/// rate limit, after which a checker that died leaves them due again.
pub const CHECK_LEASE: Duration = Duration::from_secs(300);

/// The event type, and so the history reason, of a finding.
pub const FINDING: &str = "reconciled";

/// The event type (history reason) when payhook expires a payment past its
/// `expires_at` that the provider, asked once more, does not report paid.
pub const EXPIRY: &str = "expired";

/// What asking about one payment now found.
#[derive(Debug, Clone, PartialEq)]
pub struct Asked {
    pub payment: Payment,
    pub found: ProviderPaymentStatus,
    /// The answer differs from what payhook holds; it is stored for the worker.
    pub drift: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("no payment with id {0}")]
    NotFound(PaymentId),
    #[error("{0} has no payment API configured to ask")]
    NoApi(Provider),
    #[error("payment {0} is still being created: its provider's answer may yet come; ask again in a minute")]
    NoReference(PaymentId),
    #[error(transparent)]
    Provider(#[from] GatewayError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoundReport {
    /// Providers asked and answering.
    pub checked: u32,
    /// Of those, answers that differ from what payhook holds (stored as events).
    pub drifted: u32,
    /// Providers that failed to answer (5xx, timeout, refused connection).
    pub failed: u32,
    /// Payments whose provider has no API configured, or no reference to ask by.
    pub skipped: u32,
    /// Subscriptions the scheduler settled (renewals asked for, lapses, expiries).
    pub subscriptions: usize,
}

/// What became of a payment whose creation had no recorded answer.
enum Creation {
    /// The provider had made it: its checkout is now recorded.
    Adopted(Box<Payment>),
    /// The provider has none: a `creation_interrupted` event is stored to fail it.
    Interrupted,
    /// Too young to tell: a live process may still be waiting for the answer.
    InFlight { until: DateTime<Utc> },
}

pub struct Reconciler {
    queue: Arc<dyn ReconcileQueue>,
    inbox: Arc<dyn WebhookInbox>,
    payments: Arc<dyn PaymentStore>,
    gateways: HashMap<Provider, (Arc<dyn PaymentGateway>, DefaultDirectRateLimiter)>,
    schedule: ReconcileSchedule,
    clock: Arc<dyn Clock>,
    wake_worker: Arc<Notify>,
    /// Where refunds are reserved before the provider is asked (`POST
    /// /payments/{id}/refunds`); `None`: refunds are not offered.
    refunds: Option<Arc<dyn payhook_domain::ports::RefundStore>>,
    /// Subscriptions whose renewal, lapse or expiry comes due, settled each round.
    subscriptions: Option<Arc<super::subscribing::Subscriptions>>,
}

impl Reconciler {
    /// `max_calls_per_second` bounds the calls to each provider.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        queue: Arc<dyn ReconcileQueue>,
        inbox: Arc<dyn WebhookInbox>,
        payments: Arc<dyn PaymentStore>,
        gateways: Vec<(Provider, Arc<dyn PaymentGateway>)>,
        max_calls_per_second: NonZeroU32,
        schedule: ReconcileSchedule,
        clock: Arc<dyn Clock>,
        wake_worker: Arc<Notify>,
    ) -> Self {
        let gateways = gateways
            .into_iter()
            .map(|(provider, gateway)| {
                // No burst: the calls are spaced evenly, so no second holds more
                // than the limit (a burst of n would allow nearly 2n in one second).
                // Spaced for 90% of the limit: what the provider sees is the spacing
                // plus network jitter, and jitter must not push a second over it.
                let spacing = Duration::from_secs(1).mul_f64(1.0 / (0.9 * f64::from(max_calls_per_second.get())));
                let quota = Quota::with_period(spacing)
                    .unwrap_or_else(|| Quota::per_second(max_calls_per_second))
                    .allow_burst(NonZeroU32::MIN);
                let limiter = RateLimiter::direct(quota);
                (provider, (gateway, limiter))
            })
            .collect();
        Self {
            queue,
            inbox,
            payments,
            gateways,
            schedule,
            clock,
            wake_worker,
            refunds: None,
            subscriptions: None,
        }
    }

    /// Runs the subscription scheduler in each round, on the same cadence.
    pub fn scheduling_subscriptions(mut self, subscriptions: Arc<super::subscribing::Subscriptions>) -> Self {
        self.subscriptions = Some(subscriptions);
        self
    }

    /// Offers refunds (`POST /payments/{id}/refunds`), reserved in `refunds`.
    pub fn refunding_in(mut self, refunds: Arc<dyn payhook_domain::ports::RefundStore>) -> Self {
        self.refunds = Some(refunds);
        self
    }

    /// Asks the provider about one payment now, whatever its schedule (`payhook
    /// reconcile --payment`, `POST /admin/payments/{id}/reconcile`); an answer that
    /// differs is stored for the worker like a scheduled check's. An interrupted
    /// creation is resolved first (adopted or failed).
    pub async fn ask_now(&self, id: PaymentId) -> Result<Asked, AskError> {
        let mut payment = self.payments.payment(id).await?.ok_or(AskError::NotFound(id))?;
        let (gateway, limiter) = self
            .gateways
            .get(&payment.provider)
            .ok_or(AskError::NoApi(payment.provider))?;
        if payment.is_being_created() {
            match self.resolve_creation(&payment, gateway.as_ref(), limiter).await? {
                Creation::Adopted(adopted) => payment = *adopted,
                Creation::Interrupted => {
                    self.wake_worker.notify_one();
                    return Ok(Asked {
                        payment,
                        found: ProviderPaymentStatus::new(PaymentStatus::Failed, None),
                        drift: true,
                    });
                }
                Creation::InFlight { .. } => return Err(AskError::NoReference(id)),
            }
        }
        let reference = payment.provider_ref.clone().ok_or(AskError::NoReference(id))?;
        limiter.until_ready().await;
        let found = gateway
            .fetch_status(&reference)
            .await
            .inspect_err(|_| count(payment.provider, "error"))?;
        let drift = self.take_answer(&payment, &reference, &found).await?;
        if drift {
            self.wake_worker.notify_one();
        }
        Ok(Asked { payment, found, drift })
    }

    /// Looks up, by payhook's own id, a payment whose creation has no recorded answer,
    /// once no live process can still be waiting for that answer.
    async fn resolve_creation(
        &self,
        payment: &Payment,
        gateway: &dyn PaymentGateway,
        limiter: &DefaultDirectRateLimiter,
    ) -> Result<Creation, AskError> {
        let provider = payment.provider;
        if !abandoned(payment.created_at, self.clock.now()) {
            let wait = chrono::Duration::from_std(ABANDONED_AFTER).unwrap_or(chrono::Duration::minutes(1));
            return Ok(Creation::InFlight {
                until: payment.created_at + wait + chrono::Duration::seconds(1),
            });
        }
        limiter.until_ready().await;
        let found = gateway
            .find_checkout(payment.id)
            .await
            .inspect_err(|_| count(provider, "error"))?;
        match found {
            Some(checkout) => {
                count(provider, "adopted");
                let adopted = self.payments.record_checkout(payment.id, &checkout).await?;
                tracing::info!(payment_id = %payment.id, %provider, provider_ref = %checkout.provider_ref,
                    "adopted a payment whose creation was interrupted: the provider had made it");
                Ok(Creation::Adopted(Box::new(adopted)))
            }
            None => {
                count(provider, CREATION_INTERRUPTED);
                let change = PaymentChange::Status {
                    to: PaymentStatus::Failed,
                    paid_amount: None,
                };
                let answer = serde_json::json!({ "looked_up_by": payment.id, "found": null });
                let id = format!("interrupted:{}", payment.id);
                self.store_event(payment, None, answer, id, CREATION_INTERRUPTED, change)
                    .await?;
                tracing::info!(payment_id = %payment.id, %provider,
                    "failing a payment whose creation was interrupted: the provider has none");
                Ok(Creation::Interrupted)
            }
        }
    }

    /// Counts a provider's answer and, when it differs from what payhook holds, stores
    /// it for the worker; `true` then. Scheduled checks and operators' questions alike.
    async fn take_answer(
        &self,
        payment: &Payment,
        reference: &str,
        found: &ProviderPaymentStatus,
    ) -> Result<bool, StoreError> {
        let provider = payment.provider;
        if !differs(found, payment) {
            count(provider, "unchanged");
            return Ok(false);
        }
        count(provider, "drift");
        metrics::counter!("payhook_reconcile_drift_total", "provider" => provider.as_str()).increment(1);
        self.store_finding(payment, reference, found).await?;
        tracing::info!(payment_id = %payment.id, %provider, held = payment.status.as_str(),
            provider_says = found.status.as_str(), "reconciliation found a change");
        Ok(true)
    }

    /// Asks now about every open payment created before `created_before` (of
    /// `provider`, when given), whatever its schedule (`payhook reconcile --provider
    /// --older-than`). Each provider's rate limit holds.
    pub async fn ask_open(
        &self,
        provider: Option<Provider>,
        created_before: chrono::DateTime<chrono::Utc>,
    ) -> Result<RoundReport, StoreError> {
        use payhook_domain::{PageCursor, PaymentFilter};
        let mut report = RoundReport::default();
        for status in [
            PaymentStatus::Pending,
            PaymentStatus::RequiresAction,
            PaymentStatus::Authorized,
        ] {
            // Pages newest first, starting just before `created_before`.
            let mut after = Some(PageCursor {
                created_at: created_before,
                id: PaymentId::from_uuid(uuid::Uuid::max()),
            });
            loop {
                let page = self
                    .payments
                    .list_payments(&PaymentFilter {
                        status: Some(status),
                        provider,
                        after,
                        limit: payhook_domain::MAX_PAGE,
                        ..PaymentFilter::default()
                    })
                    .await?;
                for payment in &page {
                    match self.ask_now(payment.id).await {
                        Ok(asked) => {
                            report.checked += 1;
                            report.drifted += u32::from(asked.drift);
                        }
                        Err(AskError::Provider(_)) => report.failed += 1,
                        Err(AskError::Store(e)) => return Err(e),
                        Err(_) => report.skipped += 1,
                    }
                }
                match page.last() {
                    Some(last) if page.len() == payhook_domain::MAX_PAGE as usize => {
                        after = Some(PageCursor {
                            created_at: last.created_at,
                            id: last.id,
                        })
                    }
                    _ => break,
                }
            }
        }
        Ok(report)
    }

    /// Checks every payment due now, a batch at a time; each provider's payments in
    /// turn under its rate limit, the providers side by side.
    pub async fn run_once(&self) -> Result<RoundReport, StoreError> {
        let mut report = RoundReport::default();
        loop {
            let now = self.clock.now();
            let lease = chrono::Duration::from_std(CHECK_LEASE).unwrap_or(chrono::Duration::minutes(5));
            let due = self.queue.claim_due_checks(now, CLAIM_BATCH, now + lease).await?;
            let claimed = due.len();
            let mut by_provider: HashMap<Provider, Vec<DueCheck>> = HashMap::new();
            for check in due {
                by_provider.entry(check.payment.provider).or_default().push(check);
            }
            let rounds = by_provider.into_values().map(|checks| async move {
                let mut report = RoundReport::default();
                for check in checks {
                    self.check(check, &mut report).await?;
                }
                Ok::<_, StoreError>(report)
            });
            for done in futures_util::future::join_all(rounds).await {
                let done = done?;
                report.checked += done.checked;
                report.drifted += done.drifted;
                report.failed += done.failed;
                report.skipped += done.skipped;
            }
            if report.drifted > 0 {
                self.wake_worker.notify_one();
            }
            if claimed < CLAIM_BATCH as usize {
                break;
            }
        }
        let drifted = report.drifted;
        self.check_refunds(&mut report).await?;
        if report.drifted > drifted {
            self.wake_worker.notify_one();
        }
        if let Some(subscriptions) = &self.subscriptions {
            report.subscriptions = subscriptions.run_due().await?;
        }
        Ok(report)
    }

    async fn check(&self, due: DueCheck, report: &mut RoundReport) -> Result<(), StoreError> {
        let DueCheck { mut payment, checks } = due;
        let provider = payment.provider;
        let now = self.clock.now();
        let expired = payment.expires_at.is_some_and(|at| at <= now);
        // A payment that expires before its next scheduled check is asked once more
        // when it expires.
        let next = match (
            self.schedule.due_after(payment.created_at, checks + 1),
            payment.expires_at,
        ) {
            _ if expired => None,
            (Some(next), Some(expiry)) if expiry < next => Some(expiry),
            (None, Some(expiry)) if expiry > now => Some(expiry),
            (next, _) => next,
        };
        let Some((gateway, limiter)) = self.gateways.get(&provider) else {
            // No API to ask: not this round's business; asked again on schedule.
            report.skipped += 1;
            count(provider, "skipped");
            return self.queue.schedule_check(payment.id, checks + 1, next).await;
        };
        if payment.is_being_created() {
            match self.resolve_creation(&payment, gateway.as_ref(), limiter).await {
                Ok(Creation::Adopted(adopted)) => payment = *adopted,
                Ok(Creation::Interrupted) => {
                    report.checked += 1;
                    report.drifted += 1;
                    return self.queue.schedule_check(payment.id, checks + 1, None).await;
                }
                Ok(Creation::InFlight { until }) => {
                    report.skipped += 1;
                    count(provider, "skipped");
                    return self.queue.schedule_check(payment.id, checks, Some(until)).await;
                }
                Err(AskError::Store(e)) => return Err(e),
                Err(error) => {
                    report.failed += 1;
                    tracing::warn!(payment_id = %payment.id, %provider, %error,
                        "looking up an interrupted creation failed; asking again later");
                    return self.queue.schedule_check(payment.id, checks + 1, next).await;
                }
            }
        }
        let Some(reference) = payment.provider_ref.clone() else {
            report.skipped += 1;
            count(provider, "skipped");
            return self.queue.schedule_check(payment.id, checks + 1, next).await;
        };
        let reference = reference.as_str();
        limiter.until_ready().await;
        match gateway.fetch_status(reference).await {
            Ok(found) if expired && found.status == PaymentStatus::Pending => {
                report.checked += 1;
                report.drifted += 1;
                count(provider, "expired");
                self.store_expiry(&payment, reference, &found).await?;
                tracing::info!(payment_id = %payment.id, %provider, "expired: past expires_at and not paid at the provider");
            }
            Ok(found) => {
                report.checked += 1;
                report.drifted += u32::from(self.take_answer(&payment, reference, &found).await?);
            }
            Err(error) => {
                report.failed += 1;
                count(provider, "error");
                tracing::warn!(payment_id = %payment.id, %provider, %error, "reconciliation check failed; asking again later");
                if expired {
                    // Not expired without an answer: asked again on the schedule.
                    let retry = self.schedule.due_after(payment.created_at, checks + 1);
                    return self.queue.schedule_check(payment.id, checks + 1, retry).await;
                }
            }
        }
        self.queue.schedule_check(payment.id, checks + 1, next).await
    }

    /// The provider's answer, as an event in the inbox for the worker to apply.
    async fn store_finding(
        &self,
        payment: &Payment,
        reference: &str,
        found: &ProviderPaymentStatus,
    ) -> Result<(), StoreError> {
        let change = found.change_for(payment);
        let answer = serde_json::json!({ "provider_ref": reference, "found": found });
        self.store_event(
            payment,
            Some(reference),
            answer,
            finding_id(payment, found),
            FINDING,
            change,
        )
        .await
    }

    /// The payment's expiry (the provider, asked once more, still says pending), as an
    /// event in the inbox: the state machine moves it to `expired` unless it was paid
    /// meanwhile.
    async fn store_expiry(
        &self,
        payment: &Payment,
        reference: &str,
        found: &ProviderPaymentStatus,
    ) -> Result<(), StoreError> {
        let change = PaymentChange::Status {
            to: PaymentStatus::Expired,
            paid_amount: None,
        };
        let answer = serde_json::json!({ "provider_ref": reference, "found": found });
        self.store_event(
            payment,
            Some(reference),
            answer,
            format!("expire:{}", payment.id),
            EXPIRY,
            change,
        )
        .await
    }

    /// `answer` is what the provider said, kept as the forensic row's body.
    async fn store_event(
        &self,
        payment: &Payment,
        reference: Option<&str>,
        answer: serde_json::Value,
        id: String,
        event_type: &str,
        change: PaymentChange,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let body = serde_json::to_vec(&answer).unwrap_or_default();
        let (method, path) = forensic_route(event_type, payment.provider);
        let mut request = WebhookRequest::new(
            payment.provider.as_str(),
            method,
            &path,
            "",
            Vec::new(),
            body,
            None,
            now,
            &Redaction::default(),
        );
        request.primary.event_id = Some(id.clone());
        request.primary.event_type = Some(event_type.to_owned());
        let event = WebhookEvent {
            mirror: None,
            subscription: None,
            provider: payment.provider,
            event_id: EventId::parse(id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            event_type: event_type.to_owned(),
            occurred_at: now,
            payment: PaymentRef {
                account: None,
                payment_id: Some(payment.id),
                provider_ref: reference.map(str::to_owned),
                aliases: Vec::new(),
            },
            change,
            details: None,
            confirm_with_provider: false,
        };
        self.inbox.admit(&request, &event).await.map(drop)
    }
}

/// How the forensic log names a provider's answer payhook stores as an event: what
/// payhook asked (a check, a cancellation, a refund) and of whom.
fn forensic_route(event_type: &str, provider: Provider) -> (&'static str, String) {
    match event_type {
        cancellation::CANCELED_BY_MERCHANT => ("POST", format!("/cancel/{provider}")),
        refunding::REFUNDED_BY_MERCHANT => ("POST", format!("/refund/{provider}")),
        _ => ("GET", format!("/reconcile/{provider}")),
    }
}

/// Made of what the provider says, so the same finding is stored once.
fn finding_id(payment: &Payment, found: &ProviderPaymentStatus) -> String {
    let amount = |a: Option<i64>| a.map_or_else(|| "-".to_owned(), |a| a.to_string());
    format!(
        "reconcile:{}:{}:{}:{}:{}",
        payment.id,
        found.status.as_str(),
        amount(found.paid_amount),
        amount(found.refunded_amount),
        found.dispute.map_or("-", |d| d.as_str()),
    )
}

/// Whether the provider's answer says something payhook does not hold.
fn differs(found: &ProviderPaymentStatus, payment: &Payment) -> bool {
    found.status != payment.status
        || found.paid_amount.is_some_and(|paid| paid != payment.paid_amount)
        || found
            .refunded_amount
            .is_some_and(|refunded| refunded != payment.refunded_amount)
        || found
            .dispute
            .is_some_and(|dispute| Some(dispute) != payment.dispute_status)
}

fn count(provider: Provider, outcome: &'static str) {
    metrics::counter!("payhook_reconcile_checks_total", "provider" => provider.as_str(), "outcome" => outcome)
        .increment(1);
}

/// A round at once, then one every `interval`, until `stopped` turns true. A round the
/// store fails is logged and tried again at the next interval.
pub async fn run_reconciler(reconciler: Arc<Reconciler>, interval: Duration, mut stopped: watch::Receiver<bool>) {
    loop {
        let round = tokio::select! {
            round = reconciler.run_once() => round,
            _ = stopped.wait_for(|stop| *stop) => return,
        };
        match round {
            Ok(report) if report.checked + report.failed > 0 => tracing::info!(
                checked = report.checked,
                drifted = report.drifted,
                failed = report.failed,
                "reconciliation round"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "reconciliation round failed; trying again next interval"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
    }
}

#[path = "cancellation.rs"]
pub mod cancellation;

#[path = "refunding.rs"]
pub mod refunding;

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
