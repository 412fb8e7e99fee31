use super::*;
use serde_json::json;

const PAYMENT: &str = "2b5f3c1e-8d4a-4c6b-9e0f-1a2b3c4d5e6f";

fn callback(status: &str, extra: Value) -> Vec<u8> {
    let mut cb = json!({
        "id": "65a1f0c2e4b0d1a2b3c4d5e6", "external_id": PAYMENT, "user_id": "5f1e2d3c4b5a69788796a5b4",
        "status": status, "amount": 150000, "paid_amount": 150000, "currency": "IDR",
        "payment_method": "BANK_TRANSFER", "payment_channel": "BCA",
        "paid_at": "2026-11-20T08:15:30.123Z", "created": "2026-11-20T08:00:00.000Z",
        "updated": "2026-11-20T08:15:31.000Z", "payer_email": "budi@example.co.id",
        "description": "Order 77", "metadata": { "app": "payhook" },
    });
    if let (Some(cb), Some(extra)) = (cb.as_object_mut(), extra.as_object()) {
        cb.extend(extra.clone());
    }
    serde_json::to_vec(&cb).unwrap()
}

fn event(body: &[u8]) -> WebhookEvent {
    match parse_callback(body, "payhook") {
        Ok(Parsed::Event(e)) => *e,
        other => panic!("expected an event, got {other:?}"),
    }
}

fn ignored_result(body: &[u8]) -> ProcessingResult {
    match parse_callback(body, "payhook") {
        Ok(Parsed::Ignored { result, .. }) => result,
        other => panic!("expected ignored, got {other:?}"),
    }
}

#[test]
fn paid_and_settled_are_paid_in_minor_units() {
    for status in ["PAID", "SETTLED"] {
        let e = event(&callback(status, json!({})));
        assert_eq!(e.provider, Provider::Xendit);
        assert_eq!(
            e.change,
            PaymentChange::paid(Some(15_000_000)),
            "150000 IDR is 15000000 sen"
        );
        assert_eq!(e.event_id.as_str(), format!("65a1f0c2e4b0d1a2b3c4d5e6:{status}"));
        assert_eq!(e.event_type, format!("invoice.{}", status.to_ascii_lowercase()));
        assert_eq!(e.payment.payment_id, PaymentId::parse(PAYMENT));
        assert_eq!(e.payment.provider_ref.as_deref(), Some("65a1f0c2e4b0d1a2b3c4d5e6"));
        assert_eq!(e.occurred_at.to_rfc3339(), "2026-11-20T08:15:31+00:00");
    }
}

#[test]
fn a_lower_paid_amount_is_passed_on_for_the_domain_to_refuse() {
    let e = event(&callback("PAID", json!({ "paid_amount": 100000 })));
    assert_eq!(e.change, PaymentChange::paid(Some(10_000_000)));
}

#[test]
fn decimal_amounts_convert_exactly() {
    let e = event(&callback(
        "PAID",
        json!({ "currency": "USD", "amount": 10.5, "paid_amount": 10.5 }),
    ));
    assert_eq!(e.change, PaymentChange::paid(Some(1050)));
}

#[test]
fn expired_is_expired_and_pending_needs_nothing() {
    assert_eq!(
        event(&callback("EXPIRED", json!({}))).change,
        PaymentChange::status(PaymentStatus::Expired)
    );
    assert_eq!(
        ignored_result(&callback("PENDING", json!({}))),
        ProcessingResult::UnhandledEventType
    );
}

#[test]
fn invoices_payhook_did_not_create_are_acknowledged_and_ignored() {
    assert_eq!(
        ignored_result(&callback("PAID", json!({ "external_id": "ORDER-2024-17" }))),
        ProcessingResult::IgnoredNonUuidExternalId
    );
    assert_eq!(
        ignored_result(&callback("PAID", json!({ "metadata": { "app": "billing-legacy" } }))),
        ProcessingResult::IgnoredOtherApp
    );
    // No tag at all (an invoice created before tagging) is still ours when the id is a UUID.
    assert!(matches!(
        parse_callback(&callback("PAID", json!({ "metadata": null })), "payhook"),
        Ok(Parsed::Event(_))
    ));
}

