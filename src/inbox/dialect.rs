//! What differs between the databases an inbox runs on: the pool, the dedup store, the
//! apalis storage, and each statement. Everything else is written once, in `queue.rs`,
//! over a [`Dialect`].

use std::fmt;
use std::future::Future;
use std::time::Duration;

use apalis_core::task::Task;

use super::attempt::JobService;
use super::error::InboxError;
use super::handler::Handler;
use super::Settings;
use crate::store::{BoxFuture, Marked};

/// The pool of a dialect's database.
pub(crate) type Pool<D> = sqlx::Pool<<D as Backend>::Db>;
/// An open transaction on a dialect's database.
pub(crate) type DbTx<D> = sqlx::Transaction<'static, <D as Backend>::Db>;

/// A database an [`Inbox`](super::Inbox) runs on: [`Sqlite`](super::Sqlite) or
/// [`Postgres`](super::Postgres). Sealed: name it in your own generic code, to write the app
/// that serves and works on an inbox once, whichever database its configuration picks.
///
/// ```no_run
/// use tower_webhook::inbox::{Dialect, Inbox};
/// use tower_webhook::Event;
///
/// async fn work_on<D: Dialect>(inbox: Inbox<D>) {
///     let _ = inbox.worker(|event: Event| async move {
///         println!("handled {}", event.id());
///         Ok::<_, std::io::Error>(())
///     }).run().await;
/// }
/// ```
pub trait Dialect: Backend {}

