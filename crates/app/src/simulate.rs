//! `payhook simulate`: sends a realistic, correctly authenticated (or deliberately
//! wrongly authenticated) provider webhook to a running gateway and prints the answer,
//! so integrations can be exercised offline the way `stripe trigger` allows.

use crate::settings::Settings;
use chrono::Utc;
use payhook_domain::{PaymentId, Provider};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

/// What to send; built from the command line.
#[derive(Debug, Clone)]
pub struct Simulation {
    pub provider: Provider,
    pub event: String,
    pub payment: Option<PaymentId>,
    /// The provider's id of that payment (its PaymentIntent), when the gateway knows it.
    pub provider_ref: Option<String>,
    pub amount: i64,
    pub currency: String,
    pub to: Option<String>,
    /// QPay, JunglePay: the payment's callback token.
    pub token: Option<String>,
    pub bad_signature: bool,
    pub partial: bool,
    pub replay: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("unknown {provider} event {event:?}; known: {known}")]
    UnknownEvent {
        provider: Provider,
        event: String,
        known: String,
    },
    #[error("{0}")]
    NotConfigured(String),
    #[error("cannot reach the gateway at {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

const STRIPE_EVENTS: &[&str] = &[
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.requires_action",
    "charge.refunded",
    "charge.dispute.created",
    "charge.dispute.closed",
];
const XENDIT_EVENTS: &[&str] = &["paid", "settled", "expired"];
const QPAY_EVENTS: &[&str] = &["paid"];
const JUNGLEPAY_EVENTS: &[&str] = &["paid", "refused", "refunded", "chargedback"];

/// One delivery: where, what headers, what body.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..24].to_owned()
}

/// Builds the delivery the provider would send, authenticated with the configured secret.
pub fn build(sim: &Simulation, settings: &Settings) -> Result<Delivery, SimulateError> {
    let url = sim
        .to
        .clone()
        .unwrap_or_else(|| format!("http://{}/webhooks/{}", settings.server.bind, sim.provider));
    match sim.provider {
        Provider::Stripe => stripe(sim, settings, url),
        Provider::Xendit => xendit(sim, settings, url),
        Provider::Qpay => qpay(sim, url),
        Provider::Junglepay => junglepay(sim, url),
    }
}

/// The callback URL with the payment's token (a wrong one with `--bad-signature`).
fn tokened_url(sim: &Simulation, url: &str) -> Result<String, SimulateError> {
    let payment = sim.payment.ok_or_else(|| {
        SimulateError::NotConfigured(format!(
            "{} callbacks name a payhook payment: pass --payment <id>",
            sim.provider
        ))
    })?;
    let token = if sim.bad_signature {
        "0".repeat(32)
    } else {
        sim.token.clone().ok_or_else(|| {
            SimulateError::NotConfigured(format!(
                "{} callbacks carry the payment's callback token: pass --token (payhook stores only its hash)",
                sim.provider
            ))
        })?
    };
    Ok(format!("{url}?payment_id={payment}&token={token}"))
}

fn qpay(sim: &Simulation, url: String) -> Result<Delivery, SimulateError> {
    if !QPAY_EVENTS.contains(&sim.event.as_str()) {
        return Err(unknown(sim, QPAY_EVENTS));
    }
    // QPay's callback is a trigger: payhook confirms with /payment/check.
    let body = serde_json::to_vec(&json!({ "invoice_id": sim.provider_ref })).unwrap_or_default();
    Ok(Delivery {
        url: tokened_url(sim, &url)?,
        headers: Vec::new(),
        body,
    })
}

fn junglepay(sim: &Simulation, url: String) -> Result<Delivery, SimulateError> {
    if !JUNGLEPAY_EVENTS.contains(&sim.event.as_str()) {
        return Err(unknown(sim, JUNGLEPAY_EVENTS));
    }
    let object_id = sim.provider_ref.clone().unwrap_or_else(|| "0".into());
    let now = Utc::now();
    let body = serde_json::to_vec(&json!({
        "id": now.timestamp_micros(), "type": "transaction", "objectId": object_id, "url": url,
        "data": { "id": object_id, "amount": sim.amount, "status": sim.event, "paymentMethod": "pix",
                  "updatedAt": now.to_rfc3339() },
    }))
    .unwrap_or_default();
    Ok(Delivery {
        url: tokened_url(sim, &url)?,
        headers: Vec::new(),
        body,
    })
}

