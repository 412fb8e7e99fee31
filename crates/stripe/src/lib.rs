//! Stripe for payhook, as one unit ([`Stripe`]): its configuration, the
//! `Stripe-Signature` check (every `v1` against every configured secret, so secret
//! rotation works), the mapping of Stripe events onto domain events, PaymentIntents
//! through the Stripe SDK (`PaymentGateway`) and signed sample events for
//! `payhook simulate`. Depends on `payhook-domain` only, never on another adapter.

pub mod billing;
mod checkout_session;
mod events;
mod gateway;
mod objects;
mod simulator;
mod subscriptions;
mod verify;

pub use events::{parse_event, primary_fields};
pub use gateway::{CheckoutMode, StripeGateway, DEFAULT_API_BASE_URL};
pub use objects::StripeObjects;
pub use simulator::StripeSimulator;
pub use verify::{signature_header, SignatureError, SignatureVerifier, DEFAULT_TOLERANCE_SECS};

use payhook_domain::connector::{config, ConnectOptions, Connector, ProviderUnit};
use payhook_domain::source::{AuthError, Delivery, ParseError, Parsed, WebhookSource};
use payhook_domain::{GatewayError, PrimaryFields, Provider};
use secrecy::SecretString;
use serde::Deserialize;
use std::sync::Arc;

/// Stripe, as payhook registers it.
pub struct Stripe;

/// `[providers.stripe]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeConfig {
    /// Every active endpoint signing secret (`whsec_…`); several during rotation.
    #[serde(deserialize_with = "config::secrets")]
    pub webhook_secrets: Vec<SecretString>,
    /// The signing secrets of Connect endpoints (events about connected accounts,
    /// which Stripe signs with the Connect endpoint's own secret); accepted on the same
    /// route as `webhook_secrets`.
    #[serde(default, deserialize_with = "config::secrets_or_none")]
    pub connect_webhook_secrets: Vec<SecretString>,
    /// How far a signature's timestamp may be from now, either way.
    #[serde(default = "default_tolerance", deserialize_with = "positive")]
    pub tolerance_secs: i64,
    /// Secret API key (`sk_…`) for creating PaymentIntents; without one, Stripe is
    /// webhook-only and `POST /payments` refuses it.
    #[serde(default, deserialize_with = "config::optional_secret")]
    pub api_key: Option<SecretString>,
    #[serde(default = "default_api_base_url", deserialize_with = "config::http_url")]
    pub api_base_url: String,
    /// How customers pay the payments payhook creates: `payment_intent` (the answer
    /// carries the PaymentIntent's `client_secret`, for Stripe.js) or
    /// `checkout_session` (the answer carries Stripe's hosted page, `checkout_url`).
    #[serde(default)]
    pub checkout: Checkout,
    /// Checkout Sessions: where Stripe sends the customer after paying, and after
    /// giving up, unless a request names its own `success_url` / `cancel_url`.
    #[serde(default, deserialize_with = "optional_http_url")]
    pub success_url: Option<String>,
    #[serde(default, deserialize_with = "optional_http_url")]
    pub cancel_url: Option<String>,
    /// Keep the Stripe mirror (`stripe_objects`): on by default. Off, events carry no
    /// object, events about billing objects only are ignored as before, and the
    /// personal data in those objects is not copied (docs/stripe-mirror.md).
    #[serde(default = "mirror_by_default")]
    pub mirror: bool,
}

fn mirror_by_default() -> bool {
    true
}

/// `providers.stripe.checkout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Checkout {
    #[default]
    PaymentIntent,
    CheckoutSession,
}

fn optional_http_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(d)?;
    if let Some(url) = &value {
        config::check_http_url(url).map_err(serde::de::Error::custom)?;
    }
    Ok(value)
}

fn default_tolerance() -> i64 {
    DEFAULT_TOLERANCE_SECS
}

fn default_api_base_url() -> String {
    DEFAULT_API_BASE_URL.to_owned()
}

fn positive<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let value = i64::deserialize(d)?;
    if value <= 0 {
        return Err(serde::de::Error::custom("must be positive"));
    }
    Ok(value)
}

