//! `payhook-loadgen`: sends N distinct, freshly signed ~2 KB Stripe events to a
//! running payhook at concurrency C over keep-alive connections (loopback only),
//! reports throughput and latency, waits for the inbox to drain, reports processing
//! throughput and end-to-end lag from the store, and checks that every acknowledged
//! event is in the inbox once and applied once (`lost=0 duplicated=0`, else exit 1).

// The event body is one `json!` literal as deep and wide as Stripe's.
#![recursion_limit = "256"]

use bytes::Bytes;
use chrono::{DateTime, Utc};
use clap::Parser;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header;
use hyper_util::rt::TokioIo;
use payhook_sql_shared::types::{DbInstant, Instant as SqlInstant};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A request not answered within this is counted as a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Parser)]
#[command(name = "payhook-loadgen", about = "Load generator for payhook (loopback only)")]
struct Args {
    /// payhook's base URL (must be on 127.0.0.1).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The store payhook writes to, to check the inbox and measure lag
    /// (postgres://… or sqlite://…).
    #[arg(long)]
    database_url: String,
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// The Stripe endpoint secret payhook is configured with.
    #[arg(long, default_value = "whsec_payhook_bench")]
    secret: String,
    /// Gives up sending, or waiting for the drain, after this long.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// One JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// `payment`: `payment_intent.succeeded` events (each moves a payment, and mirrors
    /// its PaymentIntent); `mirror`: `customer.updated` events, which only update the
    /// Stripe mirror.
    #[arg(long, default_value = "payment")]
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Kind {
    Payment,
    Mirror,
}

#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("{0} is not a loopback URL: loadgen only talks to 127.0.0.1")]
    NotLoopback(String),
    #[error("store: {0}")]
    Store(String),
    #[error("the inbox did not drain within the timeout ({0} events still waiting)")]
    NotDrained(i64),
}

/// What sending produced: per-request latency and status.
struct Sent {
    latencies: Vec<Duration>,
    acknowledged: Vec<String>,
    non_2xx: HashMap<u16, usize>,
    errors: usize,
    elapsed: Duration,
    finished_at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct EventRow {
    #[diesel(sql_type = Text)]
    event_id: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = SqlInstant)]
    received_at: DbInstant,
    #[diesel(sql_type = Nullable<SqlInstant>)]
    processed_at: Option<DbInstant>,
}

