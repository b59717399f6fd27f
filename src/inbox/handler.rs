//! What a worker runs: a handler of an [`Event`], and optionally its [`Job`] and a [`Tx`].

use std::error::Error;
use std::future::Future;

use super::job::{Job, Payload};
use crate::event::Event;
use crate::store::BoxFuture;
use crate::tx::Tx;

/// An error a handler returns, boxed.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// A job's handler: an async function of `Event<T>`, optionally followed by [`Job`] and then
/// by [`Tx`], that returns `Result<(), E>` with any error `E` that converts into a boxed
/// error (`String`, `std::io::Error`, your own).
///
/// `T` is [`Unparsed`](crate::Unparsed) (plain `Event`) or a type that deserializes from
/// JSON. `Db` is the inbox's database (`sqlx::Sqlite` or `sqlx::Postgres`).
///
/// A handler that takes a [`Tx`] gets a transaction on the inbox's pool for each attempt:
/// its writes commit together with the job's completion when it returns `Ok`, and roll back
/// otherwise (see [the work done once](crate#the-work-done-once)).
///
/// ```
/// use tower_webhook::{inbox::Job, Event, Tx};
///
/// async fn one(event: Event) -> Result<(), String> {
///     println!("{}", event.id());
///     Ok(())
/// }
///
/// async fn two(event: Event<serde_json::Value>, job: Job) -> Result<(), std::io::Error> {
///     println!("{} attempt {}", event.payload()["type"], job.attempt());
///     Ok(())
/// }
///
/// async fn three(event: Event, mut tx: Tx<sqlx::Sqlite>) -> Result<(), sqlx::Error> {
///     sqlx::query("INSERT INTO seen (event_id) VALUES (?1)")
///         .bind(event.id())
///         .execute(&mut *tx)
///         .await?;
///     Ok(()) // committed with the job's completion
/// }
/// ```
pub trait Handler<Args, Db: sqlx::Database>: Send + Sync + 'static {
    /// What the body deserializes into.
    type Payload: Payload;

    /// Whether the handler takes a [`Tx`]: the worker opens one for each attempt, and
    /// writes the job's completion in it.
    const TRANSACTION: bool = false;

    /// Runs the handler on one job, with its transaction if it takes one.
    fn call(
        &self,
        event: Event<Self::Payload>,
        job: Job,
        tx: Option<Tx<Db>>,
    ) -> BoxFuture<Result<(), BoxError>>;
}

impl<F, Fut, E, T, Db> Handler<(Event<T>,), Db> for F
where
    F: Fn(Event<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
    T: Payload,
    Db: sqlx::Database,
{
    type Payload = T;

    fn call(
        &self,
        event: Event<T>,
        _job: Job,
        _tx: Option<Tx<Db>>,
    ) -> BoxFuture<Result<(), BoxError>> {
        boxed(self(event))
    }
}

impl<F, Fut, E, T, Db> Handler<(Event<T>, Job), Db> for F
where
    F: Fn(Event<T>, Job) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
    T: Payload,
    Db: sqlx::Database,
{
    type Payload = T;

    fn call(
        &self,
        event: Event<T>,
        job: Job,
        _tx: Option<Tx<Db>>,
    ) -> BoxFuture<Result<(), BoxError>> {
        boxed(self(event, job))
    }
}

impl<F, Fut, E, T, Db> Handler<(Event<T>, Tx<Db>), Db> for F
where
    F: Fn(Event<T>, Tx<Db>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
    T: Payload,
    Db: sqlx::Database,
{
    type Payload = T;
    const TRANSACTION: bool = true;

    fn call(
        &self,
        event: Event<T>,
        _job: Job,
        tx: Option<Tx<Db>>,
    ) -> BoxFuture<Result<(), BoxError>> {
        match tx {
            Some(tx) => boxed(self(event, tx)),
            None => no_transaction(),
        }
    }
}

impl<F, Fut, E, T, Db> Handler<(Event<T>, Job, Tx<Db>), Db> for F
where
    F: Fn(Event<T>, Job, Tx<Db>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
    T: Payload,
    Db: sqlx::Database,
{
    type Payload = T;
    const TRANSACTION: bool = true;

    fn call(
        &self,
        event: Event<T>,
        job: Job,
        tx: Option<Tx<Db>>,
    ) -> BoxFuture<Result<(), BoxError>> {
        match tx {
            Some(tx) => boxed(self(event, job, tx)),
            None => no_transaction(),
        }
    }
}

/// A handler's future, its error boxed.
fn boxed<E: Into<BoxError>>(
    future: impl Future<Output = Result<(), E>> + Send + 'static,
) -> BoxFuture<Result<(), BoxError>> {
    Box::pin(async move { future.await.map_err(Into::into) })
}

/// The attempt of a handler that takes a transaction, called without one (by code of your
/// own rather than the worker): it fails.
fn no_transaction() -> BoxFuture<Result<(), BoxError>> {
    Box::pin(async { Err("this handler takes a Tx, and was called without one".into()) })
}
