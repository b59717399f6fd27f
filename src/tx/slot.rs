//! The handler's transaction, lent out and given back.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sqlx::{Database, Pool, Transaction};

use crate::store::writers::{Turn, Writers};

/// A database transaction whose writes commit if and only if the delivery is recorded as
/// done: the handler's side of [the work done once](crate#the-work-done-once).
///
/// Write through it as through a connection (`&mut *tx` is one). Do not commit it yourself:
/// the layer (inline) or the worker (inbox) does, with the delivery's completion, once the
/// handler has succeeded; anything else rolls it back.
///
/// - **Inline**, an axum extractor on a route behind
///   [`VerifyWebhookLayer`](crate::VerifyWebhookLayer) with a
///   [`PostgresStore`](crate::store::PostgresStore) (`Tx<Postgres>`) or a
///   [`SqliteStore`](crate::store::SqliteStore) (`Tx<Sqlite>`): a transaction on the store's
///   pool. A 2xx answer completes the claim in it and commits before the answer goes out; a
///   failed commit, or a claim lost to another copy while the handler ran, answers `503` and
///   the sender's retry does the work.
/// - **In an inbox worker**, a handler argument: a transaction on the inbox's pool, in which
///   the job's completion is written when the handler returns `Ok`.
///
/// ```no_run
/// # #[cfg(all(feature = "axum", feature = "postgres"))]
/// # mod inline {
/// use axum::http::StatusCode;
/// use sqlx::Postgres;
/// use tower_webhook::{Event, Tx};
///
/// #[derive(serde::Deserialize)]
/// struct Invoice { id: String }
///
/// async fn paid(event: Event<Invoice>, mut tx: Tx<Postgres>) -> StatusCode {
///     let updated = sqlx::query("UPDATE invoices SET paid = true WHERE id = $1")
///         .bind(&event.payload().id)
///         .execute(&mut *tx)
///         .await;
///     match updated {
///         Ok(_) => StatusCode::NO_CONTENT,              // commits with the completion
///         Err(_) => StatusCode::SERVICE_UNAVAILABLE,    // rolls back; the sender retries
///     }
/// }
/// # }
/// ```
///
/// A handler that does not take a `Tx` gets none: no transaction is opened for it.
///
/// On SQLite the transaction is `BEGIN IMMEDIATE`: it holds the file's one write lock from
/// the moment the handler takes it until it commits, so handlers with a `Tx` run one at a
/// time, and the other writers of the file (claims, the inbox's door) wait for them. Keep
/// such handlers short, and write through the `Tx` only: another write to the same file from
/// inside the handler waits for the lock the handler holds.
pub struct Tx<DB: Database> {
    /// Always there until the `Tx` is dropped, when it goes back to its slot.
    tx: Option<Open<DB>>,
    slot: Arc<Slot<DB>>,
}

const GIVEN_BACK: &str = "a Tx is only given back when it is dropped";

impl<DB: Database> Deref for Tx<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        &self.tx.as_ref().expect(GIVEN_BACK).tx
    }
}

impl<DB: Database> DerefMut for Tx<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.tx.as_mut().expect(GIVEN_BACK).tx
    }
}

impl<DB: Database> Drop for Tx<DB> {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            self.slot.give_back(tx);
        }
    }
}

impl<DB: Database> fmt::Debug for Tx<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tx").field("database", &DB::NAME).finish()
    }
}

/// An open transaction, and its turn among the database's writers, given up when it ends.
pub(crate) struct Open<DB: Database> {
    tx: Transaction<'static, DB>,
    _turn: Turn,
}

impl<DB: Database> Open<DB> {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl<DB: super::StillOpen> Open<DB> {
    /// Whether the transaction is still open: `false` where the handler ended it with a
    /// statement of its own (logged at error: its writes escaped the delivery's fate).
    pub(crate) async fn still_open(&mut self) -> Result<bool, sqlx::Error> {
        let open = DB::still_open(&mut self.tx).await?;
        if !open {
            tracing::error!("{}", super::EndedByHandler);
        }
        Ok(open)
    }

    /// The transaction, where the handler left it open; otherwise rolled back, with the
    /// probe's error, or `None` where the handler ended it.
    pub(crate) async fn or_roll_back(mut self) -> Result<Self, Option<sqlx::Error>> {
        match self.still_open().await {
            Ok(true) => Ok(self),
            ended => {
                roll_back(self).await;
                Err(ended.err())
            }
        }
    }
}

/// Rolls back what the handler left, first asking whether it is still open: a handler that
/// committed it itself is logged at error, as its writes stay.
pub(crate) async fn roll_back_checked<DB: super::StillOpen>(mut open: Open<DB>) {
    if let Err(err) = open.still_open().await {
        tracing::warn!(error = %err, "could not ask whether the handler's transaction was still open");
    }
    roll_back(open).await;
}

impl<DB: Database> Deref for Open<DB> {
    type Target = Transaction<'static, DB>;

    fn deref(&self) -> &Transaction<'static, DB> {
        &self.tx
    }
}

impl<DB: Database> DerefMut for Open<DB> {
    fn deref_mut(&mut self) -> &mut Transaction<'static, DB> {
        &mut self.tx
    }
}

