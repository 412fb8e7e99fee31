//! Any `Stripe-Signature` header, raw bytes included: refused (no delivery is signed
//! with the secret here), never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payhook_domain::source::Delivery;
use payhook_fuzz::{instant, SOURCES};

fuzz_target!(|input: (&[u8], &[u8], i64)| {
    let (header, body, now) = input;
    let headers = vec![("stripe-signature".to_owned(), String::from_utf8_lossy(header).into_owned())];
    let delivery = Delivery {
        headers: &headers,
        query: "",
        body,
        received_at: instant(now),
    };
    assert!(SOURCES[0].authenticate(&delivery).is_err());
});
