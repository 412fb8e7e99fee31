//! Postgres store for payhook, the production store: every store port over
//! diesel-async and a deadpool pool, with the migrations of `migrations/postgres`
//! embedded in the binary. The ports are written once in `payhook-sql-shared`; what
//! only Postgres has lives here: the claims' `SKIP LOCKED`, the one-statement batches
//! of `admission` and `commit`, and the `LISTEN`/`NOTIFY` fan-out. Several payhook instances can share
//! one database. Depends on `payhook-domain` only, never on another adapter.

use diesel::Connection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use payhook_domain::ports::StoreError;
use payhook_sql_shared::setup;
use std::time::Duration;

/// Pushes each value as a bind parameter of its SQL type, separated by commas (the
/// array columns of the one-statement batches, `admission` and `commit`).
macro_rules! comma_separated_binds {
    ($out:ident, $first_type:ty => $first:expr $(, $sql_type:ty => $value:expr)* $(,)?) => {
        $out.push_bind_param::<$first_type, _>(&$first)?;
        $(
            $out.push_sql(", ");
            $out.push_bind_param::<$sql_type, _>(&$value)?;
        )*
    };
}

mod admission;
mod commit;
mod fan_out;
mod mirror;
pub use fan_out::PgFanOut;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");
/// The default of `database.statement_timeout_ms`.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The Postgres implementation of every store port. Cheap to clone (shares the pool).
#[derive(Clone)]
pub struct PgStore {
    pool: Pool<AsyncPgConnection>,
}

impl PgStore {
    /// Builds a pool of at most `pool_size` connections; connections open lazily.
    /// Call it inside the tokio runtime the store should live on.
    pub fn connect(database_url: &str, pool_size: usize) -> Result<Self, StoreError> {
        Self::connect_with(database_url, pool_size, DEFAULT_STATEMENT_TIMEOUT)
    }

    /// As [`Self::connect`], with the longest a statement may run (Postgres' own
    /// `statement_timeout`, so the server cancels it) and the longest a caller waits
    /// for a connection. (A server that stops answering altogether is timed by the
    /// callers: see `payhook-app`'s ingest.)
    pub fn connect_with(database_url: &str, pool_size: usize, statement_timeout: Duration) -> Result<Self, StoreError> {
        let mut config = ManagerConfig::default();
        let ms = statement_timeout.as_millis().max(1);
        config.custom_setup = setup::establish_on_this_runtime(move |url| async move {
            let mut conn = AsyncPgConnection::establish(&url).await?;
            conn.batch_execute(&format!("SET statement_timeout = {ms}"))
                .await
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        })?;
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(database_url, config);
        Ok(Self {
            pool: setup::pool(manager, pool_size, statement_timeout)?,
        })
    }

    /// Applies pending migrations; returns the versions applied.
    pub async fn migrate(database_url: &str) -> Result<Vec<String>, StoreError> {
        setup::apply_migrations(migration_connection(database_url), MIGRATIONS).await
    }

    /// Whether the database lacks migrations this binary embeds.
    pub async fn has_pending_migrations(database_url: &str) -> Result<bool, StoreError> {
        setup::has_pending_migrations(migration_connection(database_url), MIGRATIONS).await
    }

    // SKIP LOCKED lets several workers (and several instances) claim disjoint batches
    // without waiting on each other; the lease makes a crashed worker's rows due again.
    const CLAIM_SQL: &'static str = "
        UPDATE webhook_events SET locked_until = $3
        WHERE id IN (
            SELECT id FROM webhook_events
            WHERE status IN ('pending', 'failed') AND next_attempt_at <= $1
              AND (locked_until IS NULL OR locked_until <= $1)
            ORDER BY next_attempt_at, id
            LIMIT $2
            FOR UPDATE SKIP LOCKED)
        RETURNING id, payload, attempts";

    /// Payments whose check with their provider is due, the longest due first, locked
    /// for the claiming transaction; another instance's claim skips them.
    const RECONCILE_DUE_SQL: &'static str = "
        SELECT id, status FROM payments
        WHERE next_reconcile_at <= $1
        ORDER BY next_reconcile_at
        LIMIT $2
        FOR UPDATE SKIP LOCKED";

