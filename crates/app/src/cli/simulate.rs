//! `payhook simulate`: sends a provider's sample delivery (built by that provider's
//! simulator, authenticated with the configured secrets, or deliberately wrongly) to
//! a running gateway and prints the answer, so integrations can be exercised
//! offline the way `stripe trigger` allows.

use payhook_domain::{PaymentId, Provider, SampleDelivery};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Sample(#[from] payhook_domain::SimulateError),
    #[error("{0}")]
    NotConfigured(String),
    #[error("cannot reach the gateway at {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

/// The webhook URL of `provider` at `to`: a full webhook URL as given, or a base URL
/// (`http://127.0.0.1:8080`) with `/webhooks/<provider>` added. Without `to`, the
/// configured `server.bind`.
pub fn webhook_url(to: Option<&str>, bind: &str, provider: Provider) -> String {
    match to {
        Some(url) if url.contains("/webhooks/") => url.to_owned(),
        Some(base) => format!("{}/webhooks/{provider}", base.trim_end_matches('/')),
        None => format!("http://{bind}/webhooks/{provider}"),
    }
}

/// The gateway's base URL, from its webhook URL.
fn base_url(webhook_url: &str) -> &str {
    webhook_url.split("/webhooks/").next().unwrap_or(webhook_url)
}

/// Whether an answer is the one the delivery should get: a forged one is refused
/// with 401, anything else acknowledged with a 2xx. Anything else (a 404 for a
/// mistyped URL, a 503) makes `payhook simulate` fail.
pub fn as_expected(status: u16, bad_signature: bool) -> bool {
    if bad_signature {
        status == 401
    } else {
        (200..300).contains(&status)
    }
}

/// Where the merchant API is: the internal listener when `server.internal_bind` is
/// set, else beside the webhook URL.
pub fn merchant_base(webhook_url: &str, internal_bind: Option<&str>) -> String {
    match internal_bind {
        Some(bind) => format!("http://{bind}"),
        None => base_url(webhook_url).to_owned(),
    }
}

/// What the gateway knows of a payment: its provider reference, amount and currency
/// (`GET /payments/{id}` with the first of `api.keys`), so simulated events match it.
pub async fn look_up_payment(
    merchant_base: &str,
    api_key: Option<&secrecy::SecretString>,
    id: PaymentId,
) -> Result<(Option<String>, i64, String), SimulateError> {
    crate::startup::install_crypto_provider();
    let api_key = api_key.ok_or_else(|| {
        SimulateError::NotConfigured("--payment needs the merchant API: set api.keys in the configuration".into())
    })?;
    let url = format!("{merchant_base}/payments/{id}");
    let unreachable = |reason: String| SimulateError::Unreachable {
        url: url.clone(),
        reason,
    };
    let response = reqwest::Client::new()
        .get(&url)
        .bearer_auth(secrecy::ExposeSecret::expose_secret(api_key))
        .send()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let status = response.status();
    let body_code = |body: &str| -> Option<String> {
        let v: Value = serde_json::from_str(body).ok()?;
        v["error"]["code"].as_str().map(str::to_owned)
    };
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        if body_code(&body).as_deref() == Some("payment_not_found") {
            return Err(SimulateError::NotConfigured(format!("the gateway has no payment {id}")));
        }
        return Err(SimulateError::NotConfigured(format!(
            "GET {url} answered {status}: {body}"
        )));
    }
    let payment: Value = response.json().await.map_err(|e| unreachable(e.to_string()))?;
    let provider_ref = payment.get("provider_ref").and_then(Value::as_str).map(str::to_owned);
    let amount = payment.get("amount").and_then(Value::as_i64).unwrap_or_default();
    let currency = payment
        .get("currency")
        .and_then(Value::as_str)
        .unwrap_or("USD")
        .to_owned();
    Ok((provider_ref, amount, currency))
}

/// Sends the delivery `times` times to `webhook_url` and returns each answer
/// (status, body).
pub async fn send(
    webhook_url: &str,
    delivery: &SampleDelivery,
    times: u32,
) -> Result<Vec<(u16, String)>, SimulateError> {
    crate::startup::install_crypto_provider();
    let url = if delivery.query.is_empty() {
        webhook_url.to_owned()
    } else {
        format!("{webhook_url}?{}", delivery.query)
    };
    let client = reqwest::Client::new();
    let mut answers = Vec::new();
    for _ in 0..times.max(1) {
        let mut request = client
            .post(&url)
            .header("content-type", "application/json")
            .body(delivery.body.clone());
        for (name, value) in &delivery.headers {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| SimulateError::Unreachable {
            url: webhook_url.to_owned(),
            reason: e.to_string(),
        })?;
        let status = response.status().as_u16();
        answers.push((status, response.text().await.unwrap_or_default()));
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_takes_a_base_url_or_a_full_webhook_url() {
        let bind = "127.0.0.1:8080";
        assert_eq!(
            webhook_url(None, bind, Provider::Stripe),
            "http://127.0.0.1:8080/webhooks/stripe"
        );
        assert_eq!(
            webhook_url(Some("http://127.0.0.1:9000/"), bind, Provider::Qpay),
            "http://127.0.0.1:9000/webhooks/qpay"
        );
        assert_eq!(
            webhook_url(Some("http://h:1/webhooks/xendit"), bind, Provider::Xendit),
            "http://h:1/webhooks/xendit"
        );
        assert_eq!(base_url("http://h:1/webhooks/xendit"), "http://h:1");
    }

    #[test]
    fn only_the_answer_the_delivery_should_get_is_success() {
        assert!(as_expected(200, false));
        assert!(!as_expected(404, false), "a mistyped URL is not success");
        assert!(!as_expected(503, false));
        assert!(as_expected(401, true));
        assert!(!as_expected(200, true), "a forged delivery must be refused");
    }
}
