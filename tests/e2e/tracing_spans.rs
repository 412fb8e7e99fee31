//! One event followed through the logs at `RUST_LOG=info`: its request's line, its
//! application's line and its published domain event carry the same event id (and
//! the last two the same payment id), and no secret shows anywhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payhook_e2e::*;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Everything the process logs, kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn lines_with(&self, needle: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

/// The process-wide subscriber, as `payhook serve` sets it up at `RUST_LOG=info`
/// (spans run on the server's own threads, so a thread-local one would miss them).
fn captured() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_ansi(false)
            .with_env_filter("info")
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        captured
    })
}

async fn one_event_id_is_followed_from_request_to_publication(backend: Backend) {
    let log = captured();
    let app = spawn_app(backend).await;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (event_id, pi) = (format!("evt_trace_{suffix}"), format!("pi_trace_{suffix}"));
    let body = stripe_event(
        &event_id,
        "payment_intent.succeeded",
        now_unix(),
        payment_intent(&pi, "succeeded", 900, 900),
    );
    let signature = sign(&body);
    assert_eq!(app.post_stripe(&body, Some(&signature)).await.status(), 200);

    let deadline = Instant::now() + Duration::from_secs(15);
    let published = loop {
        let published: Vec<String> = log
            .lines_with(&event_id)
            .into_iter()
            .filter(|l| l.contains("domain event published"))
            .collect();
        if !published.is_empty() {
            break published;
        }
        assert!(Instant::now() < deadline, "the domain event was not published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let payment_id = app.payment_id(&pi).await;
    let lines = log.lines_with(&event_id);
    let request = lines
        .iter()
        .find(|l| l.contains("http_request") && l.contains("webhook acknowledged"))
        .unwrap_or_else(|| panic!("no request line with the event id: {lines:#?}"));
    assert!(
        request.contains("stripe") && request.contains("/webhooks/stripe"),
        "{request}"
    );
    let applied = lines
        .iter()
        .find(|l| l.contains("apply_event") && l.contains("event applied"))
        .unwrap_or_else(|| panic!("no application line with the event id: {lines:#?}"));
    assert!(
        applied.contains(&payment_id),
        "the application names its payment: {applied}"
    );
    assert!(published[0].contains(&payment_id), "{}", published[0]);
    assert!(published[0].contains("payment.paid"), "{}", published[0]);

    let everything = log.lines_with("");
    let signature_value = signature.split("v1=").nth(1).unwrap();
    assert!(
        everything
            .iter()
            .all(|l| !l.contains(STRIPE_SECRET) && !l.contains(signature_value)),
        "a secret reached the log"
    );
}

on_every_store!(one_event_id_is_followed_from_request_to_publication);
