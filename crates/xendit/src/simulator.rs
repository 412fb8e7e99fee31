//! Sample Xendit callbacks for `payhook simulate`: invoice callbacks, and a refund
//! callback (`refund.succeeded`, a refund made in Xendit's dashboard: `--partial`
//! refunds half), with the account's callback token and amounts in major units, as
//! Xendit sends them.

use crate::CALLBACK_TOKEN_HEADER;
use payhook_domain::connector::{known_event, SampleDelivery, SampleRequest, SimulateError, Simulator};
use payhook_domain::{Currency, Provider};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

pub const EVENTS: &[&str] = &["paid", "settled", "expired", "refund.succeeded"];

pub struct XenditSimulator {
    callback_token: SecretString,
    app_tag: String,
}

impl XenditSimulator {
    pub fn new(callback_token: SecretString, app_tag: String) -> Self {
        Self {
            callback_token,
            app_tag,
        }
    }
}

impl Simulator for XenditSimulator {
    fn events(&self) -> &'static [&'static str] {
        EVENTS
    }

    fn sample(&self, sim: &SampleRequest) -> Result<SampleDelivery, SimulateError> {
        known_event(Provider::Xendit, EVENTS, sim)?;
        let payment = sim.payment.ok_or_else(|| {
            SimulateError::Missing("xendit callbacks name a payhook payment: pass --payment <payment id>".into())
        })?;
        let currency = sim.currency.to_ascii_uppercase();
        let exponent = Currency::parse(&currency)
            .map_err(|e| SimulateError::Missing(e.to_string()))?
            .exponent();
        // Xendit speaks major units: minor / 10^exponent, exactly.
        let major: Value = format_major(sim.amount, exponent).parse().unwrap_or(Value::Null);
        let paid: Value = if sim.partial {
            format_major(sim.amount / 2, exponent).parse().unwrap_or(Value::Null)
        } else {
            major.clone()
        };
        let now = sim.now.to_rfc3339();
        let invoice = sim
            .provider_ref
            .clone()
            .unwrap_or_else(|| format!("inv_sim_{}", &payment.as_uuid().simple().to_string()[..20]));
        if sim.event == "refund.succeeded" {
            let body = serde_json::to_vec(&json!({
                "event": "refund.succeeded", "business_id": "sim_business", "created": now,
                "data": {
                    "id": format!("rfd-sim-{}", sim.now.timestamp_micros()), "invoice_id": invoice,
                    "payment_id": null, "amount": paid, "currency": currency, "status": "SUCCEEDED",
                    "reason": "REQUESTED_BY_CUSTOMER", "reference_id": null, "failure_code": null,
                    "created": now, "updated": now, "metadata": { "payhook_payment_id": payment.to_string() },
                },
            }))
            .unwrap_or_default();
            return Ok(self.delivery(sim, body));
        }
        let body = serde_json::to_vec(&json!({
            "id": invoice,
            "external_id": payment.to_string(), "user_id": "sim_user", "status": sim.event.to_ascii_uppercase(),
            "amount": major, "paid_amount": paid, "currency": currency, "payment_method": "BANK_TRANSFER",
            "payment_channel": "BCA", "paid_at": now, "created": now, "updated": now,
            "payer_email": "customer@example.com", "description": "payhook simulate",
            "metadata": { "app": self.app_tag },
        }))
        .unwrap_or_default();
        Ok(self.delivery(sim, body))
    }
}

impl XenditSimulator {
    /// `body` with the account's callback token (a wrong one for `--bad-signature`).
    fn delivery(&self, sim: &SampleRequest, body: Vec<u8>) -> SampleDelivery {
        let token = if sim.bad_signature {
            "payhook-simulate-wrong-token"
        } else {
            self.callback_token.expose_secret()
        };
        SampleDelivery {
            query: String::new(),
            headers: vec![(CALLBACK_TOKEN_HEADER.into(), token.to_owned())],
            body,
        }
    }
}

fn format_major(minor: i64, exponent: u32) -> String {
    let scale = 10i64.pow(exponent);
    if exponent == 0 {
        minor.to_string()
    } else {
        format!("{}.{:0width$}", minor / scale, minor % scale, width = exponent as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::XenditWebhooks;
    use chrono::Utc;
    use payhook_domain::source::{Delivery, Parsed, WebhookSource};
    use payhook_domain::{PaymentChange, PaymentId};

    fn sim(event: &str) -> SampleRequest {
        SampleRequest {
            event: event.into(),
            payment: PaymentId::parse("0f7d3a8e-5a4b-4f0e-9d7c-2b1f6e3a9c11"),
            provider_ref: None,
            amount: 150_000,
            currency: "IDR".into(),
            token: None,
            bad_signature: false,
            partial: false,
            account: None,
            object: None,
            subscription: None,
            now: Utc::now(),
        }
    }

    #[test]
    fn callbacks_carry_the_token_and_major_units() {
        let simulator = XenditSimulator::new("xnd_tok".to_owned().into(), "payhook".into());
        let webhooks = XenditWebhooks::new("xnd_tok".to_owned().into(), "payhook".into());
        let d = simulator.sample(&sim("paid")).unwrap();
        assert_eq!(d.headers, vec![("x-callback-token".to_owned(), "xnd_tok".to_owned())]);
        let delivery = Delivery {
            headers: &d.headers,
            query: "",
            body: &d.body,
            received_at: Utc::now(),
        };
        assert_eq!(webhooks.authenticate(&delivery), Ok(()));
        match webhooks.parse(&delivery) {
            Ok(Parsed::Event(e)) => assert_eq!(e.change, PaymentChange::paid(Some(150_000))),
            other => panic!("{other:?}"),
        }
    }

    /// A dashboard refund: a refund callback for the payment, half of it with --partial.
    #[test]
    fn a_refund_callback_reports_a_refund_of_the_payment() {
        let simulator = XenditSimulator::new("xnd_tok".to_owned().into(), "payhook".into());
        let webhooks = XenditWebhooks::new("xnd_tok".to_owned().into(), "payhook".into());
        let mut ask = sim("refund.succeeded");
        ask.partial = true;
        ask.provider_ref = Some("inv_real_1".into());
        let d = simulator.sample(&ask).unwrap();
        let delivery = Delivery {
            headers: &d.headers,
            query: "",
            body: &d.body,
            received_at: Utc::now(),
        };
        match webhooks.parse(&delivery) {
            Ok(Parsed::Event(e)) => {
                assert_eq!(e.payment.payment_id, ask.payment);
                assert_eq!(e.payment.provider_ref.as_deref(), Some("inv_real_1"));
                match e.change {
                    PaymentChange::RefundUpdate {
                        refund: payhook_domain::RefundReport::One { amount, status, .. },
                    } => assert_eq!((amount, status), (75_000, payhook_domain::RefundStatus::Succeeded)),
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_payment_is_needed_and_a_bad_token_is_refused() {
        let simulator = XenditSimulator::new("xnd_tok".to_owned().into(), "payhook".into());
        let mut no_payment = sim("paid");
        no_payment.payment = None;
        assert!(matches!(simulator.sample(&no_payment), Err(SimulateError::Missing(_))));
        let mut bad = sim("expired");
        bad.bad_signature = true;
        assert_ne!(simulator.sample(&bad).unwrap().headers[0].1, "xnd_tok");
        assert!(matches!(
            simulator.sample(&sim("refunded")),
            Err(SimulateError::UnknownEvent { .. })
        ));
    }
}
