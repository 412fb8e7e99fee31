//! Test support for end-to-end tests: a fresh Postgres database per test, the real
//! payhook application on a random port, an HTTP client, Stripe signing, and
//! queries for what the store holds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text};
use diesel::sqlite::{Sqlite, SqliteConnection};
use diesel::QueryableByName;
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use payhook_app::{Application, Settings};
use payhook_domain::source::WebhookSource;
use payhook_sql_shared::types::{Bytes, DbBytes, DbJson, DbUuid, Json, Uuid};
use payhook_testkit::postgres::TestDb;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use payhook_testkit::postgres::postgres_available;

pub const STRIPE_SECRET: &str = "whsec_e2e_0123456789abcdef";

/// Which store a scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Runs each listed scenario (`async fn(Backend)`) as two tests, `postgres::name` and
/// `sqlite::name`. The Postgres ones skip, saying so, when Postgres is unreachable and
/// PAYHOOK_REQUIRE_POSTGRES is not set.
#[macro_export]
macro_rules! on_every_store {
    ($($scenario:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    if $crate::postgres_available().await {
                        super::$scenario($crate::Backend::Postgres).await;
                    }
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($crate::Backend::Sqlite).await;
                }
            )*
        }
    };
}

/// A fresh directory under the system temp dir, removed when dropped (test passed or not).
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        Self(std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple())))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh, empty database of either kind, removed when dropped.
pub enum TestStore {
    Postgres(TestDb),
    Sqlite { url: String, dir: std::path::PathBuf },
}

impl TestStore {
    pub async fn create(backend: Backend) -> Self {
        match backend {
            Backend::Postgres => Self::Postgres(TestDb::create().await),
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("payhook-e2e-{}", uuid::Uuid::new_v4().simple()));
                let url = format!("sqlite://{}/payhook.db", dir.display());
                Self::Sqlite { url, dir }
            }
        }
    }

    pub fn url(&self) -> &str {
        match self {
            Self::Postgres(db) => &db.url,
            Self::Sqlite { url, .. } => url,
        }
    }

    /// Runs a query for rows that read the same from both backends.
    pub async fn rows<T>(&self, sql: &str) -> Vec<T>
    where
        T: QueryableByName<diesel::pg::Pg> + QueryableByName<Sqlite> + Send + 'static,
    {
        match self {
            Self::Postgres(db) => {
                let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
                diesel::sql_query(sql).load(&mut conn).await.unwrap()
            }
            Self::Sqlite { url, .. } => {
                let path = url.trim_start_matches("sqlite://");
                let mut conn = sqlite_conn(path).await;
                diesel::sql_query(sql).load(&mut conn).await.unwrap()
            }
        }
    }
}

/// A transaction holding the inbox's write lock until dropped (its connection closes
/// and the transaction rolls back).
pub enum WriteLock {
    Postgres(Box<AsyncPgConnection>),
    Sqlite(diesel_async::sync_connection_wrapper::SyncConnectionWrapper<diesel::SqliteConnection>),
}

impl WriteLock {
    /// Ends the holding transaction and waits until the database has done so (a
    /// dropped connection releases its locks only once the server notices).
    pub async fn release(self) {
        use diesel_async::SimpleAsyncConnection;
        match self {
            WriteLock::Postgres(mut conn) => conn.batch_execute("ROLLBACK").await.unwrap(),
            WriteLock::Sqlite(mut conn) => conn.batch_execute("ROLLBACK").await.unwrap(),
        }
    }
}

impl TestStore {
    /// Makes writes to the inbox wait, as a long migration or a stuck transaction
    /// would: Postgres locks `webhook_events`; SQLite takes the database's write lock.
    pub async fn hold_write_lock(&self) -> WriteLock {
        use diesel_async::SimpleAsyncConnection;
        match self {
            Self::Postgres(db) => {
                let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
                conn.batch_execute("BEGIN; LOCK TABLE webhook_events IN ACCESS EXCLUSIVE MODE")
                    .await
                    .unwrap();
                WriteLock::Postgres(Box::new(conn))
            }
            Self::Sqlite { url, .. } => {
                let mut conn = sqlite_conn(url.trim_start_matches("sqlite://")).await;
                conn.batch_execute("BEGIN IMMEDIATE").await.unwrap();
                WriteLock::Sqlite(conn)
            }
        }
    }
}

