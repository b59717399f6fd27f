//! Whether the handler's transaction is still open when it is to be completed: a handler
//! that ran `COMMIT` (or `ROLLBACK`) through its [`Tx`](super::Tx) has ended it, and its
//! writes escaped the delivery's completion, which sqlx cannot tell (its count of open
//! transactions sees only its own `BEGIN` and `COMMIT`). So the database is asked.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// A future of the probe, borrowing the connection.
type Probe<'c> = Pin<Box<dyn Future<Output = Result<bool, sqlx::Error>> + Send + 'c>>;

/// A database whose connection can say whether it is inside a transaction. Public in a
/// private module: the inbox's backends name it, and no one outside the crate can.
#[allow(unreachable_pub)]
pub trait StillOpen: sqlx::Database {
    /// Whether `conn` is inside the transaction it began: `false` where a statement of the
    /// handler's ended it.
    fn still_open(conn: &mut Self::Connection) -> Probe<'_>;
}

#[cfg(feature = "postgres")]
impl StillOpen for sqlx::Postgres {
    /// PostgreSQL refuses a `SAVEPOINT` outside a transaction block (`25P01`), and takes
    /// one inside, which the same simple query then releases. (sqlx's own count of open
    /// transactions sees only its `BEGIN` and `COMMIT`, and the protocol's transaction
    /// status is not public.)
    fn still_open(conn: &mut Self::Connection) -> Probe<'_> {
        Box::pin(async move {
            let probe = "SAVEPOINT tower_webhook_probe; RELEASE SAVEPOINT tower_webhook_probe";
            match sqlx::Executor::execute(conn, probe).await {
                Ok(_) => Ok(true),
                Err(sqlx::Error::Database(err)) if err.code().as_deref() == Some("25P01") => {
                    Ok(false)
                }
                // Open, but aborted by a statement that failed: still the handler's, and it
                // can only roll back (a completion in it fails, and nothing commits).
                Err(sqlx::Error::Database(err)) if err.code().as_deref() == Some("25P02") => {
                    Ok(true)
                }
                Err(err) => Err(err),
            }
        })
    }
}

#[cfg(feature = "sqlite")]
impl StillOpen for sqlx::Sqlite {
    /// SQLite refuses a `BEGIN` inside a transaction, and has no statement that only asks.
    /// Outside one, the `BEGIN` opens a transaction that the caller's rollback then ends.
    fn still_open(conn: &mut Self::Connection) -> Probe<'_> {
        Box::pin(async move {
            match sqlx::Executor::execute(conn, "BEGIN").await {
                Ok(_) => Ok(false),
                Err(sqlx::Error::Database(err))
                    if err.message().contains("within a transaction") =>
                {
                    Ok(true)
                }
                Err(err) => Err(err),
            }
        })
    }
}

/// The handler ended its own transaction: what fails the delivery's completion.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EndedByHandler;

impl fmt::Display for EndedByHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the handler ended its Tx itself (a COMMIT or ROLLBACK through it): its writes \
             escaped the delivery's transaction; write through the Tx and let the layer \
             commit it",
        )
    }
}

impl std::error::Error for EndedByHandler {}

/// Whether `err` (or its source) is [`EndedByHandler`].
pub(crate) fn ended_by_handler(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if err.is::<EndedByHandler>() {
            return true;
        }
        next = err.source();
    }
    false
}
