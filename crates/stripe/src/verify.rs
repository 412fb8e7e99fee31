//! `Stripe-Signature` verification, written here rather than taken from the SDK:
//! the SDK keeps only the last `v1` and so rejects valid events during secret rotation.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use std::sync::atomic::{AtomicUsize, Ordering};
use subtle::ConstantTimeEq;

pub const DEFAULT_TOLERANCE_SECS: i64 = 300;
const SHA256_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing Stripe-Signature header")]
    MissingHeader,
    #[error("malformed Stripe-Signature header: {0}")]
    Malformed(&'static str),
    #[error("no v1 signature matches any configured secret")]
    NoMatch,
    #[error("signature timestamp is outside the tolerance window")]
    OutsideTolerance,
}

/// Verifies against every active endpoint secret (Stripe sends one `v1` per secret).
pub struct SignatureVerifier {
    /// One HMAC already keyed with each secret: keying costs two SHA-256 blocks,
    /// paid once here instead of per request and secret. No `Debug`, so the keyed
    /// state cannot be printed.
    keyed: Vec<Hmac<Sha256>>,
    /// The secret that matched last, tried first. Once a rotation is over at Stripe,
    /// every delivery matches the same secret, which may not be the first listed: this
    /// keeps verification at one HMAC pass instead of one per secret listed before it.
    /// Which secret matches says nothing an attacker could use: both are checked the
    /// same way, and a forged signature matches neither.
    last_matched: AtomicUsize,
    tolerance_secs: i64,
}

impl SignatureVerifier {
    pub fn new(secrets: Vec<SecretString>, tolerance_secs: i64) -> Self {
        Self {
            keyed: secrets.iter().map(|s| keyed(s.expose_secret().as_bytes())).collect(),
            last_matched: AtomicUsize::new(0),
            tolerance_secs,
        }
    }

    /// Accepts when any `v1` matches any secret and the timestamp is within tolerance
    /// of `now_unix` in either direction. Non-hex `v1` entries and other schemes
    /// (`v0`) are skipped; a header without `t` or without any usable `v1` is malformed.
    pub fn verify(&self, header: Option<&str>, body: &[u8], now_unix: i64) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::MissingHeader)?;
        let parsed = ParsedHeader::parse(header)?;
        let secrets = self.keyed.len();
        let first = self.last_matched.load(Ordering::Relaxed);
        let matched = (0..secrets).map(|k| (first + k) % secrets).find(|&i| {
            let expected = sign(self.keyed[i].clone(), parsed.timestamp, body);
            // Compare against every candidate without early exit on a match position.
            parsed
                .signatures
                .iter()
                .fold(0u8, |acc, sig| acc | sig.ct_eq(&expected).unwrap_u8())
                == 1
        });
        match matched {
            None => return Err(SignatureError::NoMatch),
            Some(i) if i != first => self.last_matched.store(i, Ordering::Relaxed),
            Some(_) => {}
        }
        // Checked: `t` is whatever the sender wrote, and `now - t` overflows for t near
        // i64::MIN or i64::MAX (a panic in debug builds; in release it wrapped, and a
        // signature from 2^63 s ago passed). An age that does not fit is out of range.
        let within = now_unix
            .checked_sub(parsed.timestamp)
            .and_then(i64::checked_abs)
            .is_some_and(|age| age <= self.tolerance_secs);
        if !within {
            return Err(SignatureError::OutsideTolerance);
        }
        Ok(())
    }
}

struct ParsedHeader {
    timestamp: i64,
    signatures: Vec<[u8; SHA256_LEN]>,
}

impl ParsedHeader {
    fn parse(header: &str) -> Result<Self, SignatureError> {
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for item in header.split(',') {
            let Some((key, value)) = item.trim().split_once('=') else {
                continue;
            };
            match key {
                "t" if timestamp.is_none() => {
                    timestamp = Some(
                        value
                            .parse::<i64>()
                            .map_err(|_| SignatureError::Malformed("t is not a unix timestamp"))?,
                    );
                }
                "v1" => {
                    let mut sig = [0u8; SHA256_LEN];
                    if hex::decode_to_slice(value, &mut sig).is_ok() {
                        signatures.push(sig);
                    }
                }
                _ => {}
            }
        }
        let timestamp = timestamp.ok_or(SignatureError::Malformed("no t= timestamp"))?;
        if signatures.is_empty() {
            return Err(SignatureError::Malformed("no usable v1 signature"));
        }
        Ok(Self { timestamp, signatures })
    }
}

fn keyed(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

/// HMAC-SHA256 of `"{t}.{body}"` with an already keyed MAC.
fn sign(mut mac: Hmac<Sha256>, timestamp: i64, body: &[u8]) -> [u8; SHA256_LEN] {
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Builds a `Stripe-Signature` header value the way Stripe does, for tests and the
/// `simulate` tool. The secret is used as given, `whsec_` prefix included.
pub fn signature_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(sign(keyed(secret.as_bytes()), timestamp, body))
    )
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
