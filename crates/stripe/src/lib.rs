//! Stripe adapter for payhook: verifies `Stripe-Signature` (every `v1` against every
//! configured secret, so secret rotation works), maps Stripe events onto domain
//! events, and creates and reads PaymentIntents through the Stripe SDK
//! (`PaymentGateway`). Depends on `payhook-domain` only, never on another adapter.

mod events;
mod gateway;
mod verify;

pub use events::{parse_event, primary_fields};
pub use gateway::{StripeGateway, DEFAULT_API_BASE_URL};
pub use verify::{signature_header, SignatureError, SignatureVerifier, DEFAULT_TOLERANCE_SECS};

use payhook_domain::source::{AuthError, Delivery, ParseError, Parsed, WebhookSource};
use payhook_domain::{PrimaryFields, Provider};

/// Stripe's webhook protocol, ready to plug into the ingest service.
pub struct StripeWebhooks {
    verifier: SignatureVerifier,
}

impl StripeWebhooks {
    pub fn new(verifier: SignatureVerifier) -> Self {
        Self { verifier }
    }
}

impl WebhookSource for StripeWebhooks {
    fn provider(&self) -> Provider {
        Provider::Stripe
    }

    fn authenticate(&self, delivery: &Delivery<'_>) -> Result<(), AuthError> {
        let header = delivery.header("stripe-signature");
        self.verifier
            .verify(header, delivery.body, delivery.received_at.timestamp())
            .map_err(|e| match e {
                SignatureError::MissingHeader => AuthError::Missing(e.to_string()),
                other => AuthError::Invalid(other.to_string()),
            })
    }

    fn parse(&self, delivery: &Delivery<'_>) -> Result<Parsed, ParseError> {
        parse_event(delivery.body)
    }

    fn primary_fields(&self, body: &[u8]) -> PrimaryFields {
        primary_fields(body)
    }
}
