//! What an inbox reports when it cannot do what it was asked.

use std::error::Error;
use std::fmt;

use crate::store::{sqlx_error_kind, StoreError, StoreErrorKind};

/// An inbox operation failed: opening it, writing a delivery, counting, listing or
/// replaying dead letters, purging, or running a worker. Its `Display` says which part
/// failed and why; [`kind`](Self::kind) says whether trying again later can help.
///
/// ```
/// use tower_webhook::inbox::{InboxError, InboxErrorKind};
///
/// let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
/// let err = InboxError::new(InboxErrorKind::Unavailable, refused);
/// assert_eq!(err.to_string(), "inbox database unavailable: refused");
/// assert_eq!(err.kind(), InboxErrorKind::Unavailable);
/// ```
#[derive(Debug)]
pub struct InboxError {
    kind: InboxErrorKind,
    source: Box<dyn Error + Send + Sync>,
}

/// The kind of an [`InboxError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InboxErrorKind {
    /// The database could not be reached (refused, reset, timed out): try again later.
    Unavailable,
    /// The database answered with an error, or with data the inbox did not expect.
    Database,
    /// A worker could not run: the queue failed to start it or to fetch jobs.
    Worker,
    /// The database holds no inbox: one opened to be looked at (`open_existing`,
    /// `connect_existing`) lacks the inbox's tables, and nothing was created in it.
    NoInbox,
}

impl InboxError {
    /// An error of `kind` caused by `source`.
    pub fn new(kind: InboxErrorKind, source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self {
            kind,
            source: source.into(),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> InboxErrorKind {
        self.kind
    }

    /// A database error from sqlx's, unavailable where `kind` of the store's mapping says so.
    pub(crate) fn database(
        err: impl Into<Box<dyn Error + Send + Sync>>,
        unavailable: bool,
    ) -> Self {
        let kind = if unavailable {
            InboxErrorKind::Unavailable
        } else {
            InboxErrorKind::Database
        };
        Self::new(kind, err)
    }
}

impl InboxError {
    /// A database error from sqlx's: unavailable where it is a lost connection, a pool timed
    /// out or closed, or a database error whose code `transient` accepts.
    pub(crate) fn sqlx(err: sqlx::Error, transient: fn(&str) -> bool) -> Self {
        let unavailable = sqlx_error_kind(&err, transient) == StoreErrorKind::Unavailable;
        Self::database(err, unavailable)
    }

    /// Refuses the database at `place` unless every one of `tables` is `present`: one
    /// opened to be looked at must hold an inbox already.
    pub(crate) fn unless_inbox(
        place: &str,
        tables: &[&str],
        present: &[String],
    ) -> Result<(), Self> {
        let missing: Vec<&str> = tables
            .iter()
            .copied()
            .filter(|table| !present.iter().any(|there| there == table))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if !present.is_empty() {
            return Err(Self::new(
                InboxErrorKind::NoInbox,
                format!(
                    "{place} holds a webhook inbox of an older schema (no table {}); nothing was \
                     changed in it. Start a receiver or worker of this version once: it migrates \
                     the schema",
                    missing.join(", ")
                ),
            ));
        }
        Err(Self::new(
            InboxErrorKind::NoInbox,
            format!(
                "{place} holds no webhook inbox (no table {}); nothing was created in it. \
                 Point at the database the receiver's inbox writes to",
                missing.join(", ")
            ),
        ))
    }
}

impl From<StoreError> for InboxError {
    /// The dedup marks' table failed: the inbox's database, as the marks live in it.
    fn from(err: StoreError) -> Self {
        let unavailable = err.kind() == StoreErrorKind::Unavailable;
        Self::database(err, unavailable)
    }
}

impl fmt::Display for InboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            InboxErrorKind::Unavailable => "inbox database unavailable",
            InboxErrorKind::Database => "inbox database failed",
            InboxErrorKind::Worker => "inbox worker failed",
            InboxErrorKind::NoInbox => "no inbox there",
        };
        write!(f, "{what}: {}", self.source)
    }
}

impl Error for InboxError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}
