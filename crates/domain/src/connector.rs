//! What one provider crate gives payhook: everything payhook knows about that
//! provider, as one unit. A provider crate implements [`Connector`]; the application
//! registers it once and wires every provider the same way (see
//! `docs/adding-a-provider.md`).
//!
//! Pure: the trait and the unit are plain types; the provider crates bring the I/O.

use crate::ports::PaymentGateway;
use crate::source::WebhookSource;
use crate::{GatewayError, PaymentId, Provider};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

/// A provider: its name, the names of the secrets its deliveries carry, its
/// configuration and how to build its unit from it.
pub trait Connector {
    const PROVIDER: Provider;

    /// Header names (case-insensitive) whose values are secrets in this provider's
    /// deliveries: the forensic log stores them as `[redacted]`. Known without any
    /// configuration, so they are redacted even while the provider is disabled.
    const SECRET_HEADERS: &'static [&'static str];

    /// Query parameters whose values are secrets (the per-payment callback token).
    const SECRET_QUERY_PARAMS: &'static [&'static str] = &[];

    /// The provider's `[providers.<name>]` table, less `enabled`. Required fields
    /// are required: an enabled provider without a secret it needs fails to start.
    type Config: DeserializeOwned;

    /// Builds the provider's unit from its configuration.
    fn connect(config: Self::Config, options: &ConnectOptions) -> Result<ProviderUnit, GatewayError>;
}

/// What the application lends every provider it connects.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// How long the provider's API may take to answer one call.
    pub api_timeout: Duration,
}

/// Everything the application needs of one enabled provider.
#[derive(Clone)]
pub struct ProviderUnit {
    pub provider: Provider,
    /// The inbound webhook protocol: how deliveries are authenticated and parsed.
    pub webhooks: Arc<dyn WebhookSource>,
    /// The payment API (create, read back); `None` when the configuration gives no
    /// API credentials: the provider is then webhook-only.
    pub payments: Option<Arc<dyn PaymentGateway>>,
    /// Correctly authenticated sample deliveries, for `payhook simulate`.
    pub simulator: Arc<dyn Simulator>,
    /// The provider's billing objects read as raw JSON, for the Stripe mirror
    /// (`payhook stripe resync|backfill`, ties the event order cannot decide); `None`
    /// for providers without a mirror, or without API credentials.
    pub objects: Option<Arc<dyn crate::ports::StripeObjectApi>>,
    /// Subscriptions the provider runs itself (Stripe Billing); `None` where payhook
    /// runs the schedule with one payment request per period.
    pub subscriptions: Option<Arc<dyn crate::ports::SubscriptionGateway>>,
}

impl std::fmt::Debug for ProviderUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderUnit")
            .field("provider", &self.provider)
            .field("payments", &self.payments.is_some())
            .finish_non_exhaustive()
    }
}

/// What `payhook simulate` asks a provider's simulator for.
#[derive(Debug, Clone)]
pub struct SampleRequest {
    /// The provider's own name of the event (`payment_intent.succeeded`, `paid`, ...).
    pub event: String,
    /// The payhook payment the event is about.
    pub payment: Option<PaymentId>,
    /// The provider's id of that payment, when the gateway knows it.
    pub provider_ref: Option<String>,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// The payment's callback token, for providers authenticated by one.
    pub token: Option<String>,
    /// Authenticate it wrongly, to see the rejection.
    pub bad_signature: bool,
    /// Half the money: a partial refund or payment, where the event has one.
    pub partial: bool,
    /// The Stripe Connect account the event is about (`acct_…`); `None`: the platform.
    pub account: Option<String>,
    /// The billing object the event is about (`cus_…`, `in_…`), so runs can update one
    /// object; a fresh one when `None`.
    pub object: Option<String>,
    /// The payhook subscription a Stripe subscription or invoice event is about (its
    /// `metadata.payhook_subscription_id`); `None`: a subscription payhook adopts.
    pub subscription: Option<crate::SubscriptionId>,
    /// When the delivery is sent (signatures and event times are stamped with it).
    pub now: DateTime<Utc>,
}

/// One delivery as the provider would send it to `/webhooks/<provider>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleDelivery {
    /// Appended to the webhook URL (`payment_id=…&token=…`); empty for none.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimulateError {
    #[error("unknown {provider} event {event:?}; known: {known}")]
    UnknownEvent {
        provider: Provider,
        event: String,
        known: String,
    },
    /// Something the sample needs was not given (a payment, a token).
    #[error("{0}")]
    Missing(String),
}

/// Builds the deliveries a provider sends, authenticated as the provider does.
pub trait Simulator: Send + Sync {
    /// The events it can build, by the provider's own names.
    fn events(&self) -> &'static [&'static str];

    fn sample(&self, request: &SampleRequest) -> Result<SampleDelivery, SimulateError>;
}

/// An [`SimulateError::UnknownEvent`] unless `request.event` is one of `known`.
pub fn known_event(provider: Provider, known: &[&str], request: &SampleRequest) -> Result<(), SimulateError> {
    if known.contains(&request.event.as_str()) {
        Ok(())
    } else {
        Err(SimulateError::UnknownEvent {
            provider,
            event: request.event.clone(),
            known: known.join(", "),
        })
    }
}

