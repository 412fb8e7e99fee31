//! Xendit adapter for payhook: authenticates invoice callbacks by their static
//! `x-callback-token` (compared in constant time) and maps them onto domain events,
//! converting Xendit's major-unit amounts exactly; creates and reads invoices through
//! the invoice API (`PaymentGateway`). Depends on `payhook-domain` only.

mod callback;
mod client;

pub use callback::{parse_callback, primary_fields};
pub use client::{XenditClient, DEFAULT_API_BASE_URL};

use payhook_domain::source::{AuthError, Delivery, ParseError, Parsed, WebhookSource};
use payhook_domain::{PrimaryFields, Provider};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// The header Xendit puts its account's callback verification token in.
pub const CALLBACK_TOKEN_HEADER: &str = "x-callback-token";

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