#[derive(QueryableByName)]
struct AppliedRow {
    #[diesel(sql_type = Text)]
    event_id: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("payhook-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<bool, LoadError> {
    if !(args.url.starts_with("http://127.0.0.1:") || args.url.starts_with("http://localhost:")) {
        return Err(LoadError::NotLoopback(args.url.clone()));
    }
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let sent = send_all(args, &run_id).await?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let drained_at = wait_for_drain(&args.database_url, deadline).await?;
    let drain = (drained_at - sent.finished_at).to_std().unwrap_or_default();
    let check = verify(&args.database_url, &run_id, &sent.acknowledged, args.kind).await?;
    report(args, &sent, drain, &check);
    Ok(check.lost == 0 && check.duplicated == 0)
}

/// A `payment_intent.succeeded` event shaped like Stripe's own (the fields of
/// `fixtures/stripe/payment_intent.succeeded.json`), pretty-printed as Stripe sends
/// it: about 2 KB, most of it fields payhook does not keep, and a merchant's usual
/// small `metadata`.
fn body(run_id: &str, i: usize) -> Vec<u8> {
    let now = Utc::now().timestamp();
    let amount = 2000 + (i % 5000) as i64;
    let intent = format!("pi_load_{run_id}_{i:07}");
    serde_json::to_vec_pretty(&serde_json::json!({
        "id": format!("evt_load_{run_id}_{i:07}"), "object": "event", "api_version": "2024-06-20", "created": now,
        "data": { "object": {
            "amount": amount, "amount_capturable": 0, "amount_details": { "tip": {} }, "amount_received": amount,
            "application": null, "application_fee_amount": null, "automatic_payment_methods": { "enabled": true },
            "canceled_at": null, "cancellation_reason": null, "capture_method": "automatic",
            "client_secret": format!("{intent}_secret_Dm43xiq1k0ywrRRjDoi8y1gkM"),
            "confirmation_method": "automatic", "created": now, "currency": "usd", "customer": null,
            "description": "loadgen order", "id": intent, "last_payment_error": null,
            "latest_charge": format!("ch_load_{run_id}_{i:07}"), "livemode": false,
            "metadata": { "order_id": format!("order-{i}") },
            "next_action": null, "object": "payment_intent", "on_behalf_of": null, "payment_method": null,
            "payment_method_configuration_details": { "id": "pmc_load", "parent": null },
            "payment_method_options": { "card": {
                "installments": null, "mandate_options": null, "network": null, "request_three_d_secure": "automatic",
            } },
            "payment_method_types": ["card"], "processing": null, "receipt_email": "load@example.com",
            "review": null, "setup_future_usage": null, "shipping": null, "statement_descriptor": null,
            "statement_descriptor_suffix": null, "status": "succeeded",
            "transfer_data": null, "transfer_group": null, "source": null,
        } },
        "livemode": false, "pending_webhooks": 1,
        "request": { "id": format!("req_load_{run_id}_{i}"), "idempotency_key": null },
        "type": "payment_intent.succeeded",
    }))
    .unwrap_or_default()
}

/// A `customer.updated` event shaped like Stripe's own (the customer object of its API
/// reference), about the size of a payment's: it only updates the Stripe mirror.
fn customer_body(run_id: &str, i: usize) -> Vec<u8> {
    let now = Utc::now().timestamp();
    let customer = format!("cus_load_{run_id}_{i:07}");
    serde_json::to_vec_pretty(&serde_json::json!({
        "id": format!("evt_load_{run_id}_{i:07}"), "object": "event", "api_version": "2024-06-20", "created": now,
        "data": { "object": {
            "address": { "city": "Lisbon", "country": "PT", "line1": "Rua Augusta 1", "line2": null,
                         "postal_code": "1100-048", "state": null },
            "balance": 0, "created": now, "currency": "eur", "default_source": null, "delinquent": false,
            "description": "loadgen customer", "discount": null, "email": format!("load{i}@example.com"),
            "id": customer, "invoice_prefix": "LOAD0001", "invoice_settings": {
                "custom_fields": null, "default_payment_method": null, "footer": null, "rendering_options": null },
            "livemode": false, "metadata": { "user_id": format!("user-{i}") }, "name": "Load Customer",
            "next_invoice_sequence": 1, "object": "customer", "phone": null, "preferred_locales": ["pt"],
            "shipping": null, "tax_exempt": "none", "test_clock": null,
        },
        "previous_attributes": { "email": "old@example.com" } },
        "livemode": false, "pending_webhooks": 1,
        "request": { "id": format!("req_load_{run_id}_{i}"), "idempotency_key": null },
        "type": "customer.updated",
    }))
    .unwrap_or_default()
}

/// One keep-alive HTTP/1.1 connection per concurrent sender, each posting the next
/// unsent event as soon as its previous one is answered.
async fn send_all(args: &Args, run_id: &str) -> Result<Sent, LoadError> {
    let authority = args.url.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let next = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new((
        Vec::with_capacity(args.events),
        Vec::with_capacity(args.events),
        HashMap::new(),
        0usize,
    )));
    // Built before the clock starts, so the measured window holds payhook's work and
    // as little of the load generator's as it can (they share the cores). Each body is
    // still signed just before it is sent, so every signature is fresh.
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..args.events)
            .map(|i| {
                Bytes::from(match args.kind {
                    Kind::Payment => body(run_id, i),
                    Kind::Mirror => customer_body(run_id, i),
                })
            })
            .collect(),
    );
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let started = Instant::now();
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (authority, next, results) = (authority.clone(), next.clone(), results.clone());
            let (secret, run_id, bodies) = (args.secret.clone(), run_id.to_owned(), bodies.clone());
            tokio::spawn(async move {
                let mut connection = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i).cloned() else { break };
                    if Instant::now() > deadline {
                        break;
                    }
                    let signature = payhook_stripe::signature_header(&secret, Utc::now().timestamp(), &body);
                    let began = Instant::now();
                    let answer =
                        tokio::time::timeout(REQUEST_TIMEOUT, post(&mut connection, &authority, signature, body)).await;
                    let status = match answer {
                        Ok(Ok(status)) => Some(status),
                        // Whatever state the connection is in, the next request gets a new one.
                        Ok(Err(_)) | Err(_) => {
                            connection = None;
                            None
                        }
                    };
                    let latency = began.elapsed();
                    let mut r = results.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    r.0.push(latency);
                    match status {
                        Some(s) if (200..300).contains(&s) => r.1.push(format!("evt_load_{run_id}_{i:07}")),
                        Some(s) => *r.2.entry(s).or_insert(0) += 1,
                        None => r.3 += 1,
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    let elapsed = started.elapsed();
    let finished_at = Utc::now();
    let (latencies, acknowledged, non_2xx, errors) =
        std::mem::take(&mut *results.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    Ok(Sent {
        latencies,
        acknowledged,
        non_2xx,
        errors,
        elapsed,
        finished_at,
    })
}

/// Posts one signed event on this sender's connection (opening it first if there is
/// none) and reads the whole answer, so the connection can carry the next request.
async fn post(
    connection: &mut Option<SendRequest<Full<Bytes>>>,
    authority: &str,
    signature: String,
    body: Bytes,
) -> Result<u16, Box<dyn std::error::Error + Send + Sync>> {
    let sender = match connection {
        Some(sender) if !sender.is_closed() => sender,
        _ => {
            let stream = tokio::net::TcpStream::connect(authority).await?;
            stream.set_nodelay(true)?;
            let (sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(driver);
            connection.insert(sender)
        }
    };
    sender.ready().await?;
    let request = hyper::Request::post("/webhooks/stripe")
        .header(header::HOST, authority)
        .header(header::CONTENT_TYPE, "application/json")
        .header("stripe-signature", signature)
        .body(Full::new(body))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    response.into_body().collect().await?;
    Ok(status)
}

/// Runs one query for rows that read the same from both stores.
async fn rows<T>(database_url: &str, sql: &str) -> Result<Vec<T>, LoadError>
where
    T: QueryableByName<diesel::pg::Pg> + QueryableByName<diesel::sqlite::Sqlite> + Send + 'static,
{
    let store = |e: String| LoadError::Store(e);
    if let Some(path) = database_url.strip_prefix("sqlite://") {
        use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
        use diesel_async::SimpleAsyncConnection;
        let mut conn = SyncConnectionWrapper::<diesel::SqliteConnection>::establish(path)
            .await
            .map_err(|e| store(e.to_string()))?;
        conn.batch_execute("PRAGMA busy_timeout = 5000")
            .await
            .map_err(|e| store(e.to_string()))?;
        diesel::sql_query(sql)
            .load(&mut conn)
            .await
            .map_err(|e| store(e.to_string()))
    } else {
        let mut conn = AsyncPgConnection::establish(database_url)
            .await
            .map_err(|e| store(e.to_string()))?;
        diesel::sql_query(sql)
            .load(&mut conn)
            .await
            .map_err(|e| store(e.to_string()))
    }
}

/// Polls the inbox until nothing is waiting; returns when that was seen.
async fn wait_for_drain(database_url: &str, deadline: Instant) -> Result<DateTime<Utc>, LoadError> {
    loop {
        let waiting: Vec<Count> = rows(
            database_url,
            "SELECT count(*) AS n FROM webhook_events WHERE status IN ('pending', 'failed')",
        )
        .await?;
        let n = waiting.iter().map(|c| c.n).sum::<i64>();
        if n == 0 {
            return Ok(Utc::now());
        }
        if Instant::now() > deadline {
            return Err(LoadError::NotDrained(n));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Check {
    lost: usize,
    duplicated: usize,
    applied: usize,
    /// Received → applied, per event.
    lags: Vec<Duration>,
    /// Events applied per second, first receipt to last application.
    processing_rate: f64,
}

async fn verify(database_url: &str, run_id: &str, acknowledged: &[String], kind: Kind) -> Result<Check, LoadError> {
    let pattern = format!("evt_load_{run_id}_%");
    let events: Vec<EventRow> = rows(
        database_url,
        &format!(
            "SELECT event_id, status, received_at, processed_at FROM webhook_events \
             WHERE provider = 'stripe' AND event_id LIKE '{pattern}'"
        ),
    )
    .await?;
    // What the worker did with each: a payment's applied history entry, or (mirror
    // events) the mirrored object it wrote.
    let applied_sql = match kind {
        Kind::Payment => format!(
            "SELECT event_id, count(*) AS n FROM payment_status_history \
             WHERE applied = true AND event_id LIKE '{pattern}' GROUP BY event_id"
        ),
        Kind::Mirror => format!(
            "SELECT source_event_id AS event_id, count(*) AS n FROM stripe_objects \
             WHERE source_event_id LIKE '{pattern}' GROUP BY source_event_id"
        ),
    };
    let applied: Vec<AppliedRow> = rows(database_url, &applied_sql).await?;
    let mut inbox: HashMap<&str, usize> = HashMap::new();
    for e in &events {
        *inbox.entry(e.event_id.as_str()).or_insert(0) += 1;
    }
    let applications: HashMap<&str, i64> = applied.iter().map(|a| (a.event_id.as_str(), a.n)).collect();
    let lost = acknowledged
        .iter()
        .filter(|id| inbox.get(id.as_str()) != Some(&1) || applications.get(id.as_str()).copied().unwrap_or(0) == 0)
        .count();
    let duplicated = inbox.values().filter(|n| **n > 1).count() + applications.values().filter(|n| **n > 1).count();
    let mut lags = Vec::with_capacity(events.len());
    let (mut first, mut last) = (None::<DateTime<Utc>>, None::<DateTime<Utc>>);
    for e in events.iter().filter(|e| e.status == "processed") {
        if let Some(done) = &e.processed_at {
            lags.push((done.0 - e.received_at.0).to_std().unwrap_or_default());
            first = Some(first.map_or(e.received_at.0, |f| f.min(e.received_at.0)));
            last = Some(last.map_or(done.0, |l| l.max(done.0)));
        }
    }
    let span = match (first, last) {
        (Some(f), Some(l)) => (l - f).to_std().unwrap_or_default().as_secs_f64(),
        _ => 0.0,
    };
    let processing_rate = if span > 0.0 { lags.len() as f64 / span } else { 0.0 };
    Ok(Check {
        lost,
        duplicated,
        applied: applications.len(),
        lags,
        processing_rate,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn report(args: &Args, sent: &Sent, drain: Duration, check: &Check) {
    let mut latencies = sent.latencies.clone();
    latencies.sort();
    let mut lags = check.lags.clone();
    lags.sort();
    let rps = sent.latencies.len() as f64 / sent.elapsed.as_secs_f64().max(f64::EPSILON);
    let non_2xx: usize = sent.non_2xx.values().sum::<usize>() + sent.errors;
    let summary = serde_json::json!({
        "events": args.events, "concurrency": args.concurrency, "sent": sent.latencies.len(),
        "acknowledged": sent.acknowledged.len(), "non_2xx": non_2xx, "non_2xx_by_status": sent.non_2xx,
        "transport_errors": sent.errors, "seconds": (sent.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        "requests_per_second": rps.round(),
        "latency_ms": { "p50": ms(percentile(&latencies, 50.0)), "p90": ms(percentile(&latencies, 90.0)),
                        "p99": ms(percentile(&latencies, 99.0)), "max": ms(latencies.last().copied().unwrap_or_default()) },
        "drain_seconds_after_last_request": (drain.as_secs_f64() * 1000.0).round() / 1000.0,
        "applied": check.applied, "processing_per_second": check.processing_rate.round(),
        "lag_ms": { "p50": ms(percentile(&lags, 50.0)), "p99": ms(percentile(&lags, 99.0)) },
        "lost": check.lost, "duplicated": check.duplicated,
    });
    if args.json {
        println!("{summary}");
        return;
    }
    let line = |k: &str, v: String| println!("{k:<34} {v}");
    line(
        "events sent / acknowledged",
        format!("{} / {}", sent.latencies.len(), sent.acknowledged.len()),
    );
    line("concurrency", args.concurrency.to_string());
    line("ingest requests/s", format!("{rps:.0}"));
    line(
        "ACK latency p50 / p90 / p99 / max",
        format!(
            "{} / {} / {} / {} ms",
            ms(percentile(&latencies, 50.0)),
            ms(percentile(&latencies, 90.0)),
            ms(percentile(&latencies, 99.0)),
            ms(latencies.last().copied().unwrap_or_default())
        ),
    );
    line("non-2xx (incl. transport errors)", non_2xx.to_string());
    line(
        "inbox drained after last request",
        format!("{:.3} s", drain.as_secs_f64()),
    );
    line("processing events/s", format!("{:.0}", check.processing_rate));
    line(
        "received → applied p50 / p99",
        format!("{} / {} ms", ms(percentile(&lags, 50.0)), ms(percentile(&lags, 99.0))),
    );
    println!("lost={} duplicated={}", check.lost, check.duplicated);
}

#[cfg(test)]
mod tests {
    use super::body;

    #[test]
    fn events_are_about_2_kb_with_unique_ids_and_small_metadata() {
        let (a, b) = (body("r1", 1), body("r1", 2));
        assert!(
            (1_800..=2_400).contains(&a.len()),
            "a ~2 KB body, got {} bytes",
            a.len()
        );
        let (a, b): (serde_json::Value, serde_json::Value) =
            (serde_json::from_slice(&a).unwrap(), serde_json::from_slice(&b).unwrap());
        assert_ne!(a["id"], b["id"]);
        assert_ne!(a["data"]["object"]["id"], b["data"]["object"]["id"]);
        assert_eq!(a["type"], "payment_intent.succeeded");
        assert_eq!(
            a["data"]["object"]["metadata"],
            serde_json::json!({ "order_id": "order-1" })
        );
    }
}
