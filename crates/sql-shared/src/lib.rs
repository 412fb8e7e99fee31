//! What payhook's two SQL stores share, so the Postgres and SQLite stores differ only
//! where their dialects force it: one diesel schema written in SQL types that map to
//! each backend's native storage ([`types`]), the row types and their mapping to
//! domain types ([`rows`]), pool and migration plumbing ([`setup`]), and the one
//! implementation of the store ports ([`impl_store_ports!`]) that each store crate
//! instantiates with its own connection, claim statements and batch writes. It
//! opens no connection itself; statements only one dialect has live in its store
//! crate (Postgres' one-statement batches are in `payhook-postgres`).

pub mod mirror;
pub mod plans;
pub mod rows;
pub mod schema;
pub mod setup;
mod store;
pub mod subscriptions;
pub mod types;

/// Crates the [`impl_store_ports!`] expansion names, so store crates need not.
#[doc(hidden)]
pub mod __deps {
    pub use async_trait::async_trait;
    pub use chrono;
    pub use diesel;
    pub use diesel_async;
    pub use payhook_domain;
    pub use tracing;
    pub use uuid;
}

use payhook_domain::ports::StoreError;

/// Why a store transaction rolled back: the database failed, or the store decided to.
#[derive(Debug, thiserror::Error)]
pub enum TxError {
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
    /// The payment's version moved since it was read (optimistic concurrency).
    #[error("payment changed since it was read")]
    Stale,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Maps diesel errors onto the port's error: anything the database said is
/// "unavailable" (retryable) unless it is about reading our own data.
pub fn db_error(e: diesel::result::Error) -> StoreError {
    use diesel::result::Error;
    match e {
        Error::DeserializationError(e) | Error::SerializationError(e) => StoreError::Corrupt(e.to_string()),
        other => StoreError::Unavailable(other.to_string()),
    }
}

impl From<TxError> for StoreError {
    fn from(e: TxError) -> Self {
        match e {
            TxError::Db(e) => db_error(e),
            TxError::Stale => StoreError::Conflict("payment changed since it was read".into()),
            TxError::Store(e) => e,
        }
    }
}
