//! `payhook-abuse`: what one hostile or careless client costs everyone else, measured
//! from outside against a running payhook on loopback (`bench/abuse.sh` starts one
//! and runs every scenario). Each scenario sends a provider's valid, signed events at
//! a steady rate beside the abuse and reports their ACK latency, and how many were
//! refused or lost (not answered 200), first without the abuse, then with it:
//!
//! - `slow-bodies`: N connections each announce a 100 KB body and send a byte a
//!   second (reconnecting when payhook drops them);
//! - `flood`: wrong-signature requests at a rate from the same address;
//! - `streams`: N browsers' status streams on N payments (inserted in the store with
//!   known client tokens), then each payment paid by a webhook: ACK latency, and the
//!   time from the webhook to its stream showing `paid`; payhook's RSS per stream.

use chrono::Utc;
use clap::{Parser, Subcommand};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use sha2::{Digest, Sha256};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(name = "payhook-abuse", about = "Abuse scenarios against payhook (loopback only)")]
struct Args {
    /// payhook's address (host:port on 127.0.0.1).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// The Stripe endpoint secret payhook is configured with.
    #[arg(long, default_value = "whsec_payhook_bench")]
    secret: String,
    /// Valid events per second sent beside the abuse.
    #[arg(long, default_value_t = 200)]
    rate: usize,
    /// Seconds of valid traffic, before and during the abuse each.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    SlowBodies {
        #[arg(long, default_value_t = 2000)]
        clients: usize,
    },
    Flood {
        /// Wrong-signature requests per second.
        #[arg(long, default_value_t = 5000)]
        bad_rate: usize,
    },
    Streams {
        #[arg(long, default_value_t = 10_000)]
        streams: usize,
        /// The Postgres database payhook uses (payments are inserted there).
        #[arg(long)]
        database_url: String,
        /// payhook's process id, to read its RSS.
        #[arg(long)]
        pid: u32,
    },
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    if !args.addr.starts_with("127.0.0.1:") {
        eprintln!("payhook-abuse only talks to 127.0.0.1");
        return ExitCode::FAILURE;
    }
    let ok = match &args.scenario {
        Scenario::SlowBodies { clients } => slow_bodies(&args, *clients).await,
        Scenario::Flood { bad_rate } => flood(&args, *bad_rate).await,
        Scenario::Streams {
            streams,
            database_url,
            pid,
        } => streams_scenario(&args, *streams, database_url, *pid).await,
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A signed `payment_intent.succeeded` for `intent`.
fn event(secret: &str, id: &str, intent: &str) -> (Vec<u8>, String) {
    let body = serde_json::to_vec(&serde_json::json!({
        "id": id, "object": "event", "type": "payment_intent.succeeded", "created": Utc::now().timestamp(),
        "data": { "object": { "id": intent, "object": "payment_intent", "amount": 2000,
                              "amount_received": 2000, "currency": "usd", "status": "succeeded", "metadata": {} } },
    }))
    .unwrap_or_default();
    let signature = payhook_stripe::signature_header(secret, Utc::now().timestamp(), &body);
    (body, signature)
}

fn request(path: &str, body: &[u8], signature: &str) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: payhook\r\nContent-Type: application/json\r\n\
         Stripe-Signature: {signature}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Sends one request on a fresh connection; the status, or `None` on a transport error.
async fn send(addr: &str, bytes: &[u8]) -> Option<u16> {
    let attempt = async {
        let mut socket = TcpStream::connect(addr).await.ok()?;
        socket.write_all(bytes).await.ok()?;
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(&head);
        line.split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(30), attempt)
        .await
        .ok()
        .flatten()
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    refused: usize,
}

/// When each payment's webhook was sent, by its PaymentIntent id.
type SentAt = Arc<Mutex<std::collections::HashMap<String, Instant>>>;

/// Valid events at `rate` per second for `secs`, each on its own connection; their
/// latencies and how many were not answered 200. With `intents`, one event per given
/// PaymentIntent (at most that many), each one's sending time kept in `sent_at`;
/// otherwise each about a new payment.
async fn valid_traffic(args: &Args, label: &str, intents: Option<(&[String], &SentAt)>) -> Tally {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut total = args.rate * args.secs as usize;
    if let Some((intents, _)) = intents {
        total = total.min(intents.len());
    }
    let gap = Duration::from_secs_f64(1.0 / args.rate as f64);
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total);
    let run = uuid::Uuid::new_v4().simple().to_string();
    for i in 0..total {
        tokio::time::sleep_until(started + gap * i as u32).await;
        let (intent, sent_at) = match intents {
            Some((intents, sent_at)) => (intents[i].clone(), Some(sent_at.clone())),
            None => (format!("pi_abuse_{run}_{i}"), None),
        };
        let (body, signature) = event(&args.secret, &format!("evt_abuse_{run}_{i}"), &intent);
        let bytes = request("/webhooks/stripe", &body, &signature);
        let (addr, tally) = (args.addr.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let began = Instant::now();
            if let Some(sent_at) = sent_at {
                sent_at.lock().unwrap_or_else(|e| e.into_inner()).insert(intent, began);
            }
            let status = send(&addr, &bytes).await;
            let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
            if status == Some(200) {
                t.latencies.push(began.elapsed());
            } else {
                t.refused += 1;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let mut tally = std::mem::take(&mut *tally.lock().unwrap_or_else(|e| e.into_inner()));
    tally.latencies.sort();
    report(label, &tally);
    tally
}

/// The `q` quantile of sorted durations, in milliseconds (0 when there are none).
fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1)))
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn report(label: &str, tally: &Tally) {
    let l = &tally.latencies;
    println!(
        "{label:<40} accepted {:>6}  refused/lost {:>4}  ACK p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
        l.len(),
        tally.refused,
        quantile_ms(l, 0.50),
        quantile_ms(l, 0.99),
        quantile_ms(l, 1.0),
    );
}

