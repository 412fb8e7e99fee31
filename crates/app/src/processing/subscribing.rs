//! Subscriptions: opening them (`POST /subscriptions`), cancelling them, and keeping
//! them where their payments and the calendar say (docs/subscriptions.md).
//!
//! Two families of provider. **Stripe** runs the subscription itself: payhook opens a
//! Checkout Session in subscription mode and applies what Stripe's events say
//! ([`Subscriptions::apply_signal`]). **Xendit, QPay and JunglePay** take one-off
//! payments: payhook runs the schedule ([`Subscriptions::settle`]), asking for each
//! period's payment `subscriptions.renew_before_hours` before the period ends.
//!
//! `settle` derives everything from stored facts (the subscription's paid and
//! refunded payments, the clock), marks what it applied in the subscription's history,
//! and saves under the subscription's version: running it twice, late, or on two
//! instances at once applies each fact once. The worker runs it after a subscription's
//! payment changes; the scheduler runs it for subscriptions that come due, so a fact
//! the worker did not get to (a crash between the two) is applied at the next due time.

use crate::api::payment_requests::{CreateError, PaymentRequest, PaymentRequests};
use chrono::{DateTime, Duration, Utc};
use payhook_domain::ports::{
    Clock, PlanStore, StoreError, SubscriptionCheckoutRequest, SubscriptionGateway, SubscriptionStore,
};
use payhook_domain::{
    GatewayError, Idempotency, NewSubscription, Payment, PaymentId, PaymentStatus, Plan, PlanId, Provider, Publication,
    Subscription, SubscriptionChange, SubscriptionId, SubscriptionOpened, SubscriptionSave, SubscriptionSignal,
    SubscriptionStatus,
};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;

/// How many times a save is recomputed when another writer got there first.
const MAX_CONFLICT_RETRIES: usize = 8;
/// Subscriptions claimed per round of the scheduler.
const CLAIM_BATCH: u32 = 100;
/// How long a claimed subscription is left to this instance.
const LEASE_MINUTES: i64 = 5;

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

