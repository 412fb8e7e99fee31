//! Xendit for payhook, as one unit ([`Xendit`]): its configuration, invoice
//! callbacks authenticated by their static `x-callback-token` (compared in constant
//! time) and mapped onto domain events with Xendit's major-unit amounts converted
//! exactly, the invoice API (`PaymentGateway`) and sample callbacks for
//! `payhook simulate`. Depends on `payhook-domain` only.

mod callback;
mod client;
mod simulator;

pub use callback::{parse_callback, primary_fields};
pub use client::{XenditClient, DEFAULT_API_BASE_URL};
pub use simulator::XenditSimulator;

use payhook_domain::connector::{config, ConnectOptions, Connector, ProviderUnit};
use payhook_domain::source::{AuthError, Delivery, ParseError, Parsed, WebhookSource};
use payhook_domain::{GatewayError, PrimaryFields, Provider};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The header Xendit puts its account's callback verification token in.
pub const CALLBACK_TOKEN_HEADER: &str = "x-callback-token";

/// Xendit, as payhook registers it.
pub struct Xendit;

/// `[providers.xendit]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XenditConfig {
    /// The account's callback verification token (Dashboard → Settings → Callbacks).
    #[serde(deserialize_with = "config::secret")]
    pub callback_token: SecretString,
    /// Secret API key for creating invoices; without one, Xendit is callbacks-only.
    #[serde(default, deserialize_with = "config::optional_secret")]
    pub secret_key: Option<SecretString>,
    #[serde(default = "default_api_base_url", deserialize_with = "config::http_url")]
    pub api_base_url: String,
    /// Written to `metadata.app` of invoices payhook creates; callbacks tagged with
    /// another app are acknowledged and ignored.
    #[serde(default = "default_app_tag", deserialize_with = "config::non_blank")]
    pub app_tag: String,
}

fn default_api_base_url() -> String {
    DEFAULT_API_BASE_URL.to_owned()
}

fn default_app_tag() -> String {
    "payhook".to_owned()
}

impl Connector for Xendit {
    const PROVIDER: Provider = Provider::Xendit;
    const SECRET_HEADERS: &'static [&'static str] = &[CALLBACK_TOKEN_HEADER];
    type Config = XenditConfig;

    fn connect(config: XenditConfig, options: &ConnectOptions) -> Result<ProviderUnit, GatewayError> {
        let payments = match &config.secret_key {
            Some(key) => Some(Arc::new(XenditClient::new(
                &config.api_base_url,
                key,
                &config.app_tag,
                options.api_timeout,
            )?) as _),
            None => None,
        };
        Ok(ProviderUnit {
            provider: Provider::Xendit,
            webhooks: Arc::new(XenditWebhooks::new(
                config.callback_token.clone(),
                config.app_tag.clone(),
            )),
            payments,
            simulator: Arc::new(XenditSimulator::new(config.callback_token, config.app_tag)),
            objects: None,
            subscriptions: None,
        })
    }
}

/// Xendit's invoice callback protocol, ready to plug into the ingest service.
pub struct XenditWebhooks {
    callback_token: SecretString,
    app_tag: String,
}

impl XenditWebhooks {
    /// `app_tag` is what payhook puts in `metadata.app` of the invoices it creates; a
    /// callback tagged with another app's name is acknowledged and ignored.
    pub fn new(callback_token: SecretString, app_tag: String) -> Self {
        Self {
            callback_token,
            app_tag,
        }
    }
}

impl WebhookSource for XenditWebhooks {
    fn provider(&self) -> Provider {
        Provider::Xendit
    }

    fn authenticate(&self, delivery: &Delivery<'_>) -> Result<(), AuthError> {
        let presented = delivery
            .header(CALLBACK_TOKEN_HEADER)
            .ok_or_else(|| AuthError::MissingToken("missing x-callback-token header".into()))?;
        let expected = self.callback_token.expose_secret().as_bytes();
        if bool::from(presented.as_bytes().ct_eq(expected)) {
            Ok(())
        } else {
            Err(AuthError::InvalidToken("x-callback-token does not match".into()))
        }
    }

    fn parse(&self, delivery: &Delivery<'_>) -> Result<Parsed, ParseError> {
        parse_callback(delivery.body, &self.app_tag)
    }

    fn primary_fields(&self, body: &[u8]) -> PrimaryFields {
        primary_fields(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn delivery(headers: &[(String, String)]) -> Delivery<'_> {
        Delivery {
            headers,
            query: "",
            body: b"{}",
            received_at: Utc::now(),
        }
    }

    #[test]
    fn callback_token_must_be_present_and_equal() {
        let x = XenditWebhooks::new(SecretString::from("tok_right"), "payhook".into());
        let h = |v: &str| vec![("X-CALLBACK-TOKEN".to_owned(), v.to_owned())];
        assert_eq!(x.authenticate(&delivery(&h("tok_right"))), Ok(()));
        assert!(matches!(
            x.authenticate(&delivery(&h("tok_wrong"))),
            Err(AuthError::InvalidToken(_))
        ));
        assert!(matches!(
            x.authenticate(&delivery(&h("tok_righ"))),
            Err(AuthError::InvalidToken(_))
        ));
        assert!(matches!(
            x.authenticate(&delivery(&h(""))),
            Err(AuthError::InvalidToken(_))
        ));
        assert!(matches!(
            x.authenticate(&delivery(&[])),
            Err(AuthError::MissingToken(_))
        ));
    }

    #[test]
    fn errors_never_echo_the_token() {
        let x = XenditWebhooks::new(SecretString::from("tok_right"), "payhook".into());
        let h = vec![("x-callback-token".to_owned(), "tok_guess".to_owned())];
        let err = x.authenticate(&delivery(&h)).unwrap_err().to_string();
        assert!(!err.contains("tok_"), "{err}");
    }
}
