//! Subscriptions Stripe runs (Stripe Billing): the Product and Price of a plan, a
//! Checkout Session in subscription mode, and cancellation.
//!
//! Sent as Stripe's form bodies through the shared provider HTTP client, like the
//! mirror's reads (`objects.rs`): the SDK's product and billing crates would add two
//! large crates to the build for three calls, and payhook reads three fields of the
//! answers. Each creation carries an `Idempotency-Key` derived from payhook's own id,
//! so a retried or concurrent call makes one object at Stripe.

use crate::billing::SUBSCRIPTION_ID_METADATA_KEY;
use crate::objects::summarize;
use async_trait::async_trait;
use payhook_domain::ports::{SubscriptionCheckout, SubscriptionCheckoutRequest, SubscriptionGateway};
use payhook_domain::{GatewayError, Plan, Provider};
use payhook_provider_http::ProviderApi;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

pub struct StripeSubscriptions {
    api: ProviderApi,
    base_url: String,
    authorization: SecretString,
    success_url: Option<String>,
    cancel_url: Option<String>,
}

#[derive(Deserialize)]
struct Created {
    id: String,
    url: Option<String>,
}

fn form(fields: &[(&str, String)]) -> String {
    let mut body = form_urlencoded::Serializer::new(String::new());
    for (name, value) in fields {
        body.append_pair(name, value);
    }
    body.finish()
}

impl StripeSubscriptions {
    pub fn new(
        base_url: &str,
        api_key: &SecretString,
        timeout: Duration,
        success_url: Option<String>,
        cancel_url: Option<String>,
    ) -> Result<Self, GatewayError> {
        Ok(Self {
            api: ProviderApi::new(Provider::Stripe, timeout, summarize)?,
            base_url: format!("{}/v1", base_url.trim_end_matches('/')),
            authorization: SecretString::from(format!("Bearer {}", api_key.expose_secret())),
            success_url,
            cancel_url,
        })
    }

    async fn post(
        &self,
        path: &str,
        fields: &[(&str, String)],
        account: &str,
        idempotency_key: Option<&str>,
    ) -> Result<Created, GatewayError> {
        let mut request = self
            .api
            .http()
            .post(format!("{}/{path}", self.base_url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(fields));
        if !account.is_empty() {
            request = request.header("stripe-account", account);
        }
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        self.api.send(request, self.authorization.expose_secret()).await
    }
}

#[async_trait]
impl SubscriptionGateway for StripeSubscriptions {
    async fn create_price(&self, plan: &Plan) -> Result<String, GatewayError> {
        let product = self
            .post(
                "products",
                &[
                    ("name", plan.name.clone()),
                    ("metadata[payhook_plan]", plan.code.clone()),
                ],
                "",
                Some(&format!("payhook-product-{}", plan.id)),
            )
            .await?;
        let price = self
            .post(
                "prices",
                &[
                    ("product", product.id),
                    ("unit_amount", plan.amount.amount_minor().to_string()),
                    ("currency", plan.amount.currency().code().to_ascii_lowercase()),
                    ("recurring[interval]", plan.interval.as_str().to_owned()),
                    ("recurring[interval_count]", plan.interval_count.to_string()),
                    ("metadata[payhook_plan]", plan.code.clone()),
                ],
                "",
                Some(&format!("payhook-price-{}", plan.id)),
            )
            .await?;
        Ok(price.id)
    }

    async fn open_subscription_checkout(
        &self,
        request: &SubscriptionCheckoutRequest,
    ) -> Result<SubscriptionCheckout, GatewayError> {
        let success_url = request
            .success_url
            .clone()
            .or_else(|| self.success_url.clone())
            .ok_or_else(|| GatewayError::Invalid {
                field: "success_url",
                message: "a Stripe subscription starts on a Checkout page, which needs a success_url: send one, or set providers.stripe.success_url".into(),
            })?;
        let id = request.subscription_id.to_string();
        let metadata_key = format!("metadata[{SUBSCRIPTION_ID_METADATA_KEY}]");
        let subscription_metadata_key = format!("subscription_data[metadata][{SUBSCRIPTION_ID_METADATA_KEY}]");
        let mut fields = vec![
            ("mode", "subscription".to_owned()),
            ("line_items[0][price]", request.price_id.clone()),
            ("line_items[0][quantity]", "1".to_owned()),
            ("success_url", success_url),
            ("client_reference_id", id.clone()),
            (metadata_key.as_str(), id.clone()),
            (subscription_metadata_key.as_str(), id.clone()),
        ];
        if let Some(cancel_url) = request.cancel_url.clone().or_else(|| self.cancel_url.clone()) {
            fields.push(("cancel_url", cancel_url));
        }
        if let Some(email) = &request.customer_email {
            fields.push(("customer_email", email.clone()));
        }
        if request.trial_days > 0 {
            fields.push(("subscription_data[trial_period_days]", request.trial_days.to_string()));
        }
        let session = self
            .post(
                "checkout/sessions",
                &fields,
                "",
                Some(&format!("payhook-subscription-{id}")),
            )
            .await?;
        let checkout_url = session.url.ok_or_else(|| GatewayError::Unavailable {
            provider: Provider::Stripe,
            message: "the Checkout Session came without a url".into(),
        })?;
        Ok(SubscriptionCheckout {
            session_id: session.id,
            checkout_url,
        })
    }

    async fn expire_subscription_checkout(&self, session_id: &str) -> Result<(), GatewayError> {
        if !session_id.starts_with(crate::checkout_session::SESSION_PREFIX)
            || !session_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(GatewayError::Invalid {
                field: "session_id",
                message: format!("{session_id:?} is not a Checkout Session id"),
            });
        }
        self.post(&format!("checkout/sessions/{session_id}/expire"), &[], "", None)
            .await?;
        Ok(())
    }

    async fn cancel_subscription(
        &self,
        account: &str,
        provider_ref: &str,
        at_period_end: bool,
    ) -> Result<(), GatewayError> {
        if provider_ref.is_empty() || !provider_ref.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(GatewayError::Invalid {
                field: "provider_ref",
                message: format!("{provider_ref:?} is not a Stripe subscription id"),
            });
        }
        if at_period_end {
            self.post(
                &format!("subscriptions/{provider_ref}"),
                &[("cancel_at_period_end", "true".to_owned())],
                account,
                None,
            )
            .await?;
        } else {
            let mut request = self
                .api
                .http()
                .delete(format!("{}/subscriptions/{provider_ref}", self.base_url));
            if !account.is_empty() {
                request = request.header("stripe-account", account);
            }
            let _: Value = self.api.send(request, self.authorization.expose_secret()).await?;
        }
        Ok(())
    }
}
