//! The PostgreSQL store, for replicas that share one database.

/// The `sqlx` this store is built on, so that your pool's version matches.
pub use sqlx;

mod calls;
mod error;
#[cfg(feature = "inbox-postgres")]
mod marks;
mod statements;
mod store;
mod table;
mod upkeep;

pub(crate) use error::store_error;
#[cfg(feature = "inbox-postgres")]
pub(crate) use error::transient;
pub use store::PostgresStore;
pub use table::InvalidTableName;
