use super::*;
use serde_json::json;

const PAYMENT_ID: &str = "0f7d3a8e-5a4b-4f0e-9d7c-2b1f6e3a9c11";

fn envelope(event_type: &str, object: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": "evt_1Test", "object": "event", "type": event_type, "created": 1_732_000_000,
        "livemode": false, "api_version": "2024-06-20", "data": { "object": object },
    }))
    .unwrap()
}

fn payment_intent(status: &str, received: i64) -> Value {
    json!({ "id": "pi_3Abc", "object": "payment_intent", "amount": 2500, "amount_received": received,
            "currency": "eur", "status": status, "metadata": { "order": "A-17" },
            "description": "Order A-17", "receipt_email": "ana@example.com" })
}

fn charge(extra: Value) -> Value {
    let mut c = json!({ "id": "ch_3Abc", "object": "charge", "amount": 2500, "amount_captured": 2500,
                        "amount_refunded": 0, "refunded": false, "currency": "eur",
                        "payment_intent": "pi_3Abc", "metadata": {}, "status": "succeeded" });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    c
}

fn event(body: &[u8]) -> WebhookEvent {
    match parse_event(body) {
        Ok(Parsed::Event(e)) => *e,
        other => panic!("expected an event, got {other:?}"),
    }
}

#[test]
fn payment_intent_succeeded_is_paid_with_amount_received() {
    let e = event(&envelope("payment_intent.succeeded", payment_intent("succeeded", 2500)));
    assert_eq!(e.provider, Provider::Stripe);
    assert_eq!(e.event_id.as_str(), "evt_1Test");
    assert_eq!(e.occurred_at.timestamp(), 1_732_000_000);
    assert_eq!(e.change, PaymentChange::paid(Some(2500)));
    assert_eq!(
        e.payment,
        PaymentRef {
            account: None,
            payment_id: None,
            provider_ref: Some("pi_3Abc".into()),
            aliases: Vec::new()
        }
    );
    let details = e.details.unwrap();
    assert_eq!(details.amount.amount_minor(), 2500);
    assert_eq!(details.amount.currency().code(), "EUR");
    assert_eq!(details.customer_email.as_deref(), Some("ana@example.com"));
}

#[test]
fn payment_intent_status_events_map_to_statuses() {
    for (event_type, status) in [
        ("payment_intent.payment_failed", PaymentStatus::Failed),
        ("payment_intent.canceled", PaymentStatus::Canceled),
        ("payment_intent.requires_action", PaymentStatus::RequiresAction),
    ] {
        let e = event(&envelope(event_type, payment_intent("requires_payment_method", 0)));
        assert_eq!(e.change, PaymentChange::status(status), "{event_type}");
        assert_eq!(e.event_type, event_type);
    }
}

#[test]
fn payhook_payment_id_in_metadata_is_the_reference() {
    let mut pi = payment_intent("succeeded", 2500);
    pi["metadata"] = json!({ "payhook_payment_id": PAYMENT_ID });
    let e = event(&envelope("payment_intent.succeeded", pi));
    assert_eq!(e.payment.payment_id, PaymentId::parse(PAYMENT_ID));
    assert_eq!(e.payment.provider_ref.as_deref(), Some("pi_3Abc"));
}

#[test]
fn charge_events_resolve_to_their_payment_intent() {
    let ok = event(&envelope("charge.succeeded", charge(json!({}))));
    assert_eq!(ok.change, PaymentChange::paid(Some(2500)));
    assert_eq!(ok.payment.provider_ref.as_deref(), Some("pi_3Abc"));
    let failed = event(&envelope(
        "charge.failed",
        charge(json!({ "status": "failed", "amount_captured": 0 })),
    ));
    assert_eq!(failed.change, PaymentChange::status(PaymentStatus::Failed));
    assert_eq!(
        ok.payment.aliases,
        vec!["ch_3Abc".to_owned()],
        "the charge id is remembered for the payment"
    );
    let legacy = event(&envelope("charge.succeeded", charge(json!({ "payment_intent": null }))));
    assert_eq!(legacy.payment.provider_ref.as_deref(), Some("ch_3Abc"));
    assert!(legacy.payment.aliases.is_empty());
}

