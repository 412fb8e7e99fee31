//! What the forensic log keeps of every inbound webhook request, and its outcome.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const REDACTED: &str = "[redacted]";

/// Which header names and query parameters hold secrets, so the forensic log stores
/// `[redacted]` in their place. By rule, any name that says credential
/// ([`says_credential`]); besides, the HTTP credentials every request may carry, and
/// the names each provider's deliveries use (its `Connector`), whatever they are called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    headers: Vec<String>,
    query_params: Vec<String>,
}

impl Default for Redaction {
    fn default() -> Self {
        Self {
            headers: ["authorization", "proxy-authorization", "cookie", "set-cookie"]
                .map(str::to_owned)
                .to_vec(),
            query_params: Vec::new(),
        }
    }
}

/// Whether a header or query parameter name says it carries a credential:
/// authorization, cookie, or a name containing token, secret, signature, password,
/// api-key / api_key / apikey (case-insensitive). A new provider's secret header is
/// then kept out of the forensic log even before anyone lists it.
pub fn says_credential(name: &str) -> bool {
    const WHOLE: [&str; 4] = ["authorization", "proxy-authorization", "cookie", "set-cookie"];
    const PARTS: [&str; 7] = [
        "token",
        "secret",
        "signature",
        "password",
        "api-key",
        "api_key",
        "apikey",
    ];
    // Runs for every header of every webhook: compared in place, no lower-cased copy.
    let contains = |part: &str| {
        name.as_bytes()
            .windows(part.len())
            .any(|w| w.eq_ignore_ascii_case(part.as_bytes()))
    };
    WHOLE.iter().any(|whole| name.eq_ignore_ascii_case(whole)) || PARTS.iter().any(|part| contains(part))
}

impl Redaction {
    /// Adds secret header names and query parameters (compared case-insensitively).
    pub fn with(mut self, headers: &[&str], query_params: &[&str]) -> Self {
        for (names, added) in [(&mut self.headers, headers), (&mut self.query_params, query_params)] {
            for name in added {
                if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                    names.push(name.to_ascii_lowercase());
                }
            }
        }
        self
    }

    fn header(&self, name: String, value: String) -> (String, String) {
        if says_credential(&name) || self.headers.iter().any(|s| name.eq_ignore_ascii_case(s)) {
            (name, REDACTED.to_owned())
        } else {
            (name, value)
        }
    }

    /// Replaces the value of every secret query parameter, keeping the rest verbatim.
    pub fn query(&self, query: &str) -> String {
        if query.is_empty() {
            return query.to_owned();
        }
        query
            .split('&')
            .map(|pair| {
                let key = pair.split('=').next().unwrap_or_default();
                if says_credential(key) || self.query_params.iter().any(|s| key.eq_ignore_ascii_case(s)) {
                    format!("{key}={REDACTED}")
                } else {
                    pair.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// One inbound request as received, secrets already redacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookRequest {
    /// The `{provider}` path segment as sent: may name no provider at all.
    pub provider: String,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    /// The raw body, byte for byte (truncated to the size limit when oversized).
    pub body: Vec<u8>,
    pub remote_addr: Option<String>,
    pub received_at: DateTime<Utc>,
    pub primary: PrimaryFields,
    /// Set when `body` is only the start of what was sent ([`Self::cut_body`]).
    #[serde(default)]
    pub cut: Option<CutBody>,
    /// On the summary row of requests refused for a rate limit: how many.
    #[serde(default)]
    pub refused_count: Option<u64>,
}

/// What remains known of a body stored cut short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutBody {
    /// Its full length in bytes.
    pub length: u64,
    /// SHA-256 of all of it, hex.
    pub sha256: String,
}

/// How much of an unauthenticated request's body the forensic log keeps.
pub const UNAUTHENTICATED_BODY_KEPT: usize = 64 * 1024;

impl WebhookRequest {
    /// Keeps at most `keep` bytes of the body, recording the full length and digest
    /// (for requests that failed authentication: anyone can send those, and their
    /// bodies must not fill the log).
    pub fn cut_body(&mut self, keep: usize) {
        self.cut = Some(CutBody {
            length: self.body.len() as u64,
            sha256: hex::encode(Sha256::digest(&self.body)),
        });
        self.body.truncate(keep);
    }

    /// Builds a request record, redacting secret headers and query parameters.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        provider: &str,
        method: &str,
        path: &str,
        query: &str,
        headers: impl IntoIterator<Item = (String, String)>,
        body: Vec<u8>,
        remote_addr: Option<String>,
        received_at: DateTime<Utc>,
        redaction: &Redaction,
    ) -> Self {
        Self {
            provider: provider.to_owned(),
            method: method.to_owned(),
            path: path.to_owned(),
            query: redaction.query(query),
            headers: headers.into_iter().map(|(n, v)| redaction.header(n, v)).collect(),
            body,
            remote_addr,
            received_at,
            primary: PrimaryFields::default(),
            cut: None,
            refused_count: None,
        }
    }
}

/// Best-effort fields pulled from the payload so the log can be searched without
/// parsing bodies; every one may be absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PrimaryFields {
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub external_id: Option<String>,
    pub provider_status: Option<String>,
    pub amount: Option<i64>,
}

