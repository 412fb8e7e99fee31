//! What payhook's SQL stores share, so the Postgres and SQLite stores differ only
//! where their dialects force it: one diesel schema written in SQL types that map to
//! each backend's native storage ([`types`]), the row types and their mapping to
//! domain types ([`rows`]), and the one implementation of the store ports
//! ([`impl_store_ports!`]) that each store crate instantiates with its own
//! connection and claim statement. It opens no connection itself.

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

#[doc(hidden)]
pub mod admission;
#[doc(hidden)]
pub mod commit;
pub mod rows;
pub mod schema;
pub mod setup;
mod store;
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