fn stripe(sim: &Simulation, settings: &Settings, url: String) -> Result<Delivery, SimulateError> {
    if !STRIPE_EVENTS.contains(&sim.event.as_str()) {
        return Err(unknown(sim, STRIPE_EVENTS));
    }
    let secret = settings.providers.stripe.webhook_secrets.first().ok_or_else(|| {
        SimulateError::NotConfigured("providers.stripe.webhook_secrets is empty: nothing to sign with".into())
    })?;
    // The same payment reference across runs for one --payment, else a fresh PaymentIntent.
    let pi = match (&sim.provider_ref, sim.payment) {
        (Some(known), _) => known.clone(),
        (None, Some(id)) => format!("pi_sim_{}", &id.as_uuid().simple().to_string()[..24]),
        (None, None) => format!("pi_sim_{}", random_suffix()),
    };
    let metadata = match sim.payment {
        Some(id) => json!({ "payhook_payment_id": id.to_string() }),
        None => json!({}),
    };
    let (amount, currency) = (sim.amount, sim.currency.to_ascii_lowercase());
    let charge = |refunded: i64, full: bool| {
        json!({ "id": format!("ch_{}", &pi[3..]), "object": "charge", "amount": amount, "amount_captured": amount,
                "amount_refunded": refunded, "refunded": full, "currency": currency, "payment_intent": pi,
                "status": "succeeded", "metadata": metadata })
    };
    let intent = |status: &str, received: i64| {
        json!({ "id": pi, "object": "payment_intent", "amount": amount, "amount_received": received,
                "currency": currency, "status": status, "metadata": metadata, "livemode": false,
                "description": "payhook simulate", "receipt_email": "customer@example.com" })
    };
    let object = match sim.event.as_str() {
        "payment_intent.succeeded" => intent("succeeded", amount),
        "payment_intent.payment_failed" => intent("requires_payment_method", 0),
        "payment_intent.canceled" => intent("canceled", 0),
        "payment_intent.requires_action" => intent("requires_action", 0),
        "charge.refunded" if sim.partial => charge(amount / 2, false),
        "charge.refunded" => charge(amount, true),
        dispute => json!({ "id": format!("dp_{}", random_suffix()), "object": "dispute", "amount": amount,
            "currency": currency, "charge": format!("ch_{}", &pi[3..]), "payment_intent": pi,
            "status": if dispute.ends_with("closed") { "lost" } else { "needs_response" } }),
    };
    let body = serde_json::to_vec(&json!({
        "id": format!("evt_sim_{}", random_suffix()), "object": "event", "type": sim.event,
        "created": Utc::now().timestamp(), "livemode": false, "api_version": "2024-06-20",
        "pending_webhooks": 1, "data": { "object": object },
    }))
    .unwrap_or_default();
    let key = if sim.bad_signature {
        "whsec_payhook_simulate_wrong_secret".to_owned()
    } else {
        secret.expose_secret().to_owned()
    };
    let signature = payhook_stripe::signature_header(&key, Utc::now().timestamp(), &body);
    Ok(Delivery {
        url,
        headers: vec![("stripe-signature".into(), signature)],
        body,
    })
}

fn xendit(sim: &Simulation, settings: &Settings, url: String) -> Result<Delivery, SimulateError> {
    if !XENDIT_EVENTS.contains(&sim.event.as_str()) {
        return Err(unknown(sim, XENDIT_EVENTS));
    }
    let payment = sim.payment.ok_or_else(|| {
        SimulateError::NotConfigured("xendit callbacks name a payhook payment: pass --payment <payment id>".into())
    })?;
    let token = settings
        .providers
        .xendit
        .callback_token
        .as_ref()
        .ok_or_else(|| SimulateError::NotConfigured("providers.xendit.callback_token is not set".into()))?;
    let currency = sim.currency.to_ascii_uppercase();
    // Xendit speaks major units: minor / 10^exponent, exactly.
    let exponent = payhook_domain::Currency::parse(&currency)
        .map_err(|e| SimulateError::NotConfigured(e.to_string()))?
        .exponent();
    let major: Value = format_major(sim.amount, exponent).parse().unwrap_or(Value::Null);
    let paid: Value = if sim.partial {
        format_major(sim.amount / 2, exponent).parse().unwrap_or(Value::Null)
    } else {
        major.clone()
    };
    let status = sim.event.to_ascii_uppercase();
    let now = Utc::now().to_rfc3339();
    let body = serde_json::to_vec(&json!({
        "id": format!("inv_sim_{}", &payment.as_uuid().simple().to_string()[..20]), "external_id": payment.to_string(),
        "user_id": "sim_user", "status": status, "amount": major, "paid_amount": paid, "currency": currency,
        "payment_method": "BANK_TRANSFER", "payment_channel": "BCA", "paid_at": now, "created": now, "updated": now,
        "payer_email": "customer@example.com", "description": "payhook simulate",
        "metadata": { "app": settings.providers.xendit.app_tag },
    }))
    .unwrap_or_default();
    let token = if sim.bad_signature {
        "payhook-simulate-wrong-token".to_owned()
    } else {
        token.expose_secret().to_owned()
    };
    Ok(Delivery {
        url,
        headers: vec![("x-callback-token".into(), token)],
        body,
    })
}