impl TestStore {
    /// Runs statements directly on the database (to break it on purpose, say).
    pub async fn execute(&self, sql: &str) {
        use diesel_async::SimpleAsyncConnection;
        match self {
            Self::Postgres(db) => {
                let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
                conn.batch_execute(sql).await.unwrap();
            }
            Self::Sqlite { url, .. } => {
                let path = url.trim_start_matches("sqlite://");
                let mut conn = sqlite_conn(path).await;
                conn.batch_execute(sql).await.unwrap();
            }
        }
    }

    /// Makes the database refuse every insert into `webhook_logs`, as a full disk or a
    /// revoked grant would; `accept_forensic_writes_again` undoes it.
    pub async fn refuse_forensic_writes(&self) {
        let sql = match self {
            Self::Postgres(_) => {
                "CREATE FUNCTION refuse_writes() RETURNS trigger LANGUAGE plpgsql AS
                     $$ BEGIN RAISE EXCEPTION 'writes refused'; END $$;
                 CREATE TRIGGER refuse_writes BEFORE INSERT ON webhook_logs
                     FOR EACH ROW EXECUTE FUNCTION refuse_writes();"
            }
            Self::Sqlite { .. } => {
                "CREATE TRIGGER refuse_writes BEFORE INSERT ON webhook_logs
                     BEGIN SELECT RAISE(ABORT, 'writes refused'); END;"
            }
        };
        self.execute(sql).await;
    }

    pub async fn accept_forensic_writes_again(&self) {
        let sql = match self {
            Self::Postgres(_) => "DROP TRIGGER refuse_writes ON webhook_logs",
            Self::Sqlite { .. } => "DROP TRIGGER refuse_writes",
        };
        self.execute(sql).await;
    }
}

/// A connection to the app's SQLite file that waits for the app's writes, as the
/// store's own connections do.
async fn sqlite_conn(path: &str) -> SyncConnectionWrapper<SqliteConnection> {
    use diesel_async::SimpleAsyncConnection;
    let mut conn = SyncConnectionWrapper::<SqliteConnection>::establish(path)
        .await
        .unwrap();
    conn.batch_execute("PRAGMA busy_timeout = 5000").await.unwrap();
    conn
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Self::Sqlite { dir, .. } = self {
            let _ = std::fs::remove_dir_all(dir);
        }
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
        ("PAYHOOK__API__KEYS", MERCHANT_KEY),
        ("PAYHOOK__PROVIDERS__STRIPE__WEBHOOK_SECRETS", STRIPE_SECRET),
        ("PAYHOOK__WORKER__POLL_INTERVAL_MS", "50"),
        ("PAYHOOK__WORKER__BACKOFF_BASE_MS", "100"),
        ("PAYHOOK__WORKER__BACKOFF_MAX_MS", "1000"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Settings::load(None, Some(env)).unwrap()
}

/// The merchant API key test apps accept; [`TestApp::client`] sends it.
pub const MERCHANT_KEY: &str = "merchant_key_for_e2e_tests";

/// A client that sends [`MERCHANT_KEY`] with every request.
pub fn merchant_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_static("Bearer merchant_key_for_e2e_tests"),
    );
    reqwest::Client::builder().default_headers(headers).build().unwrap()
}

pub struct TestApp {
    /// The public listener (and, unless `server.internal_bind` is set, the internal one).
    pub address: String,
    /// The internal listener, when `server.internal_bind` is set.
    pub internal_address: Option<String>,
    /// Sends the merchant key ([`MERCHANT_KEY`]).
    pub client: reqwest::Client,
    /// Domain events as the in-process bus delivers them.
    pub events: tokio::sync::broadcast::Receiver<payhook_domain::OutboxMessage>,
    /// The same stores the app uses (to set up payments the way the payments API will).
    pub stores: payhook_app::Stores,
    // Declared last: dropped after the client, so the database goes once the test is done.
    pub store: TestStore,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[], Vec::new()).await
}