#[test]
fn charge_refunded_full_and_partial() {
    let eur = Currency::parse("EUR").unwrap();
    let full = event(&envelope(
        "charge.refunded",
        charge(json!({ "amount_refunded": 2500, "refunded": true })),
    ));
    assert_eq!(
        full.change,
        PaymentChange::Refund {
            refunded_total: 2500,
            currency: eur
        }
    );
    let partial = event(&envelope(
        "charge.refunded",
        charge(json!({ "amount_refunded": 700, "refunded": false })),
    ));
    assert_eq!(
        partial.change,
        PaymentChange::Refund {
            refunded_total: 700,
            currency: eur
        }
    );
}

#[test]
fn disputes_map_to_dispute_status() {
    for (event_type, status, expected) in [
        ("charge.dispute.created", "needs_response", DisputeStatus::Open),
        ("charge.dispute.created", "warning_needs_response", DisputeStatus::Open),
        ("charge.dispute.closed", "won", DisputeStatus::Won),
        ("charge.dispute.closed", "lost", DisputeStatus::Lost),
    ] {
        let dp = json!({ "id": "dp_1", "object": "dispute", "amount": 2500, "currency": "eur",
                         "status": status, "charge": "ch_3Abc", "payment_intent": "pi_3Abc" });
        let e = event(&envelope(event_type, dp));
        let PaymentChange::Dispute { status: got, detail } = &e.change else {
            panic!("{:?}", e.change)
        };
        assert_eq!(*got, expected);
        let detail = detail.as_deref().unwrap();
        assert_eq!(detail.provider_ref, "dp_1");
        assert_eq!(detail.status, status);
        assert_eq!(detail.closed, expected != DisputeStatus::Open);
        assert_eq!(e.payment.provider_ref.as_deref(), Some("pi_3Abc"));
        assert!(e.details.is_none(), "a dispute's amount is not the payment's amount");
    }
}

#[test]
fn refund_events_report_the_refund_whatever_its_status() {
    let refund = |status: &str| {
        json!({ "id": "re_1", "object": "refund", "amount": 900, "currency": "eur", "status": status,
                "charge": "ch_3Abc", "payment_intent": "pi_3Abc",
                "metadata": { "payhook_refund_id": "5b1f3c7e-9a2d-4e8f-b6c1-0d2e3f4a5b6c" } })
    };
    for (event_type, status, expected) in [
        ("refund.created", "pending", payhook_domain::RefundStatus::Pending),
        ("refund.updated", "succeeded", payhook_domain::RefundStatus::Succeeded),
        ("refund.failed", "failed", payhook_domain::RefundStatus::Failed),
        ("refund.updated", "canceled", payhook_domain::RefundStatus::Canceled),
    ] {
        let e = event(&envelope(event_type, refund(status)));
        assert_eq!(
            e.change,
            PaymentChange::RefundUpdate {
                refund: RefundReport::One {
                    provider_ref: "re_1".into(),
                    refund_id: RefundId::parse("5b1f3c7e-9a2d-4e8f-b6c1-0d2e3f4a5b6c"),
                    amount: 900,
                    currency: Currency::parse("EUR").unwrap(),
                    status: expected,
                }
            },
            "{event_type} {status}"
        );
        assert_eq!(e.payment.provider_ref.as_deref(), Some("pi_3Abc"));
    }
}

