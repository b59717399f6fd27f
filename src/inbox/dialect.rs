//! What differs between the databases an inbox runs on: the pool, the dedup store, the
//! schema and each statement of the queue. The queue's state machine is written once, in
//! `queue.rs`, over a [`Dialect`]; its statements are each dialect's, side by side in
//! `sqlite.rs` and `postgres.rs`.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use super::door::Batch;
use super::error::InboxError;
use crate::store::{BoxFuture, Marked};

/// The pool of a dialect's database.
pub(crate) type Pool<D> = sqlx::Pool<<D as Backend>::Db>;
/// An open transaction on a dialect's database.
pub(crate) type DbTx<D> = sqlx::Transaction<'static, <D as Backend>::Db>;
/// A connection of a dialect's database.
pub(crate) type Conn<D> = <<D as Backend>::Db as sqlx::Database>::Connection;

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
    type Db: sqlx::Database + crate::tx::Neutral;
    /// The store the dedup marks go through.
    type Store: Clone + fmt::Debug + Send + Sync + 'static;

    /// The inbox's name in `Debug`.
    const NAME: &'static str;
    /// Whether the door should write one transaction at a time from this process: SQLite
    /// has one writer, and writers that meet its lock sleep in its busy handler (up to
    /// 100 ms a turn), which made the tail.
    const ONE_WRITER: bool;

    /// The statement that begins a transaction that writes, where not the database's
    /// default (SQLite's `BEGIN IMMEDIATE`: a reader that turns writer could deadlock).
    const BEGIN: Option<&'static str>;

    /// The turns of the database's writers among handlers' transactions, shared by the
    /// clones of `store`.
    fn writers(store: &Self::Store) -> std::sync::Arc<crate::store::writers::Writers>;

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
    /// Writes the door's `batch` of jobs in `tx`, queued to run now, and adds them to the
    /// activity's count of deliveries accepted in their tick.
    fn insert_jobs(
        tx: &mut DbTx<Self>,
        batch: &Batch<'_>,
    ) -> impl Future<Output = Result<(), InboxError>> + Send;
    /// Counts the `added` jobs just written in `tx` against the bound `max`: whether they
    /// fit. The check is part of the transaction, so it holds for every process on the
    /// database. Where other processes may run the jobs (PostgreSQL), jobs that fit are
    /// announced to their workers by the same statement, once `tx` commits: one
    /// notification a batch.
    fn admit(
        tx: &mut DbTx<Self>,
        queue: &str,
        max: i64,
        added: i64,
    ) -> impl Future<Output = Result<bool, InboxError>> + Send;

    /// The statements on the queue's jobs, each with its arguments in the order
    /// [`Statements`] gives.
    const SQL: Statements;
    /// What a replay sets on a dead job: queued again now, attempts from zero.
    const REPLAYED: &'static str;
    /// The schema's migrations, in order: the statements of each. The version of a schema
    /// is the number of migrations it has had.
    const MIGRATIONS: &'static [&'static [&'static str]];
    /// Whether the schema's table of versions is there (a count: 0 or 1), read without a
    /// lock.
    const SCHEMA_TABLE: &'static str;
    /// The first statement of a migration's transaction: one migrating process at a time.
    const MIGRATION_LOCK: Option<&'static str>;

    /// Runs `sql` with `args` on `conn` (one of the pool's, or a transaction's): how many
    /// rows it changed.
    fn execute_on(
        conn: &mut Conn<Self>,
        sql: &str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<u64, InboxError>> + Send;
    /// The rows `sql` reads with `args` on `conn`.
    fn fetch_on<T: Row>(
        conn: &mut Conn<Self>,
        sql: &str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Vec<T>, InboxError>> + Send;
    /// Deletes the expired dedup marks of `store`.
    fn cleanup(store: &Self::Store) -> impl Future<Output = Result<(), InboxError>> + Send;

    /// Tells `wake` whenever any process commits jobs to `queue` (PostgreSQL's
    /// `LISTEN`/`NOTIFY`); SQLite, where only this process writes, never does. Never ends.
    fn listen(
        pool: &Pool<Self>,
        queue: &str,
        wake: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    ) -> BoxFuture<()>;
}

/// A value bound to a statement.
#[derive(Debug, Clone, Copy)]
#[allow(unreachable_pub)]
pub enum Arg<'a> {
    Text(&'a str),
    MaybeText(Option<&'a str>),
    Int(i64),
    Bytes(&'a [u8]),
}

impl Arg<'_> {
    /// `span` in whole milliseconds, as the queue keeps times.
    pub(crate) fn millis(span: Duration) -> Self {
        Arg::Int(i64::try_from(span.as_millis()).unwrap_or(i64::MAX))
    }
}

/// The statements a dialect runs on its queue, by what they do. The arguments of each, in
/// order, are given beside it; every time is in milliseconds since the Unix epoch, and
/// every span in milliseconds.
///
/// A job's states: `queued` (never tried), `running` (held by a worker, under a lease),
/// `retrying` (failed, waiting for its backoff), `dead`, `done`. Its `attempt` counts the
/// attempts started; with the holder, it fences each write of an attempt's end.
#[derive(Debug)]
#[allow(unreachable_pub)]
pub struct Statements {
    /// queue: waiting (queued or retrying), running, retrying, dead, done.
    pub counts: &'static str,
    /// queue, limit: id, delivery, attempt, last error; the most recent first.
    pub dead: &'static str,
    /// queue, job id or none for every one: dead jobs queued again, attempts from zero.
    pub replay: &'static str,
    /// queue, jobs: counts jobs added against the bound.
    pub bump_depth: &'static str,
    /// queue, worker, limit, lease: takes and starts the jobs due, the oldest first (the
    /// attempt counted, the lease set; where `started` is none, the start recorded too):
    /// id, delivery, attempt, max attempts.
    pub take: &'static str,
    /// job ids (a JSON array of text): records the start of the attempt each holds, in the
    /// take's transaction; none where `take` records it itself, in one statement.
    pub started: Option<&'static str>,
    /// worker, job ids (a JSON array of text), lease: renews the leases of the jobs the
    /// worker runs.
    pub renew: &'static str,
    /// queue: the running jobs whose lease lapsed: id, attempt, max attempts, holder.
    pub lapsed: &'static str,
    /// job id, holder, attempt, state (`done`, `retrying` or `dead`), error, delay, lapsed
    /// only (1 or 0), outcome (`done`, `failed`, `dead`): the attempt's end, while that
    /// holder holds that attempt (and, where lapsed only, while its lease is lapsed): the
    /// holder cleared, the job run again after the delay if retrying; where `end_attempt`
    /// is none, the attempt's record closed and counted in the activity too. A row (its
    /// id) if it ended.
    pub end: &'static str,
    /// job id, attempt, outcome, error: closes the attempt's record, in the end's
    /// transaction: the time it ended at; none where `end` closes it itself, in one
    /// statement.
    pub end_attempt: Option<&'static str>,
    /// queue, tick, kind, shard, count: counts the attempt `end_attempt` closed in the
    /// activity, in the end's transaction; none where `end` counts it itself.
    pub end_activity: Option<&'static str>,
    /// queue, shard, count: counts a job the end left done, in the end's transaction; none
    /// where `end` counts it itself, in one statement.
    pub end_done: Option<&'static str>,
    /// job id, attempt: a row if the job was done by that attempt.
    pub done: &'static str,
    /// queue, job id: id, state, attempt, max attempts, last error, delivery.
    pub job: &'static str,
    /// job id: attempt, worker, started at, ended at, outcome, error; in order.
    pub attempts: &'static str,
    /// queue, a time: deletes the attempts of the jobs done before it.
    pub purge_attempts: &'static str,
    /// queue, a time: deletes the jobs done before it.
    pub purge_before: &'static str,
    /// queue, a time, shard: takes the deliveries of the jobs done before it off the
    /// activity's counts, in that shard.
    pub purge_accepted: &'static str,
}

/// A row every dialect reads. Each dialect's reading is a supertrait, empty where its
/// feature is off.
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

/// Runs `sql` with `args` on a connection of `pool`: how many rows it changed.
pub(crate) async fn execute<D: Backend>(
    pool: &Pool<D>,
    sql: &str,
    args: &[Arg<'_>],
) -> Result<u64, InboxError> {
    let mut conn = pool.acquire().await.map_err(D::error)?;
    D::execute_on(&mut conn, sql, args).await
}

/// The rows `sql` reads with `args` on a connection of `pool`.
pub(crate) async fn fetch<D: Backend, T: Row>(
    pool: &Pool<D>,
    sql: &str,
    args: &[Arg<'_>],
) -> Result<Vec<T>, InboxError> {
    let mut conn = pool.acquire().await.map_err(D::error)?;
    D::fetch_on(&mut conn, sql, args).await
}

/// A transaction that writes, begun as the dialect begins those.
pub(crate) async fn begin<D: Backend>(pool: &Pool<D>) -> Result<DbTx<D>, InboxError> {
    match D::BEGIN {
        Some(statement) => pool.begin_with(statement).await,
        None => pool.begin().await,
    }
    .map_err(D::error)
}
