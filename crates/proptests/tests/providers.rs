//! Any bytes, any headers, any query: authentication, parsing and the forensic
//! field extraction of every provider answer, never panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{TimeZone, Utc};
use payhook_domain::source::{Delivery, WebhookSource};
use payhook_domain::{ConnectOptions, Connector};
use proptest::prelude::*;
use serde_json::json;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

const STRIPE_SECRET: &str = "whsec_property_tests";

fn unit<C: Connector>(config: serde_json::Value) -> Arc<dyn WebhookSource> {
    let config: C::Config = serde_json::from_value(config).expect("a valid test configuration");
    let options = ConnectOptions {
        api_timeout: Duration::from_secs(1),
    };
    C::connect(config, &options).expect("connects offline").webhooks
}

/// Built once: connecting builds each provider's HTTP client, which costs more than
/// the properties themselves.
static SOURCES: LazyLock<Vec<Arc<dyn WebhookSource>>> = LazyLock::new(|| {
    vec![
        unit::<payhook_stripe::Stripe>(json!({ "webhook_secrets": [STRIPE_SECRET] })),
        unit::<payhook_xendit::Xendit>(json!({ "callback_token": "xendit_property_token" })),
        unit::<payhook_qpay::QPay>(json!({
            "client_id": "id", "client_secret": "secret", "invoice_code": "CODE",
            "callback_base_url": "http://127.0.0.1:9"
        })),
        unit::<payhook_junglepay::JunglePay>(json!({
            "secret_key": "jp_secret", "callback_base_url": "http://127.0.0.1:9"
        })),
    ]
});

/// Header names the providers read, and others.
fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("stripe-signature".to_owned()),
        Just("x-callback-token".to_owned()),
        Just("content-type".to_owned()),
        "[a-z-]{1,20}",
    ]
}

/// JSON-looking bodies (so parsing gets past the first byte), and raw bytes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        "\\{(\"[a-z_]{1,12}\":(\"[^\"]{0,16}\"|-?[0-9]{1,20}|null|true|\\{\\}|\\[\\]),?){0,8}\\}"
            .prop_map(String::into_bytes),
        (any::<String>(), any::<i64>(), any::<String>()).prop_map(|(id, amount, status)| {
            json!({ "id": id, "type": "payment_intent.succeeded", "status": status, "amount": amount,
                    "external_id": id, "object": "event", "created": amount,
                    "data": { "object": { "id": id, "amount": amount, "status": status } } })
            .to_string()
            .into_bytes()
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_input_makes_a_provider_panic(
        headers in proptest::collection::vec((header_name(), any::<String>()), 0..4),
        query in "[a-z_=&%0-9]{0,40}",
        body in body(),
        at in 0i64..4_000_000_000,
    ) {
        let received_at = Utc.timestamp_opt(at, 0).single().unwrap();
        let delivery = Delivery { headers: &headers, query: &query, body: &body, received_at };
        for source in SOURCES.iter() {
            let _ = source.authenticate(&delivery);
            let _ = source.parse(&delivery);
            let _ = source.primary_fields(&body);
            let _ = source.accepts_method("POST");
        }
    }

    #[test]
    fn a_signed_stripe_delivery_is_accepted_exactly_within_the_window(
        body in body(),
        now in 0i64..4_000_000_000,
        t in any::<i64>(),
    ) {
        let stripe = &SOURCES[0];
        let headers = vec![(
            "stripe-signature".to_owned(),
            payhook_stripe::signature_header(STRIPE_SECRET, t, &body),
        )];
        let received_at = Utc.timestamp_opt(now, 0).single().unwrap();
        let delivery = Delivery { headers: &headers, query: "", body: &body, received_at };
        let within = (i128::from(now) - i128::from(t)).abs() <= 300;
        prop_assert_eq!(stripe.authenticate(&delivery).is_ok(), within, "now {} t {}", now, t);
    }

    #[test]
    fn any_stripe_signature_header_is_an_answer_not_a_panic(
        header in any::<String>(),
        body in body(),
    ) {
        let stripe = &SOURCES[0];
        let headers = vec![("stripe-signature".to_owned(), header)];
        let delivery = Delivery { headers: &headers, query: "", body: &body, received_at: Utc::now() };
        prop_assert!(stripe.authenticate(&delivery).is_err());
    }
}
