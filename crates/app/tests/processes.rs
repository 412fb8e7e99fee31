//! The `payhook` binary as an operator runs it: several processes, signals, the CLI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::Utc;
use diesel::sql_types::BigInt;
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use payhook_domain::ports::{Admission, PaymentStore, WebhookInbox};
use payhook_domain::{
    EventId, InboxFilter, InboxStatus, PaymentChange, PaymentRef, Provider, WebhookEvent, WebhookRequest,
};
use payhook_postgres::PgStore;
use payhook_sqlite::SqliteStore;
use payhook_testkit::postgres::{postgres_available, TestDb};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "whsec_processes_test_secret";
/// The merchant API key the gateway under test accepts (`simulate --payment` reads through it).
const API_KEY: &str = "process_test_merchant_key";

/// A running `payhook serve` and the stderr it has written so far.
struct Gateway {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
}

impl Gateway {
    fn start(database_url: &str, extra: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_payhook"));
        cmd.arg("serve")
            .env("PAYHOOK__SERVER__BIND", "127.0.0.1:0")
            .env("PAYHOOK__DATABASE__URL", database_url)
            .env("PAYHOOK__DATABASE__AUTO_MIGRATE", "true")
            .env("PAYHOOK__PROVIDERS__STRIPE__ENABLED", "true")
            .env("PAYHOOK__PROVIDERS__STRIPE__WEBHOOK_SECRETS", SECRET)
            .env("PAYHOOK__API__KEYS", API_KEY)
            .env("PAYHOOK__WORKER__POLL_INTERVAL_MS", "50")
            .env("RUST_LOG", "info")
            .env_remove("PAYHOOK_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Logged before the port is announced: a test reading the log once
                // the gateway has started finds the start-up line in it.
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
                if line.contains("payhook serving") {
                    let port = line.split("port=").nth(1).and_then(|p| p.split_whitespace().next());
                    let _ = port_tx
                        .send(port.and_then(|p| p.trim_end_matches(|c: char| !c.is_ascii_digit()).parse::<u16>().ok()));
                }
            }
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(60))
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("payhook did not start:\n{}", log.lock().unwrap()));
        Self { child, port, log }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/webhooks/stripe", self.port)
    }

    /// SIGTERM, then the exit status (fails the test after `within`).
    fn terminate(self, within: Duration) -> std::process::ExitStatus {
        self.signal("-TERM");
        self.wait(within)
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args([signal, &pid]).status().unwrap().success());
    }

    /// Waits until the log holds `needle` (fails the test after 20 s).
    fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.log.lock().unwrap().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in:\n{}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The exit status (fails the test after `within`).
    fn wait(mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("payhook did not stop within {within:?}:\n{}", self.log.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn event_body(n: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": format!("evt_proc_{n}"), "object": "event", "type": "payment_intent.succeeded",
        "created": Utc::now().timestamp(),
        "data": { "object": { "id": format!("pi_proc_{n}"), "object": "payment_intent", "amount": 1000 + n,
                              "amount_received": 1000 + n, "currency": "usd", "metadata": {} } },
    }))
    .unwrap()
}

/// Sends events `range` spread over `gateways`, `concurrency` at a time; all must be 200.
async fn deliver(gateways: &[String], range: std::ops::Range<usize>, concurrency: usize) {
    use futures_util::StreamExt;
    payhook_app::startup::install_crypto_provider();
    let client = reqwest::Client::new();
    futures_util::stream::iter(range)
        .for_each_concurrent(concurrency, |n| {
            let (client, url) = (client.clone(), gateways[n % gateways.len()].clone());
            async move {
                let body = event_body(n);
                let sig = payhook_stripe::signature_header(SECRET, Utc::now().timestamp(), &body);
                let res = client
                    .post(url)
                    .header("Stripe-Signature", sig)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200, "event {n}");
            }
        })
        .await;
}

