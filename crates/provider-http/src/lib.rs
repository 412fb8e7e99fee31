//! What every provider API client shares: the HTTP client (ring as the TLS crypto
//! provider, a timeout), and one mapping of answers onto `GatewayError`: transport
//! failures, timeouts and 5xx are `Unavailable` (worth retrying), 4xx `Rejected`,
//! with the provider's error summarized, never its whole body. Not an adapter: the
//! adapters share it instead of depending on each other.

use payhook_domain::{GatewayError, Provider};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;

/// Turns a provider's error body into a short summary (its code and message).
pub type Summarize = fn(&Value) -> Option<String>;

pub struct ProviderApi {
    provider: Provider,
    http: reqwest::Client,
    summarize: Summarize,
}

impl ProviderApi {
    pub fn new(provider: Provider, timeout: Duration, summarize: Summarize) -> Result<Self, GatewayError> {
        // One TLS crypto provider for the binary (ring); a no-op if one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| unavailable(provider, format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            provider,
            http,
            summarize,
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends `request` with `authorization` and reads a JSON answer of type `T`.
    pub async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        authorization: &str,
    ) -> Result<T, GatewayError> {
        let response = request
            .header("authorization", authorization)
            .send()
            .await
            .map_err(|e| {
                self.unavailable(if e.is_timeout() {
                    "no answer in time".to_owned()
                } else {
                    format!("request failed: {e}")
                })
            })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.unavailable(format!("reading the answer failed: {e}")))?;
        if status.is_success() {
            // An empty answer (some DELETEs) reads as JSON null.
            let json: &[u8] = if body.is_empty() { b"null" } else { &body };
            return serde_json::from_slice(json).map_err(|e| self.unavailable(format!("unexpected answer: {e}")));
        }
        let summary = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| (self.summarize)(&v))
            .map_or_else(|| status.as_u16().to_string(), |s| format!("{} {s}", status.as_u16()));
        if status.is_client_error() {
            Err(GatewayError::Rejected {
                provider: self.provider,
                status: status.as_u16(),
                message: summary,
            })
        } else {
            Err(self.unavailable(summary))
        }
    }

    pub fn unavailable(&self, message: String) -> GatewayError {
        unavailable(self.provider, message)
    }
}

fn unavailable(provider: Provider, message: String) -> GatewayError {
    GatewayError::Unavailable { provider, message }
}
