//! Pool and migration plumbing both stores use the same way.

use deadpool::managed::Manager;
use deadpool::managed::{Object, Pool};
use diesel::migration::MigrationSource;
use diesel::Connection;
use diesel_async::pooled_connection::SetupCallback;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use payhook_domain::ports::StoreError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// A pool of at most `size` connections that waits at most `timeout` for a free or a
/// new connection, so an unreachable database gives errors (and 503s), not hangs.
pub fn pool<M: Manager>(manager: M, size: usize, timeout: Duration) -> Result<Pool<M>, StoreError> {
    Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(deadpool::Runtime::Tokio1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .build()
        .map_err(|e| StoreError::Unavailable(format!("cannot build connection pool: {e}")))
}

/// A connection from the pool, or why there is none.
pub async fn pooled<M: Manager>(pool: &Pool<M>) -> Result<Object<M>, StoreError>
where
    M::Error: std::fmt::Display,
{
    pool.get()
        .await
        .map_err(|e| StoreError::Unavailable(format!("no database connection: {e}")))
}

/// Makes the pool establish every connection on the runtime calling this (the one
/// that builds the store at start-up). A diesel-async connection stays bound to the
/// runtime it was established on (SQLite's blocking calls, Postgres' connection
/// driver); actix-web runs each HTTP worker on a runtime of its own and stops it at
/// shutdown, so a connection a request happened to open would die with it, and the
/// worker finishing its batch would fail on it.
pub fn establish_on_this_runtime<C, F, Fut>(establish: F) -> Result<SetupCallback<C>, StoreError>
where
    C: Send + 'static,
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = diesel::ConnectionResult<C>> + Send + 'static,
{
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| StoreError::Unavailable(format!("a store must be opened inside a tokio runtime: {e}")))?;
    let establish = Arc::new(establish);
    Ok(Box::new(move |url: &str| {
        let (runtime, establish, url) = (runtime.clone(), establish.clone(), url.to_owned());
        Box::pin(async move {
            runtime
                .spawn(async move { establish(url).await })
                .await
                .map_err(|e| diesel::ConnectionError::BadConnection(format!("connection task failed: {e}")))?
        })
    }))
}

/// Applies pending migrations on a connection `open` makes; returns the versions applied.
pub async fn apply_migrations<C>(
    open: impl FnOnce() -> Result<C, StoreError> + Send + 'static,
    migrations: EmbeddedMigrations,
) -> Result<Vec<String>, StoreError>
where
    C: Connection + MigrationHarness<C::Backend> + 'static,
    EmbeddedMigrations: MigrationSource<C::Backend>,
{
    on_migration_connection(open, move |conn| {
        let applied = conn.run_pending_migrations(migrations)?;
        Ok(applied.iter().map(ToString::to_string).collect())
    })
    .await
}

/// Whether the database lacks migrations the binary embeds (serving it would fail).
pub async fn has_pending_migrations<C>(
    open: impl FnOnce() -> Result<C, StoreError> + Send + 'static,
    migrations: EmbeddedMigrations,
) -> Result<bool, StoreError>
where
    C: Connection + MigrationHarness<C::Backend> + 'static,
    EmbeddedMigrations: MigrationSource<C::Backend>,
{
    on_migration_connection(open, move |conn| conn.has_pending_migration(migrations)).await
}

/// The migration harness is synchronous: run it off the async workers.
async fn on_migration_connection<C, T: Send + 'static>(
    open: impl FnOnce() -> Result<C, StoreError> + Send + 'static,
    f: impl FnOnce(&mut C) -> diesel::migration::Result<T> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(move || {
        let mut conn = open()?;
        f(&mut conn).map_err(|e| StoreError::Unavailable(format!("migrations: {e}")))
    })
    .await
    .map_err(|e| StoreError::Unavailable(format!("migration task failed: {e}")))?
}
