//! Sample Stripe deliveries for `payhook simulate`: realistic events about one
//! PaymentIntent, signed with the endpoint secret the way Stripe signs them.

use crate::verify::signature_header;
use payhook_domain::connector::{known_event, SampleDelivery, SampleRequest, SimulateError, Simulator};
use payhook_domain::Provider;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

pub const EVENTS: &[&str] = &[
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.requires_action",
    "payment_intent.amount_capturable_updated",
    "charge.captured",
    "charge.refunded",
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.closed",
    "charge.dispute.funds_reinstated",
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "product.created",
    "product.updated",
    "product.deleted",
    "price.created",
    "invoice.created",
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_failed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
];

/// Signs with the first configured endpoint secret; an event for a connected account
/// with the first Connect endpoint secret, when one is configured.
pub struct StripeSimulator {
    secret: SecretString,
    connect_secret: Option<SecretString>,
}

impl StripeSimulator {
    pub fn new(secret: SecretString) -> Self {
        Self {
            secret,
            connect_secret: None,
        }
    }

    pub fn with_connect_secret(mut self, secret: Option<SecretString>) -> Self {
        self.connect_secret = secret;
        self
    }
}

/// A billing object for the customer, product, price, invoice and subscription events.
fn billing_object(sim: &SampleRequest, amount: i64, currency: &str) -> Option<serde_json::Value> {
    let kind = sim.event.rsplit_once('.')?.0;
    let id = |prefix: &str| {
        sim.object
            .clone()
            .unwrap_or_else(|| format!("{prefix}_sim_{}", random_suffix()))
    };
    let now = sim.now.timestamp();
    // A subscription's events name one Stripe subscription per payhook subscription,
    // so runs for `--subscription` drive the same one; its period starts at the run.
    let subscription_id = match (sim.subscription, &sim.object) {
        (Some(id), _) => format!("sub_sim_{}", &id.as_uuid().simple().to_string()[..24]),
        (None, _) if kind == "customer.subscription" => id("sub"),
        _ => "sub_sim".to_owned(),
    };
    let metadata = match sim.subscription {
        Some(id) => json!({ crate::billing::SUBSCRIPTION_ID_METADATA_KEY: id.to_string() }),
        None => json!({}),
    };
    let price = json!({ "id": "price_sim", "object": "price", "product": "prod_sim", "unit_amount": amount,
        "currency": currency, "recurring": { "interval": "month", "interval_count": 1 }, "active": true,
        "livemode": false });
    let period_end = now + 30 * 86_400;
    let object = match kind {
        "customer" => json!({ "id": id("cus"), "object": "customer", "email": "customer@example.com",
            "name": "payhook simulate", "created": now, "livemode": false, "metadata": {},
            "deleted": sim.event == "customer.deleted" }),
        "product" => {
            json!({ "id": id("prod"), "object": "product", "name": "payhook plan", "active": sim.event != "product.deleted",
            "created": now, "livemode": false, "metadata": {} })
        }
        "price" => json!({ "id": id("price"), "object": "price", "product": "prod_sim", "unit_amount": amount,
            "currency": currency, "recurring": { "interval": "month", "interval_count": 1 }, "active": true,
            "created": now, "livemode": false }),
        "invoice" => json!({ "id": id("in"), "object": "invoice", "customer": "cus_sim", "amount_due": amount,
            "amount_paid": if sim.event == "invoice.paid" { amount } else { 0 }, "currency": currency,
            "status": match sim.event.as_str() {
                "invoice.created" => "draft",
                "invoice.paid" => "paid",
                _ => "open",
            },
            "subscription": subscription_id, "subscription_details": { "metadata": metadata },
            "payment_intent": format!("pi_sim_{}", random_suffix()),
            "billing_reason": "subscription_cycle", "created": now, "livemode": false,
            "lines": { "object": "list", "has_more": false, "data": [{ "object": "line_item", "amount": amount,
                "period": { "start": now, "end": period_end }, "price": price }] } }),
        "customer.subscription" => json!({ "id": subscription_id, "object": "subscription", "customer": "cus_sim",
            "status": match sim.event.as_str() {
                "customer.subscription.created" => "incomplete",
                "customer.subscription.deleted" => "canceled",
                "customer.subscription.paused" => "paused",
                _ => "active",
            },
            "current_period_start": now, "current_period_end": period_end, "cancel_at_period_end": false,
            "created": now, "livemode": false, "metadata": metadata,
            "items": { "object": "list", "has_more": false,
                "data": [{ "id": "si_sim", "object": "subscription_item", "price": price }] } }),
        _ => return None,
    };
    Some(object)
}

fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..24].to_owned()
}

impl Simulator for StripeSimulator {
    fn events(&self) -> &'static [&'static str] {
        EVENTS
    }

    fn sample(&self, sim: &SampleRequest) -> Result<SampleDelivery, SimulateError> {
        known_event(Provider::Stripe, EVENTS, sim)?;
        // The same PaymentIntent across runs for one --payment, else a fresh one.
        let pi = match (&sim.provider_ref, sim.payment) {
            (Some(known), _) => known.clone(),
            (None, Some(id)) => format!("pi_sim_{}", &id.as_uuid().simple().to_string()[..24]),
            (None, None) => format!("pi_sim_{}", random_suffix()),
        };
        let charge_id = format!("ch_{}", pi.strip_prefix("pi_").unwrap_or(&pi));
        let metadata = match sim.payment {
            Some(id) => json!({ crate::events::PAYMENT_ID_METADATA_KEY: id.to_string() }),
            None => json!({}),
        };
        let (amount, currency) = (sim.amount, sim.currency.to_ascii_lowercase());
        let charge = |refunded: i64, full: bool| {
            json!({ "id": charge_id, "object": "charge", "amount": amount, "amount_captured": amount,
                    "amount_refunded": refunded, "refunded": full, "currency": currency, "payment_intent": pi,
                    "status": "succeeded", "metadata": metadata })
        };
        let intent = |status: &str, received: i64| {
            json!({ "id": pi, "object": "payment_intent", "amount": amount, "amount_received": received,
                    "currency": currency, "status": status, "metadata": metadata, "livemode": false,
                    "description": "payhook simulate", "receipt_email": "customer@example.com" })
        };
        let object = match sim.event.as_str() {
            _ if billing_object(sim, amount, &currency).is_some() => {
                billing_object(sim, amount, &currency).unwrap_or_default()
            }
            "payment_intent.succeeded" => intent("succeeded", amount),
            "payment_intent.payment_failed" => intent("requires_payment_method", 0),
            "payment_intent.canceled" => intent("canceled", 0),
            "payment_intent.requires_action" => intent("requires_action", 0),
            "payment_intent.amount_capturable_updated" => intent("requires_capture", 0),
            "charge.captured" => {
                // --partial captures half of what was held.
                let captured = if sim.partial { amount / 2 } else { amount };
                let mut ch = charge(0, false);
                ch["captured"] = json!(true);
                ch["amount_captured"] = json!(captured);
                ch
            }
            "charge.refunded" if sim.partial => charge(amount / 2, false),
            "charge.refunded" => charge(amount, true),
            dispute => json!({ "id": format!("dp_{}", random_suffix()), "object": "dispute", "amount": amount,
                "currency": currency, "charge": charge_id, "payment_intent": pi, "reason": "fraudulent",
                "evidence_details": { "due_by": sim.now.timestamp() + 7 * 86_400, "has_evidence": false },
                "status": match dispute {
                    "charge.dispute.closed" => "lost",
                    "charge.dispute.funds_reinstated" => "won",
                    "charge.dispute.updated" => "under_review",
                    _ => "needs_response",
                } }),
        };
        let mut envelope = json!({
            "id": format!("evt_sim_{}", random_suffix()), "object": "event", "type": sim.event,
            "created": sim.now.timestamp(), "livemode": false, "api_version": "2024-06-20",
            "pending_webhooks": 1, "data": { "object": object },
        });
        if let Some(account) = &sim.account {
            envelope["account"] = json!(account);
        }
        let body = serde_json::to_vec(&envelope).unwrap_or_default();
        let key = match (&sim.account, &self.connect_secret) {
            _ if sim.bad_signature => "whsec_payhook_simulate_wrong_secret",
            (Some(_), Some(connect)) => connect.expose_secret(),
            _ => self.secret.expose_secret(),
        };
        let signature = signature_header(key, sim.now.timestamp(), &body);
        Ok(SampleDelivery {
            query: String::new(),
            headers: vec![("stripe-signature".into(), signature)],
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StripeConfig, StripeWebhooks};
    use chrono::Utc;
    use payhook_domain::source::{Delivery, Parsed, WebhookSource};
    use payhook_domain::{PaymentId, SubscriptionStatus};

    const PAYMENT: &str = "0f7d3a8e-5a4b-4f0e-9d7c-2b1f6e3a9c11";

    fn sim(event: &str) -> SampleRequest {
        SampleRequest {
            event: event.into(),
            payment: PaymentId::parse(PAYMENT),
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

    fn webhooks() -> StripeWebhooks {
        StripeWebhooks::new(&StripeConfig::with_secret("whsec_sim"))
    }

    fn received(d: &SampleDelivery) -> Delivery<'_> {
        Delivery {
            headers: &d.headers,
            query: &d.query,
            body: &d.body,
            received_at: Utc::now(),
        }
    }

    #[test]
    fn every_event_is_signed_and_parses_as_what_it_says() {
        let simulator = StripeSimulator::new("whsec_sim".to_owned().into());
        for event in EVENTS
            .iter()
            .filter(|e| e.starts_with("payment_intent") || e.starts_with("charge"))
        {
            let d = simulator.sample(&sim(event)).unwrap();
            assert_eq!(webhooks().authenticate(&received(&d)), Ok(()), "{event}");
            match webhooks().parse(&received(&d)) {
                Ok(Parsed::Event(e)) => {
                    assert_eq!(e.event_type, *event);
                    assert_eq!(
                        e.payment.provider_ref.as_deref(),
                        Some("pi_sim_0f7d3a8e5a4b4f0e9d7c2b1f")
                    );
                    if !event.starts_with("charge.dispute") {
                        // Disputes carry no PaymentIntent metadata: they resolve by the PaymentIntent id.
                        assert_eq!(e.payment.payment_id, PaymentId::parse(PAYMENT));
                    }
                }
                other => panic!("{event}: {other:?}"),
            }
        }
    }

    #[test]
    fn billing_events_carry_their_object_for_the_mirror_and_the_account_signs_with_connects_secret() {
        use secrecy::SecretString;
        let simulator = StripeSimulator::new("whsec_sim".to_owned().into())
            .with_connect_secret(Some(SecretString::from("whsec_connect".to_owned())));
        let mut config = StripeConfig::with_secret("whsec_sim");
        config.connect_webhook_secrets = vec![SecretString::from("whsec_connect".to_owned())];
        let both = StripeWebhooks::new(&config);
        for event in EVENTS
            .iter()
            .filter(|e| !e.starts_with("payment_intent") && !e.starts_with("charge"))
        {
            let mut request = sim(event);
            request.account = Some("acct_sim".into());
            request.object = Some("obj_sim_1".into());
            let d = simulator.sample(&request).unwrap();
            assert!(
                webhooks().authenticate(&received(&d)).is_err(),
                "{event}: signed with the Connect secret"
            );
            assert_eq!(both.authenticate(&received(&d)), Ok(()), "{event}");
            match both.parse(&received(&d)) {
                Ok(Parsed::Event(e)) => {
                    let mirror = e.mirror.clone().expect("mirrored");
                    assert_eq!(
                        (mirror.account.as_str(), mirror.object_id.as_str()),
                        ("acct_sim", "obj_sim_1"),
                        "{event}"
                    );
                    assert_eq!(
                        mirror.deleted,
                        event.ends_with(".deleted") && !event.contains("subscription"),
                        "{event}"
                    );
                    assert_eq!(e.payment.account.as_deref(), Some("acct_sim"));
                    // An invoice of a subscription is also its payment; every other
                    // billing event is the mirror's (and a subscription's) only.
                    let paying = event.starts_with("invoice.pa");
                    assert_eq!(e.is_mirror_only(), !paying, "{event}");
                    assert_eq!(
                        e.subscription.is_some(),
                        paying || event.starts_with("customer.subscription"),
                        "{event}"
                    );
                }
                other => panic!("{event}: {other:?}"),
            }
        }
    }

    /// `--subscription` runs drive one Stripe subscription named after payhook's:
    /// each event carries its word about it, found by payhook's id.
    #[test]
    fn subscription_runs_name_one_subscription_and_carry_their_word_about_it() {
        let simulator = StripeSimulator::new("whsec_sim".to_owned().into());
        let id = payhook_domain::SubscriptionId::from_uuid(uuid::Uuid::new_v4());
        let mut refs = Vec::new();
        for (event, status) in [
            ("customer.subscription.created", Some(SubscriptionStatus::Pending)),
            ("invoice.paid", Some(SubscriptionStatus::Active)),
            ("customer.subscription.updated", Some(SubscriptionStatus::Active)),
            ("invoice.payment_failed", None),
            ("customer.subscription.paused", Some(SubscriptionStatus::Expired)),
            ("customer.subscription.deleted", Some(SubscriptionStatus::Canceled)),
        ] {
            let mut request = sim(event);
            request.subscription = Some(id);
            let d = simulator.sample(&request).unwrap();
            let Ok(Parsed::Event(e)) = webhooks().parse(&received(&d)) else {
                panic!("{event}: not parsed")
            };
            let said = e.subscription.expect("a word about the subscription");
            assert_eq!(said.subscription_id, Some(id), "{event}");
            assert_eq!(said.status, status, "{event}");
            assert!(said.period_end > said.period_start, "{event}");
            assert_eq!(said.price.as_ref().map(|p| p.id.as_str()), Some("price_sim"), "{event}");
            refs.push(said.provider_ref);
            if event.starts_with("invoice.") {
                assert!(e
                    .payment
                    .provider_ref
                    .as_deref()
                    .is_some_and(|r| r.starts_with("pi_sim_")));
            }
        }
        refs.dedup();
        assert_eq!(refs.len(), 1, "one Stripe subscription across the runs");
    }

    #[test]
    fn a_known_payment_intent_is_used_as_is() {
        let mut known = sim("charge.dispute.created");
        known.provider_ref = Some("pi_3RealOne".into());
        let d = StripeSimulator::new("whsec_sim".to_owned().into())
            .sample(&known)
            .unwrap();
        match webhooks().parse(&received(&d)) {
            Ok(Parsed::Event(e)) => assert_eq!(e.payment.provider_ref.as_deref(), Some("pi_3RealOne")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bad_signature_is_refused_and_unknown_events_are_errors() {
        let simulator = StripeSimulator::new("whsec_sim".to_owned().into());
        let mut bad = sim("payment_intent.succeeded");
        bad.bad_signature = true;
        let d = simulator.sample(&bad).unwrap();
        assert!(webhooks().authenticate(&received(&d)).is_err());
        assert!(matches!(
            simulator.sample(&sim("coupon.created")),
            Err(SimulateError::UnknownEvent { .. })
        ));
    }
}