/// Starts the real application on a fresh store, migrated at start-up.
pub async fn spawn_app_with(
    backend: Backend,
    overrides: &[(&str, &str)],
    extra_sources: Vec<Arc<dyn WebhookSource>>,
) -> TestApp {
    payhook_app::startup::install_crypto_provider();
    let store = TestStore::create(backend).await;
    let mut overrides = overrides.to_vec();
    overrides.push(("PAYHOOK__DATABASE__AUTO_MIGRATE", "true"));
    let settings = settings(store.url(), &overrides);
    let stores = payhook_app::Stores::open(&settings).await.unwrap();
    let providers = extra_sources.into_iter().fold(
        payhook_app::startup::connect_providers(&settings).unwrap(),
        |providers, source| providers.with_webhooks(source),
    );
    let app = Application::build_with(settings, stores.clone(), providers)
        .await
        .unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    let internal_address = app.internal_port().map(|port| format!("http://127.0.0.1:{port}"));
    let events = app.subscribe();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        internal_address,
        client: merchant_client(),
        events,
        stores,
        store,
    }
}

/// A second payhook instance on a `TestApp`'s database, as behind a load balancer.
pub struct Instance {
    /// Domain events as this instance's bus (behind its status streams) delivers them.
    pub events: tokio::sync::broadcast::Receiver<payhook_domain::OutboxMessage>,
}

impl TestApp {
    /// Starts another instance on this app's store, with its own worker and relay.
    pub async fn another_instance(&self, overrides: &[(&str, &str)]) -> Instance {
        let settings = settings(self.store.url(), overrides);
        let stores = payhook_app::Stores::open(&settings).await.unwrap();
        let providers = payhook_app::startup::connect_providers(&settings).unwrap();
        let app = Application::build_with(settings, stores, providers).await.unwrap();
        let events = app.subscribe();
        tokio::spawn(app.run_until_stopped());
        Instance { events }
    }

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

    /// Posts a Xendit callback with `token` in `x-callback-token` (none if `None`).
    pub async fn post_xendit(&self, body: &[u8], token: Option<&str>) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}/webhooks/xendit", self.address))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(token) = token {
            req = req.header("x-callback-token", token);
        }
        req.send().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.address)).send().await.unwrap()
    }

    pub async fn logs(&self) -> Vec<LogRow> {
        self.store
            .rows(
                "SELECT provider, method, path, query, headers, raw_body, event_id, event_type, external_id,
                        provider_status, amount, http_status, processing_result, processing_error,
                        completed_at IS NOT NULL AS completed
                 FROM webhook_logs ORDER BY id",
            )
            .await
    }

    /// The value of `SELECT count(*) AS n …`.
    pub async fn count(&self, sql: &str) -> i64 {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        self.store
            .rows::<Count>(sql)
            .await
            .into_iter()
            .next()
            .map_or(0, |c| c.n)
    }

    /// The first row's text column `v`, if any.
    pub async fn text(&self, sql: &str) -> Option<String> {
        #[derive(QueryableByName)]
        struct One {
            #[diesel(sql_type = Nullable<Text>)]
            v: Option<String>,
        }
        self.store.rows::<One>(sql).await.into_iter().next().and_then(|r| r.v)
    }

    /// Every row's text column `v`, in the query's order.
    pub async fn texts(&self, sql: &str) -> Vec<String> {
        #[derive(QueryableByName)]
        struct One {
            #[diesel(sql_type = Nullable<Text>)]
            v: Option<String>,
        }
        self.store
            .rows::<One>(sql)
            .await
            .into_iter()
            .filter_map(|r| r.v)
            .collect()
    }

    /// The id of the payment with this provider reference.
    pub async fn payment_id(&self, provider_ref: &str) -> String {
        #[derive(QueryableByName)]
        struct Id {
            #[diesel(sql_type = Uuid)]
            id: DbUuid,
        }
        let rows: Vec<Id> = self
            .store
            .rows(&format!(
                "SELECT id FROM payments WHERE provider_ref = '{provider_ref}'"
            ))
            .await;
        rows.into_iter()
            .next()
            .map(|r| r.id.0.to_string())
            .expect("no such payment")
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
    #[diesel(sql_type = Json)]
    pub headers: DbJson,
    #[diesel(sql_type = Bytes)]
    pub raw_body: DbBytes,
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
    #[diesel(sql_type = Nullable<Integer>)]
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
            .0
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
pub fn stripe_event(id: &str, event_type: &str, created: i64, object: serde_json::Value) -> Vec<u8> {
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

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A forensic row's body and what is known of a body stored cut short.
#[derive(QueryableByName, Debug)]
pub struct BodyRow {
    #[diesel(sql_type = Bytes)]
    pub raw_body: DbBytes,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub body_length: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    pub body_sha256: Option<String>,
}
