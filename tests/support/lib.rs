//! Test support for end-to-end tests: a fresh Postgres database per test, the real
//! payhook application on a random port, an HTTP client, Stripe signing, and
//! queries for what the store holds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use diesel::sql_types::{BigInt, Bool, Bytea, Int4, Jsonb, Nullable, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use payhook_app::{Application, Settings};
use payhook_domain::source::WebhookSource;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const STRIPE_SECRET: &str = "whsec_e2e_0123456789abcdef";
const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The Postgres server tests run against (`PAYHOOK_TEST_DATABASE_URL`).
pub fn admin_url() -> String {
    std::env::var("PAYHOOK_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// A database created for one test and dropped when it ends.
pub struct TestDb {
    pub url: String,
    name: String,
    admin_url: String,
}

impl TestDb {
    pub async fn create() -> Self {
        let db = Self::create_unmigrated().await;
        payhook_postgres::PgStore::migrate(&db.url).await.unwrap();
        db
    }

    pub async fn create_unmigrated() -> Self {
        let admin_url = admin_url();
        let mut admin = AsyncPgConnection::establish(&admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "Postgres is not reachable at {admin_url}: {e}.\n\
                 Start it (pg_ctlcluster 15 main start) or point PAYHOOK_TEST_DATABASE_URL at one."
                )
            });
        let name = format!("payhook_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = match admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("PAYHOOK_TEST_DATABASE_URL must name a database: {admin_url}"),
        };
        Self {
            url,
            name,
            admin_url,
        }
    }

    pub async fn conn(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime; the cleanup gets a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut admin) = AsyncPgConnection::establish(&admin_url).await {
                    let _ = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Settings for a test app: Stripe enabled with [`STRIPE_SECRET`], fast worker polls
/// and retries, a random port. `overrides` are `PAYHOOK__…` variables applied last.
pub fn settings(database_url: &str, overrides: &[(&str, &str)]) -> Settings {
    let mut env: config::Map<String, String> = [
        ("PAYHOOK__SERVER__BIND", "127.0.0.1:0"),
        ("PAYHOOK__DATABASE__URL", database_url),
        ("PAYHOOK__DATABASE__POOL_SIZE", "8"),
        ("PAYHOOK__PROVIDERS__STRIPE__ENABLED", "true"),
        ("PAYHOOK__PROVIDERS__STRIPE__WEBHOOK_SECRETS", STRIPE_SECRET),
        ("PAYHOOK__WORKER__POLL_INTERVAL_MS", "50"),
        ("PAYHOOK__WORKER__BACKOFF_BASE_MS", "100"),
        ("PAYHOOK__WORKER__BACKOFF_MAX_MS", "1000"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(
        overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    Settings::load(None, Some(env)).unwrap()
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    // Declared last: dropped after the client, so the database goes once the test is done.
    pub db: TestDb,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[], Vec::new()).await
}

pub async fn spawn_app_with(
    overrides: &[(&str, &str)],
    extra_sources: Vec<Arc<dyn WebhookSource>>,
) -> TestApp {
    let db = TestDb::create().await;
    let settings = settings(&db.url, overrides);
    let stores = payhook_app::Stores::open(&settings).await.unwrap();
    let app = Application::build_with(settings, stores, extra_sources).unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        db,
    }
}

impl TestApp {
    pub async fn post_stripe(&self, body: &[u8], signature: Option<&str>) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}/webhooks/stripe", self.address))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(sig) = signature {
            req = req.header("Stripe-Signature", sig);
        }
        req.send().await.unwrap()
    }

    /// Posts a body correctly signed with [`STRIPE_SECRET`] and the current time.
    pub async fn deliver(&self, body: &[u8]) -> reqwest::Response {
        self.post_stripe(body, Some(&sign(body))).await
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .unwrap()
    }

    pub async fn logs(&self) -> Vec<LogRow> {
        let mut conn = self.db.conn().await;
        diesel::sql_query(
            "SELECT provider, method, path, query, headers, raw_body, event_id, event_type, external_id,
                    provider_status, amount, http_status, processing_result, processing_error,
                    completed_at IS NOT NULL AS completed
             FROM webhook_logs ORDER BY id",
        )
        .load(&mut conn)
        .await
        .unwrap()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut conn = self.db.conn().await;
        let row: Count = diesel::sql_query(sql).get_result(&mut conn).await.unwrap();
        row.n
    }

    pub async fn text(&self, sql: &str) -> Option<String> {
        #[derive(QueryableByName)]
        struct One {
            #[diesel(sql_type = Nullable<Text>)]
            v: Option<String>,
        }
        let mut conn = self.db.conn().await;
        let rows: Vec<One> = diesel::sql_query(sql).load(&mut conn).await.unwrap();
        rows.into_iter().next().and_then(|r| r.v)
    }

    /// Waits until `sql` (a `SELECT count(*) AS n …`) reaches `n`, or fails the test after 15 s.
    pub async fn wait_for_count(&self, sql: &str, n: i64) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = self.count(sql).await;
            if got == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {sql:?} = {n}, last {got}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

#[derive(QueryableByName, Debug)]
pub struct LogRow {
    #[diesel(sql_type = Text)]
    pub provider: String,
    #[diesel(sql_type = Text)]
    pub method: String,
    #[diesel(sql_type = Text)]
    pub path: String,
    #[diesel(sql_type = Text)]
    pub query: String,
    #[diesel(sql_type = Jsonb)]
    pub headers: serde_json::Value,
    #[diesel(sql_type = Bytea)]
    pub raw_body: Vec<u8>,
    #[diesel(sql_type = Nullable<Text>)]
    pub event_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub event_type: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub external_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub provider_status: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub amount: Option<i64>,
    #[diesel(sql_type = Nullable<Int4>)]
    pub http_status: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    pub processing_result: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub processing_error: Option<String>,
    #[diesel(sql_type = Bool)]
    pub completed: bool,
}

impl LogRow {
    /// A stored header's value (names are stored lower-case, as HTTP/1 parsing gives them).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .as_array()?
            .iter()
            .find_map(|pair| match pair.as_array()?.as_slice() {
                [n, v] if n.as_str() == Some(name) => v.as_str().map(str::to_owned),
                _ => None,
            })
    }
}

pub fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A `Stripe-Signature` header for `body`, signed now with [`STRIPE_SECRET`].
pub fn sign(body: &[u8]) -> String {
    payhook_stripe::signature_header(STRIPE_SECRET, now_unix(), body)
}

/// A Stripe event envelope around `object`.
pub fn stripe_event(
    id: &str,
    event_type: &str,
    created: i64,
    object: serde_json::Value,
) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": id, "object": "event", "type": event_type, "created": created,
        "livemode": false, "api_version": "2024-06-20", "pending_webhooks": 1,
        "request": { "id": null, "idempotency_key": null },
        "data": { "object": object },
    }))
    .unwrap()
}

/// A PaymentIntent object as Stripe sends it in `payment_intent.*` events.
pub fn payment_intent(id: &str, status: &str, amount: i64, received: i64) -> serde_json::Value {
    serde_json::json!({
        "id": id, "object": "payment_intent", "amount": amount, "amount_received": received,
        "currency": "usd", "status": status, "metadata": { "order_id": "order-981" },
        "description": "Two tickets", "receipt_email": "buyer@example.com", "livemode": false,
    })
}