/// A validated `POST /subscriptions` body.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionRequest {
    /// The plan's id or code.
    pub plan: String,
    pub provider: Provider,
    pub customer_ref: String,
    pub customer_email: Option<String>,
    pub metadata: serde_json::Value,
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("no plan {0:?}")]
    PlanNotFound(String),
    #[error("plan {0} is not active: new subscriptions to it are refused")]
    PlanInactive(String),
    #[error("no subscription {0}")]
    NotFound(String),
    #[error("subscription {id} is {status}: there is nothing to cancel")]
    NotCancelable {
        id: SubscriptionId,
        status: SubscriptionStatus,
    },
    #[error("{0} is not set up for subscriptions here: enable it and set its API credentials")]
    ProviderDisabled(Provider),
    #[error("this Idempotency-Key was first used with a different request")]
    KeyReused,
    /// Asking the provider failed (its payment, its Checkout Session, its cancel).
    #[error("{0}")]
    Provider(String),
    #[error(transparent)]
    Payment(CreateError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A subscription as `POST /subscriptions` answers it: with its first payment (where
/// payhook runs the schedule and no trial comes first) and that payment's client token.
#[derive(Debug)]
pub struct Opened {
    pub subscription: Subscription,
    pub payment: Option<crate::api::payment_requests::Created>,
    pub replayed: bool,
}

pub struct Subscriptions {
    store: Arc<dyn SubscriptionStore>,
    plans: Arc<dyn PlanStore>,
    payments: Arc<PaymentRequests>,
    /// Providers that run subscriptions themselves (Stripe).
    gateways: HashMap<Provider, Arc<dyn SubscriptionGateway>>,
    clock: Arc<dyn Clock>,
    schedule: Schedule,
    /// Wakes the outbox relay after a save wrote domain events.
    published: Arc<Notify>,
}

impl Subscriptions {
    pub fn new(
        store: Arc<dyn SubscriptionStore>,
        plans: Arc<dyn PlanStore>,
        payments: Arc<PaymentRequests>,
        gateways: Vec<(Provider, Arc<dyn SubscriptionGateway>)>,
        clock: Arc<dyn Clock>,
        schedule: Schedule,
        published: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            plans,
            payments,
            gateways: gateways.into_iter().collect(),
            clock,
            schedule,
            published,
        }
    }

    pub fn store(&self) -> &Arc<dyn SubscriptionStore> {
        &self.store
    }

    /// Whether payhook runs `provider`'s subscriptions on its own schedule (whether or
    /// not this deployment can open subscriptions with it).
    fn scheduled(&self, provider: Provider) -> bool {
        !provider.runs_subscriptions()
    }

    async fn find_plan(&self, plan: &str) -> Result<Plan, SubscribeError> {
        let found = match PlanId::parse(plan) {
            Some(id) => self.plans.plan(id).await?,
            None => None,
        };
        let found = match found {
            Some(plan) => Some(plan),
            None => self.plans.plan_by_code(plan).await?,
        };
        found.ok_or_else(|| SubscribeError::PlanNotFound(plan.to_owned()))
    }

    /// Opens a subscription and asks for its first payment (or, on Stripe, its
    /// Checkout Session). A repeated `Idempotency-Key` answers the first subscription.
    pub async fn open(
        &self,
        request: SubscriptionRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Opened, SubscribeError> {
        let plan = self.find_plan(&request.plan).await?;
        if !plan.active {
            return Err(SubscribeError::PlanInactive(plan.code));
        }
        let scheduled = self.scheduled(request.provider);
        if scheduled && !self.payments.offers(request.provider) {
            return Err(SubscribeError::ProviderDisabled(request.provider));
        }
        let idempotency = idempotency_key
            .map(|key| {
                crate::api::payment_requests::check_idempotency_key(key)
                    .map(|()| Idempotency {
                        key: key.to_owned(),
                        fingerprint: request.fingerprint(),
                    })
                    .map_err(SubscribeError::Payment)
            })
            .transpose()?;
        if scheduled {
            // Refuse what the provider would refuse (a currency it does not take)
            // before a subscription row exists.
            self.payments
                .check(&self.first_payment(&plan, &request, SubscriptionId::from_uuid(uuid::Uuid::nil())))
                .map_err(SubscribeError::Payment)?;
        }
        let now = self.clock.now();
        let subscription = pending(
            plan.clone(),
            request.provider,
            request.customer_ref.clone(),
            request.customer_email.clone(),
            request.metadata.clone(),
            now,
        );
        let new = NewSubscription {
            subscription,
            idempotency: idempotency.clone(),
            next_due_at: scheduled.then(|| now + self.schedule.pending_recheck),
        };
        let (subscription, replayed) = match self.store.open_subscription(&new).await? {
            SubscriptionOpened::New(s) => (s, false),
            SubscriptionOpened::Existing {
                subscription,
                fingerprint,
            } => {
                if fingerprint.as_deref() != idempotency.as_ref().map(|i| i.fingerprint.as_str()) {
                    return Err(SubscribeError::KeyReused);
                }
                (subscription, true)
            }
        };
        if !scheduled {
            let subscription = self.open_stripe_checkout(subscription, &request).await?;
            return Ok(Opened {
                subscription,
                payment: None,
                replayed,
            });
        }
        if plan.trial_days > 0 {
            let subscription = if subscription.status == SubscriptionStatus::Pending {
                self.change(subscription.id, &SubscriptionChange::StartTrial, "trial")
                    .await?
            } else {
                subscription
            };
            // The first payment is asked for before the trial ends, by the scheduler.
            self.settle(subscription.id).await?;
            let subscription = self.current(subscription.id).await?;
            return Ok(Opened {
                subscription,
                payment: None,
                replayed,
            });
        }
        let payment = self
            .create_payment(
                subscription.id,
                self.first_payment(&plan, &request, subscription.id),
                &first_payment_key(subscription.id),
            )
            .await
            .map_err(SubscribeError::Payment)?;
        // Paid before it was linked (a fast customer): applied now, not at the next due.
        self.settle(subscription.id).await?;
        Ok(Opened {
            subscription: self.current(subscription.id).await?,
            payment: Some(payment),
            replayed,
        })
    }

    async fn current(&self, id: SubscriptionId) -> Result<Subscription, SubscribeError> {
        self.store
            .subscription(id)
            .await?
            .ok_or_else(|| SubscribeError::NotFound(id.to_string()))
    }

    fn first_payment(&self, plan: &Plan, request: &SubscriptionRequest, id: SubscriptionId) -> PaymentRequest {
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

    /// The Stripe Checkout Session that starts a subscription (the plan's Price, or
    /// one payhook creates once and keeps on the plan).
    async fn open_stripe_checkout(
        &self,
        subscription: Subscription,
        request: &SubscriptionRequest,
    ) -> Result<Subscription, SubscribeError> {
        if subscription.checkout_url.is_some() || subscription.status != SubscriptionStatus::Pending {
            return Ok(subscription);
        }
        let gateway = self
            .gateways
            .get(&subscription.provider)
            .ok_or(SubscribeError::ProviderDisabled(subscription.provider))?;
        let price_id = match &subscription.plan.stripe_price_id {
            Some(price) => price.clone(),
            None => {
                let created = gateway.create_price(&subscription.plan).await.map_err(provider_error)?;
                let plan = self.plans.set_stripe_price(subscription.plan.id, &created).await?;
                plan.and_then(|p| p.stripe_price_id).unwrap_or(created)
            }
        };
        let checkout = gateway
            .open_subscription_checkout(&SubscriptionCheckoutRequest {
                subscription_id: subscription.id,
                price_id,
                customer_ref: subscription.customer_ref.clone(),
                customer_email: subscription.customer_email.clone(),
                success_url: request.success_url.clone(),
                cancel_url: request.cancel_url.clone(),
                trial_days: subscription.plan.trial_days,
            })
            .await
            .map_err(provider_error)?;
        let mut saved = subscription.clone();
        saved.checkout_url = Some(checkout.checkout_url);
        // Until Stripe makes the subscription, its reference is the Checkout Session's:
        // what a cancel before payment closes.
        saved.provider_ref = Some(checkout.session_id);
        let stored = self
            .store
            .save_subscription(&SubscriptionSave {
                expected_version: subscription.version,
                subscription: saved,
                history: Vec::new(),
                publications: Vec::new(),
                next_due_at: None,
            })
            .await;
        match stored {
            // A concurrent request with the same key saved the same session (Stripe
            // answered both with it: the session's idempotency key is the subscription's).
            Ok(()) | Err(StoreError::Conflict(_)) => self.current(subscription.id).await,
            Err(e) => Err(e.into()),
        }
    }

    /// Cancels now, or at the end of the paid period. On Stripe the subscription is
    /// cancelled there first (its events confirm it); one not started yet has its
    /// Checkout Session expired, so the customer cannot start it after all.
    pub async fn cancel(&self, id: SubscriptionId, at_period_end: bool) -> Result<Subscription, SubscribeError> {
        let subscription = self.current(id).await?;
        if matches!(
            subscription.status,
            SubscriptionStatus::Canceled | SubscriptionStatus::Expired
        ) {
            return Err(SubscribeError::NotCancelable {
                id,
                status: subscription.status,
            });
        }
        if let (Some(gateway), Some(reference)) =
            (self.gateways.get(&subscription.provider), &subscription.provider_ref)
        {
            if is_checkout_session(reference) {
                gateway.expire_subscription_checkout(reference).await
            } else {
                gateway
                    .cancel_subscription(&subscription.account, reference, at_period_end)
                    .await
            }
            .map_err(provider_error)?;
        }
        let change = SubscriptionChange::Cancel { at_period_end };
        self.change(id, &change, "canceled_by_merchant").await?;
        if self.scheduled(subscription.provider) {
            self.settle(id).await?;
        }
        self.current(id).await
    }

    /// Applies `change` and saves it, recomputed on a concurrent write.
    async fn change(
        &self,
        id: SubscriptionId,
        change: &SubscriptionChange,
        reason: &str,
    ) -> Result<Subscription, SubscribeError> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let current = self.current(id).await?;
            let application = current.apply(change, reason, self.clock.now());
            if application.history.is_empty() {
                return Ok(current);
            }
            let next_due_at = self.next_due(&application.subscription);
            match self
                .save(
                    &current,
                    application.subscription,
                    application.history,
                    application.publications,
                    next_due_at,
                )
                .await
            {
                Ok(saved) => return Ok(saved),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict(format!("subscription {id}")).into())
    }

    async fn save(
        &self,
        current: &Subscription,
        next: Subscription,
        history: Vec<payhook_domain::SubscriptionHistoryEntry>,
        publications: Vec<Publication>,
        next_due_at: Option<DateTime<Utc>>,
    ) -> Result<Subscription, StoreError> {
        let published = !publications.is_empty();
        let save = SubscriptionSave {
            subscription: next,
            expected_version: current.version,
            history,
            publications,
            next_due_at,
        };
        self.store.save_subscription(&save).await?;
        if published {
            self.published.notify_one();
        }
        let mut saved = save.subscription;
        saved.version = current.version + 1;
        Ok(saved)
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
    async fn create_payment(
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
    fn next_due(&self, s: &Subscription) -> Option<DateTime<Utc>> {
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

    /// Applies what a Stripe event says about a subscription Stripe runs: found by
    /// payhook's id in its metadata, else by Stripe's id, else adopted (a subscription
    /// payhook did not open, under a plan for its Price). `payment` is the invoice's
    /// payment, made one of the subscription's. Answers whether anything changed.
    pub async fn apply_signal(
        &self,
        event_id: &str,
        provider: Provider,
        account: &str,
        signal: &SubscriptionSignal,
        payment: Option<PaymentId>,
    ) -> Result<bool, SubscribeError> {
        let Some(subscription) = self.subscription_for(provider, account, signal).await? else {
            tracing::info!(stripe_subscription = %signal.provider_ref, "a subscription payhook cannot adopt (no recurring price in the event)");
            return Ok(false);
        };
        if let Some(payment) = payment {
            self.store.link_payment(payment, subscription.id).await?;
        }
        let Some(status) = signal.status else {
            return Ok(false);
        };
        let change = SubscriptionChange::ProviderSays {
            stamp: signal.stamp(),
            status,
            period_start: signal.period_start,
            period_end: signal.period_end,
            cancel_at_period_end: signal.cancel_at_period_end,
        };
        for _ in 0..MAX_CONFLICT_RETRIES {
            let current = self.current(subscription.id).await?;
            let mut application = current.apply(&change, event_id, self.clock.now());
            let adopting_ref = current.provider_ref.as_deref().is_none_or(is_checkout_session);
            if adopting_ref {
                application.subscription.provider_ref = Some(signal.provider_ref.clone());
                application.subscription.account = account.to_owned();
            }
            if application.history.is_empty() && !adopting_ref && application.subscription == current {
                return Ok(false);
            }
            let applied = application.applied;
            match self
                .save(
                    &current,
                    application.subscription,
                    application.history,
                    application.publications,
                    None,
                )
                .await
            {
                Ok(_) => return Ok(applied),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict(format!("subscription {}", subscription.id)).into())
    }

    async fn subscription_for(
        &self,
        provider: Provider,
        account: &str,
        signal: &SubscriptionSignal,
    ) -> Result<Option<Subscription>, SubscribeError> {
        if let Some(id) = signal.subscription_id {
            if let Some(found) = self.store.subscription(id).await? {
                return Ok(Some(found));
            }
        }
        if let Some(found) = self
            .store
            .subscription_by_provider_ref(provider, account, &signal.provider_ref)
            .await?
        {
            return Ok(Some(found));
        }
        let Some(price) = &signal.price else {
            return Ok(None);
        };
        let plan = self.plan_for_price(price).await?;
        let now = self.clock.now();
        let adopted = Subscription {
            account: account.to_owned(),
            provider_ref: Some(signal.provider_ref.clone()),
            ..pending(
                plan,
                provider,
                signal.customer.clone().unwrap_or_else(|| signal.provider_ref.clone()),
                signal.customer_email.clone(),
                serde_json::json!({ "adopted_from": "stripe" }),
                now,
            )
        };
        // Parallel events adopting one subscription make one row: the store's unique
        // (provider, account, provider_ref) lets one insert, the others read it.
        let opened = self
            .store
            .open_subscription(&NewSubscription {
                subscription: adopted,
                idempotency: None,
                next_due_at: None,
            })
            .await?;
        Ok(Some(match opened {
            SubscriptionOpened::New(s) | SubscriptionOpened::Existing { subscription: s, .. } => s,
        }))
    }

    /// The plan a Stripe Price bills: the one that names it, else one made for it
    /// (code `stripe:{price id}`).
    async fn plan_for_price(&self, price: &payhook_domain::SignalPrice) -> Result<Plan, SubscribeError> {
        let code = format!("stripe:{}", price.id);
        if let Some(plan) = self
            .plans
            .plans()
            .await?
            .into_iter()
            .find(|p| p.stripe_price_id.as_deref() == Some(&price.id))
        {
            return Ok(plan);
        }
        let plan = Plan {
            id: PlanId::from_uuid(uuid::Uuid::new_v4()),
            code: code.clone(),
            name: price.product_name.clone().unwrap_or_else(|| code.clone()),
            amount: price.amount,
            interval: price.interval,
            interval_count: price.interval_count,
            trial_days: 0,
            stripe_price_id: Some(price.id.clone()),
            active: true,
            created_at: self.clock.now(),
        };
        Ok(match self.plans.create_plan(&plan).await? {
            payhook_domain::ports::PlanCreated::Created(plan) | payhook_domain::ports::PlanCreated::CodeTaken(plan) => {
                plan
            }
        })
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

/// A subscription payment's metadata: the subscription's own (what a provider may
/// need of the customer, JunglePay's document number say), with payhook's ids.
fn payment_metadata(metadata: &serde_json::Value, id: SubscriptionId, plan: &Plan) -> serde_json::Value {
    let mut fields = metadata.as_object().cloned().unwrap_or_default();
    fields.insert("payhook_subscription_id".into(), serde_json::json!(id.to_string()));
    fields.insert("plan".into(), serde_json::json!(plan.code));
    serde_json::Value::Object(fields)
}

/// Whether a Stripe subscription's reference is still its Checkout Session's (`cs_…`),
/// Stripe not having made the subscription (`sub_…`) yet.
fn is_checkout_session(reference: &str) -> bool {
    reference.starts_with("cs_")
}

/// A new subscription, not paid for yet, with a fresh id.
fn pending(
    plan: Plan,
    provider: Provider,
    customer_ref: String,
    customer_email: Option<String>,
    metadata: serde_json::Value,
    now: DateTime<Utc>,
) -> Subscription {
    Subscription {
        id: SubscriptionId::from_uuid(uuid::Uuid::new_v4()),
        plan,
        provider,
        account: String::new(),
        provider_ref: None,
        customer_ref,
        customer_email,
        status: SubscriptionStatus::Pending,
        anchor: None,
        periods: 0,
        current_period_start: None,
        current_period_end: None,
        cancel_at_period_end: false,
        canceled_at: None,
        metadata,
        checkout_url: None,
        provider_stamp: None,
        renewal_notified: None,
        created_at: now,
        updated_at: now,
        version: 1,
    }
}

fn provider_error(e: GatewayError) -> SubscribeError {
    SubscribeError::Provider(e.to_string())
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

impl SubscriptionRequest {
    /// SHA-256 of the request in a canonical form, like a payment request's.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let canonical = serde_json::json!({
            "plan": self.plan,
            "provider": self.provider.as_str(),
            "customer_ref": self.customer_ref,
            "customer_email": self.customer_email,
            "metadata": crate::api::payment_requests::canonical(&self.metadata),
            "success_url": self.success_url,
            "cancel_url": self.cancel_url,
        });
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

#[cfg(test)]
#[path = "subscribing_tests.rs"]
mod tests;
