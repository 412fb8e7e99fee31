//! Stripe's public signature test vectors (from its SDKs' test suites), with our
//! own copy of their inputs so `make test` needs nothing outside the repository.

use super::*;

const ASYNC_STRIPE_BODY: &[u8] = br#"{"account":"acct_123","api_version":"2017-05-25","created":1533204620,"data":{"object":{"amount":1000,"currency":"usd","customer":"cus_123","date":1533204620,"description":"Test Invoice Item","discountable":false,"id":"ii_123","invoice":"in_123","livemode":false,"metadata":{},"object":"invoiceitem","period":{"end":1533204620,"start":1533204620},"proration":false,"quantity":3,"quantity_decimal":"0"}},"id":"evt_123","livemode":false,"object":"event","pending_webhooks":1,"request":{"id":"req_123","idempotency_key":"idempotency-key-123"},"type":"invoiceitem.created"}"#;
const NODE_BODY: &[u8] = b"{\n  \"id\": \"evt_test_webhook\",\n  \"object\": \"event\"\n}";
const PYTHON_BODY: &[u8] = b"{\n  \"id\": \"evt_test_webhook\",\n  \"object\": \"event\",\n  \"data\": { \"object\": { \"id\": \"rdr_123\", \"object\": \"terminal.reader\" } }\n}";
const T: i64 = 1_700_000_000;
const NODE_V1: &str = "4f1cd7feda9826e746b7d482c4badebb657398df1099e1046364f6196a230150";
const OTHER_V1: &str = "62837b024f75143bacf95b5aefe083505d73fd291de844e4e837186da8abbeaa";

fn verifier(secrets: &[&str]) -> SignatureVerifier {
    SignatureVerifier::new(
        secrets.iter().map(|s| SecretString::from(s.to_string())).collect(),
        DEFAULT_TOLERANCE_SECS,
    )
}

#[test]
fn vector_async_stripe_verifies_and_v0_is_ignored() {
    let header = "t=1533204620,v1=d7373bc68f4bd320b253cd7461f87af6e1cdf1b4d7db1614d8d1d746972d2d0a,v0=63f3a72374a733066c4be69ed7f8e5ac85c22c9f0a6a612ab9a025a9e4ee7eef";
    assert_eq!(
        verifier(&["secret"]).verify(Some(header), ASYNC_STRIPE_BODY, 1_533_204_620),
        Ok(())
    );
}

#[test]
fn vector_stripe_node_verifies_with_whsec_prefix_in_key() {
    let header = format!("t={T},v1={NODE_V1}");
    assert_eq!(
        verifier(&["whsec_test_secret"]).verify(Some(&header), NODE_BODY, T),
        Ok(())
    );
    assert_eq!(signature_header("whsec_test_secret", T, NODE_BODY), header);
}

#[test]
fn vector_stripe_python_verifies() {
    let header = "t=1700000000,v1=3bfab77baf5f7b6991a46c9b53b6547d7afc56148b10468fcad9f35c1992ffbd";
    assert_eq!(
        verifier(&["whsec_test_secret"]).verify(Some(header), PYTHON_BODY, T),
        Ok(())
    );
}

#[test]
fn secret_without_whsec_prefix_does_not_match() {
    let header = format!("t={T},v1={NODE_V1}");
    assert_eq!(
        verifier(&["test_secret"]).verify(Some(&header), NODE_BODY, T),
        Err(SignatureError::NoMatch)
    );
    // And the vector's "no prefix" signature is not what the real secret gives.
    let no_prefix = format!("t={T},v1=81d2dbbf6b6f7a35b1aad135f5871c81c7ac8e13f5c55b0236c9dcb3dbeb94ea");
    assert_eq!(
        verifier(&["whsec_test_secret"]).verify(Some(&no_prefix), NODE_BODY, T),
        Err(SignatureError::NoMatch)
    );
    assert_eq!(
        verifier(&["test_secret"]).verify(Some(&no_prefix), NODE_BODY, T),
        Ok(())
    );
}

#[test]
fn rotation_header_verifies_with_either_secret_alone_or_both() {
    let header = format!("t={T},v1={NODE_V1},v1={OTHER_V1}");
    assert_eq!(
        verifier(&["whsec_test_secret"]).verify(Some(&header), NODE_BODY, T),
        Ok(())
    );
    assert_eq!(verifier(&["whsec_other"]).verify(Some(&header), NODE_BODY, T), Ok(()));
    assert_eq!(
        verifier(&["whsec_nope", "whsec_other"]).verify(Some(&header), NODE_BODY, T),
        Ok(())
    );
    assert_eq!(
        verifier(&["whsec_nope"]).verify(Some(&header), NODE_BODY, T),
        Err(SignatureError::NoMatch)
    );
}

#[test]
fn the_secret_that_matched_last_is_tried_first_and_either_still_verifies() {
    let v = verifier(&["whsec_previous", "whsec_current"]);
    let tried_first = |v: &SignatureVerifier| v.last_matched.load(Ordering::Relaxed);
    let current = signature_header("whsec_current", T, NODE_BODY);
    let previous = signature_header("whsec_previous", T, NODE_BODY);
    assert_eq!(v.verify(Some(&current), NODE_BODY, T), Ok(()));
    assert_eq!(tried_first(&v), 1, "Stripe now signs with the second secret only");
    assert_eq!(v.verify(Some(&current), NODE_BODY, T), Ok(()));
    assert_eq!(
        v.verify(Some(&previous), NODE_BODY, T),
        Ok(()),
        "the other still verifies"
    );
    assert_eq!(tried_first(&v), 0);
    let forged = format!("t={T},v1={OTHER_V1}");
    assert_eq!(v.verify(Some(&forged), NODE_BODY, T), Err(SignatureError::NoMatch));
    assert_eq!(tried_first(&v), 0, "a forgery moves nothing");
}

