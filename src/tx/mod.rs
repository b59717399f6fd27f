//! The handler's transaction: [`Tx`], on the database of the layer's store (inline) or of the
//! inbox (in a worker), committed together with the record that the delivery is done.
//!
//! A handler that takes a [`Tx`] writes its effects in it. When it succeeds (a 2xx answer
//! inline, `Ok` in a worker), the delivery's completion is written in the same transaction,
//! **fenced** (only while this copy still holds the claim, or this worker this attempt of the
//! job), and the transaction commits; only then does the answer go out. Anything else rolls
//! it back. So the effect is committed if and only if the delivery is recorded as done:
//! exactly once, whatever a crash interrupts. See the crate's docs on the work done once.

mod offer;
pub(crate) use offer::{transactions, Finish, Offered, Transactions};

#[cfg(all(feature = "axum", any(feature = "sqlite", feature = "postgres")))]
mod extract;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod inline;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod neutral;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod probe;
// Lent out only through the extractor (axum) or a worker (the inbox).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(
    not(any(feature = "axum", feature = "inbox-sqlite", feature = "inbox-postgres")),
    allow(dead_code, unused_imports)
)]
mod slot;
// The stores' side of a `Tx`: here, so that the stores do not import this module.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod stores;

#[cfg(all(feature = "axum", any(feature = "sqlite", feature = "postgres")))]
pub use extract::TxRejection;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use inline::TxStore;
#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
pub(crate) use neutral::Neutral;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use neutral::{SqlKind, SqlRow, SqlValue};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use probe::{ended_by_handler, EndedByHandler, StillOpen};
#[cfg(all(feature = "axum", any(feature = "sqlite", feature = "postgres")))]
pub(crate) use slot::LendError;
#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
pub(crate) use slot::Open;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use slot::Tx;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use slot::{roll_back, roll_back_checked, Orphan, Slot, Taken};
