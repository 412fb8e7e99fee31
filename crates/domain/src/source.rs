//! How a provider adapter turns one authenticated delivery into a domain event.
//! Pure and synchronous: the ingest service calls it before any I/O, so the
//! forensic row, its outcome and the inbox row can be written in one transaction.

use crate::{PaymentId, PrimaryFields, ProcessingResult, Provider, WebhookEvent};
use chrono::{DateTime, Utc};

/// The per-payment token a delivery presents in its query string
/// (`?payment_id=<uuid>&token=<hex>`), for providers that sign nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct PaymentToken {
    pub payment_id: PaymentId,
    pub token: String,
}

impl std::fmt::Debug for PaymentToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PaymentToken {{ payment_id: {}, token: [redacted] }}",
            self.payment_id
        )
    }
}

impl PaymentToken {
    /// Reads `payment_id` and `token` from a query string. Both missing or empty →
    /// `MissingToken`; a `payment_id` that is not a UUID → `InvalidToken` (it can name
    /// no payment).
    pub fn from_query(query: &str) -> Result<Self, AuthError> {
        let mut payment_id = None;
        let mut token = None;
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("payment_id", v)) if !v.is_empty() => payment_id = Some(v),
                Some(("token", v)) if !v.is_empty() => token = Some(v),
                _ => {}
            }
        }
        let (Some(payment_id), Some(token)) = (payment_id, token) else {
            return Err(AuthError::MissingToken(
                "the callback URL must carry payment_id and token query parameters".into(),
            ));
        };
        let payment_id = PaymentId::parse(payment_id)
            .ok_or_else(|| AuthError::InvalidToken("the callback token does not match".into()))?;
        Ok(Self {
            payment_id,
            token: token.to_owned(),
        })
    }
}

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

/// How a provider's deliveries prove they come from the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentication {
    /// The delivery carries its own proof, checked by [`WebhookSource::authenticate`]
    /// alone (a signature, a static account token).
    Provider,
    /// The provider signs nothing: payhook gives each payment a callback URL with a
    /// random token (`?payment_id=…&token=…`), keeps its hash, and checks a
    /// delivery's token against it. Payments with such a provider get a token.
    PaymentToken,
}

/// One provider's inbound webhook protocol.
pub trait WebhookSource: Send + Sync {
    fn provider(&self) -> Provider;

    /// HTTP methods the provider delivers with.
    fn accepts_method(&self, method: &str) -> bool {
        method == "POST"
    }

    /// Checks the delivery's authenticity, in constant time where secrets are compared.
    /// A provider authenticated by per-payment tokens checks only that they are there.
    fn authenticate(&self, delivery: &Delivery<'_>) -> Result<(), AuthError>;

    /// How deliveries are authenticated. With [`Authentication::PaymentToken`], the
    /// ingest service checks the token against the payment's stored hash after
    /// [`WebhookSource::authenticate`] found it present.
    fn authentication(&self) -> Authentication {
        Authentication::Provider
    }

    /// The body of a 200 answer, when the provider expects a particular one
    /// (QPay: `SUCCESS`); `None` answers the contract's JSON.
    fn acknowledgement(&self) -> Option<&'static str> {
        None
    }

    /// Parses an authenticated delivery into a normalized event.
    fn parse(&self, delivery: &Delivery<'_>) -> Result<Parsed, ParseError>;

    /// Best-effort columns for the forensic log; never fails.
    fn primary_fields(&self, body: &[u8]) -> PrimaryFields;
}