impl StripeConfig {
    /// Webhooks signed with `secret`, the default tolerance, no API key.
    pub fn with_secret(secret: &str) -> Self {
        Self {
            webhook_secrets: vec![SecretString::from(secret.to_owned())],
            connect_webhook_secrets: Vec::new(),
            tolerance_secs: DEFAULT_TOLERANCE_SECS,
            api_key: None,
            api_base_url: default_api_base_url(),
            checkout: Checkout::default(),
            success_url: None,
            cancel_url: None,
            mirror: true,
        }
    }
}

impl Connector for Stripe {
    const PROVIDER: Provider = Provider::Stripe;
    const SECRET_HEADERS: &'static [&'static str] = &["stripe-signature"];
    type Config = StripeConfig;

    fn connect(config: StripeConfig, options: &ConnectOptions) -> Result<ProviderUnit, GatewayError> {
        let objects = match &config.api_key {
            Some(key) => Some(Arc::new(StripeObjects::new(&config.api_base_url, key, options.api_timeout)?) as _),
            None => None,
        };
        let payments = match &config.api_key {
            Some(key) => {
                let mode = match config.checkout {
                    Checkout::PaymentIntent => CheckoutMode::PaymentIntent,
                    Checkout::CheckoutSession => CheckoutMode::CheckoutSession {
                        success_url: config.success_url.clone(),
                        cancel_url: config.cancel_url.clone(),
                    },
                };
                let gateway = StripeGateway::new(&config.api_base_url, key, options.api_timeout)?.with_checkout(mode);
                Some(Arc::new(gateway) as _)
            }
            None => None,
        };
        let subscriptions = match &config.api_key {
            Some(key) => Some(Arc::new(subscriptions::StripeSubscriptions::new(
                &config.api_base_url,
                key,
                options.api_timeout,
                config.success_url.clone(),
                config.cancel_url.clone(),
            )?) as _),
            None => None,
        };
        let signing_secret = config
            .webhook_secrets
            .first()
            .cloned()
            .unwrap_or_else(|| SecretString::from(String::new()));
        Ok(ProviderUnit {
            provider: Provider::Stripe,
            webhooks: Arc::new(StripeWebhooks::new(&config)),
            payments,
            simulator: Arc::new(
                StripeSimulator::new(signing_secret)
                    .with_connect_secret(config.connect_webhook_secrets.first().cloned()),
            ),
            objects,
            subscriptions,
        })
    }
}

/// Stripe's webhook protocol, ready to plug into the ingest service.
pub struct StripeWebhooks {
    verifier: SignatureVerifier,
    mirror: bool,
}

impl StripeWebhooks {
    pub fn new(config: &StripeConfig) -> Self {
        Self {
            // A delivery may be signed by the platform endpoint's secret or a Connect
            // endpoint's: either one verifies it.
            verifier: SignatureVerifier::new(
                config
                    .webhook_secrets
                    .iter()
                    .chain(&config.connect_webhook_secrets)
                    .cloned()
                    .collect(),
                config.tolerance_secs,
            ),
            mirror: config.mirror,
        }
    }
}

impl WebhookSource for StripeWebhooks {
    fn provider(&self) -> Provider {
        Provider::Stripe
    }

    fn authenticate(&self, delivery: &Delivery<'_>) -> Result<(), AuthError> {
        let header = delivery.header("stripe-signature");
        self.verifier
            .verify(header, delivery.body, delivery.received_at.timestamp())
            .map_err(|e| match e {
                SignatureError::MissingHeader => AuthError::Missing(e.to_string()),
                other => AuthError::Invalid(other.to_string()),
            })
    }

    fn parse(&self, delivery: &Delivery<'_>) -> Result<Parsed, ParseError> {
        if self.mirror {
            parse_event(delivery.body)
        } else {
            events::parse_event_without_mirror(delivery.body)
        }
    }

    fn primary_fields(&self, body: &[u8]) -> PrimaryFields {
        primary_fields(body)
    }
}
