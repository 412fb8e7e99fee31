//! The worker: claims due inbox events and applies each to its payment through the
//! domain's state machine; failures are retried with capped exponential backoff
//! and jitter, then dead-lettered.

use crate::api::payment_requests::GATEWAY_TIMEOUT;
use crate::processing::handoff::{HandedOver, Handoff};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use payhook_domain::ports::{
    ClaimedEvent, Clock, Commit, DisputeStore, PaymentGateway, PaymentStore, RefundStore, StoreError, StripeMirror,
    WebhookInbox,
};
use payhook_domain::{
    DisputeReport, GatewayError, InboxId, NewPayment, OutboxMessage, Payment, PaymentChange, PaymentId, PaymentStatus,
    ProcessingResult, Provider, RefundReport, WebhookEvent,
};
use rand::Rng;
use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tracing::Instrument;

/// How often a commit may lose a race with another worker before the event is retried later.
const MAX_CONFLICT_RETRIES: usize = 5;
/// The most rounds of `concurrency` provider confirmations one batch takes on.
const MAX_CONFIRM_ROUNDS: usize = 4;
/// Longest pause between claims while the store keeps failing.
const MAX_ERROR_PAUSE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The event names a payment payhook does not have (yet): it may have raced the
    /// payment's creation, so it is retried like any failure.
    #[error("mirror_unavailable: the event only updates the Stripe mirror, and none is configured")]
    NoMirror,
    #[error("subscriptions_unavailable: the event is about a subscription, and subscriptions are not kept here")]
    NoSubscriptions,
    #[error("subscription_not_applied: {0}")]
    Subscription(String),
    #[error("payment_not_found: no {provider} payment matches {reference}")]
    PaymentNotFound { provider: String, reference: String },
    #[error("payment kept changing under concurrent updates")]
    Contended,
    /// The provider's API does not (yet) say what its callback claimed: QPay may call
    /// before its check endpoint agrees, so the event is retried.
    #[error("not_confirmed: {0}")]
    NotConfirmed(String),
    #[error("provider_unavailable: {0}")]
    Provider(#[from] GatewayError),
    #[error("no {0} API client is configured to confirm this event")]
    NoGateway(Provider),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: i32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl RetryPolicy {
    /// When to try again after the `attempts`-th failure, or `None` when it was the last.
    pub fn next_attempt(&self, attempts: i32, now: DateTime<Utc>, jitter: f64) -> Option<DateTime<Utc>> {
        (attempts < self.max_attempts).then(|| self.backoff(attempts, now, jitter))
    }

    /// `now + min(max, base · 2^(attempts-1))`, with ±20 % jitter so the retries of a
    /// burst spread out instead of arriving together.
    pub fn backoff(&self, attempts: i32, now: DateTime<Utc>, jitter: f64) -> DateTime<Utc> {
        let exp = u32::try_from(attempts.saturating_sub(1)).unwrap_or(0).min(30);
        let raw = self.backoff_base.saturating_mul(2u32.saturating_pow(exp));
        let capped = raw.min(self.backoff_max);
        let jittered = capped.mul_f64((1.0 + jitter.clamp(-0.2, 0.2)).max(0.0));
        now + chrono::Duration::from_std(jittered).unwrap_or(chrono::Duration::MAX)
    }
}

/// A jitter factor in [-0.2, 0.2] for [`RetryPolicy::backoff`].
pub fn jitter() -> f64 {
    rand::rng().random_range(-0.2..=0.2)
}

pub struct Processor {
    inbox: Arc<dyn WebhookInbox>,
    payments: Arc<dyn PaymentStore>,
    /// Asked before applying events that need the provider's confirmation.
    gateways: HashMap<Provider, Arc<dyn PaymentGateway>>,
    clock: Arc<dyn Clock>,
    policy: RetryPolicy,
    lease: Duration,
    /// Wakes the outbox relay when a commit wrote domain events it was not handed.
    published: Arc<Notify>,
    /// This instance's relay, when it takes domain events in-process.
    relay: Option<Handoff<OutboxMessage>>,
    /// Where disputes are kept as rows of their own; `None`: only the payment's
    /// `dispute_status` summary is kept.
    disputes: Option<Arc<dyn DisputeStore>>,
    /// Where refunds are kept as rows; `None`: only the payment's `refunded_amount`.
    refunds: Option<Arc<dyn RefundStore>>,
    /// Where events that only update the Stripe mirror are applied; `None`: such events
    /// fail (and are retried, then dead), so none is marked done unwritten.
    mirror: Option<Arc<dyn StripeMirror>>,
    /// Reads an object from Stripe's API when two events of the same second and status
    /// tie; `None`: the first is kept and the tie counted.
    tie_breaker: Option<Arc<super::mirror_fill::MirrorFiller>>,
    /// Where subscriptions are kept up with their payments and Stripe's words; `None`:
    /// events about subscriptions fail (and are retried), none is marked done unapplied.
    subscriptions: Option<Arc<super::subscribing::Subscriptions>>,
    /// Events claimed and not yet finished: released if the worker is stopped mid-batch.
    in_flight: Mutex<HashSet<InboxId>>,
}

impl Processor {
    pub fn new(
        inbox: Arc<dyn WebhookInbox>,
        payments: Arc<dyn PaymentStore>,
        gateways: Vec<Arc<dyn PaymentGateway>>,
        clock: Arc<dyn Clock>,
        policy: RetryPolicy,
        lease: Duration,
        published: Arc<Notify>,
    ) -> Self {
        Self {
            inbox,
            payments,
            gateways: gateways.into_iter().map(|g| (g.provider(), g)).collect(),
            clock,
            policy,
            lease,
            published,
            relay: None,
            disputes: None,
            refunds: None,
            mirror: None,
            tie_breaker: None,
            subscriptions: None,
            in_flight: Mutex::new(HashSet::new()),
        }
    }

    /// Settles the refund rows each refund event reports, and applies the payment's
    /// refunded total as the sum of its succeeded refunds.
    pub fn settling_refunds_in(mut self, refunds: Arc<dyn RefundStore>) -> Self {
        self.refunds = Some(refunds);
        self
    }

    /// Keeps subscriptions up with their payments and with what Stripe says of them.
    pub fn subscribing_with(mut self, subscriptions: Arc<super::subscribing::Subscriptions>) -> Self {
        self.subscriptions = Some(subscriptions);
        self
    }

    /// Applies the events that only update the Stripe mirror (a customer, an invoice…).
    pub fn mirroring_in(mut self, mirror: Arc<dyn StripeMirror>) -> Self {
        self.mirror = Some(mirror);
        self
    }

    /// Settles mirror ties by reading the object from Stripe's API (in the background:
    /// it never holds up the batch).
    pub fn breaking_ties_with(mut self, filler: Arc<super::mirror_fill::MirrorFiller>) -> Self {
        self.tie_breaker = Some(filler);
        self
    }

    /// Reads the objects of `ties` from Stripe's API in the background, or counts them.
    fn break_ties(&self, ties: Vec<payhook_domain::MirrorWrite>) {
        for tie in ties {
            let resolved = if self.tie_breaker.is_some() {
                "fetched"
            } else {
                "kept_first"
            };
            metrics::counter!("payhook_stripe_mirror_ties_total", "resolved" => resolved).increment(1);
            let Some(filler) = self.tie_breaker.clone() else {
                continue;
            };
            tokio::spawn(async move {
                if let Err(error) = filler.resync(&tie.account, tie.object_type, &tie.object_id).await {
                    tracing::warn!(object_id = %tie.object_id, %error, "could not read a tied object from Stripe; the first write stays");
                }
            });
        }
    }

    /// Keeps each dispute an event reports as a row in `disputes`.
    pub fn recording_disputes_in(mut self, disputes: Arc<dyn DisputeStore>) -> Self {
        self.disputes = Some(disputes);
        self
    }

    /// Hands the domain events of batch commits to this instance's relay (while it has
    /// room) instead of leaving them for it to claim.
    pub fn handing_domain_events_to(mut self, relay: Handoff<OutboxMessage>) -> Self {
        self.relay = Some(relay);
        self
    }

    /// Gives back the leases of events this worker claimed and did not finish (it was
    /// stopped mid-batch), so another worker takes them at once.
    pub async fn release_unfinished(&self) -> Result<u64, StoreError> {
        let ids: Vec<InboxId> = self.in_flight_guard().drain().collect();
        if ids.is_empty() {
            return Ok(0);
        }
        self.inbox.release(&ids).await
    }

    /// Rounds of provider confirmations that fit in three quarters of the lease, each
    /// lasting at most the gateways' timeout (the last quarter is for the commits); at
    /// least one, so a lease shorter than the timeout still makes progress.
    fn confirm_rounds(&self) -> usize {
        let fit = self.lease.mul_f64(0.75).as_millis() / GATEWAY_TIMEOUT.as_millis().max(1);
        usize::try_from(fit).unwrap_or(usize::MAX).clamp(1, MAX_CONFIRM_ROUNDS)
    }

    /// Gives back the leases of events this worker will not process.
    pub async fn give_back(&self, ids: &[InboxId]) -> Result<u64, StoreError> {
        self.inbox.release(ids).await
    }

    fn in_flight_guard(&self) -> std::sync::MutexGuard<'_, HashSet<InboxId>> {
        // A panic while holding this lock leaves a set that is still valid.
        self.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Claims one batch and processes it ([`Processor::process`]). Returns how many
    /// events were claimed.
    pub async fn run_batch(&self, batch_size: u32, concurrency: usize) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let lease_until = now + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::MAX);
        let claimed = self.inbox.claim_due(now, batch_size, lease_until).await?;
        let count = claimed.len();
        self.process(claimed, concurrency).await;
        Ok(count)
    }

    /// Processes events leased to this worker, claimed or handed over by the ingest
    /// path (`crate::processing::handoff`). Events that need no word from the provider are applied
    /// together under one commit ([`Processor::apply_together`]); the others, and
    /// those the batch could not take, one by one, `concurrency` at a time.
    pub async fn process(&self, claimed: Vec<ClaimedEvent>, concurrency: usize) {
        self.in_flight_guard().extend(claimed.iter().map(|c| c.id));
        // Events that only update the mirror touch no payment: one transaction for all.
        let (mirror_only, claimed): (Vec<_>, Vec<_>) = claimed.into_iter().partition(|c| c.event.only_mirrors());
        let claimed = {
            let mut claimed = claimed;
            claimed.extend(self.mirror_together(mirror_only).await);
            claimed
        };
        // Events that need a word from the provider, or that carry a dispute (kept in a
        // row of its own before the payment's summary changes), go one by one.
        let (mut to_confirm, direct): (Vec<_>, Vec<_>) = claimed.into_iter().partition(|c| {
            c.event.confirm_with_provider || goes_alone(&c.event.change) || c.event.subscription.is_some()
        });
        // Each of these waits on a provider call: more rounds of them than the lease
        // holds could outlast it, so the rest are given back for the next poll.
        let keep = concurrency.saturating_mul(self.confirm_rounds());
        if to_confirm.len() > keep {
            let given_back: Vec<InboxId> = to_confirm.split_off(keep).into_iter().map(|c| c.id).collect();
            {
                let mut in_flight = self.in_flight_guard();
                for id in &given_back {
                    in_flight.remove(id);
                }
            }
            if let Err(error) = self.inbox.release(&given_back).await {
                // Their leases run out instead: later, but nothing is lost.
                tracing::warn!(events = given_back.len(), %error, "could not give back events to confirm");
            }
        }
        let mut one_by_one = self.apply_together(direct).await;
        one_by_one.extend(to_confirm);
        futures_util::stream::iter(one_by_one)
            .for_each_concurrent(concurrency, |event| self.handle(event))
            .await;
    }

    /// Writes the objects of events that only update the Stripe mirror, and marks them
    /// processed, in one transaction; answers the events left to apply one by one
    /// (all of them when the store failed, so each records its failure).
    async fn mirror_together(&self, events: Vec<ClaimedEvent>) -> Vec<ClaimedEvent> {
        let Some(mirror) = &self.mirror else {
            return events;
        };
        let writes: Vec<(InboxId, payhook_domain::MirrorWrite)> = events
            .iter()
            .filter_map(|c| c.event.mirror.as_deref().map(|w| (c.id, w.clone())))
            .collect();
        if writes.len() != events.len() {
            // An event without its object cannot be written: each goes one by one.
            return events;
        }
        if events.is_empty() {
            return events;
        }
        match mirror.apply_mirror_events(&writes, self.clock.now()).await {
            Ok(outcomes) => {
                let ties = writes
                    .iter()
                    .zip(&outcomes)
                    .filter(|(_, o)| **o == payhook_domain::MirrorOutcome::Tie)
                    .map(|((_, w), _)| w.clone())
                    .collect();
                self.break_ties(ties);
                for (claimed, outcome) in events.iter().zip(outcomes) {
                    let span = application_span(&claimed.event);
                    span.in_scope(|| tracing::info!(inbox_id = %claimed.id, ?outcome, "mirrored"));
                    metrics::counter!("payhook_processing_attempts_total", "outcome" => "applied").increment(1);
                    self.in_flight_guard().remove(&claimed.id);
                }
                Vec::new()
            }
            Err(error) => {
                tracing::warn!(events = events.len(), %error, "could not write a batch to the mirror; one by one");
                events
            }
        }
    }

    /// Applies events as one unit of store work: one lookup of all their payments, then
    /// one commit of all the applications (which also inserts, already applied, the
    /// payments payhook first hears of). One commit for
    /// many events is what lets the worker keep up with ingest; applying events one at
    /// a time costs two commits and about ten round trips each. Returns the events left
    /// to apply one by one: a second event for a payment already in this batch, a
    /// stale application, an event whose payment is not found (so its failure is
    /// recorded the usual way), or all of them when the store failed.
    async fn apply_together(&self, events: Vec<ClaimedEvent>) -> Vec<ClaimedEvent> {
        if events.is_empty() {
            return events;
        }
        let started = Instant::now();
        let payments = match self.payments_for_all(&events).await {
            Ok(payments) => payments,
            Err(error) => {
                tracing::warn!(events = events.len(), %error, "could not look up a batch's payments; applying one by one");
                return events;
            }
        };
        let now = self.clock.now();
        let mut seen = HashSet::new();
        let mut applications = Vec::new();
        let mut together = Vec::new();
        let mut one_by_one = Vec::new();
        for (claimed, payment) in events.into_iter().zip(payments) {
            match payment {
                Some(payment) if seen.insert(payment.id) => {
                    applications.push((claimed.id, payment.apply(&claimed.event, now)));
                    together.push(claimed);
                }
                _ => one_by_one.push(claimed),
            }
        }
        if applications.is_empty() {
            return one_by_one;
        }
        // With room in the relay's handoff, the domain events are stored leased to it
        // and handed over after the commit, so the relay does not claim them back.
        let publications = applications.iter().map(|(_, a)| a.publications.len()).sum();
        let reservation = match &self.relay {
            Some(relay) if publications > 0 => relay.reserve(publications),
            _ => None,
        };
        let outbox_lease = reservation.as_ref().map(|r| r.lease_until);
        let committed = match self.payments.commit_applications(&applications, outbox_lease).await {
            Ok(committed) => committed,
            Err(error) => {
                tracing::warn!(events = together.len(), %error, "could not commit a batch; applying one by one");
                one_by_one.extend(together);
                return one_by_one;
            }
        };
        let elapsed = started.elapsed().as_secs_f64();
        let mut published = false;
        let mut subscribed = Vec::new();
        for ((claimed, (_, application)), commit) in together.into_iter().zip(&applications).zip(committed.commits) {
            if commit == Commit::Stale {
                one_by_one.push(claimed);
                continue;
            }
            published |= !application.publications.is_empty();
            if application.payment.subscription_id.is_some() {
                subscribed.push(application.payment.clone());
            }
            metrics::histogram!("payhook_processing_seconds").record(elapsed);
            metrics::counter!("payhook_processing_attempts_total", "outcome" => "applied").increment(1);
            let span = application_span(&claimed.event);
            span.record("payment_id", tracing::field::display(application.payment.id));
            span.in_scope(
                || tracing::info!(inbox_id = %claimed.id, result = application.result.as_str(), "event applied"),
            );
            self.in_flight_guard().remove(&claimed.id);
        }
        match reservation {
            Some(reservation) => reservation.hand_over(committed.messages),
            None if published => self.published.notify_one(),
            None => {}
        }
        if let (Some(subscriptions), false) = (&self.subscriptions, subscribed.is_empty()) {
            // Off the batch's path: a subscription's settling asks a provider for its
            // renewal at times, and the scheduler catches up on any not done here.
            let subscriptions = subscriptions.clone();
            tokio::spawn(async move {
                for payment in subscribed {
                    subscriptions.after_payment(&payment).await;
                }
            });
        }
        one_by_one
    }

    /// The payment of each event; for one payhook never created (see
    /// [`Processor::payment_for`]), the payment its event describes, not stored yet, so
    /// the commit writes it once with the event applied; `None` where the event's
    /// payment is not found.
    async fn payments_for_all(&self, events: &[ClaimedEvent]) -> Result<Vec<Option<Payment>>, StoreError> {
        let wanted: Vec<_> = events
            .iter()
            .map(|c| (c.event.provider, c.event.payment.clone()))
            .collect();
        let mut found = self.payments.find_payments(&wanted).await?;
        let mut unstored = HashMap::new();
        for (claimed, payment) in events.iter().zip(found.iter_mut()) {
            if payment.is_some() {
                continue;
            }
            let Some(new) = self.payment_to_create(&claimed.event) else {
                continue;
            };
            // Two events of one new payment name the same one (the second then goes
            // one by one, after the first is committed).
            let key = (new.provider, new.provider_ref.clone());
            *payment = Some(unstored.entry(key).or_insert_with(|| Payment::unstored(new)).clone());
        }
        Ok(found)
    }

    async fn handle(&self, claimed: ClaimedEvent) {
        let span = application_span(&claimed.event);
        self.apply_and_record(claimed).instrument(span).await
    }

    async fn apply_and_record(&self, claimed: ClaimedEvent) {
        let id = claimed.id;
        let started = Instant::now();
        let outcome = self.apply(&claimed).await;
        metrics::histogram!("payhook_processing_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("payhook_processing_attempts_total", "outcome" => if outcome.is_ok() { "applied" } else { "failed" })
            .increment(1);
        match outcome {
            Ok(result) => {
                tracing::info!(inbox_id = %id, result = result.as_str(), "event applied");
            }
            Err(error) => {
                let attempts = claimed.attempts + 1;
                let retry_at = self.policy.next_attempt(attempts, self.clock.now(), jitter());
                tracing::warn!(inbox_id = %id, attempts, dead = retry_at.is_none(), %error, "event not applied");
                if let Err(e) = self.inbox.record_failure(id, &error.to_string(), retry_at).await {
                    // The lease runs out and the event is claimed again: nothing is lost.
                    tracing::error!(inbox_id = %id, error = %e, "could not record the failure");
                }
            }
        }
        self.in_flight_guard().remove(&id);
    }

    /// Applies one event; idempotent, since a stale or repeated event changes nothing.
    pub async fn apply(&self, claimed: &ClaimedEvent) -> Result<ProcessingResult, ProcessError> {
        // A word about a subscription is applied first: applying it again (the event
        // retried after a failure below) changes nothing, so the event is marked
        // processed only once its subscription has it.
        let mut subscription_changed = None;
        if let Some(signal) = claimed.event.subscription.as_deref() {
            let subscriptions = self.subscriptions.as_ref().ok_or(ProcessError::NoSubscriptions)?;
            let payment = if claimed.event.is_mirror_only() {
                None
            } else {
                Some(self.payment_for(&claimed.event).await?.id)
            };
            let account = claimed.event.payment.account.clone().unwrap_or_default();
            subscription_changed = Some(
                subscriptions
                    .apply_signal(
                        claimed.event.event_id.as_str(),
                        claimed.event.provider,
                        &account,
                        signal,
                        payment,
                    )
                    .await
                    .map_err(|e| ProcessError::Subscription(e.to_string()))?,
            );
        }
        if claimed.event.is_mirror_only() {
            let (Some(mirror), Some(write)) = (&self.mirror, claimed.event.mirror.as_deref()) else {
                if let Some(changed) = subscription_changed {
                    // No mirror kept: the subscription was the event's only effect.
                    let result = if changed {
                        ProcessingResult::Applied
                    } else {
                        ProcessingResult::StaleTransition
                    };
                    self.inbox.mark_processed(claimed.id, result, self.clock.now()).await?;
                    return Ok(result);
                }
                return Err(ProcessError::NoMirror);
            };
            let outcome = mirror
                .apply_mirror_events(&[(claimed.id, write.clone())], self.clock.now())
                .await?;
            if outcome.first() == Some(&payhook_domain::MirrorOutcome::Tie) {
                self.break_ties(vec![write.clone()]);
            }
            return Ok(match outcome.first() {
                Some(payhook_domain::MirrorOutcome::Written) => ProcessingResult::Applied,
                _ => ProcessingResult::StaleTransition,
            });
        }
        let mut payment = self.payment_for(&claimed.event).await?;
        tracing::Span::current().record("payment_id", tracing::field::display(payment.id));
        let confirmed;
        let event = if claimed.event.confirm_with_provider {
            confirmed = self.confirm(&claimed.event, &payment).await?;
            &confirmed
        } else {
            &claimed.event
        };
        if let PaymentChange::Dispute { status, detail } = &event.change {
            self.record_dispute(&payment, *status, detail.as_deref()).await?;
        }
        let settled;
        let event = match self.settle_refunds(&payment, event).await? {
            Some(change) => {
                let mut with_total = event.clone();
                with_total.change = change;
                settled = with_total;
                &settled
            }
            None => event,
        };
        for _ in 0..MAX_CONFLICT_RETRIES {
            let application = payment.apply(event, self.clock.now());
            match self.payments.commit_application(claimed.id, &application).await {
                Ok(()) => {
                    if !application.publications.is_empty() {
                        self.published.notify_one();
                    }
                    if let Some(subscriptions) = &self.subscriptions {
                        subscriptions.after_payment(&application.payment).await;
                    }
                    return Ok(application.result);
                }
                Err(StoreError::Conflict(_)) => {
                    payment = self
                        .payments
                        .payment(payment.id)
                        .await?
                        .ok_or_else(|| not_found(event))?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ProcessError::Contended)
    }

    /// Settles the payment's refund rows by a refund event (idempotent: a retried
    /// event settles nothing new) and answers the change to apply in its place: the
    /// payment's refunded total, the sum of its succeeded refunds. `None`: not a
    /// refund event, no refunds store, or money in another currency (applied as it
    /// is, so the domain records it as not applied).
    async fn settle_refunds(
        &self,
        payment: &Payment,
        event: &WebhookEvent,
    ) -> Result<Option<PaymentChange>, ProcessError> {
        let Some(refunds) = &self.refunds else {
            return Ok(None);
        };
        let report = match &event.change {
            PaymentChange::Refund {
                refunded_total,
                currency,
            } => RefundReport::Total {
                refunded_total: *refunded_total,
                currency: *currency,
            },
            PaymentChange::RefundUpdate { refund } => refund.clone(),
            _ => return Ok(None),
        };
        let currency = match &report {
            RefundReport::One { currency, .. } | RefundReport::Total { currency, .. } => *currency,
        };
        if currency != payment.amount.currency() {
            return Ok(None);
        }
        let settlement = refunds.settle_refunds(payment.id, &report, self.clock.now()).await?;
        if !settlement.changed.is_empty() {
            self.published.notify_one();
        }
        Ok(Some(PaymentChange::Refund {
            refunded_total: settlement.succeeded_total,
            currency,
        }))
    }

    /// Keeps the dispute as a row of its own (idempotent: a retried event records the
    /// same report again, which changes and publishes nothing). A provider that says
    /// only that the payment is disputed (JunglePay's `chargedback`) gets a row named
    /// by the payment's own reference, for the payment's amount.
    async fn record_dispute(
        &self,
        payment: &Payment,
        status: payhook_domain::DisputeStatus,
        detail: Option<&DisputeReport>,
    ) -> Result<(), ProcessError> {
        let Some(disputes) = &self.disputes else {
            return Ok(());
        };
        let summary;
        let report = match detail {
            Some(report) => report,
            None => {
                let Some(reference) = payment.provider_ref.clone() else {
                    return Ok(());
                };
                summary = DisputeReport {
                    provider_ref: reference,
                    amount: Some(payment.amount.amount_minor()),
                    currency: Some(payment.amount.currency()),
                    reason: None,
                    status: status.as_str().to_owned(),
                    evidence_due_by: None,
                    closed: status != payhook_domain::DisputeStatus::Open,
                };
                &summary
            }
        };
        let recorded = disputes.record_dispute(payment.id, report, self.clock.now()).await?;
        if recorded.opened || recorded.closed {
            self.published.notify_one();
        }
        Ok(())
    }

    /// The event with the change the provider's API confirms in place of the claimed
    /// one. A claim of progress the provider does not confirm yet is an error, so the
    /// event is retried with backoff.
    async fn confirm(&self, event: &WebhookEvent, payment: &Payment) -> Result<WebhookEvent, ProcessError> {
        let gateway = self
            .gateways
            .get(&event.provider)
            .ok_or(ProcessError::NoGateway(event.provider))?;
        let reference = payment.provider_ref.as_deref().ok_or_else(|| {
            ProcessError::NotConfirmed("the payment has no provider reference yet (its creation is unanswered)".into())
        })?;
        let fetched = gateway.fetch_status(reference).await?;
        let claims_progress = !matches!(
            event.change,
            PaymentChange::Status {
                to: PaymentStatus::Pending,
                ..
            }
        );
        if claims_progress && fetched.status == PaymentStatus::Pending && fetched.dispute.is_none() {
            return Err(ProcessError::NotConfirmed(format!(
                "{} says {reference} is not paid yet",
                event.provider
            )));
        }
        let mut confirmed = event.clone();
        confirmed.change = fetched.change_for(payment);
        Ok(confirmed)
    }

    /// The event's payment; one payhook never created (an existing Stripe account
    /// pointed at payhook) is created from what the event says about it.
    async fn payment_for(&self, event: &WebhookEvent) -> Result<Payment, ProcessError> {
        if let Some(payment) = self.payments.find_payment(event.provider, &event.payment).await? {
            return Ok(payment);
        }
        match self.payment_to_create(event) {
            Some(new) => Ok(self.payments.create_payment(&new).await?),
            None => Err(not_found(event)),
        }
    }

    /// The payment to create for an event whose payment is not found, if it may be
    /// created. A payment payhook created is never re-created from an event: if its id
    /// is not found yet, the event raced its creation and is retried.
    fn payment_to_create(&self, event: &WebhookEvent) -> Option<NewPayment> {
        let details = event.details.as_ref()?;
        if event.payment.payment_id.is_some() || event.payment.provider_ref.is_none() {
            return None;
        }
        Some(NewPayment {
            account: event.payment.account.clone().unwrap_or_default(),
            id: PaymentId::from_uuid(uuid::Uuid::new_v4()),
            provider: event.provider,
            provider_ref: event.payment.provider_ref.clone(),
            merchant_ref: None,
            amount: details.amount,
            customer_email: details.customer_email.clone(),
            description: details.description.clone(),
            metadata: details.metadata.clone(),
            created_at: self.clock.now(),
            client_token_hash: None,
            callback_token_hash: None,
            idempotency: None,
            next_reconcile_at: None,
        })
    }
}

/// The span of one event's application: provider, event id, and the payment's id
/// once it is known, so an operator can follow the event from its request (whose
/// span carries the same event id) to its domain events.
/// A change that writes rows of its own (a dispute, a refund) before the payment's
/// summary changes: applied one by one.
fn goes_alone(change: &PaymentChange) -> bool {
    matches!(
        change,
        PaymentChange::Dispute { .. } | PaymentChange::Refund { .. } | PaymentChange::RefundUpdate { .. }
    )
}

fn application_span(event: &WebhookEvent) -> tracing::Span {
    tracing::info_span!(
        "apply_event",
        provider = %event.provider,
        event_id = %event.event_id,
        payment_id = tracing::field::Empty,
    )
}

fn not_found(event: &WebhookEvent) -> ProcessError {
    ProcessError::PaymentNotFound {
        provider: event.provider.to_string(),
        reference: event.payment.describe().unwrap_or_else(|| "no reference".into()),
    }
}

/// Runs the processor until `shutdown` turns true. Events the ingest path hands over
/// are processed as they come; the store is claimed from when the ingest path wakes
/// the worker (it stored events without handing them over), after an idle poll
/// interval, and at least once per poll interval while handed-over events keep it
/// busy (retries and expired leases are due there). The batch in hand is always
/// finished before stopping; events still waiting in the handoff are released.
pub async fn run_worker(
    processor: Arc<Processor>,
    batch_size: u32,
    concurrency: usize,
    poll_interval: Duration,
    accepted: Arc<Notify>,
    mut handed_over: HandedOver<ClaimedEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut pause = poll_interval;
    let mut claim = true;
    let mut last_claim = Instant::now();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let handed = handed_over.take(batch_size as usize);
        let busy = !handed.is_empty();
        if busy {
            processor.process(handed, concurrency).await;
        }
        if claim || last_claim.elapsed() >= poll_interval {
            last_claim = Instant::now();
            match processor.run_batch(batch_size, concurrency).await {
                Ok(claimed) => {
                    pause = poll_interval;
                    claim = claimed as u32 >= batch_size; // more may be due right now
                }
                Err(e) => {
                    // An outage: poll less and less often (and log less) until it ends.
                    tracing::error!(error = %e, retry_in_ms = pause.as_millis() as u64, "worker could not claim events");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.changed() => {}
                    }
                    pause = (pause * 2).min(MAX_ERROR_PAUSE);
                    continue;
                }
            }
        }
        if busy || claim {
            continue;
        }
        claim = tokio::select! {
            _ = handed_over.arrived() => false,
            _ = accepted.notified() => true,
            _ = tokio::time::sleep(poll_interval) => true,
            _ = shutdown.changed() => false,
        };
    }
    let waiting: Vec<InboxId> = handed_over.close().into_iter().map(|c| c.id).collect();
    if !waiting.is_empty() {
        match processor.give_back(&waiting).await {
            Ok(n) => tracing::info!(released = n, "released handed-over events not processed"),
            Err(e) => tracing::error!(error = %e, "could not release handed-over events; their leases will expire"),
        }
    }
    tracing::info!("worker stopped");
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
