//! QPay v2 for payhook, as one unit ([`QPay`]). QPay signs nothing: payhook gives
//! each invoice a callback URL with a per-payment token (checked by the ingest
//! service against the stored hash), treats a callback as a trigger only, and
//! confirms with `POST /payment/check` before anything is marked paid. Its
//! configuration, the invoice client and sample callbacks live here too. Depends on
//! `payhook-domain` only.

mod client;

pub use client::{wire, QPayClient, QPayCredentials};

use chrono::{DateTime, Utc};
use payhook_domain::connector::{
    config, known_event, payment_token_query, ConnectOptions, Connector, ProviderUnit, SampleDelivery, SampleRequest,
    SimulateError, Simulator,
};
use payhook_domain::source::{AuthError, Authentication, Delivery, ParseError, Parsed, PaymentToken, WebhookSource};
use payhook_domain::{EventId, GatewayError, PaymentChange, PaymentRef, PrimaryFields, Provider, WebhookEvent};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// The answer QPay expects from a callback URL.
pub const ACKNOWLEDGEMENT: &str = "SUCCESS";
pub const DEFAULT_API_BASE_URL: &str = "https://merchant.qpay.mn/v2";

/// QPay, as payhook registers it.
pub struct QPay;

/// `[providers.qpay]`: creating invoices needs the merchant credentials, and
/// callbacks are authenticated by the per-payment token in the URL payhook builds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QPayConfig {
    #[serde(deserialize_with = "config::non_blank")]
    pub client_id: String,
    #[serde(deserialize_with = "config::secret")]
    pub client_secret: SecretString,
    /// e.g. `MERCHANT_INVOICE`.
    #[serde(deserialize_with = "config::non_blank")]
    pub invoice_code: String,
    /// Includes the version; sandbox: `https://merchant-sandbox.qpay.mn/v2`.
    #[serde(default = "default_api_base_url", deserialize_with = "config::http_url")]
    pub api_base_url: String,
    /// payhook's public base URL as QPay reaches it (`https://pay.example.mn`).
    #[serde(deserialize_with = "config::http_url")]
    pub callback_base_url: String,
}

fn default_api_base_url() -> String {
    DEFAULT_API_BASE_URL.to_owned()
}

impl Connector for QPay {
    const PROVIDER: Provider = Provider::Qpay;
    const SECRET_HEADERS: &'static [&'static str] = &[];
    const SECRET_QUERY_PARAMS: &'static [&'static str] = &["token"];
    type Config = QPayConfig;

    fn connect(config: QPayConfig, options: &ConnectOptions) -> Result<ProviderUnit, GatewayError> {
        let credentials = QPayCredentials {
            client_id: config.client_id,
            client_secret: config.client_secret,
            invoice_code: config.invoice_code,
        };
        let client = QPayClient::new(
            &config.api_base_url,
            credentials,
            &config.callback_base_url,
            options.api_timeout,
        )?;
        Ok(ProviderUnit {
            provider: Provider::Qpay,
            webhooks: Arc::new(QPayCallbacks),
            payments: Some(Arc::new(client)),
            simulator: Arc::new(QPaySimulator),
            objects: None,
            subscriptions: None,
        })
    }
}

/// Sample QPay callbacks: a trigger naming the payment, with its token in the URL.
pub struct QPaySimulator;

const EVENTS: &[&str] = &["paid"];

impl Simulator for QPaySimulator {
    fn events(&self) -> &'static [&'static str] {
        EVENTS
    }

    fn sample(&self, sim: &SampleRequest) -> Result<SampleDelivery, SimulateError> {
        known_event(Provider::Qpay, EVENTS, sim)?;
        // QPay's callback is a trigger: payhook confirms with /payment/check.
        Ok(SampleDelivery {
            query: payment_token_query(Provider::Qpay, sim)?,
            headers: Vec::new(),
            body: serde_json::to_vec(&json!({ "invoice_id": sim.provider_ref })).unwrap_or_default(),
        })
    }
}

/// QPay's invoice callbacks, ready to plug into the ingest service.
pub struct QPayCallbacks;

impl WebhookSource for QPayCallbacks {
    fn provider(&self) -> Provider {
        Provider::Qpay
    }

    /// Sources disagree on whether QPay calls with GET or POST: both are taken.
    fn accepts_method(&self, method: &str) -> bool {
        method == "POST" || method == "GET"
    }

    fn authenticate(&self, delivery: &Delivery<'_>) -> Result<(), AuthError> {
        PaymentToken::from_query(delivery.query).map(|_| ())
    }

    fn authentication(&self) -> Authentication {
        Authentication::PaymentToken
    }

