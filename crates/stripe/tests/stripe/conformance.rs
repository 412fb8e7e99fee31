//! Conformance with the public example payloads in `$PAYHOOK_FIXTURES_DIR/stripe`
//! (Stripe docs and SDK test data). Run by `make conformance`, which points
//! PAYHOOK_FIXTURES_DIR at them; `make test` stays self-contained.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payhook_domain::source::Parsed;
use payhook_domain::{DisputeStatus, PaymentChange, PaymentStatus};
use payhook_stripe::{parse_event, SignatureError, SignatureVerifier, DEFAULT_TOLERANCE_SECS};
use secrecy::SecretString;
use serde_json::Value;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    let dir = std::env::var("PAYHOOK_FIXTURES_DIR").expect("set PAYHOOK_FIXTURES_DIR (make conformance does)");
    PathBuf::from(dir).join("stripe")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn verifier(secrets: &[&str]) -> SignatureVerifier {
    SignatureVerifier::new(
        secrets.iter().map(|s| SecretString::from(s.to_string())).collect(),
        DEFAULT_TOLERANCE_SECS,
    )
}

#[test]
#[ignore = "reads the published examples in PAYHOOK_FIXTURES_DIR; run with make conformance"]
fn every_signature_vector_behaves_as_documented() {
    let vectors: Value = serde_json::from_slice(&read("signature_vectors.json")).unwrap();
    let vectors = vectors["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 5);
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let body = read(v["body_file"].as_str().unwrap());
        let t = v["t"].as_i64().unwrap();
        if name.starts_with("negative") {
            // Signed with the secret stripped of `whsec_`: the real secret must not verify it.
            let header = format!("t={t},v1={}", v["v1"].as_str().unwrap());
            assert_eq!(
                verifier(&["whsec_test_secret"]).verify(Some(&header), &body, t),
                Err(SignatureError::NoMatch),
                "{name}"
            );
        } else if name.starts_with("rotation") {
            let header = v["header"].as_str().unwrap();
            for secret in ["whsec_test_secret", "whsec_other"] {
                assert_eq!(
                    verifier(&[secret]).verify(Some(header), &body, t),
                    Ok(()),
                    "{name} with {secret}"
                );
            }
        } else {
            let secret = v["secret"].as_str().unwrap();
            let expected = format!("t={t},v1={}", v["expected_v1"].as_str().unwrap());
            assert_eq!(payhook_stripe::signature_header(secret, t, &body), expected, "{name}");
            let header = v["header"].as_str().map_or(expected.clone(), str::to_owned);
            assert_eq!(verifier(&[secret]).verify(Some(&header), &body, t), Ok(()), "{name}");
        }
    }
}

fn change(file: &str) -> PaymentChange {
    match parse_event(&read(file)) {
        Ok(Parsed::Event(e)) => e.change,
        other => panic!("{file}: expected an event, got {other:?}"),
    }
}

#[test]
#[ignore = "reads the published examples in PAYHOOK_FIXTURES_DIR; run with make conformance"]
fn example_events_map_to_domain_changes() {
    assert_eq!(change("payment_intent.succeeded.json"), PaymentChange::paid(Some(1099)));
    assert_eq!(
        change("payment_intent.payment_failed.json"),
        PaymentChange::status(PaymentStatus::Failed)
    );
    match change("charge.refunded.full.json") {
        PaymentChange::Refund { refunded_total, .. } => assert_eq!(refunded_total, 100),
        other => panic!("charge.refunded: {other:?}"),
    }
    // Stripe's own example dispute, as payhook keeps it.
    match change("charge.dispute.created.json") {
        PaymentChange::Dispute {
            status: DisputeStatus::Open,
            detail: Some(detail),
        } => {
            assert_eq!(detail.provider_ref, "dp_1Pgc71B7WZ01zgkWMevJiAUx");
            assert_eq!((detail.amount, detail.reason.as_deref()), (Some(1000), Some("general")));
            assert_eq!(detail.status, "warning_needs_response");
            assert_eq!(
                detail.evidence_due_by.map(|t| t.to_rfc3339()),
                Some("2024-08-14T23:59:59+00:00".to_owned())
            );
            assert!(!detail.closed);
        }
        other => panic!("charge.dispute.created: {other:?}"),
    }
    // An invoice changes no payment payhook holds: it only updates the mirror.
    assert_eq!(change("invoice.paid.json"), PaymentChange::Nothing);
}

/// Every published example whose object payhook mirrors carries it for the mirror:
/// the object's exact text, its type, id, customer and status rank; `invoice.paid`
/// (which says nothing about a payment payhook made) only updates the mirror.
#[test]
#[ignore = "reads the published examples in PAYHOOK_FIXTURES_DIR; run with make conformance"]
fn example_objects_are_mirrored_exactly_as_sent() {
    use payhook_domain::StripeObjectType;
    let cases = [
        ("invoice.paid.json", StripeObjectType::Invoice, "paid", true),
        (
            "payment_intent.succeeded.json",
            StripeObjectType::PaymentIntent,
            "succeeded",
            false,
        ),
        (
            "payment_intent.payment_failed.json",
            StripeObjectType::PaymentIntent,
            "requires_payment_method",
            false,
        ),
        (
            "charge.refunded.full.json",
            StripeObjectType::Charge,
            "succeeded",
            false,
        ),
        (
            "charge.dispute.created.json",
            StripeObjectType::Dispute,
            "warning_needs_response",
            false,
        ),
    ];
    for (file, object_type, status, mirror_only) in cases {
        let body = read(file);
        let envelope: Value = serde_json::from_slice(&body).unwrap();
        let Parsed::Event(event) = parse_event(&body).unwrap() else {
            panic!("{file}: not an event")
        };
        let mirror = event
            .mirror
            .clone()
            .unwrap_or_else(|| panic!("{file}: no object to mirror"));
        assert_eq!(mirror.object_type, object_type, "{file}");
        assert_eq!(
            mirror.object_id,
            envelope["data"]["object"]["id"].as_str().unwrap(),
            "{file}"
        );
        assert_eq!(mirror.source_event_id, envelope["id"].as_str().unwrap(), "{file}");
        assert_eq!(
            mirror.source_event_created,
            envelope["created"].as_i64().unwrap(),
            "{file}"
        );
        assert_eq!(mirror.status_rank, object_type.status_rank(status).unwrap(), "{file}");
        assert_eq!(
            mirror.customer.as_deref(),
            envelope["data"]["object"]["customer"].as_str(),
            "{file}"
        );
        // The object's own bytes, as they stand in the body.
        let text = std::str::from_utf8(&body).unwrap();
        assert!(
            text.contains(&mirror.data),
            "{file}: the mirrored text is not the body's"
        );
        assert_eq!(
            serde_json::from_str::<Value>(&mirror.data).unwrap(),
            envelope["data"]["object"],
            "{file}"
        );
        assert_eq!(event.is_mirror_only(), mirror_only, "{file}");
        assert_eq!(mirror.account, "", "{file}: the platform's own");
    }
}