#[test]
fn no_secret_matches_nothing() {
    let header = format!("t={T},v1={NODE_V1}");
    assert_eq!(
        verifier(&[]).verify(Some(&header), NODE_BODY, T),
        Err(SignatureError::NoMatch)
    );
}

#[test]
fn timestamps_beyond_tolerance_are_rejected_both_ways() {
    let header = format!("t={T},v1={NODE_V1}");
    let v = verifier(&["whsec_test_secret"]);
    assert_eq!(v.verify(Some(&header), NODE_BODY, T + 300), Ok(()));
    assert_eq!(v.verify(Some(&header), NODE_BODY, T - 300), Ok(()));
    assert_eq!(
        v.verify(Some(&header), NODE_BODY, T + 301),
        Err(SignatureError::OutsideTolerance)
    );
    assert_eq!(
        v.verify(Some(&header), NODE_BODY, T - 301),
        Err(SignatureError::OutsideTolerance)
    );
}

#[test]
fn tolerance_is_configurable() {
    let header = format!("t={T},v1={NODE_V1}");
    let strict = SignatureVerifier::new(vec![SecretString::from("whsec_test_secret".to_string())], 10);
    assert_eq!(
        strict.verify(Some(&header), NODE_BODY, T + 11),
        Err(SignatureError::OutsideTolerance)
    );
    assert_eq!(strict.verify(Some(&header), NODE_BODY, T + 10), Ok(()));
}

#[test]
fn missing_header_is_an_error() {
    assert_eq!(
        verifier(&["whsec_x"]).verify(None, NODE_BODY, T),
        Err(SignatureError::MissingHeader)
    );
}

#[test]
fn malformed_headers_are_errors_not_panics() {
    let v = verifier(&["whsec_test_secret"]);
    for header in [
        "",
        ",,,",
        "t=",
        "t=abc,v1=00",
        "v1=4f1c",
        "t=1700000000",
        "t=1700000000,v1=zz",
        "garbage",
        "t=99999999999999999999999,v1=00",
    ] {
        assert!(
            matches!(v.verify(Some(header), NODE_BODY, T), Err(SignatureError::Malformed(_))),
            "{header:?} should be malformed"
        );
    }
}

#[test]
fn non_hex_v1_entries_are_skipped_not_fatal() {
    let header = format!("t={T},v1=not-hex,v1={NODE_V1},v1=abcd");
    assert_eq!(
        verifier(&["whsec_test_secret"]).verify(Some(&header), NODE_BODY, T),
        Ok(())
    );
}

#[test]
fn empty_body_is_verified_like_any_other() {
    let header = signature_header("whsec_x", T, b"");
    let v = verifier(&["whsec_x"]);
    assert_eq!(v.verify(Some(&header), b"", T), Ok(()));
    assert_eq!(v.verify(Some(&header), b" ", T), Err(SignatureError::NoMatch));
}

#[test]
fn a_single_changed_body_byte_fails() {
    let header = format!("t={T},v1={NODE_V1}");
    let mut body = NODE_BODY.to_vec();
    body[5] ^= 1;
    assert_eq!(
        verifier(&["whsec_test_secret"]).verify(Some(&header), &body, T),
        Err(SignatureError::NoMatch)
    );
}

#[test]
fn extreme_timestamps_are_outside_the_window_without_overflow() {
    let v = verifier(&["whsec_test_secret"]);
    let now = 1_700_000_000;
    // Correctly signed, so only the age decides; each would overflow `now - t`.
    for t in [i64::MIN, i64::MIN + 1, now - (1 << 62), -1, i64::MAX, now + (1 << 62)] {
        let header = signature_header("whsec_test_secret", t, NODE_BODY);
        assert_eq!(
            v.verify(Some(&header), NODE_BODY, now),
            Err(SignatureError::OutsideTolerance),
            "t = {t}"
        );
    }
    // And at the far ends of the clock itself.
    for now in [i64::MIN, i64::MAX] {
        let header = signature_header("whsec_test_secret", 0, NODE_BODY);
        assert_eq!(
            v.verify(Some(&header), NODE_BODY, now),
            Err(SignatureError::OutsideTolerance),
            "now = {now}"
        );
    }
    // The window's edges still hold.
    let edge = signature_header("whsec_test_secret", now - DEFAULT_TOLERANCE_SECS, NODE_BODY);
    assert_eq!(v.verify(Some(&edge), NODE_BODY, now), Ok(()));
    let past = signature_header("whsec_test_secret", now - DEFAULT_TOLERANCE_SECS - 1, NODE_BODY);
    assert_eq!(
        v.verify(Some(&past), NODE_BODY, now),
        Err(SignatureError::OutsideTolerance)
    );
}

#[test]
fn the_header_the_fuzzer_found_is_refused_not_a_panic() {
    // base64 AQgBICAAAACAICIA+CAgICs= : raw bytes, not UTF-8 text.
    let bytes = [
        0x01u8, 0x08, 0x01, 0x20, 0x20, 0x00, 0x00, 0x00, 0x80, 0x20, 0x22, 0x00, 0xf8, 0x20, 0x20, 0x20, 0x2b,
    ];
    let header = String::from_utf8_lossy(&bytes);
    assert!(verifier(&["whsec_test_secret"])
        .verify(Some(&header), b"{}", 1_700_000_000)
        .is_err());
}
