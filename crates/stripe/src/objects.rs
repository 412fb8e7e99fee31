//! Stripe's API read as raw JSON, for the mirror (`payhook stripe resync|backfill`,
//! and ties the event order cannot decide).
//!
//! Not through the SDK: its typed parse knows one API version's fields and refuses
//! values it does not know (a new status, say), and what it keeps is re-serialized.
//! The mirror keeps the object whole, exactly as Stripe sent it: here each object is
//! read as a `RawValue`, the answer's own bytes. The HTTP client is the one every other
//! provider client shares (`payhook-provider-http`): no second HTTP or TLS stack.

use async_trait::async_trait;
use payhook_domain::ports::StripeObjectApi;
use payhook_domain::{GatewayError, ObjectPage, Provider, StripeObjectType};
use payhook_provider_http::ProviderApi;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::time::Duration;

pub struct StripeObjects {
    api: ProviderApi,
    base_url: String,
    authorization: SecretString,
}

/// A list answer: each object's text as sent, and whether more follow.
#[derive(Deserialize)]
struct ListAnswer {
    data: Vec<Box<RawValue>>,
    #[serde(default)]
    has_more: bool,
}

/// Stripe's error body: `{"error": {"type", "code", "message"}}`.
pub(crate) fn summarize(v: &Value) -> Option<String> {
    let error = v.get("error")?;
    let code = error
        .get("code")
        .or_else(|| error.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("error");
    let message = error.get("message").and_then(Value::as_str).unwrap_or_default();
    Some(format!("{code}: {message}"))
}

impl StripeObjects {
    pub fn new(base_url: &str, api_key: &SecretString, timeout: Duration) -> Result<Self, GatewayError> {
        Ok(Self {
            api: ProviderApi::new(Provider::Stripe, timeout, summarize)?,
            base_url: format!("{}/v1", base_url.trim_end_matches('/')),
            authorization: SecretString::from(format!("Bearer {}", api_key.expose_secret())),
        })
    }

    /// A GET of `path?query` as `account` (Connect's `Stripe-Account` header; none for
    /// the platform). The query's names and values are ids, numbers and field names:
    /// nothing in them needs escaping but the brackets, written escaped.
    fn get(&self, path: &str, query: &[(&str, String)], account: &str) -> reqwest::RequestBuilder {
        let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let url = if query.is_empty() {
            format!("{}/{path}", self.base_url)
        } else {
            format!("{}/{path}?{}", self.base_url, query.join("&"))
        };
        let request = self.api.http().get(url);
        if account.is_empty() {
            request
        } else {
            request.header("stripe-account", account)
        }
    }
}

/// Stripe ids are letters, digits and underscores; anything else would change the path.
fn checked_id(id: &str) -> Result<&str, GatewayError> {
    if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(id)
    } else {
        Err(GatewayError::Invalid {
            field: "id",
            message: format!("{id:?} is not a Stripe id"),
        })
    }
}

#[async_trait]
impl StripeObjectApi for StripeObjects {
    async fn retrieve(
        &self,
        account: &str,
        object_type: StripeObjectType,
        object_id: &str,
    ) -> Result<String, GatewayError> {
        let path = format!("{}/{}", object_type.api_path(), checked_id(object_id)?);
        let expand: Vec<(&str, String)> = object_type
            .expansions()
            .iter()
            .map(|e| ("expand%5B%5D", (*e).to_owned()))
            .collect();
        let object: Box<RawValue> = self
            .api
            .send(self.get(&path, &expand, account), self.authorization.expose_secret())
            .await?;
        Ok(object.get().to_owned())
    }

    async fn list(
        &self,
        account: &str,
        object_type: StripeObjectType,
        created_gte: Option<i64>,
        starting_after: Option<String>,
        limit: u32,
    ) -> Result<ObjectPage, GatewayError> {
        let mut query: Vec<(&str, String)> = vec![("limit", limit.clamp(1, 100).to_string())];
        if let Some(after) = &starting_after {
            query.push(("starting_after", checked_id(after)?.to_owned()));
        }
        if let Some(since) = created_gte {
            query.push(("created%5Bgte%5D", since.to_string()));
        }
        let page: ListAnswer = self
            .api
            .send(
                self.get(object_type.api_path(), &query, account),
                self.authorization.expose_secret(),
            )
            .await?;
        Ok(ObjectPage {
            data: page.data.into_iter().map(|o| o.get().to_owned()).collect(),
            has_more: page.has_more,
        })
    }
}
