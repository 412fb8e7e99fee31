//! Per-webhook CPU work: Stripe signature verification and payload parsing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use payhook_domain::source::{Delivery, WebhookSource};
use payhook_microbench::{junglepay_postback, stripe_event_2kb, xendit_callback, CALLBACK_QUERY};
use payhook_stripe::{signature_header, SignatureVerifier, DEFAULT_TOLERANCE_SECS};
use secrecy::SecretString;
use std::hint::black_box;

const T: i64 = 1_800_000_000;

fn verifier(secrets: &[&str]) -> SignatureVerifier {
    SignatureVerifier::new(
        secrets.iter().map(|s| SecretString::from(s.to_string())).collect(),
        DEFAULT_TOLERANCE_SECS,
    )
}

fn stripe_verification(c: &mut Criterion) {
    let body = stripe_event_2kb();
    let header = signature_header("whsec_current", T, &body);
    let one = verifier(&["whsec_current"]);
    // During rotation the matching secret may be the second one tried.
    let two = verifier(&["whsec_previous", "whsec_current"]);
    assert_eq!(one.verify(Some(&header), &body, T), Ok(()));
    assert_eq!(two.verify(Some(&header), &body, T), Ok(()));
    let mut group = c.benchmark_group("stripe_verify_2kb");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("1_secret", |b| {
        b.iter(|| one.verify(black_box(Some(&header)), black_box(&body), T))
    });
    // The verifier starts with the secret that matched last, so from the second
    // delivery on this is one HMAC pass, as a rotation's traffic is.
    group.bench_function("2_secrets", |b| {
        b.iter(|| two.verify(black_box(Some(&header)), black_box(&body), T))
    });
    // The first delivery after a start, or after Stripe switched secrets: both passes.
    group.bench_function("2_secrets_switch", |b| {
        b.iter_batched(
            || verifier(&["whsec_previous", "whsec_current"]),
            |fresh| fresh.verify(black_box(Some(&header)), black_box(&body), T),
            BatchSize::SmallInput,
        )
    });
    // A forgery is checked against every secret.
    let forged = signature_header("whsec_forged", T, &body);
    group.bench_function("2_secrets_forged", |b| {
        b.iter(|| two.verify(black_box(Some(&forged)), black_box(&body), T))
    });
    group.finish();
}

fn parsing(c: &mut Criterion) {
    let stripe = stripe_event_2kb();
    let xendit = xendit_callback();
    let mut group = c.benchmark_group("parse");
    group.bench_function("stripe_payment_intent_2kb", |b| {
        b.iter(|| payhook_stripe::parse_event(black_box(&stripe)))
    });
    group.bench_function("xendit_invoice_callback", |b| {
        b.iter(|| payhook_xendit::parse_callback(black_box(&xendit), "payhook"))
    });
    let now = chrono::Utc::now();
    let qpay_body = br#"{"invoice_id":"fake-invoice-1"}"#;
    let qpay = Delivery {
        headers: &[],
        query: CALLBACK_QUERY,
        body: qpay_body,
        received_at: now,
    };
    group.bench_function("qpay_callback", |b| {
        b.iter(|| payhook_qpay::QPayCallbacks.parse(black_box(&qpay)))
    });
    let jungle_body = junglepay_postback();
    let jungle = Delivery {
        headers: &[],
        query: CALLBACK_QUERY,
        body: &jungle_body,
        received_at: now,
    };
    group.bench_function("junglepay_postback", |b| {
        b.iter(|| payhook_junglepay::JunglePayPostbacks.parse(black_box(&jungle)))
    });
    group.finish();
}

criterion_group!(benches, stripe_verification, parsing);
criterion_main!(benches);