#[test]
fn malformed_callbacks_are_errors_not_panics() {
    let bad: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"[]".to_vec(),
        callback("PAID", json!({ "amount": "150000" })),
        callback("PAID", json!({ "amount": -5 })),
        callback("PAID", json!({ "amount": 1.234 })),
        callback("PAID", json!({ "currency": "rupiah" })),
        callback(
            "PAID",
            json!({ "updated": "yesterday", "paid_at": null, "created": null }),
        ),
        callback("PAID", json!({ "id": "" })),
    ];
    for body in bad {
        assert!(
            parse_callback(&body, "payhook").is_err(),
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[test]
fn primary_fields_carry_the_dedup_key_and_minor_amount() {
    let f = primary_fields(&callback("PAID", json!({})));
    assert_eq!(f.event_id.as_deref(), Some("65a1f0c2e4b0d1a2b3c4d5e6:PAID"));
    assert_eq!(f.event_type.as_deref(), Some("invoice.paid"));
    assert_eq!(f.external_id.as_deref(), Some(PAYMENT));
    assert_eq!(f.provider_status.as_deref(), Some("PAID"));
    assert_eq!(f.amount, Some(15_000_000));
    assert_eq!(primary_fields(b"nope"), PrimaryFields::default());
}

fn refund_callback(event: &str, status: &str, invoice: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "event": event, "business_id": "6094fa76c2fd53701b8e079c", "created": "2026-11-21T09:00:00.000Z",
        "data": {
            "id": "rfd-6f4a377d-a201-437f-9119-f8b00cbbe857", "payment_id": null, "invoice_id": invoice,
            "amount": 50000, "payment_method_type": "BANK_TRANSFER", "channel_code": "BCA", "currency": "IDR",
            "status": status, "reason": "REQUESTED_BY_CUSTOMER",
            "reference_id": "5b1f3c7e-9a2d-4e8f-b6c1-0d2e3f4a5b6c", "failure_code": null,
            "created": "2026-11-21T08:59:00.000Z", "updated": "2026-11-21T09:00:00.000Z",
            "metadata": { "payhook_payment_id": PAYMENT },
        },
    }))
    .unwrap()
}

/// Refund callbacks report the refund (in minor units), found by payhook's refund id
/// (`reference_id`), for the invoice's payment; deduplicated on refund id + status.
#[test]
fn refund_callbacks_report_the_refund() {
    for (event_type, status, expected) in [
        ("refund.succeeded", "SUCCEEDED", RefundStatus::Succeeded),
        ("refund.failed", "FAILED", RefundStatus::Failed),
    ] {
        let e = event(&refund_callback(event_type, status, json!("65a1f0c2e4b0d1a2b3c4d5e6")));
        assert_eq!(e.event_type, event_type);
        assert_eq!(
            e.event_id.as_str(),
            format!("rfd-6f4a377d-a201-437f-9119-f8b00cbbe857:{status}")
        );
        assert_eq!(e.payment.provider_ref.as_deref(), Some("65a1f0c2e4b0d1a2b3c4d5e6"));
        assert_eq!(e.payment.payment_id, PaymentId::parse(PAYMENT));
        assert_eq!(
            e.change,
            PaymentChange::RefundUpdate {
                refund: RefundReport::One {
                    provider_ref: "rfd-6f4a377d-a201-437f-9119-f8b00cbbe857".into(),
                    refund_id: RefundId::parse("5b1f3c7e-9a2d-4e8f-b6c1-0d2e3f4a5b6c"),
                    amount: 5_000_000,
                    currency: Currency::parse("IDR").unwrap(),
                    status: expected,
                }
            }
        );
    }
    assert_eq!(
        ignored_result(&refund_callback("refund.succeeded", "SUCCEEDED", Value::Null)),
        ProcessingResult::UnhandledEventType,
        "a refund of another kind of payment is not payhook's"
    );
}
