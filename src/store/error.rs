//! What a store reports when it cannot answer.

use std::error::Error;
use std::fmt;

/// A store could not answer. The layer turns it into `503 Service Unavailable` with
/// `Retry-After`, never a 4xx: the sender must retry, or the event would be lost.
///
/// ```
/// use tower_webhook::store::{StoreError, StoreErrorKind};
///
/// let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
/// let err = StoreError::new(StoreErrorKind::Unavailable, refused);
/// assert_eq!(err.kind(), StoreErrorKind::Unavailable);
/// assert_eq!(err.to_string(), "idempotency store unavailable: refused");
/// assert_eq!(StoreError::from_kind(StoreErrorKind::Full).to_string(), "idempotency store full");
/// ```
#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    source: Option<Box<dyn Error + Send + Sync>>,
}

/// The kind of a [`StoreError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The backend could not be reached (connection refused, reset, timed out).
    Unavailable,
    /// The backend answered with an error, or with data the store did not expect.
    Backend,
    /// The store is full and can take no new claim.
    Full,
}

impl StoreError {
    /// An error of `kind` caused by `source`.
    pub fn new(kind: StoreErrorKind, source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self {
            kind,
            source: Some(source.into()),
        }
    }

    /// An error of `kind` with no underlying cause.
    pub fn from_kind(kind: StoreErrorKind) -> Self {
        Self { kind, source: None }
    }

    /// What went wrong.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            StoreErrorKind::Unavailable => "idempotency store unavailable",
            StoreErrorKind::Backend => "idempotency store failed",
            StoreErrorKind::Full => "idempotency store full",
        })?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn Error + 'static))
    }
}

/// A store error from sqlx's: unreachable, timed out or closed, or a database error whose
/// code `transient` accepts, is unavailable (the sender retries); anything else a backend
/// failure.
#[cfg(feature = "sqlite")]
pub(crate) fn sqlx_error(err: sqlx::Error, transient: fn(&str) -> bool) -> StoreError {
    StoreError::new(sqlx_error_kind(&err, transient), err)
}

/// The kind of store error that `err` is: unavailable where it is transient, as above.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn sqlx_error_kind(err: &sqlx::Error, transient: fn(&str) -> bool) -> StoreErrorKind {
    let unavailable = match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| transient(&code)),
        _ => false,
    };
    if unavailable {
        StoreErrorKind::Unavailable
    } else {
        StoreErrorKind::Backend
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_error_keeps_its_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = StoreError::new(StoreErrorKind::Unavailable, io);
        assert_eq!(err.kind(), StoreErrorKind::Unavailable);
        assert_eq!(err.to_string(), "idempotency store unavailable: refused");
        assert!(err.source().is_some());
    }
}