#[test]
fn other_event_types_are_ignored_with_their_id() {
    let parsed = parse_event(&envelope(
        "invoiceitem.created",
        json!({ "id": "ii_1", "object": "invoiceitem" }),
    ));
    match parsed {
        Ok(Parsed::Ignored {
            event_id,
            result,
            reason,
        }) => {
            assert_eq!(result, ProcessingResult::UnhandledEventType);
            assert_eq!(event_id.as_deref(), Some("evt_1Test"));
            assert!(reason.contains("invoiceitem.created"));
        }
        other => panic!("expected ignored, got {other:?}"),
    }
}

#[test]
fn malformed_bodies_are_errors_not_panics() {
    let bad: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"{".to_vec(),
        b"[]".to_vec(),
        b"{\"id\":\"evt_1\"}".to_vec(),
        envelope("payment_intent.succeeded", json!({ "id": "pi_1" })),
        envelope(
            "payment_intent.succeeded",
            json!({ "id": "pi_1", "amount": -5, "currency": "usd" }),
        ),
        envelope(
            "payment_intent.succeeded",
            json!({ "id": "pi_1", "amount": 5, "currency": "dollars" }),
        ),
        envelope("charge.refunded", json!("not an object")),
        serde_json::to_vec(&json!({ "id": "", "type": "charge.failed", "created": 1, "data": { "object": {} } }))
            .unwrap(),
        vec![0xff, 0xfe, 0x00],
    ];
    for body in bad {
        assert!(
            parse_event(&body).is_err(),
            "{:?} parsed",
            String::from_utf8_lossy(&body)
        );
    }
}

#[test]
fn primary_fields_are_best_effort() {
    let f = primary_fields(&envelope("payment_intent.succeeded", payment_intent("succeeded", 2500)));
    assert_eq!(f.event_id.as_deref(), Some("evt_1Test"));
    assert_eq!(f.event_type.as_deref(), Some("payment_intent.succeeded"));
    assert_eq!(f.external_id.as_deref(), Some("pi_3Abc"));
    assert_eq!(f.provider_status.as_deref(), Some("succeeded"));
    assert_eq!(f.amount, Some(2500));
    assert_eq!(primary_fields(b"not json"), PrimaryFields::default());
}