    fn acknowledgement(&self) -> Option<&'static str> {
        Some(ACKNOWLEDGEMENT)
    }

    /// Any body, or none: the callback only says "look at this payment". The dedup key
    /// is the payment (one invoice each) and the claimed paid state, so QPay's repeats
    /// collapse into one event.
    fn parse(&self, delivery: &Delivery<'_>) -> Result<Parsed, ParseError> {
        let token = PaymentToken::from_query(delivery.query).map_err(|e| ParseError(e.to_string()))?;
        let event_id = EventId::parse(format!("{}:PAID", token.payment_id))
            .map_err(|e| ParseError(format!("cannot build an event id: {e}")))?;
        Ok(Parsed::Event(Box::new(WebhookEvent {
            mirror: None,
            subscription: None,
            provider: Provider::Qpay,
            event_id,
            event_type: "qpay.invoice.callback".into(),
            occurred_at: delivery.received_at,
            payment: PaymentRef {
                account: None,
                payment_id: Some(token.payment_id),
                provider_ref: invoice_id(delivery.body),
                aliases: Vec::new(),
            },
            change: PaymentChange::paid(None),
            details: None,
            confirm_with_provider: true,
        })))
    }

    fn primary_fields(&self, body: &[u8]) -> PrimaryFields {
        PrimaryFields {
            external_id: invoice_id(body),
            event_type: Some("qpay.invoice.callback".into()),
            ..PrimaryFields::default()
        }
    }
}

/// `invoice_id` from a JSON body, when QPay sends one.
fn invoice_id(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(body)
        .ok()?
        .get("invoice_id")?
        .as_str()
        .map(str::to_owned)
}

/// QPay's `expires_in`: an absolute epoch when above 1e9 (as seen in the sandbox),
/// otherwise seconds from `now`.
pub fn expiry(expires_in: i64, now: DateTime<Utc>) -> DateTime<Utc> {
    if expires_in > 1_000_000_000 {
        DateTime::from_timestamp(expires_in, 0).unwrap_or(now)
    } else {
        now + chrono::Duration::seconds(expires_in.max(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const ID: &str = "67e55044-10b1-426f-9247-bb680e5fe0c8";

    fn delivery<'a>(query: &'a str, body: &'a [u8]) -> Delivery<'a> {
        Delivery {
            headers: &[],
            query,
            body,
            received_at: Utc.timestamp_opt(1_800_000_000, 0).single().unwrap(),
        }
    }

    #[test]
    fn a_callback_is_a_claim_of_payment_to_confirm_whatever_its_body() {
        let query = format!("payment_id={ID}&token=abc");
        for body in [&b""[..], b"{\"invoice_id\":\"inv-1\"}", b"not json"] {
            let Ok(Parsed::Event(event)) = QPayCallbacks.parse(&delivery(&query, body)) else {
                panic!("every body is a trigger");
            };
            assert_eq!(event.event_id.as_str(), format!("{ID}:PAID"));
            assert_eq!(event.payment.payment_id.map(|p| p.to_string()).as_deref(), Some(ID));
            assert!(event.confirm_with_provider);
            assert_eq!(event.change, PaymentChange::paid(None));
        }
        let Ok(Parsed::Event(event)) = QPayCallbacks.parse(&delivery(&query, b"{\"invoice_id\":\"inv-1\"}")) else {
            panic!()
        };
        assert_eq!(event.payment.provider_ref.as_deref(), Some("inv-1"));
    }

    #[test]
    fn the_token_must_be_in_the_url() {
        assert!(matches!(
            QPayCallbacks.authenticate(&delivery("", b"")),
            Err(AuthError::MissingToken(_))
        ));
        assert!(matches!(
            QPayCallbacks.authenticate(&delivery(&format!("payment_id={ID}"), b"")),
            Err(AuthError::MissingToken(_))
        ));
        assert!(matches!(
            QPayCallbacks.authenticate(&delivery("payment_id=42&token=abc", b"")),
            Err(AuthError::InvalidToken(_))
        ));
        assert_eq!(
            QPayCallbacks.authenticate(&delivery(&format!("payment_id={ID}&token=abc"), b"")),
            Ok(())
        );
        assert!(QPayCallbacks.accepts_method("GET") && QPayCallbacks.accepts_method("POST"));
    }

    #[test]
    fn sample_callbacks_carry_the_payment_and_its_token() {
        let mut sim = SampleRequest {
            event: "paid".into(),
            payment: payhook_domain::PaymentId::parse(ID),
            provider_ref: Some("inv-1".into()),
            amount: 100,
            currency: "MNT".into(),
            token: Some("ab".repeat(16)),
            bad_signature: false,
            partial: false,
            account: None,
            object: None,
            subscription: None,
            now: Utc::now(),
        };
        let d = QPaySimulator.sample(&sim).unwrap();
        assert_eq!(d.query, format!("payment_id={ID}&token={}", "ab".repeat(16)));
        let Ok(Parsed::Event(event)) = QPayCallbacks.parse(&delivery(&d.query, &d.body)) else {
            panic!("a sample parses")
        };
        assert_eq!(event.payment.provider_ref.as_deref(), Some("inv-1"));
        sim.token = None;
        assert!(
            matches!(QPaySimulator.sample(&sim), Err(SimulateError::Missing(_))),
            "the token is needed"
        );
        sim.bad_signature = true;
        assert!(QPaySimulator.sample(&sim).unwrap().query.ends_with(&"0".repeat(32)));
    }

    #[test]
    fn expires_in_is_an_epoch_above_1e9_else_seconds() {
        let now = Utc.timestamp_opt(1_800_000_000, 0).single().unwrap();
        assert_eq!(expiry(3600, now), now + chrono::Duration::seconds(3600));
        assert_eq!(expiry(1_769_756_525, now).timestamp(), 1_769_756_525);
    }
}