fn format_major(minor: i64, exponent: u32) -> String {
    let scale = 10i64.pow(exponent);
    if exponent == 0 {
        minor.to_string()
    } else {
        format!("{}.{:0width$}", minor / scale, minor % scale, width = exponent as usize)
    }
}

fn unknown(sim: &Simulation, known: &[&str]) -> SimulateError {
    SimulateError::UnknownEvent {
        provider: sim.provider,
        event: sim.event.clone(),
        known: known.join(", "),
    }
}

/// What the gateway knows of a payment: its provider reference, amount and currency
/// (`GET /payments/{id}` next to the webhook URL), so simulated events match it.
pub async fn look_up_payment(webhook_url: &str, id: PaymentId) -> Result<(Option<String>, i64, String), SimulateError> {
    crate::startup::install_crypto_provider();
    let base = webhook_url.split("/webhooks/").next().unwrap_or(webhook_url);
    let url = format!("{base}/payments/{id}");
    let unreachable = |reason: String| SimulateError::Unreachable {
        url: url.clone(),
        reason,
    };
    let response = reqwest::Client::new()
        .get(&url)
        .send()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Err(SimulateError::NotConfigured(format!("the gateway has no payment {id}")));
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

/// Sends the delivery `times` times and returns each answer (status, body).
pub async fn send(delivery: &Delivery, times: u32) -> Result<Vec<(u16, String)>, SimulateError> {
    crate::startup::install_crypto_provider();
    let client = reqwest::Client::new();
    let mut answers = Vec::new();
    for _ in 0..times.max(1) {
        let mut request = client
            .post(&delivery.url)
            .header("content-type", "application/json")
            .body(delivery.body.clone());
        for (name, value) in &delivery.headers {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| SimulateError::Unreachable {
            url: delivery.url.clone(),
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

    fn settings() -> Settings {
        let env = [
            ("PAYHOOK__PROVIDERS__STRIPE__ENABLED", "true"),
            ("PAYHOOK__PROVIDERS__STRIPE__WEBHOOK_SECRETS", "whsec_sim"),
            ("PAYHOOK__PROVIDERS__XENDIT__ENABLED", "true"),
            ("PAYHOOK__PROVIDERS__XENDIT__CALLBACK_TOKEN", "xnd_tok"),
        ];
        Settings::load(
            None,
            Some(env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        )
        .unwrap()
    }

    fn sim(provider: Provider, event: &str) -> Simulation {
        Simulation {
            provider,
            event: event.into(),
            payment: PaymentId::parse("0f7d3a8e-5a4b-4f0e-9d7c-2b1f6e3a9c11"),
            provider_ref: None,
            amount: 150_000,
            currency: "IDR".into(),
            to: None,
            token: None,
            bad_signature: false,
            partial: false,
            replay: 1,
        }
    }

    #[test]
    fn every_stripe_event_is_signed_and_parses_as_what_it_says() {
        let verifier = payhook_stripe::SignatureVerifier::new(vec!["whsec_sim".to_owned().into()], 300);
        for event in STRIPE_EVENTS {
            let d = build(&sim(Provider::Stripe, event), &settings()).unwrap();
            assert_eq!(d.url, "http://127.0.0.1:8080/webhooks/stripe");
            assert_eq!(
                verifier.verify(Some(&d.headers[0].1), &d.body, Utc::now().timestamp()),
                Ok(()),
                "{event}"
            );
            match payhook_stripe::parse_event(&d.body) {
                Ok(payhook_domain::source::Parsed::Event(e)) => {
                    assert_eq!(e.event_type, *event);
                    assert_eq!(
                        e.payment.provider_ref.as_deref(),
                        Some("pi_sim_0f7d3a8e5a4b4f0e9d7c2b1f")
                    );
                    if !event.starts_with("charge.dispute") {
                        // Disputes carry no PaymentIntent metadata: they resolve by the PaymentIntent id.
                        assert_eq!(
                            e.payment.payment_id,
                            PaymentId::parse("0f7d3a8e-5a4b-4f0e-9d7c-2b1f6e3a9c11")
                        );
                    }
                }
                other => panic!("{event}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_known_payment_intent_is_used_as_is() {
        let mut known = sim(Provider::Stripe, "charge.dispute.created");
        known.provider_ref = Some("pi_3RealOne".into());
        let d = build(&known, &settings()).unwrap();
        match payhook_stripe::parse_event(&d.body) {
            Ok(payhook_domain::source::Parsed::Event(e)) => {
                assert_eq!(e.payment.provider_ref.as_deref(), Some("pi_3RealOne"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn xendit_callbacks_carry_the_token_and_major_units() {
        let d = build(&sim(Provider::Xendit, "paid"), &settings()).unwrap();
        assert_eq!(d.headers, vec![("x-callback-token".to_owned(), "xnd_tok".to_owned())]);
        match payhook_xendit::parse_callback(&d.body, "payhook") {
            Ok(payhook_domain::source::Parsed::Event(e)) => {
                assert_eq!(e.change, payhook_domain::PaymentChange::paid(Some(150_000)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_signatures_and_unknown_events() {
        let mut bad = sim(Provider::Stripe, "payment_intent.succeeded");
        bad.bad_signature = true;
        let d = build(&bad, &settings()).unwrap();
        let verifier = payhook_stripe::SignatureVerifier::new(vec!["whsec_sim".to_owned().into()], 300);
        assert!(verifier
            .verify(Some(&d.headers[0].1), &d.body, Utc::now().timestamp())
            .is_err());
        assert!(matches!(
            build(&sim(Provider::Stripe, "invoice.paid"), &settings()),
            Err(SimulateError::UnknownEvent { .. })
        ));
        let mut no_payment = sim(Provider::Xendit, "paid");
        no_payment.payment = None;
        assert!(matches!(
            build(&no_payment, &settings()),
            Err(SimulateError::NotConfigured(_))
        ));
        assert!(
            matches!(
                build(&sim(Provider::Qpay, "paid"), &settings()),
                Err(SimulateError::NotConfigured(_))
            ),
            "qpay needs the token"
        );
        assert!(matches!(
            build(&sim(Provider::Junglepay, "teleported"), &settings()),
            Err(SimulateError::UnknownEvent { .. })
        ));
    }

    #[test]
    fn qpay_and_junglepay_callbacks_carry_the_token_in_the_url() {
        let mut q = sim(Provider::Qpay, "paid");
        q.token = Some("ab".repeat(16));
        let d = build(&q, &settings()).unwrap();
        assert_eq!(
            d.url,
            format!(
                "http://127.0.0.1:8080/webhooks/qpay?payment_id=0f7d3a8e-5a4b-4f0e-9d7c-2b1f6e3a9c11&token={}",
                "ab".repeat(16)
            )
        );
        let mut j = sim(Provider::Junglepay, "chargedback");
        j.token = q.token.clone();
        j.provider_ref = Some("282".into());
        let d = build(&j, &settings()).unwrap();
        let delivery = payhook_domain::source::Delivery {
            headers: &[],
            query: d.url.split_once('?').unwrap().1,
            body: &d.body,
            received_at: Utc::now(),
        };
        use payhook_domain::source::WebhookSource;
        match payhook_junglepay::JunglePayPostbacks.parse(&delivery) {
            Ok(payhook_domain::source::Parsed::Event(e)) => {
                assert_eq!(e.payment.provider_ref.as_deref(), Some("282"));
                assert_eq!(
                    e.change,
                    payhook_domain::PaymentChange::Dispute {
                        status: payhook_domain::DisputeStatus::Lost
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        j.bad_signature = true;
        assert!(build(&j, &settings()).unwrap().url.ends_with(&"0".repeat(32)));
    }
}
