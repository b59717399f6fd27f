//! Idempotency stores: how the layer remembers which deliveries it has handled.
//!
//! Senders deliver at least once. The layer claims each delivery's id in a store before the
//! handler runs, completes the claim when the handler succeeds, and releases it when the
//! handler fails, so that exactly one copy of a delivery is handled at a time and a delivery
//! handled once is not handled again within the dedup window.

mod call;
mod error;
mod idempotency;
mod memory;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;
mod stored;
mod token;
// Who writes to a store's database: a `Tx`, the inbox's door, its workers.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(
    not(any(feature = "axum", feature = "inbox-sqlite", feature = "inbox-postgres")),
    allow(dead_code, unused_imports)
)]
pub(crate) mod writers;

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use self::postgres::PostgresStore;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::RedisStore;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use self::sqlite::SqliteStore;
pub(crate) use call::{BoxFuture, DynStore, StoreCall};
#[cfg(feature = "sqlite")]
pub(crate) use error::sqlx_error;
#[cfg(any(feature = "postgres", feature = "inbox-sqlite"))]
pub(crate) use error::sqlx_error_kind;
pub use error::{StoreError, StoreErrorKind};
pub use idempotency::{Claim, IdempotencyStore};
pub use memory::MemoryStore;
#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
pub(crate) use stored::Marked;
pub(crate) use stored::{clamp_ttl, stored_key, ttl_millis, MAX_STORED_KEY, MAX_TTL, MIN_TTL};
pub use token::ClaimToken;
