//! How providers authenticate what they send, for the fakes to send it like them.

use hmac::{KeyInit, Mac};

/// Stripe's `v1` signature: HMAC-SHA256 over `"{t}.{body}"`, keyed with the endpoint
/// secret's bytes (prefix included), lowercase hex.
pub fn stripe_v1(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        unreachable!("HMAC takes keys of any length")
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}
