//! What the fuzz targets share: every provider's webhook source, connected offline
//! once, and the shape of a delivery a stranger can send.

use chrono::{DateTime, TimeZone, Utc};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use payhook_domain::source::{Delivery, WebhookSource};
use payhook_domain::{ConnectOptions, Connector};
use serde_json::json;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

pub const STRIPE_SECRET: &str = "whsec_fuzzing_secret";

fn unit<C: Connector>(config: serde_json::Value) -> Arc<dyn WebhookSource> {
    let config: C::Config = match serde_json::from_value(config) {
        Ok(config) => config,
        Err(e) => panic!("the fuzzing configuration is invalid: {e}"),
    };
    let options = ConnectOptions {
        api_timeout: Duration::from_secs(1),
    };
    match C::connect(config, &options) {
        Ok(unit) => unit.webhooks,
        Err(e) => panic!("a provider did not connect offline: {e}"),
    }
}

/// Stripe, Xendit, QPay and JunglePay, in that order.
pub static SOURCES: LazyLock<Vec<Arc<dyn WebhookSource>>> = LazyLock::new(|| {
    vec![
        unit::<payhook_stripe::Stripe>(json!({ "webhook_secrets": [STRIPE_SECRET] })),
        unit::<payhook_xendit::Xendit>(json!({ "callback_token": "xendit_fuzzing_token" })),
        unit::<payhook_qpay::QPay>(json!({
            "client_id": "id", "client_secret": "secret", "invoice_code": "CODE",
            "callback_base_url": "http://127.0.0.1:9"
        })),
        unit::<payhook_junglepay::JunglePay>(json!({
            "secret_key": "jp_secret", "callback_base_url": "http://127.0.0.1:9"
        })),
    ]
});

/// A request as it reaches a provider's code: headers, query, body, arrival time.
#[derive(Debug, Arbitrary)]
pub struct Request {
    pub provider: u8,
    pub headers: Vec<(String, String)>,
    pub query: String,
    pub body: Vec<u8>,
    pub received_at: i64,
}

/// Any `i64` second as an instant (out-of-range ones clamp to the epoch).
pub fn instant(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(seconds, 0).single().unwrap_or_default()
}

impl Request {
    pub fn delivery(&self) -> Delivery<'_> {
        Delivery {
            headers: &self.headers,
            query: &self.query,
            body: &self.body,
            received_at: instant(self.received_at),
        }
    }
}