/// The statements and types of one database. Public in a private module: [`Dialect`] names
/// it, and no one outside the crate can implement it.
#[allow(unreachable_pub)]
pub trait Backend: Sized + Send + Sync + 'static {
    /// The database: the inbox's pool is a `sqlx::Pool` of it, its transactions sqlx's.
    type Db: sqlx::Database + crate::tx::StillOpen;
    /// The store the dedup marks go through.
    type Store: Clone + fmt::Debug + Send + Sync + 'static;
    /// The apalis storage of the inbox's jobs.
    type Storage: Send + 'static;

    /// The inbox's name in `Debug`.
    const NAME: &'static str;
    /// Whether the door should write one transaction at a time from this process: SQLite
    /// has one writer, and writers that meet its lock sleep in its busy handler (up to
    /// 100 ms a turn), which made the tail.
    const ONE_WRITER: bool;

    /// The statement that begins a handler's transaction, where not the database's default.
    const BEGIN: Option<&'static str>;

    /// The turns of the database's writers among handlers' transactions, shared by the
    /// clones of `store`.
    fn writers(store: &Self::Store) -> std::sync::Arc<crate::tx::Writers>;

    /// Whether a database error code is worth a retry (the inbox is unavailable, not broken).
    fn transient(code: &str) -> bool;

    /// An inbox error from sqlx's, unavailable where [`transient`](Self::transient) says so.
    fn error(err: sqlx::Error) -> InboxError {
        InboxError::sqlx(err, Self::transient)
    }

    /// Marks each of `keys` (distinct) for its window in `tx`, unless a live mark is there:
    /// each key's outcome, in the order given. Makes `tx`'s commit wait for the disk,
    /// whatever the database's default.
    fn mark_many(
        store: &Self::Store,
        tx: &mut DbTx<Self>,
        keys: &[(&str, Duration)],
    ) -> impl Future<Output = Result<Vec<Marked>, InboxError>> + Send;
    /// Writes `tasks` to `queue` in `tx`.
    fn push(
        tx: &mut DbTx<Self>,
        queue: &str,
        tasks: Vec<Task<Vec<u8>>>,
    ) -> impl Future<Output = Result<(), InboxError>> + Send;
    /// Counts the `added` jobs just written in `tx` against the bound `max`: whether they
    /// fit. The check is part of the transaction, so it holds for every process on the
    /// database.
    fn admit(
        tx: &mut DbTx<Self>,
        queue: &str,
        max: i64,
        added: i64,
    ) -> impl Future<Output = Result<bool, InboxError>> + Send;

    /// The statements on the queue's jobs, each with its arguments in the order
    /// [`Statements`] gives.
    const SQL: Statements;

    /// Runs `sql` with `args` on `conn` (one of the pool's, or a transaction's): how many
    /// rows it changed.
    fn execute_on(
        conn: &mut <Self::Db as sqlx::Database>::Connection,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<u64, InboxError>> + Send;
    /// Runs `sql` with `args` on a connection of `pool`: how many rows it changed.
    fn execute(
        pool: &Pool<Self>,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<u64, InboxError>> + Send {
        async move {
            let mut conn = pool.acquire().await.map_err(Self::error)?;
            Self::execute_on(&mut conn, sql, args).await
        }
    }
    /// The rows `sql` reads with `args`.
    fn fetch<T: Row>(
        pool: &Pool<Self>,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Vec<T>, InboxError>> + Send;
    /// The table of the queue's jobs.
    const JOBS: &'static str;
    /// What comes before the number of a statement's argument: `?` or `$`.
    const PARAM: char;
    /// The job's last result, as text.
    const LAST_RESULT: &'static str;
    /// What a replay sets on a dead-lettered job: queued again now, attempts from zero.
    const REPLAY_SET: &'static str;
    /// The field `name` of the delivery a job carries, as the door wrote it in the job's
    /// metadata, as an SQL expression: NULL where the job is not a delivery (another
    /// queue's, in apalis's shared table). The expression of `"id"` is the one the inbox
    /// indexes.
    fn field(name: &str) -> String;
    /// The rows `sql`, a statement put together at run time, reads with `args`.
    fn fetch_built<T: Row>(
        pool: &Pool<Self>,
        sql: String,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Vec<T>, InboxError>> + Send;
    /// Runs `sql`, a statement put together at run time, with `args`: how many rows it
    /// changed.
    fn execute_built(
        pool: &Pool<Self>,
        sql: String,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<u64, InboxError>> + Send;
    /// Deletes the expired dedup marks of `store`.
    fn cleanup(store: &Self::Store) -> impl Future<Output = Result<(), InboxError>> + Send;

    /// The apalis storage of the queue of `settings` in `pool`, fetching up to `batch` jobs
    /// at a time, as soon as `wakeups` changes or the queue's own wake-ups say, or every poll
    /// interval.
    fn storage(
        pool: &Pool<Self>,
        settings: &Settings,
        batch: usize,
        wakeups: tokio::sync::watch::Receiver<u64>,
    ) -> Self::Storage;

    /// Runs an apalis worker (its name, and how many jobs it runs at once and fetches at a
    /// time) on the queue of `settings` in `pool`, with `service`, until `signal` resolves.
    fn run<H, A>(
        pool: &Pool<Self>,
        settings: &Settings,
        worker: (String, usize),
        wakeups: tokio::sync::watch::Receiver<u64>,
        service: JobService<H, A, Self>,
        signal: BoxFuture<()>,
    ) -> BoxFuture<Result<(), InboxError>>
    where
        Self: Dialect,
        H: Handler<A, Self::Db>,
        A: 'static;
}

/// A value bound to a statement. Each dialect binds a number of seconds as its queue keeps
/// them: whole seconds (rounded up) in SQLite, fractions in PostgreSQL.
#[derive(Debug, Clone, Copy)]
#[allow(unreachable_pub)]
pub enum Arg<'a> {
    Text(&'a str),
    MaybeText(Option<&'a str>),
    Int(i64),
    Secs(Duration),
}

/// The statements a dialect runs on its queue, by what they do. The arguments of each, in
/// order, are given beside it.
#[derive(Debug)]
#[allow(unreachable_pub)]
pub struct Statements {
    /// queue: waiting, running, failed, dead, done.
    pub counts: &'static str,
    /// queue, limit: id, job, attempts, last result, the most recent first.
    pub dead: &'static str,
    /// queue, task id or none for every one.
    pub replay: &'static str,
    /// queue, jobs: counts jobs added against the bound.
    pub bump_depth: &'static str,
    /// queue, age.
    pub purge: &'static str,
    /// task id, worker, attempts at the start, this attempt's number, status (`Failed` or
    /// `Killed`), result, delay: the attempt's failure, while this worker holds this
    /// attempt; its holder cleared, and the job run again after the delay if it has
    /// attempts left.
    pub finish: &'static str,
    /// task id, worker: the job's attempts, the fence of its completion.
    pub start: &'static str,
    /// task id, worker, attempts at the start, this attempt's number: the job done, in the
    /// handler's transaction, while this worker holds this attempt; its holder cleared.
    pub complete: &'static str,
    /// task id, attempt number: a row if the job was done so by that attempt.
    pub done: &'static str,
    /// queue, worker: the worker seen alive now (its heartbeat, beside apalis's).
    pub alive: &'static str,
    /// queue, worker, silence: id, status, attempts, max attempts, holder.
    pub orphans: &'static str,
    /// queue, worker, age: the jobs that worker holds running, started that long ago or
    /// more (id, status, attempts, max attempts, holder): with the attempts it runs, they
    /// are its own; any other was lost (a start committed as its connection failed).
    pub stranded: &'static str,
    /// id, holder, reason.
    pub orphan_dead: &'static str,
    /// id, holder, reason, delay.
    pub orphan_retry: &'static str,
    /// queue, worker, task id or none for every one.
    pub unfetch: &'static str,
    /// queue, the marker apalis writes on an abandoned job.
    pub unmark_abandoned: &'static str,
    /// queue, task id: id, status, attempts, max attempts, last result, job.
    pub job: &'static str,
    /// task id: attempt, worker, started at, ended at (ms), outcome, error; in order.
    pub attempts: &'static str,
    /// queue, a time (ms since the epoch): deletes the jobs done before it.
    pub purge_before: &'static str,
    /// queue, since (ms), bucket (ms): bucket, outcome, attempts ended in it.
    pub ended: &'static str,
}

/// A row every dialect reads: a tuple of plain columns. Each dialect's reading is a
/// supertrait, empty where its feature is off.
#[allow(unreachable_pub)]
pub trait Row: FromSqlite + FromPostgres + Send + Unpin {}

impl<T: FromSqlite + FromPostgres + Send + Unpin> Row for T {}

/// A row SQLite can read.
#[cfg(feature = "inbox-sqlite")]
#[allow(unreachable_pub)]
pub trait FromSqlite: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> {}
#[cfg(feature = "inbox-sqlite")]
impl<T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>> FromSqlite for T {}
/// Without SQLite, any row.
#[cfg(not(feature = "inbox-sqlite"))]
#[allow(unreachable_pub)]
pub trait FromSqlite {}
#[cfg(not(feature = "inbox-sqlite"))]
impl<T> FromSqlite for T {}

/// A row PostgreSQL can read.
#[cfg(feature = "inbox-postgres")]
#[allow(unreachable_pub)]
pub trait FromPostgres: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> {}
#[cfg(feature = "inbox-postgres")]
impl<T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>> FromPostgres for T {}
/// Without PostgreSQL, any row.
#[cfg(not(feature = "inbox-postgres"))]
#[allow(unreachable_pub)]
pub trait FromPostgres {}
#[cfg(not(feature = "inbox-postgres"))]
impl<T> FromPostgres for T {}
