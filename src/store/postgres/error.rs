//! sqlx's errors as store errors, by PostgreSQL's error codes.

use crate::batch::Unanswered;
use crate::store::{sqlx_error_kind, StoreError, StoreErrorKind};

pub(crate) fn store_error(err: sqlx::Error) -> StoreError {
    StoreError::new(error_kind(&err), err)
}

pub(crate) fn error_kind(err: &sqlx::Error) -> StoreErrorKind {
    sqlx_error_kind(err, transient)
}

/// Whether a PostgreSQL error code is worth a retry: class 08 is "connection exception";
/// 57P01 to 57P03 are shutdowns and start-ups; 57014 is a statement cancelled by
/// `statement_timeout`.
pub(crate) fn transient(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("57P") || code == "57014"
}

/// A call whose statement task ended without answering it.
pub(crate) fn unanswered(_: Unanswered) -> StoreError {
    StoreError::new(
        StoreErrorKind::Unavailable,
        "the store's statement ended without an answer (its runtime shut down?)",
    )
}
