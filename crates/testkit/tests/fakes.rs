//! The `payhook-fakes` binary, as `make demo` and docs/testing.md run it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[test]
fn fake_provider_on_a_taken_port_is_one_clear_line_not_a_panic() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_payhook-fakes"))
        .args(["qpay", "--port", &port])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot listen on 127.0.0.1:"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Every fake can be told over HTTP to fail or stall its API, and counts the calls it
/// got (what a `make run` user drives with curl).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fake_fails_stalls_and_counts_on_demand() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let stripe = payhook_testkit::fake_stripe::FakeStripe::start("sk_test_controls").await;
    let xendit = payhook_testkit::fake_xendit::FakeXendit::start("xnd_controls").await;
    let qpay = payhook_testkit::fake_qpay::FakeQPay::start("id", "secret").await;
    let junglepay = payhook_testkit::fake_junglepay::FakeJunglePay::start("jp_controls").await;
    let http = reqwest::Client::new();
    for (name, base, api) in [
        (
            "stripe",
            stripe.base_url.clone(),
            format!("{}/v1/payment_intents/pi_1", stripe.base_url),
        ),
        (
            "xendit",
            xendit.base_url.clone(),
            format!("{}/v2/invoices/inv_1", xendit.base_url),
        ),
        (
            "qpay",
            qpay.base_url.trim_end_matches("/v2").to_owned(),
            format!("{}/invoice/x", qpay.base_url),
        ),
        (
            "junglepay",
            junglepay.base_url.trim_end_matches("/v1").to_owned(),
            format!("{}/transactions/1", junglepay.base_url),
        ),
    ] {
        let control = |path: &str| http.post(format!("{base}/_fake/{path}")).send();
        assert!(
            control("fail?status=503&times=2").await.unwrap().status().is_success(),
            "{name}"
        );
        for _ in 0..2 {
            assert_eq!(http.get(&api).send().await.unwrap().status().as_u16(), 503, "{name}");
        }
        assert_ne!(
            http.get(&api).send().await.unwrap().status().as_u16(),
            503,
            "{name}: then it behaves"
        );
        assert_eq!(
            control("fail?status=200").await.unwrap().status().as_u16(),
            400,
            "{name}"
        );

        control("stall?ms=2000").await.unwrap();
        let stalled = http
            .get(&api)
            .timeout(std::time::Duration::from_millis(200))
            .send()
            .await;
        assert!(stalled.unwrap_err().is_timeout(), "{name}: the answer waits");
        control("stall?ms=0").await.unwrap();

        let calls: serde_json::Value = http
            .get(format!("{base}/_fake/calls"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(calls["calls"], 4, "{name}: {calls}");
    }
}