/// The query string of a delivery authenticated by a per-payment token
/// (`payment_id=…&token=…`, see `source::PaymentToken`): the sample's payment and
/// token, or a wrong token when `bad_signature` asks for one.
pub fn payment_token_query(provider: Provider, request: &SampleRequest) -> Result<String, SimulateError> {
    let payment = request.payment.ok_or_else(|| {
        SimulateError::Missing(format!(
            "{provider} callbacks name a payhook payment: pass --payment <id>"
        ))
    })?;
    let token = if request.bad_signature {
        "0".repeat(32)
    } else {
        request.token.clone().ok_or_else(|| {
            SimulateError::Missing(format!(
                "{provider} callbacks carry the payment's callback token: pass --token (payhook stores only its hash)"
            ))
        })?
    };
    Ok(format!("payment_id={payment}&token={token}"))
}

/// Deserializers for provider configuration fields, so a bad value is an error
/// naming its key (the application reports the key path).
pub mod config {
    use secrecy::{ExposeSecret, SecretString};
    use serde::{Deserialize, Deserializer};

    /// A secret that must not be blank. Its `Debug` output is redacted.
    pub fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
        let value = SecretString::deserialize(d)?;
        if value.expose_secret().trim().is_empty() {
            return Err(serde::de::Error::custom("must not be empty"));
        }
        Ok(value)
    }

    /// [`secret`] for an optional key: absent is `None`, present must not be blank.
    pub fn optional_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
        secret(d).map(Some)
    }

    /// A list of secrets with at least one that is not blank; blank ones are dropped.
    /// A single string is split at commas, as environment variables give lists
    /// (`PAYHOOK__PROVIDERS__STRIPE__WEBHOOK_SECRETS=whsec_a,whsec_b`).
    pub fn secrets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SecretString>, D::Error> {
        let values = secrets_or_none(d)?;
        if values.is_empty() {
            return Err(serde::de::Error::custom("must list at least one secret"));
        }
        Ok(values)
    }

    /// As [`secrets`], but an empty list is allowed (a feature off until keys are set).
    pub fn secrets_or_none<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SecretString>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            Many(Vec<SecretString>),
            One(SecretString),
        }
        let values = match OneOrMany::deserialize(d)? {
            OneOrMany::Many(values) => values,
            OneOrMany::One(joined) => joined
                .expose_secret()
                .split(',')
                .map(|s| SecretString::from(s.trim().to_owned()))
                .collect(),
        };
        Ok(values
            .into_iter()
            .filter(|v| !v.expose_secret().trim().is_empty())
            .collect())
    }

    /// A string that must not be blank (a secret, a code).
    pub fn non_blank<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let value = String::deserialize(d)?;
        if value.trim().is_empty() {
            return Err(serde::de::Error::custom("must not be empty"));
        }
        Ok(value)
    }

    /// An `http://` or `https://` URL.
    pub fn http_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let value = String::deserialize(d)?;
        check_http_url(&value).map_err(serde::de::Error::custom)?;
        Ok(value)
    }

    pub fn check_http_url(value: &str) -> Result<(), String> {
        if value.starts_with("https://") || value.starts_with("http://") {
            Ok(())
        } else {
            Err(format!("must be an http(s) URL, got {value:?}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::config::*;
    use secrecy::{ExposeSecret, SecretString};
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Example {
        #[serde(deserialize_with = "secret")]
        secret: SecretString,
        #[serde(deserialize_with = "secrets")]
        secrets: Vec<SecretString>,
        #[serde(deserialize_with = "http_url")]
        url: String,
    }

    fn parse(json: &str) -> Result<Example, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn blank_secrets_and_non_http_urls_are_refused() {
        let ok = parse(r#"{"secret":"s","secrets":["","a"],"url":"https://x"}"#).unwrap();
        assert_eq!(ok.secret.expose_secret(), "s");
        assert_eq!(ok.secrets.len(), 1);
        assert_eq!(ok.url, "https://x");
        assert!(!format!("{ok:?}").contains("\"s\""), "secrets stay out of Debug");
        let joined = parse(r#"{"secret":"s","secrets":"a, b","url":"https://x"}"#).unwrap();
        let joined: Vec<&str> = joined.secrets.iter().map(|s| s.expose_secret()).collect();
        assert_eq!(joined, ["a", "b"], "a string is a comma-separated list");
        assert!(parse(r#"{"secret":" ","secrets":["a"],"url":"https://x"}"#)
            .unwrap_err()
            .contains("must not be empty"));
        assert!(parse(r#"{"secret":"s","secrets":[" "],"url":"https://x"}"#)
            .unwrap_err()
            .contains("at least one"));
        assert!(parse(r#"{"secret":"s","secrets":["a"],"url":"ftp://x"}"#)
            .unwrap_err()
            .contains("http(s)"));
    }
}
