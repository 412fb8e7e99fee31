//! Sample JunglePay postbacks for `payhook simulate`: the transaction envelope, with
//! the payment's token in the URL as payhook gave it to JunglePay.

use payhook_domain::connector::{
    known_event, payment_token_query, SampleDelivery, SampleRequest, SimulateError, Simulator,
};
use payhook_domain::Provider;
use serde_json::json;

pub const EVENTS: &[&str] = &["paid", "refused", "refunded", "chargedback"];

pub struct JunglePaySimulator;

impl Simulator for JunglePaySimulator {
    fn events(&self) -> &'static [&'static str] {
        EVENTS
    }

    fn sample(&self, sim: &SampleRequest) -> Result<SampleDelivery, SimulateError> {
        known_event(Provider::Junglepay, EVENTS, sim)?;
        let query = payment_token_query(Provider::Junglepay, sim)?;
        let object_id = sim.provider_ref.clone().unwrap_or_else(|| "0".into());
        let body = serde_json::to_vec(&json!({
            "id": sim.now.timestamp_micros(), "type": "transaction", "objectId": object_id,
            "data": { "id": object_id, "amount": sim.amount, "status": sim.event, "paymentMethod": "pix",
                      "updatedAt": sim.now.to_rfc3339() },
        }))
        .unwrap_or_default();
        Ok(SampleDelivery {
            query,
            headers: Vec::new(),
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JunglePayPostbacks;
    use chrono::Utc;
    use payhook_domain::source::{Delivery, Parsed, WebhookSource};
    use payhook_domain::{DisputeStatus, PaymentChange, PaymentId};

    #[test]
    fn postbacks_carry_the_token_in_the_url_and_parse() {
        let mut sim = SampleRequest {
            event: "chargedback".into(),
            payment: PaymentId::parse("0f7d3a8e-5a4b-4f0e-9d7c-2b1f6e3a9c11"),
            provider_ref: Some("282".into()),
            amount: 1000,
            currency: "BRL".into(),
            token: Some("ab".repeat(16)),
            bad_signature: false,
            partial: false,
            account: None,
            object: None,
            subscription: None,
            now: Utc::now(),
        };
        let d = JunglePaySimulator.sample(&sim).unwrap();
        let delivery = Delivery {
            headers: &[],
            query: &d.query,
            body: &d.body,
            received_at: Utc::now(),
        };
        assert_eq!(JunglePayPostbacks.authenticate(&delivery), Ok(()));
        match JunglePayPostbacks.parse(&delivery) {
            Ok(Parsed::Event(e)) => {
                assert_eq!(e.payment.provider_ref.as_deref(), Some("282"));
                assert_eq!(
                    e.change,
                    PaymentChange::Dispute {
                        status: DisputeStatus::Lost,
                        detail: None,
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        sim.bad_signature = true;
        assert!(JunglePaySimulator
            .sample(&sim)
            .unwrap()
            .query
            .ends_with(&"0".repeat(32)));
        sim.event = "teleported".into();
        assert!(matches!(
            JunglePaySimulator.sample(&sim),
            Err(SimulateError::UnknownEvent { .. })
        ));
    }
}
