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
//!
//! Here: opening, cancelling, saving. [`schedule`]: settling and the scheduler's
//! rounds. [`stripe`]: Stripe's Checkout and Stripe's words about its subscriptions.

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

mod schedule;
mod stripe;
pub use schedule::{first_payment_key, renewal_key, Schedule};
use stripe::is_checkout_session;

#[cfg(test)]
mod tests;
