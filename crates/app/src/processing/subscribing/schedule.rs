//! The schedule payhook runs where the provider runs none (Xendit, QPay, JunglePay):
//! settling a subscription with its payments and the calendar, asking for renewals,
//! and the scheduler's rounds.

use super::*;

/// The schedule payhook runs for providers without subscriptions of their own.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// How long before a period ends its renewal payment is asked for.
    pub renew_before: Duration,
    /// How long a `past_due` subscription keeps access before it `expired`.
    pub grace: Duration,
    /// How often a subscription whose first payment is not paid is looked at.
    pub pending_recheck: Duration,
    /// After this long unpaid, a pending subscription is no longer looked at (its
    /// first payment, paid later, still activates it through the worker).
    pub give_up: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            renew_before: Duration::hours(72),
            grace: Duration::hours(72),
            pending_recheck: Duration::minutes(10),
            give_up: Duration::hours(168),
        }
    }
}

/// Subscriptions claimed per round of the scheduler.
const CLAIM_BATCH: u32 = 100;
/// How long a claimed subscription is left to this instance.
const LEASE_MINUTES: i64 = 5;

impl Subscriptions {
    pub(super) fn first_payment(
        &self,
        plan: &Plan,
        request: &SubscriptionRequest,
        id: SubscriptionId,
    ) -> PaymentRequest {
        PaymentRequest {
            provider: request.provider,
            amount: plan.amount,
            merchant_ref: Some(format!("subscription:{id}")),
            customer_email: request.customer_email.clone(),
            description: Some(plan.name.clone()),
            metadata: payment_metadata(&request.metadata, id, plan),
            success_url: request.success_url.clone(),
            cancel_url: request.cancel_url.clone(),
        }
    }