#[test]
fn primary_fields_survive_an_oddly_shaped_body() {
    let odd = br#"{"id": "evt_odd", "type": "payment_intent.succeeded", "data": {"object": "pi_3Abc"}}"#;
    let f = primary_fields(odd);
    assert_eq!(
        f.event_id.as_deref(),
        Some("evt_odd"),
        "found despite data.object not being an object"
    );
    assert_eq!(f.event_type.as_deref(), Some("payment_intent.succeeded"));
    assert_eq!(f.external_id, None);
    let f = primary_fields(br#"{"id": 7, "type": "charge.failed", "data": {"object": {"id": "ch_1", "amount": "x"}}}"#);
    assert_eq!(
        (f.event_id, f.event_type.as_deref()),
        (None, Some("charge.failed")),
        "a non-text id is left out"
    );
    assert_eq!((f.external_id.as_deref(), f.amount), (Some("ch_1"), None));
    let f = primary_fields(br#"{"id": "evt_2", "data": null}"#);
    assert_eq!((f.event_id.as_deref(), f.external_id), (Some("evt_2"), None));
}

/// Held funds (manual capture) are authorized, not paid; a capture of part of them is
/// paid for what was captured.
#[test]
fn uncaptured_charges_are_authorized_and_captures_are_paid_for_what_was_captured() {
    let held = event(&envelope(
        "charge.succeeded",
        charge(json!({ "captured": false, "amount_captured": 0 })),
    ));
    assert_eq!(held.change, PaymentChange::status(PaymentStatus::Authorized));
    let capturable = event(&envelope(
        "payment_intent.amount_capturable_updated",
        payment_intent("requires_capture", 0),
    ));
    assert_eq!(capturable.change, PaymentChange::status(PaymentStatus::Authorized));

    let eur = Currency::parse("EUR").unwrap();
    let part = event(&envelope(
        "charge.captured",
        charge(json!({ "captured": true, "amount_captured": 1500 })),
    ));
    assert_eq!(
        part.change,
        PaymentChange::Capture {
            amount: 1500,
            currency: eur
        }
    );
    let whole = event(&envelope("charge.captured", charge(json!({ "captured": true }))));
    assert_eq!(whole.change, PaymentChange::paid(Some(2500)));
    let partial_intent = event(&envelope("payment_intent.succeeded", payment_intent("succeeded", 1500)));
    assert_eq!(
        partial_intent.change,
        PaymentChange::Capture {
            amount: 1500,
            currency: eur
        }
    );
}

/// Every dispute event type carries the dispute: amount, reason, status, deadline.
#[test]
fn dispute_events_carry_the_dispute_itself() {
    for event_type in [
        "charge.dispute.created",
        "charge.dispute.updated",
        "charge.dispute.closed",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.funds_reinstated",
    ] {
        let dp = json!({ "id": "dp_9", "object": "dispute", "amount": 1200, "currency": "eur",
                         "reason": "product_not_received", "status": "under_review",
                         "evidence_details": { "due_by": 1_733_000_000, "has_evidence": false },
                         "charge": "ch_3Abc", "payment_intent": "pi_3Abc" });
        let e = event(&envelope(event_type, dp));
        let PaymentChange::Dispute {
            detail: Some(detail), ..
        } = &e.change
        else {
            panic!("{event_type}: {:?}", e.change)
        };
        assert_eq!(detail.amount, Some(1200), "{event_type}");
        assert_eq!(detail.currency, Some(Currency::parse("EUR").unwrap()));
        assert_eq!(detail.reason.as_deref(), Some("product_not_received"));
        assert_eq!(detail.evidence_due_by.map(|t| t.timestamp()), Some(1_733_000_000));
        assert!(!detail.closed);
    }
}

/// Subscription events are about payhook's subscriptions whether or not the mirror is
/// kept: without it they carry no object, and still their word about the subscription.
#[test]
fn subscription_events_carry_their_word_with_or_without_the_mirror() {
    let body = envelope(
        "customer.subscription.updated",
        serde_json::json!({ "id": "sub_1", "object": "subscription", "status": "past_due", "customer": "cus_1",
            "cancel_at_period_end": true, "metadata": {},
            "items": { "object": "list", "data": [{ "id": "si_1", "current_period_start": 1_800_000_000,
                "current_period_end": 1_802_592_000,
                "price": { "id": "price_1", "unit_amount": 900, "currency": "usd",
                    "recurring": { "interval": "week", "interval_count": 2 } } }] } }),
    );
    for parsed in [parse_event(&body), parse_event_without_mirror(&body)] {
        let Ok(Parsed::Event(e)) = parsed else {
            panic!("not an event: {parsed:?}")
        };
        let said = e.subscription.clone().expect("its word about the subscription");
        assert_eq!(said.provider_ref, "sub_1");
        assert_eq!(said.status, Some(payhook_domain::SubscriptionStatus::PastDue));
        assert_eq!(said.cancel_at_period_end, Some(true));
        // The period from the item, as API versions from 2025-03-31 put it.
        assert_eq!(said.period_end.map(|t| t.timestamp()), Some(1_802_592_000));
        let price = said.price.expect("its price");
        assert_eq!(
            (price.interval, price.interval_count),
            (payhook_domain::Interval::Week, 2)
        );
        assert!(e.is_mirror_only());
    }
    // An invoice of no subscription (a one-off) stays the mirror's only.
    let one_off = envelope(
        "invoice.paid",
        serde_json::json!({ "id": "in_1", "object": "invoice", "currency": "usd", "amount_paid": 500,
            "parent": { "type": "quote_details", "subscription_details": { "subscription": "sub_x" } } }),
    );
    let Ok(Parsed::Event(e)) = parse_event(&one_off) else {
        panic!("not an event")
    };
    assert!(e.subscription.is_none());
    assert!(e.is_mirror_only());
}