/// Why a request ended the way it did; stored as `processing_result` (and, for inbox
/// events, as the event's result once applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessingResult {
    Accepted,
    Duplicate,
    UnhandledEventType,
    MissingSignature,
    InvalidSignature,
    MissingCallbackToken,
    InvalidCallbackToken,
    IgnoredNonUuidExternalId,
    IgnoredOtherApp,
    MalformedPayload,
    PayloadTooLarge,
    RequestTimeout,
    RateLimited,
    UnknownProvider,
    ProviderDisabled,
    MethodNotAllowed,
    InternalError,
    StoreUnavailable,
    Applied,
    StaleTransition,
}

impl ProcessingResult {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::UnhandledEventType => "unhandled_event_type",
            Self::MissingSignature => "missing_signature",
            Self::InvalidSignature => "invalid_signature",
            Self::MissingCallbackToken => "missing_callback_token",
            Self::InvalidCallbackToken => "invalid_callback_token",
            Self::IgnoredNonUuidExternalId => "ignored_non_uuid_external_id",
            Self::IgnoredOtherApp => "ignored_other_app",
            Self::MalformedPayload => "malformed_payload",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::RateLimited => "rate_limited",
            Self::UnknownProvider => "unknown_provider",
            Self::ProviderDisabled => "provider_disabled",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::InternalError => "internal_error",
            Self::StoreUnavailable => "store_unavailable",
            Self::Applied => "applied",
            Self::StaleTransition => "stale_transition",
        }
    }
}

/// The outcome stamped on a forensic row before the response is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub http_status: u16,
    pub result: ProcessingResult,
    /// A human sentence for rejections; never contains a secret.
    pub error: Option<String>,
}

impl Outcome {
    pub fn accepted() -> Self {
        Self {
            http_status: 200,
            result: ProcessingResult::Accepted,
            error: None,
        }
    }

    pub fn duplicate() -> Self {
        Self {
            http_status: 200,
            result: ProcessingResult::Duplicate,
            error: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn providers() -> Redaction {
        Redaction::default().with(&["stripe-signature", "X-Callback-Token"], &["token"])
    }

    #[test]
    fn secret_headers_and_token_are_redacted() {
        let req = WebhookRequest::new(
            "stripe",
            "POST",
            "/webhooks/stripe",
            "payment_id=abc&token=deadbeef&TOKEN=x",
            vec![
                ("Stripe-Signature".to_owned(), "t=1,v1=ab".to_owned()),
                ("x-callback-token".to_owned(), "tok".to_owned()),
                ("Authorization".to_owned(), "Basic xyz".to_owned()),
                ("cookie".to_owned(), "session=1".to_owned()),
                ("content-type".to_owned(), "application/json".to_owned()),
            ],
            b"{}".to_vec(),
            None,
            Utc.timestamp_opt(0, 0).single().unwrap(),
            &providers(),
        );
        assert_eq!(req.query, "payment_id=abc&token=[redacted]&TOKEN=[redacted]");
        let values: Vec<&str> = req.headers.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, vec![REDACTED, REDACTED, REDACTED, REDACTED, "application/json"]);
    }

    #[test]
    fn query_without_secrets_is_kept_verbatim() {
        let r = providers();
        assert_eq!(r.query("a=1&b=%20"), "a=1&b=%20");
        assert_eq!(r.query(""), "");
        assert_eq!(r.query("token"), "token=[redacted]");
    }

    #[test]
    fn names_that_say_credential_are_redacted_without_being_listed() {
        let r = Redaction::default();
        for name in [
            "Cookie",
            "stripe-signature",
            "X-Hub-Signature-256",
            "x-callback-token",
            "X-Api-Key",
            "x_apikey",
            "client_secret",
            "Password",
            "Proxy-Authorization",
        ] {
            assert_eq!(r.header(name.into(), "v".into()).1, REDACTED, "{name}");
        }
        for name in ["content-type", "user-agent", "x-request-id", "webhook-id"] {
            assert_eq!(r.header(name.into(), "v".into()).1, "v", "{name}");
        }
        assert_eq!(
            r.query("token=abc&access_token=d&id=7"),
            "token=[redacted]&access_token=[redacted]&id=7"
        );
    }

    #[test]
    fn providers_may_add_names_the_rule_does_not_catch() {
        let r = Redaction::default().with(&["x-merchant-proof"], &["sig_v2"]);
        assert_eq!(r.header("X-Merchant-Proof".into(), "p".into()).1, REDACTED);
        assert_eq!(r.query("sig_v2=abc&id=7"), "sig_v2=[redacted]&id=7");
        assert_eq!(Redaction::default().query("sig_v2=abc"), "sig_v2=abc");
    }
}