/// Where a delivery's transaction lives while the handler runs: lent to the handler as a
/// [`Tx`], given back when the `Tx` is dropped, then taken to be committed or rolled back.
pub(crate) struct Slot<DB: Database> {
    pool: Pool<DB>,
    /// The statement that begins it, where the database's default is not the right one.
    begin: Option<&'static str>,
    /// The turns of the database's writers: a transaction waits for one before it takes a
    /// connection.
    writers: Arc<Writers>,
    state: Mutex<State<DB>>,
}

/// What becomes of a transaction that comes back when nobody waits for it any more: `None`
/// where the handler was dropped before its transaction began.
pub(crate) type Orphan<DB> = Box<dyn FnOnce(Option<Open<DB>>) + Send>;

enum State<DB: Database> {
    /// The handler has not asked for it.
    Unused,
    /// Beginning, or in the handler's hands.
    Lent,
    /// Back from the handler, open.
    Returned(Open<DB>),
    /// Nobody waits for it any more: handed to this when it comes back.
    Orphaned(Orphan<DB>),
    /// Taken to be settled: no other `Tx` is lent.
    Settled,
}

/// What the handler left in the slot.
pub(crate) enum Taken<DB: Database> {
    /// It never took the transaction.
    NotBegun,
    /// The open transaction, back from the handler.
    Open(Open<DB>),
    /// It still holds the `Tx` (kept past its answer, in a task of its own).
    StillLent,
}

/// Why a [`Tx`] could not be lent.
#[derive(Debug)]
pub(crate) enum LendError {
    /// One was lent for this delivery already, or the delivery is settled.
    Taken,
    /// The database did not begin it.
    Begin(sqlx::Error),
    /// The turns of the database's writers were closed (never: the crate does not close
    /// them).
    Closed,
}

impl fmt::Display for LendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Taken => f.write_str("a delivery has one Tx, and it was taken already"),
            Self::Begin(err) => write!(f, "the database did not begin the transaction: {err}"),
            Self::Closed => f.write_str("the database takes no more transactions"),
        }
    }
}

impl<DB: Database> Slot<DB> {
    pub(crate) fn new(
        pool: Pool<DB>,
        begin: Option<&'static str>,
        writers: Arc<Writers>,
    ) -> Arc<Self> {
        Arc::new(Self {
            pool,
            begin,
            writers,
            state: Mutex::new(State::Unused),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<DB>> {
        // No code under this lock panics; a poisoned lock still holds a whole state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Begins the transaction and lends it out, once per delivery.
    pub(crate) async fn lend(self: &Arc<Self>) -> Result<Tx<DB>, LendError> {
        {
            let mut state = self.lock();
            if !matches!(*state, State::Unused) {
                return Err(LendError::Taken);
            }
            *state = State::Lent;
        }
        // Dropped before it began (the handler's future was), or failed: the slot is as if
        // the handler had never asked.
        let unbegun = Unbegun(self);
        let turn = self
            .writers
            .handler_turn()
            .await
            .map_err(|_| LendError::Closed)?;
        let began = match self.begin {
            Some(statement) => self.pool.begin_with(statement).await,
            None => self.pool.begin().await,
        };
        let tx = began.map_err(LendError::Begin)?;
        std::mem::forget(unbegun);
        Ok(Tx {
            tx: Some(Open { tx, _turn: turn }),
            slot: Arc::clone(self),
        })
    }

    fn give_back(&self, tx: Open<DB>) {
        let mut state = self.lock();
        match std::mem::replace(&mut *state, State::Settled) {
            State::Lent => *state = State::Returned(tx),
            State::Orphaned(orphan) => {
                drop(state);
                orphan(Some(tx));
            }
            // Lent once only: nothing else is there when a `Tx` comes back.
            other => *state = other,
        }
    }

    /// Takes what the handler left, to settle it; no `Tx` is lent after this.
    pub(crate) fn take(&self) -> Taken<DB> {
        let mut state = self.lock();
        match std::mem::replace(&mut *state, State::Settled) {
            State::Unused | State::Settled => Taken::NotBegun,
            State::Returned(tx) => Taken::Open(tx),
            lent @ (State::Lent | State::Orphaned(_)) => {
                *state = lent;
                Taken::StillLent
            }
        }
    }

    /// Hands the transaction to `orphan` when it comes back (at once if it is back):
    /// `false`, and `orphan` dropped, where the handler never took it.
    pub(crate) fn orphan(&self, orphan: Orphan<DB>) -> bool {
        let mut state = self.lock();
        match std::mem::replace(&mut *state, State::Settled) {
            State::Unused | State::Settled => false,
            State::Lent => {
                *state = State::Orphaned(orphan);
                true
            }
            State::Returned(tx) => {
                drop(state);
                orphan(Some(tx));
                true
            }
            State::Orphaned(first) => {
                *state = State::Orphaned(first);
                true
            }
        }
    }
}

/// Puts the slot back as unused unless forgotten once the transaction has begun.
struct Unbegun<'a, DB: Database>(&'a Slot<DB>);

impl<DB: Database> Drop for Unbegun<'_, DB> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        match std::mem::replace(&mut *state, State::Unused) {
            State::Orphaned(orphan) => {
                drop(state);
                orphan(None);
            }
            State::Lent | State::Unused => {}
            other => *state = other,
        }
    }
}

/// Rolls `tx` back, logging a failure: the database ends it anyway when the connection
/// closes.
pub(crate) async fn roll_back<DB: Database>(open: Open<DB>) {
    if let Err(err) = open.tx.rollback().await {
        tracing::warn!(error = %err, "failed to roll back the handler's transaction; the database ends it with its connection");
    }
}