    /// Brings a subscription up to date with its payments and the clock, asks for its
    /// renewal when one is due, and sets when to look at it next.
    pub async fn settle(&self, id: SubscriptionId) -> Result<(), SubscribeError> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            match self.settle_once(id).await {
                Err(SubscribeError::Store(StoreError::Conflict(_))) => continue,
                other => return other,
            }
        }
        Err(StoreError::Conflict(format!("subscription {id}")).into())
    }

    async fn settle_once(&self, id: SubscriptionId) -> Result<(), SubscribeError> {
        let current = self.current(id).await?;
        let now = self.clock.now();
        let history = self.store.subscription_history(id).await?;
        let done = |mark: &str| {
            history
                .iter()
                .any(|h| h.reason == mark || h.reason.starts_with(&format!("{mark} (")))
        };
        let mut payments = self.store.subscription_payments(id).await?;
        payments.sort_by_key(|p| (p.paid_at, p.created_at));
        let mut next = current.clone();
        let mut entries = Vec::new();
        let mut publications = Vec::new();
        let mut apply = |next: &mut Subscription, change: SubscriptionChange, mark: String| {
            let application = next.apply(&change, &mark, now);
            *next = application.subscription;
            entries.extend(application.history);
            publications.extend(application.publications);
        };
        // Payments first, in the order they were paid: each once (its mark in the
        // history says it was applied).
        for payment in &payments {
            if let Some(paid_at) = payment.paid_at {
                let mark = paid_mark(payment.id);
                if !done(&mark) {
                    apply(&mut next, SubscriptionChange::Paid { paid_at }, mark);
                }
            }
            if payment.status == PaymentStatus::Refunded {
                let mark = refunded_mark(payment.id);
                if !done(&mark) {
                    apply(&mut next, SubscriptionChange::PaymentRefunded, mark);
                }
            }
        }
        // Then the calendar, where payhook runs it.
        if self.scheduled(next.provider) {
            if let Some(end) = next.current_period_end {
                let lapsed = end <= now;
                match next.status {
                    SubscriptionStatus::Active | SubscriptionStatus::Trialing if lapsed => {
                        let change = if next.cancel_at_period_end {
                            SubscriptionChange::PeriodEndedCanceled
                        } else {
                            SubscriptionChange::PeriodLapsed
                        };
                        apply(&mut next, change, "scheduler".to_owned());
                    }
                    _ => {}
                }
                if next.status == SubscriptionStatus::PastDue && end + self.schedule.grace <= now {
                    apply(&mut next, SubscriptionChange::GraceOver, "scheduler".to_owned());
                }
            }
        }
        let renewal = self.renewal_due(&next, now);
        let next_due_at = self.next_due(&next);
        if entries.is_empty() {
            self.store.schedule_subscription(id, next_due_at).await?;
        } else {
            next.updated_at = now;
            self.save(&current, next.clone(), entries, publications, next_due_at)
                .await?;
        }
        if renewal {
            if let Err(e) = self.ask_for_renewal(id).await {
                // Asked again soon, not at the period's end.
                self.store
                    .schedule_subscription(id, Some(now + self.schedule.pending_recheck))
                    .await?;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Creates one of the subscription's payments (its first, or a renewal) under the
    /// idempotency key `base`, linked to it. A creation the provider refused stays (a
    /// failed payment of the subscription), and the next ask tries again under
    /// `base:retry-<n>`: one provider outage does not cost a customer their renewal.
    pub(super) async fn create_payment(
        &self,
        id: SubscriptionId,
        mut request: PaymentRequest,
        base: &str,
    ) -> Result<crate::api::payment_requests::Created, CreateError> {
        let failed = self
            .store
            .subscription_payments(id)
            .await?
            .iter()
            .filter(|p| {
                p.failure_reason.is_some()
                    && p.metadata.get(PAYMENT_KEY_FIELD).and_then(serde_json::Value::as_str) == Some(base)
            })
            .count();
        let key = match failed {
            0 => base.to_owned(),
            n => format!("{base}:retry-{n}"),
        };
        if let Some(fields) = request.metadata.as_object_mut() {
            fields.insert(PAYMENT_KEY_FIELD.into(), serde_json::json!(base));
        }
        match self.payments.create(request, Some(&key)).await {
            Ok(mut created) => {
                self.store.link_payment(created.payment.id, id).await?;
                created.payment.subscription_id = Some(id);
                Ok(created)
            }
            Err(CreateError::Provider {
                payment_id: Some(payment),
                reason,
            }) => {
                self.store.link_payment(payment, id).await?;
                Err(CreateError::Provider {
                    payment_id: Some(payment),
                    reason,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the next period's payment should be asked for now.
    fn renewal_due(&self, s: &Subscription, now: DateTime<Utc>) -> bool {
        let Some(end) = s.current_period_end else {
            return false;
        };
        self.scheduled(s.provider)
            && matches!(
                s.status,
                SubscriptionStatus::Active | SubscriptionStatus::Trialing | SubscriptionStatus::PastDue
            )
            && !s.cancel_at_period_end
            && now >= end - self.schedule.renew_before
            && s.renewal_notified.as_deref() != Some(renewal_key(s).as_str())
    }

    /// Creates the next period's payment request (its idempotency key names the
    /// subscription and the period, so every instance and every retry asks for the
    /// same one), then publishes `subscription.renewal_due` with how to pay it, once.
    async fn ask_for_renewal(&self, id: SubscriptionId) -> Result<(), SubscribeError> {
        let current = self.current(id).await?;
        let key = renewal_key(&current);
        let request = PaymentRequest {
            provider: current.provider,
            amount: current.plan.amount,
            merchant_ref: Some(format!("subscription:{id}")),
            customer_email: current.customer_email.clone(),
            description: Some(format!("{} (renewal)", current.plan.name)),
            metadata: payment_metadata(&current.metadata, id, &current.plan),
            success_url: None,
            cancel_url: None,
        };
        let created = match self.create_payment(id, request, &key).await {
            Ok(created) => created,
            // Another instance is asking right now: it publishes.
            Err(CreateError::InFlight) => return Ok(()),
            Err(e) => {
                tracing::warn!(subscription_id = %id, error = %e, "the renewal payment could not be created");
                return Err(SubscribeError::Payment(e));
            }
        };
        let payment = created.payment;
        let mut next = current.clone();
        next.renewal_notified = Some(key);
        next.updated_at = self.clock.now();
        let mut payload = current.event_payload();
        if let Some(fields) = payload.as_object_mut() {
            fields.insert("payment_id".into(), serde_json::json!(payment.id.to_string()));
            fields.insert("amount".into(), serde_json::json!(payment.amount.amount_minor()));
            fields.insert("currency".into(), serde_json::json!(payment.amount.currency().code()));
            fields.insert("checkout_url".into(), serde_json::json!(payment.checkout_url));
            fields.insert("qr_text".into(), serde_json::json!(payment.qr_text));
            fields.insert("expires_at".into(), serde_json::json!(payment.expires_at));
        }
        let entry = payhook_domain::SubscriptionHistoryEntry {
            from_status: current.status,
            to_status: current.status,
            applied: true,
            reason: format!("renewal_due ({})", payment.id),
            at: next.updated_at,
        };
        let next_due_at = self.next_due(&next);
        match self
            .save(
                &current,
                next,
                vec![entry],
                vec![Publication {
                    topic: "subscription.renewal_due".into(),
                    payload,
                }],
                next_due_at,
            )
            .await
        {
            // Another instance published it first.
            Ok(_) | Err(StoreError::Conflict(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// When the scheduler should look at `s` next.
    pub(super) fn next_due(&self, s: &Subscription) -> Option<DateTime<Utc>> {
        if !self.scheduled(s.provider) {
            return None;
        }
        let now = self.clock.now();
        match s.status {
            SubscriptionStatus::Pending => {
                (now - s.created_at < self.schedule.give_up).then(|| now + self.schedule.pending_recheck)
            }
            SubscriptionStatus::Trialing | SubscriptionStatus::Active => {
                let end = s.current_period_end?;
                let renew_at = end - self.schedule.renew_before;
                let renewal_pending =
                    !s.cancel_at_period_end && s.renewal_notified.as_deref() != Some(renewal_key(s).as_str());
                Some(if renewal_pending && renew_at > now {
                    renew_at
                } else {
                    end
                })
            }
            SubscriptionStatus::PastDue => Some(s.current_period_end? + self.schedule.grace),
            SubscriptionStatus::Canceled | SubscriptionStatus::Expired => None,
        }
    }

    /// One round of the scheduler: every subscription due now, claimed (SKIP LOCKED on
    /// Postgres) so N instances settle each once. Answers how many were settled.
    pub async fn run_due(&self) -> Result<usize, StoreError> {
        let mut settled = 0;
        loop {
            let now = self.clock.now();
            let due = self
                .store
                .claim_due_subscriptions(now, CLAIM_BATCH, now + Duration::minutes(LEASE_MINUTES))
                .await?;
            let claimed = due.len();
            for id in due {
                match self.settle(id).await {
                    Ok(()) => settled += 1,
                    // Its lease runs out and it is claimed again: nothing is lost.
                    Err(error) => tracing::warn!(subscription_id = %id, %error, "could not settle a subscription"),
                }
            }
            if claimed < CLAIM_BATCH as usize {
                return Ok(settled);
            }
        }
    }

    /// Settles the subscription `payment` pays for, if any, where payhook runs the
    /// schedule (after the worker applied an event to the payment).
    pub async fn after_payment(&self, payment: &Payment) {
        let Some(id) = payment.subscription_id else {
            return;
        };
        if !self.scheduled(payment.provider) {
            return;
        }
        if let Err(error) = self.settle(id).await {
            // The scheduler applies it at the subscription's next due time.
            tracing::warn!(subscription_id = %id, %error, "could not settle a subscription after its payment changed");
        }
    }
}

/// The history mark of a payment's `paid` applied to its subscription.
fn paid_mark(payment: PaymentId) -> String {
    format!("payment {payment} paid")
}

fn refunded_mark(payment: PaymentId) -> String {
    format!("payment {payment} refunded")
}

/// The metadata field that names which of a subscription's payments a payment is (the
/// idempotency key it was first asked for under).
const PAYMENT_KEY_FIELD: &str = "payhook_subscription_payment";

/// The idempotency key of the first payment of a subscription.
pub fn first_payment_key(id: SubscriptionId) -> String {
    format!("payhook:subscription:{id}:first")
}

/// The idempotency key of the payment for the period after `s`'s current one:
/// anchored, so a subscription that starts again after expiring asks anew.
pub fn renewal_key(s: &Subscription) -> String {
    match s.anchor {
        Some(anchor) => format!("payhook:subscription:{}:{}:{}", s.id, anchor.timestamp(), s.periods + 1),
        // A trial: the first payment.
        None => first_payment_key(s.id),
    }
}

/// A subscription payment's metadata: the subscription's own (what a provider may
/// need of the customer, JunglePay's document number say), with payhook's ids.
fn payment_metadata(metadata: &serde_json::Value, id: SubscriptionId, plan: &Plan) -> serde_json::Value {
    let mut fields = metadata.as_object().cloned().unwrap_or_default();
    fields.insert("payhook_subscription_id".into(), serde_json::json!(id.to_string()));
    fields.insert("plan".into(), serde_json::json!(plan.code));
    serde_json::Value::Object(fields)
}
