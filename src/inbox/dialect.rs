//! What differs between the databases an inbox runs on: the pool, the dedup store, the
//! apalis storage, and each statement. Everything else is written once, in `queue.rs`,
//! over a [`Dialect`].

use std::fmt;
use std::future::Future;
use std::time::Duration;

use apalis_core::task::Task;

use super::error::InboxError;
use super::shared::{DeadRow, Orphan, OrphanRow};
use super::worker::{Adapter, Handler, Queue};
use super::Settings;
use crate::store::{BoxFuture, Marked};

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
    /// The pool the inbox runs on.
    type Pool: Clone + fmt::Debug + Send + Sync + 'static;
    /// The store the dedup marks go through.
    type Store: Clone + fmt::Debug + Send + Sync + 'static;
    /// An open transaction.
    type Tx: Send;

    /// The inbox's name in `Debug`.
    const NAME: &'static str;
    /// Whether one enqueue at a time should write from this process: SQLite has one
    /// writer, and writers that meet its lock sleep in its busy handler (up to 100 ms a
    /// turn), which made the tail.
    const ONE_WRITER: bool;

    /// Opens a transaction.
    fn begin(pool: &Self::Pool) -> impl Future<Output = Result<Self::Tx, InboxError>> + Send;
    /// Commits it.
    fn commit(tx: Self::Tx) -> impl Future<Output = Result<(), InboxError>> + Send;
    /// Marks `key` for `window` in `tx`, unless a live mark is there.
    fn mark(
        store: &Self::Store,
        tx: &mut Self::Tx,
        key: &str,
        window: Duration,
    ) -> impl Future<Output = Result<Marked, InboxError>> + Send;
    /// Writes `task` to `queue` in `tx`.
    fn push(
        tx: &mut Self::Tx,
        queue: &str,
        task: Task<Vec<u8>>,
    ) -> impl Future<Output = Result<(), InboxError>> + Send;
    /// Counts the job just written in `tx` against the bound `max`: whether it fits. The
    /// check is part of the transaction, so it holds for every process on the database.
    fn admit(
        tx: &mut Self::Tx,
        queue: &str,
        max: i64,
    ) -> impl Future<Output = Result<bool, InboxError>> + Send;

    /// The five counts of `queue`: waiting, running, failed, dead, done.
    fn counts(
        pool: &Self::Pool,
        queue: &str,
    ) -> impl Future<Output = Result<[i64; 5], InboxError>> + Send;
    /// The dead letters of `queue`, the most recent first: id, job, attempts, last result.
    fn dead(
        pool: &Self::Pool,
        queue: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<DeadRow>, InboxError>> + Send;
    /// Queues the dead letter `task_id` (every one, with `None`) again, counted against the
    /// bound: how many.
    fn replay(
        pool: &Self::Pool,
        queue: &str,
        task_id: Option<&str>,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send;
    /// Deletes the jobs done before `age` ago, and expired dedup marks: how many jobs.
    fn purge(
        pool: &Self::Pool,
        store: &Self::Store,
        queue: &str,
        age: Duration,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send;

    /// Puts the job `task_id` off by `delay`.
    fn defer(
        pool: &Self::Pool,
        task_id: &str,
        delay: Duration,
    ) -> impl Future<Output = Result<(), InboxError>> + Send;
    /// Marks the job `task_id`, fetched by `me`, as running: whether `me` still holds it.
    fn start(
        pool: &Self::Pool,
        task_id: &str,
        me: &str,
    ) -> impl Future<Output = Result<bool, InboxError>> + Send;
    /// The jobs of `queue` held by workers other than `me` silent for `dead_after`.
    fn orphans(
        pool: &Self::Pool,
        queue: &str,
        me: &str,
        dead_after: Duration,
    ) -> impl Future<Output = Result<Vec<OrphanRow>, InboxError>> + Send;
    /// Takes the orphan `row` back as `fate` says, if its dead worker still holds it.
    fn take_back(
        pool: &Self::Pool,
        queue: &str,
        row: &OrphanRow,
        fate: Orphan,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send;
    /// Puts the jobs `me` fetched but never started back in `queue`, as they were.
    fn unfetch(
        pool: &Self::Pool,
        queue: &str,
        me: &str,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send;
    /// Takes back the attempt apalis adds to a job fetched but not started when its worker
    /// stops: the job never ran.
    fn restore_abandoned(
        pool: &Self::Pool,
        queue: &str,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send;

    /// Runs an apalis worker (its name, and how many jobs it fetches at a time) on the queue
    /// of `settings` in `pool`, with `service`, until `signal` resolves.
    fn run<H, A, Q>(
        pool: &Self::Pool,
        settings: &Settings,
        worker: (String, usize),
        service: Adapter<H, A, Q>,
        signal: BoxFuture<()>,
    ) -> BoxFuture<Result<(), InboxError>>
    where
        H: Handler<A>,
        A: 'static,
        Q: Queue;
}
