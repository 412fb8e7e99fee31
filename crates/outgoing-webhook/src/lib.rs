//! payhook's outgoing webhook: an `EventPublisher` that POSTs every domain event to the
//! merchant's endpoint (`notify.url`), signed the Standard Webhooks way
//! (<https://www.standardwebhooks.com>): headers `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, the key
//! being the base64 part of a `whsec_…` secret. Retries are the outbox's: a non-2xx
//! answer or a timeout fails the delivery and the relay tries again with backoff.
//! Depends on `payhook-domain` only.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use payhook_domain::ports::EventPublisher;
use payhook_domain::{OutboxMessage, PublishError};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use std::time::Duration;

const NAME: &str = "notify webhook";

#[derive(Debug, thiserror::Error)]
pub enum OutgoingWebhookError {
    #[error("notify.secret must be a Standard Webhooks secret: whsec_ followed by base64")]
    BadSecret,
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

pub struct OutgoingWebhook {
    client: reqwest::Client,
    url: String,
    key: SecretKey,
}

/// The decoded signing key; never printed.
struct SecretKey(Vec<u8>);

impl OutgoingWebhook {
    pub fn new(url: &str, secret: &SecretString, timeout: Duration) -> Result<Self, OutgoingWebhookError> {
        let encoded = secret.expose_secret();
        let encoded = encoded.strip_prefix("whsec_").unwrap_or(encoded);
        let key = BASE64.decode(encoded).map_err(|_| OutgoingWebhookError::BadSecret)?;
        if key.is_empty() {
            return Err(OutgoingWebhookError::BadSecret);
        }
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            // The merchant's endpoint must answer itself; a redirect is a misconfiguration.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OutgoingWebhookError::Client(e.to_string()))?;
        Ok(Self {
            client,
            url: url.to_owned(),
            key: SecretKey(key),
        })
    }
}

/// reqwest is built without a TLS crypto provider (one provider for the whole binary:
/// ring, see the workspace Cargo.toml); install it unless the embedding program chose one.
fn install_crypto_provider() {
    // Err means a provider is already installed, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `v1,<base64 signature>` of one delivery.
pub fn signature(key: &[u8], webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(webhook_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// The body of a delivery: the Standard Webhooks shape `{type, timestamp, data}`.
pub fn body(message: &OutboxMessage) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "type": message.topic,
        "timestamp": message.created_at,
        "data": message.payload,
    }))
    .unwrap_or_default()
}

/// Stable across retries of one message, so the merchant can deduplicate.
pub fn webhook_id(message: &OutboxMessage) -> String {
    format!("msg_payhook_{}", message.id)
}

#[async_trait::async_trait]
impl EventPublisher for OutgoingWebhook {
    async fn publish(&self, message: &OutboxMessage) -> Result<(), PublishError> {
        let fail = |reason: String| PublishError {
            subscriber: NAME.to_owned(),
            reason,
        };
        let id = webhook_id(message);
        let body = body(message);
        // The time of this attempt, so the receiver's tolerance check passes on retries.
        let timestamp = chrono::Utc::now().timestamp();
        let response = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature(&self.key.0, &id, timestamp, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| fail(format!("request failed: {e}")))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(fail(format!("endpoint answered {status}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's own example.
    #[test]
    fn signature_matches_the_specification_example() {
        let key = BASE64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_must_be_base64() {
        let url = "http://127.0.0.1:9/";
        let t = Duration::from_secs(1);
        assert!(OutgoingWebhook::new(url, &SecretString::from("whsec_not base64!"), t).is_err());
        assert!(OutgoingWebhook::new(url, &SecretString::from("whsec_"), t).is_err());
        assert!(OutgoingWebhook::new(url, &SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), t).is_ok());
    }
}
