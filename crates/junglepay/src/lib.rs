//! JunglePay v1 for payhook, as one unit ([`JunglePay`]). JunglePay documents no
//! postback signature, so payhook gives each transaction a `postbackUrl` with a
//! per-payment token (checked by the ingest service against the stored hash) and
//! never trusts the posted status: the worker re-fetches the transaction and applies
//! what the API says. Its configuration, the transactions client and sample
//! postbacks live here too. Depends on `payhook-domain` only.

mod client;
mod simulator;

pub use client::{read_transaction, JunglePayClient};
pub use simulator::JunglePaySimulator;

use payhook_domain::connector::{config, ConnectOptions, Connector, ProviderUnit};
use payhook_domain::source::{AuthError, Authentication, Delivery, ParseError, Parsed, PaymentToken, WebhookSource};
use payhook_domain::{
    DisputeStatus, EventId, GatewayError, PaymentChange, PaymentRef, PaymentStatus, PrimaryFields, ProcessingResult,
    Provider, ProviderPaymentStatus, WebhookEvent,
};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

pub const DEFAULT_API_BASE_URL: &str = "https://api.junglepagamentos.com/v1";

/// JunglePay, as payhook registers it.
pub struct JunglePay;

/// `[providers.junglepay]`: the secret key, and payhook's public base URL for postbacks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JunglePayConfig {
    #[serde(deserialize_with = "config::secret")]
    pub secret_key: SecretString,
    /// Includes the version.
    #[serde(default = "default_api_base_url", deserialize_with = "config::http_url")]
    pub api_base_url: String,
    /// payhook's public base URL as JunglePay reaches it (`https://pay.example.com.br`).
    #[serde(deserialize_with = "config::http_url")]
    pub callback_base_url: String,
}

fn default_api_base_url() -> String {
    DEFAULT_API_BASE_URL.to_owned()
}

impl Connector for JunglePay {
    const PROVIDER: Provider = Provider::Junglepay;
    const SECRET_HEADERS: &'static [&'static str] = &[];
    const SECRET_QUERY_PARAMS: &'static [&'static str] = &["token"];
    type Config = JunglePayConfig;

    fn connect(config: JunglePayConfig, options: &ConnectOptions) -> Result<ProviderUnit, GatewayError> {
        let client = JunglePayClient::new(
            &config.api_base_url,
            &config.secret_key,
            &config.callback_base_url,
            options.api_timeout,
        )?;
        Ok(ProviderUnit {
            provider: Provider::Junglepay,
            webhooks: Arc::new(JunglePayPostbacks),
            payments: Some(Arc::new(client)),
            simulator: Arc::new(JunglePaySimulator),
            objects: None,
            subscriptions: None,
        })
    }
}

/// A JunglePay transaction status as payhook reads it (the mapping in docs/providers.md).
/// `amount`, `refunded` and `paid` are the transaction's own figures in cents.
pub fn provider_status(status: &str, amount: i64, refunded: i64, paid: Option<i64>) -> Option<ProviderPaymentStatus> {
    let status = match status {
        "waiting_payment" | "processing" | "authorized" => ProviderPaymentStatus::new(PaymentStatus::Pending, None),
        // Part of it refunded: still `paid` at JunglePay, with its `refundedAmount`.
        "paid" if refunded > 0 => ProviderPaymentStatus {
            refunded_amount: Some(refunded),
            ..ProviderPaymentStatus::new(PaymentStatus::PartiallyRefunded, Some(amount))
        },
        "paid" => ProviderPaymentStatus::new(PaymentStatus::Paid, Some(amount)),
        // Less than asked for: the domain records it and keeps the payment pending.
        "partially_paid" => ProviderPaymentStatus::new(PaymentStatus::Paid, Some(paid.unwrap_or(0).min(amount - 1))),
        "refused" => ProviderPaymentStatus::new(PaymentStatus::Failed, None),
        "canceled" => ProviderPaymentStatus::new(PaymentStatus::Canceled, None),
        "refunded" => ProviderPaymentStatus {
            refunded_amount: Some(if refunded > 0 { refunded } else { amount }),
            ..ProviderPaymentStatus::new(PaymentStatus::Refunded, None)
        },
        "chargedback" => ProviderPaymentStatus {
            dispute: Some(DisputeStatus::Lost),
            ..ProviderPaymentStatus::new(PaymentStatus::Paid, Some(amount))
        },
        "in_protest" => ProviderPaymentStatus {
            dispute: Some(DisputeStatus::Open),
            ..ProviderPaymentStatus::new(PaymentStatus::Paid, Some(amount))
        },
        _ => return None,
    };
    Some(status)
}

