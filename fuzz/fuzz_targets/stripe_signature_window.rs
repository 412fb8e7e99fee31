//! A correctly signed Stripe delivery at any timestamp `t`, received at any time: it
//! is accepted exactly when `t` is within 300 s of its arrival, either way, with no
//! overflow at the ends of `i64`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payhook_domain::source::Delivery;
use payhook_fuzz::{instant, STRIPE_SECRET, SOURCES};

fuzz_target!(|input: (&[u8], i64, i64)| {
    let (body, t, now) = input;
    let received_at = instant(now);
    let headers = vec![(
        "stripe-signature".to_owned(),
        payhook_stripe::signature_header(STRIPE_SECRET, t, body),
    )];
    let delivery = Delivery {
        headers: &headers,
        query: "",
        body,
        received_at,
    };
    let within = (i128::from(received_at.timestamp()) - i128::from(t)).abs() <= 300;
    assert_eq!(SOURCES[0].authenticate(&delivery).is_ok(), within, "t {t}, now {now}");
});
