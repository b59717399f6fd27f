//! The PostgreSQL store, for replicas that share one database.

/// The `sqlx` this store is built on, so that your pool's version matches.
pub use sqlx;

mod batch;
mod error;
mod statements;
mod store;
mod table;

pub(crate) use error::store_error;
pub use store::PostgresStore;
pub use table::InvalidTableName;
