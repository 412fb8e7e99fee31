//! Embedded SQLite store for payhook, the zero-setup default: every store port
//! (written once in `payhook-sql-shared`) over diesel's SQLite backend with a bundled
//! libsqlite3, WAL mode and a busy timeout; migrations of `migrations/sqlite`
//! embedded in the binary. For one payhook instance: SQLite has one writer and no
//! `SKIP LOCKED`. Depends on `payhook-domain` only, never on another adapter.

use diesel::connection::SimpleConnection;
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::SimpleAsyncConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use payhook_domain::ports::StoreError;
use payhook_sql_shared::setup;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod batch;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// Set on every connection after the busy timeout (which comes first, so that even
/// these wait for a lock instead of failing while another connection writes). WAL
/// lets readers run beside the writer (and persists in the file); `synchronous =
/// FULL` makes a commit durable before payhook acknowledges the webhook it carries.
const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;";
/// The default of `database.statement_timeout_ms`: how long a statement waits for
/// the write lock, and a caller for a connection.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The pragmas of a connection whose statements wait at most `timeout` for a lock.
fn pragmas(timeout: Duration) -> String {
    format!("PRAGMA busy_timeout = {}; {PRAGMAS}", timeout.as_millis().max(1))
}

pub(crate) type Conn = SyncConnectionWrapper<SqliteConnection>;

/// The SQLite implementation of every store port. Cheap to clone (shares the pool).
#[derive(Clone)]
pub struct SqliteStore {
    pool: Pool<Conn>,
}

impl SqliteStore {
    /// The database file a `sqlite://` URL names: `sqlite://data/payhook.db` is
    /// relative to the working directory, `sqlite:///var/lib/payhook.db` absolute.
    pub fn path_of(database_url: &str) -> Result<PathBuf, StoreError> {
        let path = database_url
            .strip_prefix("sqlite://")
            .ok_or_else(|| StoreError::Unavailable(format!("not a sqlite:// URL: {database_url}")))?;
        if path.is_empty() || path.contains(":memory:") {
            // Each pooled connection would get its own empty in-memory database.
            return Err(StoreError::Unavailable(
                "sqlite:// needs a file path; in-memory databases are not supported".into(),
            ));
        }
        Ok(PathBuf::from(path))
    }

    /// Opens a pool on the file `database_url` names, creating its directory.
    pub fn connect(database_url: &str, pool_size: usize) -> Result<Self, StoreError> {
        Self::connect_with(database_url, pool_size, DEFAULT_STATEMENT_TIMEOUT)
    }

    /// As [`Self::connect`], with the longest a statement waits for the write lock
    /// and a caller for a connection.
    pub fn connect_with(database_url: &str, pool_size: usize, statement_timeout: Duration) -> Result<Self, StoreError> {
        let path = Self::path_of(database_url)?;
        create_parent_dir(&path)?;
        let mut config = ManagerConfig::default();
        let pragmas = pragmas(statement_timeout);
        config.custom_setup = setup::establish_on_this_runtime(move |path| {
            let pragmas = pragmas.clone();
            async move {
                let mut conn = <Conn as diesel_async::AsyncConnection>::establish(&path).await?;
                conn.batch_execute(&pragmas)
                    .await
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(conn)
            }
        })?;
        let manager = AsyncDieselConnectionManager::<Conn>::new_with_config(path.to_string_lossy(), config);
        Ok(Self {
            pool: setup::pool(manager, pool_size, statement_timeout)?,
        })
    }

    /// Applies pending migrations (creating the file if needed); returns the versions applied.
    pub async fn migrate(database_url: &str) -> Result<Vec<String>, StoreError> {
        setup::apply_migrations(migration_connection(database_url)?, MIGRATIONS).await
    }

    /// Whether the database lacks migrations this binary embeds.
    pub async fn has_pending_migrations(database_url: &str) -> Result<bool, StoreError> {
        setup::has_pending_migrations(migration_connection(database_url)?, MIGRATIONS).await
    }

    // One writer at a time, so no SKIP LOCKED; the lease still lets a crashed
    // worker's rows become due again.
    const CLAIM_SQL: &'static str = "
        UPDATE webhook_events SET locked_until = ?3
        WHERE id IN (
            SELECT id FROM webhook_events
            WHERE status IN ('pending', 'failed') AND next_attempt_at <= ?1
              AND (locked_until IS NULL OR locked_until <= ?1)
            ORDER BY next_attempt_at, id
            LIMIT ?2)
        RETURNING id, payload, attempts";

    /// Payments whose check with their provider is due, the longest due first (one
    /// writer at a time: the claiming transaction's updates keep other claims off them).
    const RECONCILE_DUE_SQL: &'static str = "
        SELECT id, status FROM payments
        WHERE next_reconcile_at <= ?1
        ORDER BY next_reconcile_at
        LIMIT ?2";

    /// Pending refunds due for a check with their provider; `RECONCILE_DUE_SQL`'s twin.
    const REFUND_CHECK_DUE_SQL: &'static str = "
        SELECT id, status FROM refunds
        WHERE next_check_at <= ?1
        ORDER BY next_check_at
        LIMIT ?2";

    /// Claims the subscriptions the scheduler should look at now (see
    /// `impl_subscription_store!`): one statement that starts with its write, so it
    /// waits for SQLite's write lock instead of failing a read-to-write upgrade.
    const SUBSCRIPTION_CLAIM_SQL: &'static str = "
        UPDATE subscriptions SET next_due_at = ?3
        WHERE id IN (
            SELECT id FROM subscriptions
            WHERE next_due_at <= ?1
            ORDER BY next_due_at
            LIMIT ?2)
        RETURNING id";

    /// The outbox twin of `CLAIM_SQL`.
    const OUTBOX_CLAIM_SQL: &'static str = "
        UPDATE outbox SET locked_until = ?3
        WHERE id IN (
            SELECT id FROM outbox
            WHERE published_at IS NULL AND next_attempt_at <= ?1
              AND (locked_until IS NULL OR locked_until <= ?1)
            ORDER BY next_attempt_at, id
            LIMIT ?2)
        RETURNING id, topic, payload, created_at, attempts";

    const INDEX_SCAN_SETTINGS: &'static [&'static str] = &[];

    async fn conn(&self) -> Result<Object<Conn>, StoreError> {
        setup::pooled(&self.pool).await
    }
}

/// Opens the synchronous connection diesel's migration harness needs (creating the
/// file and its directory), with the same pragmas as pooled connections.
fn migration_connection(
    database_url: &str,
) -> Result<impl FnOnce() -> Result<SqliteConnection, StoreError> + Send + 'static, StoreError> {
    let path = SqliteStore::path_of(database_url)?;
    create_parent_dir(&path)?;
    Ok(move || {
        let mut conn = SqliteConnection::establish(&path.to_string_lossy())
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        conn.batch_execute(&pragmas(DEFAULT_STATEMENT_TIMEOUT))
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(conn)
    })
}

fn create_parent_dir(path: &Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))),
        _ => Ok(()),
    }
}

payhook_sql_shared::impl_store_ports!(
    SqliteStore,
    admit_batch = batch::admit_batch,
    commit_batch = batch::commit_batch
);
payhook_sql_shared::impl_stripe_mirror!(SqliteStore, apply_mirror_events = batch::apply_mirror_events);
payhook_sql_shared::impl_plan_store!(SqliteStore);
payhook_sql_shared::impl_subscription_store!(SqliteStore);