async fn slow_bodies(args: &Args, clients: usize) -> bool {
    let quiet = valid_traffic(args, "valid events, no slow clients", None).await;
    let stop = Arc::new(tokio::sync::Notify::new());
    let held = Arc::new(AtomicUsize::new(0));
    for _ in 0..clients {
        let (addr, stop, held) = (args.addr.clone(), stop.clone(), held.clone());
        tokio::spawn(async move {
            loop {
                let Ok(mut socket) = TcpStream::connect(&addr).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                held.fetch_add(1, Ordering::Relaxed);
                let head = b"POST /webhooks/stripe HTTP/1.1\r\nHost: payhook\r\nContent-Length: 100000\r\n\r\n";
                let mut alive = socket.write_all(head).await.is_ok();
                while alive {
                    tokio::select! {
                        _ = stop.notified() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    alive = socket.write_all(b"x").await.is_ok();
                }
                held.fetch_sub(1, Ordering::Relaxed);
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!("slow-body connections held: {}", held.load(Ordering::Relaxed));
    let loud = valid_traffic(args, &format!("valid events, {clients} slow clients"), None).await;
    println!(
        "slow-body connections held at the end: {}",
        held.load(Ordering::Relaxed)
    );
    stop.notify_waiters();
    quiet.refused == 0 && loud.refused == 0
}

async fn flood(args: &Args, bad_rate: usize) -> bool {
    let quiet = valid_traffic(args, "valid events, no flood", None).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(std::collections::BTreeMap::<u16, usize>::new()));
    let flooder = {
        let (addr, stop, answers) = (args.addr.clone(), stop.clone(), answers.clone());
        let (body, _) = event(&args.secret, "evt_forged", "pi_forged");
        let bytes = Arc::new(request("/webhooks/stripe", &body, "t=1,v1=00"));
        tokio::spawn(async move {
            let gap = Duration::from_secs_f64(1.0 / bad_rate as f64);
            let started = tokio::time::Instant::now();
            let in_flight = Arc::new(tokio::sync::Semaphore::new(256));
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep_until(started + gap * i).await;
                i += 1;
                let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                    continue; // payhook is not keeping up: the attacker does not wait either
                };
                let (addr, bytes, answers) = (addr.clone(), bytes.clone(), answers.clone());
                tokio::spawn(async move {
                    let status = send(&addr, &bytes).await.unwrap_or(0);
                    *answers
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(status)
                        .or_default() += 1;
                    drop(permit);
                });
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loud = valid_traffic(args, &format!("valid events, {bad_rate}/s forged beside"), None).await;
    stop.store(true, Ordering::Relaxed);
    let _ = flooder.await;
    println!(
        "forged requests answered (status: count): {:?}",
        answers.lock().unwrap_or_else(|e| e.into_inner())
    );
    println!(
        "valid p99 with the flood / without: {:.2}×",
        quantile_ms(&loud.latencies, 0.99) / quantile_ms(&quiet.latencies, 0.99).max(0.001)
    );
    quiet.refused == 0 && loud.refused == 0
}

#[derive(diesel::QueryableByName)]
struct Waiting {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Waits (up to a minute) until no inbox event is waiting to be applied and no
/// domain event to be published.
async fn wait_for_drain(db: &mut AsyncPgConnection) {
    use diesel_async::RunQueryDsl;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let waiting: Result<Vec<Waiting>, _> = diesel::sql_query(
            "SELECT (SELECT count(*) FROM webhook_events WHERE status IN ('pending', 'failed'))
                      + (SELECT count(*) FROM outbox WHERE published_at IS NULL) AS n",
        )
        .load(db)
        .await;
        if waiting.is_ok_and(|rows| rows.iter().any(|row| row.n == 0)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

async fn streams_scenario(args: &Args, streams: usize, database_url: &str, pid: u32) -> bool {
    let quiet = valid_traffic(args, "webhooks, no streams open", None).await;
    // Let the worker apply those first, so the streams' changes do not queue behind them.
    if let Ok(mut db) = AsyncPgConnection::establish(database_url).await {
        wait_for_drain(&mut db).await;
    }
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let intents: Vec<String> = (0..streams).map(|i| format!("pi_stream_{run}_{i}")).collect();
    let mut ids = Vec::with_capacity(streams);
    // The payments and their client tokens, as POST /payments would have stored them.
    let Ok(mut db) = AsyncPgConnection::establish(database_url).await else {
        eprintln!("cannot connect to {database_url}");
        return false;
    };
    for chunk in intents.chunks(1000) {
        let mut sql = String::from(
            "INSERT INTO payments (id, provider, provider_ref, amount, currency, status, client_token_hash, \
             created_at, updated_at) VALUES ",
        );
        for (n, intent) in chunk.iter().enumerate() {
            let id = uuid::Uuid::new_v4();
            let hash = hex::encode(Sha256::digest(format!("token-{intent}").as_bytes()));
            if n > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "('{id}', 'stripe', '{intent}', 2000, 'USD', 'pending', '{hash}', now(), now())"
            ));
            ids.push((id, intent.clone()));
        }
        if let Err(e) = db.batch_execute(&sql).await {
            eprintln!("cannot insert payments: {e}");
            return false;
        }
    }
    let before = rss_kib(pid);
    let opened = Arc::new(AtomicUsize::new(0));
    let paid_at: Arc<Mutex<Vec<(String, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    for (n, (id, intent)) in ids.iter().enumerate() {
        let (addr, opened_here, paid_at) = (args.addr.clone(), opened.clone(), paid_at.clone());
        let path = format!("/payments/{id}/events?token=token-{intent}");
        let intent = intent.clone();
        tokio::spawn(async move {
            let Ok(mut socket) = TcpStream::connect(&addr).await else {
                return;
            };
            let head = format!("GET {path} HTTP/1.1\r\nHost: payhook\r\n\r\n");
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let mut seen = Vec::new();
            let mut buf = [0u8; 2048];
            let mut counted = false;
            loop {
                let Ok(n) = socket.read(&mut buf).await else { return };
                if n == 0 {
                    return;
                }
                seen.extend_from_slice(&buf[..n]);
                if !counted && seen.windows(13).any(|w| w == b"event: status") {
                    counted = true;
                    opened_here.fetch_add(1, Ordering::Relaxed);
                }
                if seen.windows(15).any(|w| w == b"\"status\":\"paid\"") {
                    paid_at
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((intent, Instant::now()));
                    return;
                }
            }
        });
        // Opening them all at once is a burst no browser population makes.
        if n % 200 == 199 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while opened.load(Ordering::Relaxed) < streams && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let open_now = opened.load(Ordering::Relaxed);
    let after = rss_kib(pid);
    println!(
        "streams open: {open_now}; payhook RSS {:.1} → {:.1} MiB, {:.1} KiB per stream",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / open_now.max(1) as f64
    );
    // Other payments' webhooks beside the idle streams: what the streams cost everyone else.
    let beside = valid_traffic(args, &format!("other webhooks beside {open_now} idle streams"), None).await;
    if let Ok(mut db) = AsyncPgConnection::establish(database_url).await {
        wait_for_drain(&mut db).await;
    }
    // One webhook per payment, at the given rate, in the order the streams were opened.
    let sent_at = SentAt::default();
    let label = format!("webhooks beside {open_now} open streams");
    let tally = valid_traffic(args, &label, Some((&intents, &sent_at))).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let sent = sent_at.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut delays: Vec<Duration> = paid_at
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(|(intent, at)| sent.get(intent).map(|s| at.saturating_duration_since(*s)))
        .collect();
    delays.sort();
    println!(
        "changes seen on their streams: {} of {}; webhook → stream p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        delays.len(),
        sent.len(),
        quantile_ms(&delays, 0.5),
        quantile_ms(&delays, 0.99),
        quantile_ms(&delays, 1.0),
    );
    quiet.refused == 0 && beside.refused == 0 && tally.refused == 0
}
