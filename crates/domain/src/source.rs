//! How a provider adapter turns one authenticated delivery into a domain event.
//! Pure and synchronous: the ingest service calls it before any I/O, so the
//! forensic row, its outcome and the inbox row can be written in one transaction.

use crate::{PrimaryFields, ProcessingResult, Provider, WebhookEvent};
use chrono::{DateTime, Utc};

/// A delivery as it arrived, before redaction: only adapters see the secrets in it.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub headers: &'a [(String, String)],
    pub query: &'a str,
    pub body: &'a [u8],
    pub received_at: DateTime<Utc>,
}

impl Delivery<'_> {
    /// The first header of that name (case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No signature at all.
    #[error("{0}")]
    Missing(String),
    /// A signature that does not check out. The message never echoes it.
    #[error("{0}")]
    Invalid(String),
    /// No callback token (a static or per-payment shared secret).
    #[error("{0}")]
    MissingToken(String),
    /// A callback token that does not match. The message never echoes it.
    #[error("{0}")]
    InvalidToken(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed payload: {0}")]
pub struct ParseError(pub String);

/// What an authenticated body turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Event(Box<WebhookEvent>),
    /// Authentic, understood, and of no interest: acknowledged so the provider stops
    /// retrying. `result` says why (`unhandled_event_type`, `ignored_other_app`, ...).
    Ignored {
        event_id: Option<String>,
        result: ProcessingResult,
        reason: String,
    },
}

/// One provider's inbound webhook protocol.
pub trait WebhookSource: Send + Sync {
    fn provider(&self) -> Provider;

    /// HTTP methods the provider delivers with.
    fn accepts_method(&self, method: &str) -> bool {
        method == "POST"
    }

    /// Checks the delivery's authenticity, in constant time where secrets are compared.
    fn authenticate(&self, delivery: &Delivery<'_>) -> Result<(), AuthError>;

    /// Parses an authenticated body into a normalized event.
    fn parse(&self, body: &[u8]) -> Result<Parsed, ParseError>;

    /// Best-effort columns for the forensic log; never fails.
    fn primary_fields(&self, body: &[u8]) -> PrimaryFields;
}
