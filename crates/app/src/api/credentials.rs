//! Who may call what. Merchant routes take `Authorization: Bearer <key>` with any of
//! `api.keys`; without keys configured the merchant API does not exist (404
//! `merchant_api_disabled`). Handlers of merchant routes take a [`Merchant`]
//! argument, so a route cannot forget its check: the extractor runs first.

use super::{ApiError, AppState};
use crate::api::payment_requests::token_hash;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use payhook_domain::ports::PaymentStore;
use payhook_domain::PaymentId;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::future::{ready, Ready};
use subtle::ConstantTimeEq;

/// The configured merchant keys, kept as SHA-256 digests: comparing digests of equal
/// length in constant time reveals neither a key's content nor its length.
#[derive(Clone, Default)]
pub struct MerchantKeys {
    digests: Vec<[u8; 32]>,
}

impl MerchantKeys {
    pub fn new(keys: &[SecretString]) -> Self {
        Self {
            digests: keys.iter().map(|k| digest(k.expose_secret())).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether the request carries one of the keys.
    pub fn check(&self, req: &HttpRequest) -> Result<(), ApiError> {
        if self.digests.is_empty() {
            return Err(ApiError::MerchantApiDisabled);
        }
        let presented = bearer(req).ok_or(ApiError::MissingApiKey)?;
        let presented = digest(presented);
        // Every key is compared, so the time taken does not say which one matched.
        let matched = self
            .digests
            .iter()
            .fold(subtle::Choice::from(0), |any, d| any | d.ct_eq(&presented));
        if bool::from(matched) {
            Ok(())
        } else {
            Err(ApiError::InvalidApiKey)
        }
    }
}

/// The token of an `Authorization: Bearer …` header, if any.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Checks a browser's client token (`?token=`) against the payment's stored hash,
/// in constant time. An unknown payment is 404 whatever the token.
pub async fn check_client_token(
    payments: &dyn PaymentStore,
    raw_id: &str,
    token: Option<&str>,
) -> Result<PaymentId, ApiError> {
    let id = PaymentId::parse(raw_id).ok_or_else(|| ApiError::PaymentNotFound(raw_id.to_owned()))?;
    let hashes = payments
        .token_hashes(id)
        .await?
        .ok_or_else(|| ApiError::PaymentNotFound(raw_id.to_owned()))?;
    let token = token.ok_or(ApiError::MissingClientToken)?;
    let presented = token_hash(token);
    let authorized = hashes
        .client
        .is_some_and(|expected| bool::from(presented.as_bytes().ct_eq(expected.as_bytes())));
    if authorized {
        Ok(id)
    } else {
        Err(ApiError::InvalidClientToken)
    }
}

/// Proof that the request carries a merchant key.
pub struct Merchant;

impl FromRequest for Merchant {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let checked = match req.app_data::<web::Data<AppState>>() {
            Some(state) => state.merchant_keys.check(req).map(|()| Merchant),
            None => Err(ApiError::MerchantApiDisabled),
        };
        ready(checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn keys(keys: &[&str]) -> MerchantKeys {
        MerchantKeys::new(
            &keys
                .iter()
                .map(|k| SecretString::from(k.to_string()))
                .collect::<Vec<_>>(),
        )
    }

    fn with_auth(value: &str) -> HttpRequest {
        TestRequest::default()
            .insert_header((header::AUTHORIZATION, value))
            .to_http_request()
    }

    #[test]
    fn any_listed_key_is_accepted() {
        let keys = keys(&["old_key_0123456789", "new_key_0123456789"]);
        assert!(keys.check(&with_auth("Bearer old_key_0123456789")).is_ok());
        assert!(keys.check(&with_auth("bearer new_key_0123456789")).is_ok());
    }

    #[test]
    fn a_wrong_or_missing_key_is_refused_with_its_own_code() {
        let keys = keys(&["new_key_0123456789"]);
        assert!(matches!(
            keys.check(&with_auth("Bearer new_key_012345678")),
            Err(ApiError::InvalidApiKey)
        ));
        assert!(matches!(
            keys.check(&with_auth("Basic new_key_0123456789")),
            Err(ApiError::MissingApiKey)
        ));
        assert!(matches!(
            keys.check(&TestRequest::default().to_http_request()),
            Err(ApiError::MissingApiKey)
        ));
    }

    #[test]
    fn without_keys_the_merchant_api_is_disabled() {
        assert!(matches!(
            MerchantKeys::default().check(&with_auth("Bearer anything_at_all_here")),
            Err(ApiError::MerchantApiDisabled)
        ));
    }
}
