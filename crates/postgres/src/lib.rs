//! Postgres store for payhook: every store port implemented with diesel-async over a
//! deadpool pool, with the migrations of `migrations/postgres` embedded in the binary.
//! Depends on `payhook-domain` only, never on another adapter.

use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::AsyncPgConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use payhook_domain::ports::StoreError;
use std::time::Duration;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// How long a request waits for a pooled connection, or for a new one to open,
/// before the store counts as unavailable (so a dead database yields 503s, not hangs).
const POOL_TIMEOUT: Duration = Duration::from_secs(5);

/// The Postgres implementation of every store port. Cheap to clone (shares the pool).
#[derive(Clone)]
pub struct PgStore {
    pool: Pool<AsyncPgConnection>,
}

impl PgStore {
    /// Builds a pool of at most `pool_size` connections; connections open lazily.
    pub fn connect(database_url: &str, pool_size: usize) -> Result<Self, StoreError> {
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(database_url);
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .recycle_timeout(Some(POOL_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("cannot build connection pool: {e}")))?;
        Ok(Self { pool })
    }

    /// Applies pending migrations; returns the versions applied.
    pub async fn migrate(database_url: &str) -> Result<Vec<String>, StoreError> {
        with_migration_harness(database_url, |conn| {
            let applied = conn.run_pending_migrations(MIGRATIONS)?;
            Ok(applied.iter().map(ToString::to_string).collect())
        })
        .await
    }

    /// Whether the database lacks migrations this binary embeds (serving against
    /// it would fail on every request).
    pub async fn has_pending_migrations(database_url: &str) -> Result<bool, StoreError> {
        with_migration_harness(database_url, |conn| conn.has_pending_migration(MIGRATIONS)).await
    }

    // SKIP LOCKED lets several workers (and several instances) claim disjoint batches
    // without waiting on each other; the lease makes a crashed worker's rows due again.
    const CLAIM_SQL: &'static str = "
        UPDATE webhook_events SET locked_until = $3
        WHERE id IN (
            SELECT id FROM webhook_events
            WHERE status = 'pending' AND next_attempt_at <= $1
              AND (locked_until IS NULL OR locked_until <= $1)
            ORDER BY next_attempt_at, id
            LIMIT $2
            FOR UPDATE SKIP LOCKED)
        RETURNING id, payload, attempts";

    async fn conn(&self) -> Result<Object<AsyncPgConnection>, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(format!("no database connection: {e}")))
    }
}

type MigrationConnection =
    diesel_async::async_connection_wrapper::AsyncConnectionWrapper<AsyncPgConnection>;

/// Runs `f` on a synchronous migration connection, off the async workers.
async fn with_migration_harness<T: Send + 'static>(
    database_url: &str,
    f: impl FnOnce(&mut MigrationConnection) -> diesel::migration::Result<T> + Send + 'static,
) -> Result<T, StoreError> {
    use diesel::Connection;
    let url = database_url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = <MigrationConnection as Connection>::establish(&url)
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to the database: {e}")))?;
        f(&mut conn).map_err(|e| StoreError::Unavailable(format!("migrations: {e}")))
    })
    .await
    .map_err(|e| StoreError::Unavailable(format!("migration task failed: {e}")))?
}

payhook_sql::impl_store_ports!(PgStore);