/// JunglePay's postbacks, ready to plug into the ingest service.
pub struct JunglePayPostbacks;

impl WebhookSource for JunglePayPostbacks {
    fn provider(&self) -> Provider {
        Provider::Junglepay
    }

    fn authenticate(&self, delivery: &Delivery<'_>) -> Result<(), AuthError> {
        PaymentToken::from_query(delivery.query).map(|_| ())
    }

    fn authentication(&self) -> Authentication {
        Authentication::PaymentToken
    }

    /// The envelope `{id, type, objectId, data}`; only `transaction` postbacks matter.
    /// The posted status is a claim: the worker applies the re-fetched one.
    fn parse(&self, delivery: &Delivery<'_>) -> Result<Parsed, ParseError> {
        let token = PaymentToken::from_query(delivery.query).map_err(|e| ParseError(e.to_string()))?;
        let envelope: Value =
            serde_json::from_slice(delivery.body).map_err(|e| ParseError(format!("not JSON: {e}")))?;
        let kind = envelope
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| ParseError("no type".into()))?;
        let object_id = match envelope.get("objectId") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(ParseError("no objectId".into())),
        };
        let data = envelope.get("data").cloned().unwrap_or(Value::Null);
        let status = data.get("status").and_then(Value::as_str).unwrap_or_default();
        let event_id = match envelope.get("id") {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => format!(
                "{object_id}:{status}:{}",
                data.get("updatedAt").and_then(Value::as_str).unwrap_or_default()
            ),
        };
        if kind != "transaction" {
            return Ok(Parsed::Ignored {
                event_id: Some(event_id),
                result: ProcessingResult::UnhandledEventType,
                reason: format!("{kind} postbacks are not about payments"),
            });
        }
        let amount = data.get("amount").and_then(Value::as_i64).unwrap_or(0);
        let Some(claimed) = provider_status(status, amount, 0, None) else {
            return Ok(Parsed::Ignored {
                event_id: Some(event_id),
                result: ProcessingResult::UnhandledEventType,
                reason: format!("transaction status {status:?} is not one payhook knows"),
            });
        };
        let change = match claimed.dispute {
            Some(status) => PaymentChange::Dispute { status, detail: None },
            None => PaymentChange::Status {
                to: claimed.status,
                paid_amount: None,
            },
        };
        Ok(Parsed::Event(Box::new(WebhookEvent {
            mirror: None,
            subscription: None,
            provider: Provider::Junglepay,
            event_id: EventId::parse(event_id.as_str())
                .map_err(|e| ParseError(format!("unusable envelope id: {e}")))?,
            event_type: format!("transaction.{status}"),
            occurred_at: delivery.received_at,
            payment: PaymentRef {
                account: None,
                payment_id: Some(token.payment_id),
                provider_ref: Some(object_id),
                aliases: Vec::new(),
            },
            change,
            details: None,
            confirm_with_provider: true,
        })))
    }

    fn primary_fields(&self, body: &[u8]) -> PrimaryFields {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return PrimaryFields::default();
        };
        let text = |v: Option<&Value>| match v {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        PrimaryFields {
            event_id: text(v.get("id")),
            event_type: text(v.get("type")),
            external_id: text(v.get("objectId")),
            provider_status: text(v.pointer("/data/status")),
            amount: v.pointer("/data/amount").and_then(Value::as_i64),
        }
    }
}

#[cfg(test)]
mod tests;