/// A temporary directory removed when the test ends, passed or failed.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sqlite_url() -> (String, TempDir) {
    let dir = std::env::temp_dir().join(format!("payhook-proc-{}", uuid::Uuid::new_v4().simple()));
    (format!("sqlite://{}/payhook.db", dir.display()), TempDir(dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgres_apply_every_event_exactly_once() {
    if !postgres_available().await {
        return;
    }
    const EVENTS: usize = 2000;
    let db = TestDb::create().await;
    PgStore::migrate(&db.url).await.unwrap();
    let a = Gateway::start(&db.url, &[]);
    let b = Gateway::start(&db.url, &[]);
    deliver(&[a.url(), b.url()], 0..EVENTS, 32).await;

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
    let mut count = async |sql: &str| -> i64 { diesel::sql_query(sql).get_result::<Count>(&mut conn).await.unwrap().n };
    let deadline = Instant::now() + Duration::from_secs(60);
    while count("SELECT count(*) AS n FROM webhook_events WHERE status = 'processed'").await < EVENTS as i64 {
        assert!(Instant::now() < deadline, "the inbox did not drain");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        count("SELECT count(*) AS n FROM webhook_events").await,
        EVENTS as i64,
        "none missing, none twice"
    );
    assert_eq!(count("SELECT count(*) AS n FROM payments").await, EVENTS as i64);
    assert_eq!(
        count("SELECT count(*) AS n FROM payment_status_history").await,
        EVENTS as i64,
        "one history row each"
    );
    assert_eq!(
        count("SELECT count(DISTINCT event_id) AS n FROM payment_status_history WHERE applied").await,
        EVENTS as i64,
        "every event applied, none applied twice"
    );
    // Both instances took part (SKIP LOCKED let them share the work).
    let took_part = |g: &Gateway| g.log.lock().unwrap().contains("payhook serving");
    assert!(took_part(&a) && took_part(&b));
    assert!(a.terminate(Duration::from_secs(30)).success());
    assert!(b.terminate(Duration::from_secs(30)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_work_releases_leases_and_exits_zero() {
    let (url, _dir) = sqlite_url();
    let gateway = Gateway::start(&url, &[("PAYHOOK__SERVER__SHUTDOWN_TIMEOUT_SECS", "10")]);
    deliver(&[gateway.url()], 0..50, 8).await;
    // One fd per connection: the soft open-file limit was raised to the hard one.
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    let log = gateway.log.lock().unwrap().clone();
    assert!(log.contains(&format!("limit={hard}")), "{log}");
    let status = gateway.terminate(Duration::from_secs(20));
    assert!(status.success(), "exit status {status:?}");

    let store = SqliteStore::connect(&url, 1).unwrap();
    let all = store
        .list(&InboxFilter {
            status: None,
            provider: None,
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 50, "every acknowledged event is in the inbox");
    // Nothing is left leased to the stopped process: whatever is not processed is due.
    let now = Utc::now();
    let due = store.claim_due(now, 100, now).await.unwrap().len();
    let processed = all.iter().filter(|e| e.status == InboxStatus::Processed).count();
    let others: Vec<_> = all
        .iter()
        .filter(|e| e.status != InboxStatus::Processed)
        .map(|e| (e.status, e.last_error.clone(), e.next_attempt_at))
        .collect();
    assert_eq!(processed + due, 50, "not processed: {others:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_replays_dead_events() {
    let (url, _dir) = sqlite_url();
    SqliteStore::migrate(&url).await.unwrap();
    let store = SqliteStore::connect(&url, 1).unwrap();
    let now = Utc::now();
    let request = WebhookRequest::new(
        "stripe",
        "POST",
        "/webhooks/stripe",
        "",
        vec![],
        b"{}".to_vec(),
        None,
        now,
        &payhook_domain::Redaction::default(),
    );
    let event = WebhookEvent {
        mirror: None,
        subscription: None,
        provider: Provider::Stripe,
        event_id: EventId::parse("evt_cli").unwrap(),
        event_type: "payment_intent.succeeded".into(),
        occurred_at: now,
        payment: PaymentRef {
            account: None,
            payment_id: None,
            provider_ref: Some("pi_cli".into()),
            aliases: Vec::new(),
        },
        change: PaymentChange::paid(None),
        details: None,
        confirm_with_provider: false,
    };
    let Admission::Accepted(id) = store.admit(&request, &event).await.unwrap() else {
        panic!("not new")
    };
    store.record_failure(id, "payment_not_found", None).await.unwrap();

    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_payhook"))
            .args(args)
            .env("PAYHOOK__DATABASE__URL", &url)
            .env_remove("PAYHOOK_CONFIG")
            .output()
            .unwrap()
    };
    let out = run(&["replay", "--status", "dead", "--provider", "stripe"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1 dead event(s) are due again"
    );
    let pending = store
        .list(&InboxFilter {
            status: Some(InboxStatus::Pending),
            provider: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);

    let again = run(&["replay", &id.0.to_string()]);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        format!("event {id} is already waiting to be processed")
    );
    let missing = run(&["replay", "999999"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no inbox event with id 999999"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_sends_signed_events_replays_and_forges_on_request() {
    let (url, _dir) = sqlite_url();
    let gateway = Gateway::start(&url, &[]);
    let simulate = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_payhook"))
            .arg("simulate")
            .args(args)
            .args(["--to", &gateway.url()])
            .env("PAYHOOK__PROVIDERS__STRIPE__ENABLED", "true")
            .env("PAYHOOK__PROVIDERS__STRIPE__WEBHOOK_SECRETS", SECRET)
            .env("PAYHOOK__API__KEYS", API_KEY)
            .env_remove("PAYHOOK_CONFIG")
            .output()
            .unwrap()
    };
    let out = simulate(&["stripe", "payment_intent.succeeded", "--replay", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("HTTP 200 ") && lines[0].contains("\"accepted\""),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("HTTP 200 ") && lines[1].contains("\"duplicate\""),
        "{stdout}"
    );

    // Dispute that payment by its payhook id: simulate asks the gateway for its PaymentIntent.
    let store = SqliteStore::connect(&url, 1).unwrap();
    let inbox = store
        .list(&InboxFilter {
            status: None,
            provider: None,
            limit: 10,
        })
        .await
        .unwrap();
    let pi = inbox[0].payment_ref.clone().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let payment = loop {
        let by_ref = PaymentRef {
            account: None,
            payment_id: None,
            provider_ref: Some(pi.clone()),
            aliases: Vec::new(),
        };
        if let Some(p) = store.find_payment(Provider::Stripe, &by_ref).await.unwrap() {
            break p;
        }
        assert!(Instant::now() < deadline, "the payment was not created");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let dispute = simulate(&["stripe", "charge.dispute.created", "--payment", &payment.id.to_string()]);
    let said = String::from_utf8_lossy(&dispute.stdout);
    assert!(said.contains("\"accepted\""), "{dispute:?}");
    assert!(
        said.contains(&format!("\npayment {}\n", payment.id)),
        "it names the payment: {said}"
    );
    assert!(
        said.contains(&format!("/payments/{}", payment.id)),
        "and how to read it: {said}"
    );

    // Without --payment or --to, on this machine's store: simulate finds the payment
    // the event created and names it.
    let local = Command::new(env!("CARGO_BIN_EXE_payhook"))
        .args(["simulate", "stripe", "payment_intent.succeeded"])
        .env("PAYHOOK__SERVER__BIND", format!("127.0.0.1:{}", gateway.port))
        .env("PAYHOOK__DATABASE__URL", &url)
        .env("PAYHOOK__PROVIDERS__STRIPE__ENABLED", "true")
        .env("PAYHOOK__PROVIDERS__STRIPE__WEBHOOK_SECRETS", SECRET)
        .env("PAYHOOK__API__KEYS", API_KEY)
        .env_remove("PAYHOOK_CONFIG")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&local.stdout);
    assert!(local.status.success(), "{local:?}");
    let named = said
        .lines()
        .find_map(|l| l.strip_prefix("payment "))
        .and_then(payhook_domain::PaymentId::parse)
        .unwrap_or_else(|| panic!("no payment line: {said}"));
    assert!(store.payment(named).await.unwrap().is_some(), "{said}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while store
        .payment(payment.id)
        .await
        .unwrap()
        .unwrap()
        .dispute_status
        .is_none()
    {
        assert!(Instant::now() < deadline, "the dispute did not reach the payment");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let unknown_payment = simulate(&[
        "stripe",
        "charge.refunded",
        "--payment",
        "6a1f8c0e-7d7b-4a47-9a3c-0c9b1f7e2d10",
    ]);
    assert!(!unknown_payment.status.success());
    assert!(String::from_utf8_lossy(&unknown_payment.stderr).contains("has no payment"));

    let forged = simulate(&["stripe", "charge.refunded", "--bad-signature"]);
    assert!(
        String::from_utf8_lossy(&forged.stdout).starts_with("HTTP 401 "),
        "the gateway's answer is printed"
    );
    assert!(String::from_utf8_lossy(&forged.stdout).contains("invalid_signature"));

    let unknown = simulate(&["stripe", "coupon.created"]);
    assert!(!unknown.status.success());
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
    assert!(err.contains("unknown stripe event"), "{err}");

    let down = Command::new(env!("CARGO_BIN_EXE_payhook"))
        .args([
            "simulate",
            "stripe",
            "payment_intent.succeeded",
            "--to",
            "http://127.0.0.1:9/webhooks/stripe",
        ])
        .env("PAYHOOK__PROVIDERS__STRIPE__WEBHOOK_SECRETS", SECRET)
        .env_remove("PAYHOOK_CONFIG")
        .output()
        .unwrap();
    assert!(!down.status.success());
    assert!(String::from_utf8_lossy(&down.stderr).contains("cannot reach the gateway"));
    assert!(gateway.terminate(Duration::from_secs(20)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_purges_what_retention_lets_go_and_counts_it_first() {
    use payhook_domain::ports::{ForensicLog, Retention};
    use payhook_domain::{Outcome, ProcessingResult, Retained};
    let (url, _dir) = sqlite_url();
    SqliteStore::migrate(&url).await.unwrap();
    let store = SqliteStore::connect(&url, 1).unwrap();
    let refused = Outcome {
        http_status: 401,
        result: ProcessingResult::InvalidSignature,
        error: None,
    };
    for age_days in [100, 95, 0] {
        let request = WebhookRequest::new(
            "stripe",
            "POST",
            "/webhooks/stripe",
            "",
            vec![],
            b"{\"email\":\"customer@example.com\"}".to_vec(),
            None,
            Utc::now() - chrono::Duration::days(age_days),
            &payhook_domain::Redaction::default(),
        );
        store.record(&request, &refused).await.unwrap();
    }
    let purge = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_payhook"))
            .arg("purge")
            .args(args)
            .env("PAYHOOK__DATABASE__URL", &url)
            .env("PAYHOOK__RETENTION__OUTBOX_DAYS", "0")
            .env_remove("PAYHOOK_CONFIG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let lines = |text: &str| {
        text.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
    };

    assert_eq!(
        lines(&purge(&["--dry-run"])),
        [
            "forensic_log would delete 2 older than 90 days",
            "inbox would delete 0 older than 90 days",
            "outbox kept for ever (retention days = 0)",
        ]
    );
    assert_eq!(lines(&purge(&[]))[0], "forensic_log deleted 2 older than 90 days");
    assert_eq!(
        lines(&purge(&["--dry-run"]))[0],
        "forensic_log would delete 0 older than 90 days"
    );
    let tomorrow = Utc::now() + chrono::Duration::days(1);
    assert_eq!(
        store.count_purgeable(Retained::ForensicLog, tomorrow).await.unwrap(),
        1,
        "the young row is kept"
    );
}

/// Ctrl-C under `make run` is SIGINT: like SIGTERM, it lets a request in flight finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_lets_a_request_in_flight_finish_and_exits_zero() {
    use std::io::{Read, Write};
    let (url, _dir) = sqlite_url();
    let gateway = Gateway::start(&url, &[("PAYHOOK__SERVER__SHUTDOWN_TIMEOUT_SECS", "10")]);
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", gateway.port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // A first request on the connection, so the server has surely accepted it.
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: payhook\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 512];
    let n = conn.read(&mut first).unwrap();
    assert!(
        first[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&first[..n])
    );

    // A webhook whose body is half sent when Ctrl-C comes.
    let body = event_body(7);
    let signature = payhook_stripe::signature_header(SECRET, Utc::now().timestamp(), &body);
    let head = format!(
        "POST /webhooks/stripe HTTP/1.1\r\nHost: payhook\r\nStripe-Signature: {signature}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    let (sent, rest) = body.split_at(body.len() / 2);
    conn.write_all(sent).unwrap();
    // The request must be in flight, not merely written: give the server a moment
    // to read its head and start reading the body (a connection whose request it has
    // not begun is idle, and a graceful stop closes idle connections).
    std::thread::sleep(Duration::from_millis(300));
    gateway.signal("-INT");
    gateway.wait_for_log("signal=\"SIGINT\"");
    conn.write_all(rest).unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"accepted\""), "{answer}");

    let log = gateway.log.clone();
    let status = gateway.wait(Duration::from_secs(20));
    assert!(status.success(), "exit status {status:?}");
    let log = log.lock().unwrap().clone();
    assert!(!log.contains("forced shutdown"), "{log}");
    let store = SqliteStore::connect(&url, 1).unwrap();
    let stored = store
        .list(&InboxFilter {
            status: None,
            provider: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 1, "the acknowledged event is stored");
}

/// The one start-up line says where payhook stores, whom it speaks to and where it
/// listens; an unreachable database is named by host and port, never by password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_says_what_it_opened_and_a_dead_database_is_named() {
    let (url, _dir) = sqlite_url();
    let gateway = Gateway::start(&url, &[]);
    let log = gateway.log.lock().unwrap().clone();
    let line = log.lines().find(|l| l.contains("payhook serving")).unwrap();
    let path = url.trim_start_matches("sqlite://");
    assert!(line.contains(&format!("store=\"sqlite {path}\"")), "{line}");
    assert!(line.contains("providers=\"stripe\""), "{line}");
    assert!(
        line.contains("bind=127.0.0.1:0") && line.contains(&format!("port={}", gateway.port)),
        "{line}"
    );
    drop(gateway);

    let out = Command::new(env!("CARGO_BIN_EXE_payhook"))
        .arg("serve")
        .env(
            "PAYHOOK__DATABASE__URL",
            "postgres://payhook:hunter2secret@127.0.0.1:1/payhook",
        )
        .env("PAYHOOK__SERVER__BIND", "127.0.0.1:0")
        .env_remove("PAYHOOK_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot open the store at postgres 127.0.0.1:1/payhook: "),
        "{stderr}"
    );
    assert!(stderr.to_lowercase().contains("refused"), "the cause: {stderr}");
    assert!(!stderr.contains("hunter2secret"), "{stderr}");
}

/// A gateway on its own SQLite store with Xendit enabled against a fake, for the
/// reconciliation commands: the fake, the store's URL (and directory), the gateway,
/// and the Xendit settings a `payhook` command needs to reach the same fake.
struct XenditGateway {
    fake: payhook_testkit::fake_xendit::FakeXendit,
    url: String,
    _dir: TempDir,
    gateway: Gateway,
    settings: Vec<(&'static str, String)>,
}

impl XenditGateway {
    async fn start() -> Self {
        const XENDIT_KEY: &str = "xnd_development_process_test_key";
        let fake = payhook_testkit::fake_xendit::FakeXendit::start(XENDIT_KEY).await;
        let (url, dir) = sqlite_url();
        let settings = vec![
            ("PAYHOOK__PROVIDERS__XENDIT__ENABLED", "true".to_owned()),
            (
                "PAYHOOK__PROVIDERS__XENDIT__CALLBACK_TOKEN",
                "xendit_process_test_callback_token".to_owned(),
            ),
            ("PAYHOOK__PROVIDERS__XENDIT__SECRET_KEY", XENDIT_KEY.to_owned()),
            ("PAYHOOK__PROVIDERS__XENDIT__API_BASE_URL", fake.base_url.clone()),
        ];
        let borrowed: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let gateway = Gateway::start(&url, &borrowed);
        payhook_app::startup::install_crypto_provider();
        Self {
            fake,
            url,
            _dir: dir,
            gateway,
            settings,
        }
    }

    /// A Xendit payment created through the gateway's API: its id and invoice.
    async fn create_payment(&self) -> (String, String) {
        let created: serde_json::Value = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/payments", self.gateway.port))
            .bearer_auth(API_KEY)
            .json(&serde_json::json!({ "provider": "xendit", "amount": 15_000_000, "currency": "IDR" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            created["id"].as_str().unwrap().to_owned(),
            created["provider_ref"].as_str().unwrap().to_owned(),
        )
    }

    /// `payhook reconcile ARGS` on the same store and fake; its stdout.
    fn reconcile(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_payhook"))
            .arg("reconcile")
            .args(args)
            .env("PAYHOOK__DATABASE__URL", &self.url)
            .envs(self.settings.iter().map(|(k, v)| (*k, v.as_str())))
            .env_remove("PAYHOOK_CONFIG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

/// `payhook reconcile --payment ID` asks the provider now and says what it found; a
/// difference is stored for the running gateway's worker, which applies it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_asks_the_provider_about_a_payment_now() {
    use payhook_domain::ports::PaymentStore;
    let xendit = XenditGateway::start().await;
    let (id, invoice) = xendit.create_payment().await;
    xendit.fake.mark_paid(&invoice);
    let reconcile = |args: &[&str]| xendit.reconcile(args);
    let url = &xendit.url;

    // Created just now: not older than an hour, so not asked about.
    assert_eq!(
        reconcile(&["--provider", "xendit", "--older-than", "1h"]).trim(),
        "asked 0: 0 changed (stored as events), 0 did not answer, 0 skipped"
    );
    assert!(
        !Command::new(env!("CARGO_BIN_EXE_payhook"))
            .args(["reconcile", "--older-than", "soon"])
            .env_remove("PAYHOOK_CONFIG")
            .output()
            .unwrap()
            .status
            .success(),
        "an age that is not one is refused"
    );
    let said = reconcile(&["--payment", &id]);
    assert!(
        said.contains(&format!("payment {id}: payhook holds pending, xendit says paid")),
        "{said}"
    );
    assert!(said.contains("stored as an event"), "{said}");
    // Its first scheduled check is ten minutes away: a round now asks about nothing.
    assert_eq!(
        reconcile(&[]).trim(),
        "asked 0: 0 changed (stored as events), 0 did not answer, 0 skipped"
    );

    let store = SqliteStore::connect(url, 1).unwrap();
    let payment_id = payhook_domain::PaymentId::parse(&id).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while store.payment(payment_id).await.unwrap().unwrap().status != payhook_domain::PaymentStatus::Paid {
        assert!(Instant::now() < deadline, "the gateway did not apply the finding");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `payhook reconcile --provider P --older-than D` asks about every open payment of P
/// created at least D ago, whatever its schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_asks_about_every_open_payment_of_a_provider() {
    let xendit = XenditGateway::start().await;
    let mut invoices = Vec::new();
    for _ in 0..3 {
        invoices.push(xendit.create_payment().await.1);
    }
    xendit.fake.mark_paid(&invoices[1]);
    assert_eq!(
        xendit.reconcile(&["--provider", "xendit", "--older-than", "0s"]).trim(),
        "asked 3: 1 changed (stored as events), 0 did not answer, 0 skipped"
    );
    let asked: Vec<usize> = invoices
        .iter()
        .map(|i| {
            xendit
                .fake
                .requests()
                .iter()
                .filter(|r| r.method == "GET" && r.path.ends_with(i.as_str()))
                .count()
        })
        .collect();
    assert_eq!(asked, vec![1, 1, 1]);
}

/// `POST /payments` to a gateway, for a caller that may lose its connection.
async fn create_xendit_payment(port: u16) -> Result<reqwest::Response, reqwest::Error> {
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/payments"))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({ "provider": "xendit", "amount": 15_000_000, "currency": "IDR" }))
        .send()
        .await
}

/// payhook is killed (SIGKILL) while two creations wait for Xendit: one Xendit never
/// got to make, one it made but had not answered. The next payhook on the database
/// resolves both in its start-up reconciliation: the second adopted (its invoice
/// recorded), the first failed with `creation_interrupted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creations_cut_short_by_a_kill_are_adopted_or_failed_by_the_next_start() {
    if !postgres_available().await {
        return;
    }
    const XENDIT_KEY: &str = "xnd_development_process_test_key";
    let fake = payhook_testkit::fake_xendit::FakeXendit::start(XENDIT_KEY).await;
    let db = TestDb::create().await;
    let settings = [
        ("PAYHOOK__PROVIDERS__XENDIT__ENABLED", "true"),
        (
            "PAYHOOK__PROVIDERS__XENDIT__CALLBACK_TOKEN",
            "xendit_process_test_callback_token",
        ),
        ("PAYHOOK__PROVIDERS__XENDIT__SECRET_KEY", XENDIT_KEY),
        ("PAYHOOK__PROVIDERS__XENDIT__API_BASE_URL", fake.base_url.as_str()),
    ];
    payhook_app::startup::install_crypto_provider();
    let first = Gateway::start(&db.url, &settings);
    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Xendit stalls the first creation before making anything...
    fake.stall(Duration::from_secs(600));
    let never_made = tokio::spawn(create_xendit_payment(first.port));
    until("the first creation reached Xendit", || fake.stalled() == 1).await;
    // ...and makes the second's invoice but holds back the answer.
    fake.stall(Duration::ZERO);
    fake.hold_answers(Duration::from_secs(600));
    let made = tokio::spawn(create_xendit_payment(first.port));
    until("Xendit made the second invoice", || {
        fake.invoices().len() == 1 && fake.stalled() == 2
    })
    .await;
    first.signal("-KILL");
    first.wait(Duration::from_secs(10));
    assert!(never_made.await.unwrap().is_err(), "its caller lost the connection");
    assert!(made.await.unwrap().is_err(), "its caller lost the connection");
    let invoice = fake.invoices().remove(0);
    fake.hold_answers(Duration::ZERO);

    let store = PgStore::connect(&db.url, 2).unwrap();
    let opened = store
        .list_payments(&payhook_domain::PaymentFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(opened.len(), 2);
    assert!(opened.iter().all(|p| p.is_being_created()), "{opened:?}");
    // The rows age instead of the test waiting: opened five minutes ago, past the time
    // a live process could still be waiting for Xendit, and due for a check now.
    let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
    diesel::sql_query("UPDATE payments SET created_at = created_at - interval '5 minutes', next_reconcile_at = now()")
        .execute(&mut conn)
        .await
        .unwrap();

    let second = Gateway::start(&db.url, &settings);
    let made_id = payhook_domain::PaymentId::parse(invoice["external_id"].as_str().unwrap()).unwrap();
    let never_id = opened.iter().map(|p| p.id).find(|id| *id != made_id).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let adopted = store.payment(made_id).await.unwrap().unwrap();
        let failed = store.payment(never_id).await.unwrap().unwrap();
        if adopted.provider_ref.is_some() && failed.status == payhook_domain::PaymentStatus::Failed {
            assert_eq!(adopted.provider_ref.as_deref(), invoice["id"].as_str());
            assert_eq!(adopted.checkout_url.as_deref(), invoice["invoice_url"].as_str());
            assert_eq!(adopted.status, payhook_domain::PaymentStatus::Pending);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not resolved: {adopted:?} {failed:?}\n{}",
            second.log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let history = store.history(never_id).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].reason, "creation_interrupted");
    assert!(second.terminate(Duration::from_secs(30)).success());
}

/// `payhook stripe resync` reads one object as a connected account and writes it;
/// `payhook stripe backfill` pages through a list, and when Stripe fails midway, the
/// next run goes on after the last page stored: every object once, none skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_fills_the_stripe_mirror_and_a_backfill_resumes_where_it_stopped() {
    use payhook_domain::ports::StripeMirror;
    use payhook_domain::StripeObjectType;
    use payhook_testkit::fake_stripe::FakeStripe;
    let fake = FakeStripe::start("sk_test_cli_mirror").await;
    let (url, _dir) = sqlite_url();
    SqliteStore::migrate(&url).await.unwrap();
    let store = SqliteStore::connect(&url, 1).unwrap();
    fake.put_object(
        "acct_1",
        "customers",
        serde_json::json!({ "id": "cus_one", "object": "customer", "name": "Ana", "created": 1 }),
    );
    for n in 0..250 {
        fake.put_object(
            "",
            "invoices",
            serde_json::json!({ "id": format!("in_{n:04}"), "object": "invoice", "status": "paid", "created": 1_000 + n }),
        );
    }
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_payhook"))
            .arg("stripe")
            .args(args)
            .env("PAYHOOK__DATABASE__URL", &url)
            .env("PAYHOOK__PROVIDERS__STRIPE__ENABLED", "true")
            .env("PAYHOOK__PROVIDERS__STRIPE__WEBHOOK_SECRETS", SECRET)
            .env("PAYHOOK__PROVIDERS__STRIPE__API_KEY", "sk_test_cli_mirror")
            .env("PAYHOOK__PROVIDERS__STRIPE__API_BASE_URL", &fake.base_url)
            .env("PAYHOOK__RECONCILE__MAX_CALLS_PER_SECOND", "1000")
            .env_remove("PAYHOOK_CONFIG")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (ok, out, err) = run(&["resync", "customer", "cus_one", "--account", "acct_1"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "customer cus_one (acct_1): written");
    let sent = fake.requests().pop().unwrap();
    assert_eq!(sent.path, "/v1/customers/cus_one");
    let stored = store
        .object("acct_1", StripeObjectType::Customer, "cus_one")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stored.data).unwrap()["name"],
        "Ana"
    );
    assert!(store
        .object("", StripeObjectType::Customer, "cus_one")
        .await
        .unwrap()
        .is_none());
    let (ok, _, err) = run(&["resync", "customer", "cus_none"]);
    assert!(!ok && err.contains("404"), "{err}");

    // Pages of 100: the first two succeed, the third fails (a 503, then Stripe is back).
    let before = fake.requests().len();
    fake.fail_next(&[200, 200, 503]);
    let (ok, out, err) = run(&["backfill", "invoice"]);
    assert!(!ok, "the run stops at the failure: {out}");
    assert!(err.contains("503"), "{err}");
    let firsts: Vec<_> = fake.requests()[before..].iter().map(|r| r.path.clone()).collect();
    assert_eq!(firsts.len(), 3, "{firsts:?}");
    let (ok, out, err) = run(&["backfill", "invoice"]);
    assert!(ok, "{err}");
    assert!(out.contains("went on after in_0050"), "{out}");
    assert!(
        out.contains("invoice: 50 read in 1 pages, 50 written; 250 stored in all"),
        "{out}"
    );
    let all = store
        .list_objects(&payhook_domain::MirrorFilter {
            account: String::new(),
            object_type: StripeObjectType::Invoice,
            customer: None,
            after: None,
            limit: 1_000,
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 250, "every invoice once");
}