    /// Pending refunds due for a check with their provider; `RECONCILE_DUE_SQL`'s twin.
    const REFUND_CHECK_DUE_SQL: &'static str = "
        SELECT id, status FROM refunds
        WHERE next_check_at <= $1
        ORDER BY next_check_at
        LIMIT $2
        FOR UPDATE SKIP LOCKED";

    /// Claims the subscriptions the scheduler should look at now (see
    /// `impl_subscription_store!`): another instance's claim skips what this one locked.
    const SUBSCRIPTION_CLAIM_SQL: &'static str = "
        UPDATE subscriptions SET next_due_at = $3
        WHERE id IN (
            SELECT id FROM subscriptions
            WHERE next_due_at <= $1
            ORDER BY next_due_at
            LIMIT $2
            FOR UPDATE SKIP LOCKED)
        RETURNING id";

    /// The outbox twin of `CLAIM_SQL`.
    const OUTBOX_CLAIM_SQL: &'static str = "
        UPDATE outbox SET locked_until = $3
        WHERE id IN (
            SELECT id FROM outbox
            WHERE published_at IS NULL AND next_attempt_at <= $1
              AND (locked_until IS NULL OR locked_until <= $1)
            ORDER BY next_attempt_at, id
            LIMIT $2
            FOR UPDATE SKIP LOCKED)
        RETURNING id, topic, payload, created_at, attempts";

    /// The claims and the worker's payment lookups stay on their indexes. Both run
    /// while a burst outgrows the table statistics (autovacuum analyzes a table at
    /// most once a minute), and the plans those statistics chose grew with the burst:
    /// - every event or message claimed and finished since the last vacuum still has
    ///   entries at the front of the claim's partial index, and a bitmap scan visits
    ///   all of them on every claim (outbox claims from 1.5 to 22 ms over 20,000
    ///   events), where an index scan in key order stops at the limit and marks the
    ///   dead entries it passes;
    /// - a lookup of 512 references planned for a near-empty `payments` table is a
    ///   sequential scan comparing each row with each reference (11 to 39 ms a batch
    ///   at 20,000 payments, 1 ms through the index).
    const INDEX_SCAN_SETTINGS: &'static [&'static str] =
        &["SET LOCAL enable_bitmapscan = off", "SET LOCAL enable_seqscan = off"];

    async fn conn(&self) -> Result<Object<AsyncPgConnection>, StoreError> {
        setup::pooled(&self.pool).await
    }
}

/// Opens the synchronous connection diesel's migration harness needs.
fn migration_connection(
    database_url: &str,
) -> impl FnOnce() -> Result<AsyncConnectionWrapper<AsyncPgConnection>, StoreError> + Send + 'static {
    let url = database_url.to_owned();
    move || {
        <AsyncConnectionWrapper<AsyncPgConnection> as Connection>::establish(&url).map_err(|e| {
            StoreError::Unavailable(format!("cannot connect to the database: {e}{}", why_unreachable(&url)))
        })
    }
}

/// diesel reports a server it could not reach as "error connecting to server", without
/// the cause; a TCP connection to the server's address names it (refused, no route,
/// timed out). Empty when the server answers (then diesel's message says what failed).
fn why_unreachable(url: &str) -> String {
    use std::net::{TcpStream, ToSocketAddrs};
    let Ok(config) = url.parse::<tokio_postgres::Config>() else {
        return String::new();
    };
    let Some(tokio_postgres::config::Host::Tcp(host)) = config.get_hosts().first() else {
        return String::new();
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let probe = (host.as_str(), port).to_socket_addrs().and_then(|mut addrs| {
        let addr = addrs
            .next()
            .ok_or_else(|| std::io::Error::other("the host name has no address"))?;
        TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3)).map(drop)
    });
    match probe {
        Ok(()) => String::new(),
        Err(e) => format!(" ({host}:{port}: {e})"),
    }
}

payhook_sql_shared::impl_store_ports!(
    PgStore,
    admit_batch = admission::admit_batch,
    commit_batch = commit::commit_batch
);
payhook_sql_shared::impl_stripe_mirror!(PgStore, apply_mirror_events = mirror::apply_mirror_events);
payhook_sql_shared::impl_plan_store!(PgStore);
payhook_sql_shared::impl_subscription_store!(PgStore);
