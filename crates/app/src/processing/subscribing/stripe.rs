//! Subscriptions Stripe runs: applying what its events say, and adopting those payhook
//! did not open.

use super::*;

impl Subscriptions {
    /// The Stripe Checkout Session that starts a subscription (the plan's Price, or
    /// one payhook creates once and keeps on the plan).
    pub(super) async fn open_stripe_checkout(
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
}

/// Whether a Stripe subscription's reference is still its Checkout Session's (`cs_…`),
/// Stripe not having made the subscription (`sub_…`) yet.
pub(super) fn is_checkout_session(reference: &str) -> bool {
    reference.starts_with("cs_")
}
