use super::*;
use chrono::{TimeZone, Utc};

const ID: &str = "67e55044-10b1-426f-9247-bb680e5fe0c8";

fn delivery<'a>(query: &'a str, body: &'a [u8]) -> Delivery<'a> {
    Delivery {
        headers: &[],
        query,
        body,
        received_at: Utc.timestamp_opt(1_800_000_000, 0).single().unwrap(),
    }
}

fn postback(kind: &str, status: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": 686401, "type": kind, "objectId": "282", "url": "https://x",
        "data": { "id": 282, "amount": 10000, "status": status, "updatedAt": "2026-11-22T10:00:00Z" },
    }))
    .unwrap()
}

#[test]
fn a_transaction_postback_is_a_claim_keyed_on_the_envelope_id() {
    let query = format!("payment_id={ID}&token=t");
    let Ok(Parsed::Event(event)) = JunglePayPostbacks.parse(&delivery(&query, &postback("transaction", "paid"))) else {
        panic!("a transaction postback is an event");
    };
    assert_eq!(event.event_id.as_str(), "686401");
    assert_eq!(event.payment.provider_ref.as_deref(), Some("282"));
    assert_eq!(event.payment.payment_id.map(|p| p.to_string()).as_deref(), Some(ID));
    assert!(event.confirm_with_provider, "the posted status is never applied as is");
    assert_eq!(event.change, PaymentChange::paid(None));

    let Ok(Parsed::Event(chargeback)) =
        JunglePayPostbacks.parse(&delivery(&query, &postback("transaction", "chargedback")))
    else {
        panic!()
    };
    assert_eq!(
        chargeback.change,
        PaymentChange::Dispute {
            status: DisputeStatus::Lost,
            detail: None,
        }
    );
}

#[test]
fn other_postback_types_are_ignored_and_garbage_is_malformed() {
    let query = format!("payment_id={ID}&token=t");
    for kind in ["checkout", "transfer"] {
        assert!(matches!(
            JunglePayPostbacks.parse(&delivery(&query, &postback(kind, "paid"))),
            Ok(Parsed::Ignored {
                result: ProcessingResult::UnhandledEventType,
                ..
            })
        ));
    }
    assert!(JunglePayPostbacks.parse(&delivery(&query, b"nope")).is_err());
    assert!(JunglePayPostbacks
        .parse(&delivery(&query, b"{\"type\":\"transaction\"}"))
        .is_err());
}

#[test]
fn without_an_envelope_id_the_key_is_object_status_and_time() {
    let query = format!("payment_id={ID}&token=t");
    let body = br#"{"type":"transaction","objectId":282,"data":{"status":"paid","updatedAt":"2026-11-22T10:00:00Z"}}"#;
    let Ok(Parsed::Event(event)) = JunglePayPostbacks.parse(&delivery(&query, body)) else {
        panic!()
    };
    assert_eq!(event.event_id.as_str(), "282:paid:2026-11-22T10:00:00Z");
}

#[test]
fn statuses_map_as_documented() {
    let s = |status| provider_status(status, 10_000, 0, None).unwrap();
    for pending in ["waiting_payment", "processing", "authorized"] {
        assert_eq!(s(pending).status, PaymentStatus::Pending);
    }
    assert_eq!(
        (s("paid").status, s("paid").paid_amount),
        (PaymentStatus::Paid, Some(10_000))
    );
    assert_eq!(s("refused").status, PaymentStatus::Failed);
    assert_eq!(s("canceled").status, PaymentStatus::Canceled);
    assert_eq!(s("refunded").status, PaymentStatus::Refunded);
    assert_eq!(s("chargedback").dispute, Some(DisputeStatus::Lost));
    assert!(
        s("partially_paid").paid_amount.unwrap() < 10_000,
        "partial stays below the amount"
    );
    assert!(provider_status("teleported", 1, 0, None).is_none());
}
