//! Workers: run the user's handler on each job, with retries, backoff and a dead-letter.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis_core::error::AbortError;
use apalis_core::task::Task;
use futures_util::future::{select, Either};
use futures_util::FutureExt as _;
use tower_service::Service;
use tracing::Instrument as _;

use super::dialect::Dialect;
use super::error::{InboxError, InboxErrorKind};
use super::job::{from_epoch_millis, Job, Payload, StoredDelivery};
use super::meter;
use super::queue::End;
use super::running::Held;
use super::Inbox;
use crate::event::Event;
use crate::store::BoxFuture;
use crate::tx::{roll_back_checked, Slot, Taken, Tx};

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

/// Workers for an inbox's jobs: [`Inbox::worker`](super::Inbox::worker).
///
/// Run as many as you like, in this process or others sharing the queue: each job runs on
/// one worker at a time.
#[must_use = "a worker does nothing until it is run"]
pub struct Worker<D: Dialect, H, A> {
    inbox: Inbox<D>,
    handler: Arc<H>,
    concurrency: usize,
    timeout: Duration,
    name: Option<String>,
    _args: PhantomData<fn() -> A>,
}

impl<D: Dialect, H, A> fmt::Debug for Worker<D, H, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("concurrency", &self.concurrency)
            .field("attempt_timeout", &self.timeout)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<D, H, A> Worker<D, H, A>
where
    D: Dialect,
    H: Handler<A, D::Db>,
    A: 'static,
{
    pub(crate) fn new(inbox: Inbox<D>, handler: H) -> Self {
        Self {
            inbox,
            handler: Arc::new(handler),
            concurrency: 4,
            timeout: DEFAULT_ATTEMPT_TIMEOUT,
            name: None,
            _args: PhantomData,
        }
    }

    /// Gives each attempt at most `limit` (default [`DEFAULT_ATTEMPT_TIMEOUT`]): past it the
    /// handler's future is dropped, its slot freed, and the attempt fails like an error
    /// (retried after its backoff, dead-lettered after the last).
    pub fn attempt_timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// Runs at most `jobs` handlers at once (at least 1; 4 by default).
    pub fn concurrency(mut self, jobs: usize) -> Self {
        self.concurrency = jobs.max(1);
        self
    }

    /// Names the worker in the queue's table of workers and in its logs. Names must be
    /// unique among running workers; the default is made unique from the process id.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Runs until the process ends, or the queue fails.
    pub async fn run(self) -> Result<(), InboxError> {
        self.run_until(std::future::pending()).await
    }

    /// Runs until `signal` resolves (Ctrl-C, say), then stops taking jobs and waits for the
    /// running ones to finish; jobs fetched but not started go back to the queue.
    pub async fn run_until(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), InboxError> {
        let name = self.name.unwrap_or_else(unique_name);
        let service = JobService::new(&name, self.handler, self.inbox.clone(), self.timeout);
        let signal = signal.shared();
        let mut held_back = D::writers(&self.inbox.store).hold_back();
        if held_back.short > 0 {
            tracing::warn!(
                max_connections = self.inbox.pool.options().get_max_connections(),
                "the inbox's pool is too small for its running workers: each holds {} \
                 connection besides its handlers' transactions, and 3 are kept for the door, \
                 fetches and heartbeats; size the pool as 3 + {} per worker + the `Tx` \
                 handlers to run at once",
                crate::tx::Writers::PER_WORKER,
                crate::tx::Writers::PER_WORKER,
            );
        }
        let mut sweeping = std::pin::pin!(watch(self.inbox.clone(), name.clone()));
        let ran = loop {
            let run = D::run(
                &self.inbox.pool,
                &self.inbox.settings,
                (name.clone(), self.concurrency),
                self.inbox.wakeups(),
                service.clone(),
                Box::pin(signal.clone()),
            );
            // The turns held back are taken as the handlers' transactions end, beside the
            // run; once held, they are kept until the worker stops.
            let running = async {
                match select(run, std::pin::pin!(held_back.hold())).await {
                    Either::Left((ran, _)) => ran,
                    Either::Right(((), run)) => run.await,
                }
            };
            let ran = match select(std::pin::pin!(running), sweeping.as_mut()).await {
                Either::Left((ran, _)) => ran,
                Either::Right((never, _)) => match never {},
            };
            match ran {
                // The queue failed under it (the database went away): start again, as a
                // worker must outlive an outage, until it is told to stop.
                Err(err) if signal.peek().is_none() => {
                    tracing::warn!(error = %err, "the inbox worker stopped; starting it again in a second");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    // What it fetched and never started would wait for this worker's stop:
                    // the next run fetches only what is queued.
                    release(&self.inbox, name.clone()).await;
                }
                ran => break ran,
            }
        };
        self.inbox.ends.wait_a_while().await;
        release(&self.inbox, name).await;
        drop(held_back);
        ran
    }
}

/// Puts back the jobs the stopped worker `name` fetched but never started: a stop while it
/// was fetching can leave some.
pub(crate) async fn release<D: Dialect>(inbox: &Inbox<D>, name: String) {
    match inbox.unfetch_jobs(&name).await {
        Ok(0) => {}
        Ok(jobs) => tracing::info!(jobs, "jobs fetched but not started went back to the queue"),
        Err(err) => {
            tracing::warn!(error = %err, "could not put back the jobs fetched but not started; they go back once this worker's heartbeat lapses");
        }
    }
}

/// Every heartbeat, takes back the jobs of workers (other than `me`) whose heartbeat lapsed
/// twice. Never ends: run it beside the worker `me`.
pub(crate) async fn watch<D: Dialect>(inbox: Inbox<D>, me: String) -> std::convert::Infallible {
    let every = inbox.settings.heartbeat;
    loop {
        if let Err(err) = inbox.keep_alive(&me).await {
            tracing::warn!(error = %err, "could not tell the queue this worker is alive");
        }
        match inbox.sweep_jobs(&me, every * 2).await {
            Ok(0) => {}
            Ok(jobs) => tracing::warn!(
                jobs,
                "took back the jobs of a worker whose heartbeat lapsed"
            ),
            Err(err) => tracing::warn!(error = %err, "could not look for the jobs of dead workers"),
        }
        match inbox.sweep_stranded(&me, every * 2).await {
            Ok(0) => {}
            Ok(jobs) => tracing::warn!(
                jobs,
                "took back jobs this worker held but no longer ran (their start or end was lost with a connection)"
            ),
            Err(err) => tracing::warn!(error = %err, "could not look for the jobs this worker lost"),
        }
        if meter::ON {
            if let Ok(counts) = inbox.counts().await {
                meter::depth(&inbox.settings.queue, &counts);
            }
        }
        tokio::time::sleep(every).await;
    }
}

fn unique_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let started = crate::clock::unix_millis(std::time::SystemTime::now());
    format!(
        "tower-webhook-{}-{started}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The service apalis calls with each job of an inbox: decodes it into an [`Event`], runs
/// the handler under the attempt's deadline, and turns its outcome into apalis's (done,
/// failed and put off by the backoff, or killed: dead-lettered at once).
///
/// [`Inbox::worker`](super::Inbox::worker) builds its workers from it; to compose your own
/// with apalis's `WorkerBuilder` and its layers, take it from
/// [`Inbox::service`](super::Inbox::service) (see [`Inbox::storage`](super::Inbox::storage)).
#[allow(unreachable_pub)]
pub struct JobService<H, A, D: Dialect> {
    /// The worker's name, which holds the jobs it fetched.
    name: Arc<str>,
    handler: Arc<H>,
    inbox: Inbox<D>,
    timeout: Duration,
    _args: PhantomData<fn() -> A>,
}

impl<H, A, D: Dialect> JobService<H, A, D> {
    /// The service of the worker named `name` (it guards the jobs that worker fetched),
    /// running `handler` on the jobs of `inbox`, each attempt cut at `timeout`.
    pub(crate) fn new(name: &str, handler: Arc<H>, inbox: Inbox<D>, timeout: Duration) -> Self {
        Self {
            name: Arc::from(name),
            handler,
            inbox,
            timeout,
            _args: PhantomData,
        }
    }

    /// Gives each attempt at most `limit` (default [`DEFAULT_ATTEMPT_TIMEOUT`]), as
    /// [`Worker::attempt_timeout`] does.
    #[must_use]
    pub fn attempt_timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }
}

impl<H, A, D: Dialect> Clone for JobService<H, A, D> {
    fn clone(&self) -> Self {
        Self {
            name: Arc::clone(&self.name),
            handler: Arc::clone(&self.handler),
            inbox: self.inbox.clone(),
            timeout: self.timeout,
            _args: PhantomData,
        }
    }
}

/// How a job's attempt ended.
enum Ran {
    /// The handler succeeded; the job's end is to be written.
    Done,
    /// The handler succeeded, and the job's end was committed in its transaction.
    Committed,
    /// The handler succeeded, but the job was no longer this attempt's: its transaction
    /// rolled back.
    Lost,
    /// The handler's error (kept as it is, with its source), or why the attempt failed.
    Failed(BoxError),
    Dead(String),
}

impl<H, A, D> Service<Task<StoredDelivery>> for JobService<H, A, D>
where
    H: Handler<A, D::Db>,
    A: 'static,
    D: Dialect,
{
    type Response = ();
    type Error = BoxError;
    type Future = BoxFuture<Result<(), BoxError>>;

    // Always ready: the worker's concurrency is tower's `ConcurrencyLimit` around this
    // service, which apalis polls before it fetches a job.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, task: Task<StoredDelivery>) -> Self::Future {
        let handler = Arc::clone(&self.handler);
        let inbox = self.inbox.clone();
        let me = Arc::clone(&self.name);
        let ctx = Arc::clone(task.ctx());
        let stored = task.args;
        let timeout = self.timeout;
        let attempt = async move {
            let retry = inbox.settings.retry;
            let task_id = ctx.task_id().map(ToString::to_string).unwrap_or_default();
            // Runs here from before its start is written until its end is: a job this
            // worker holds running and does not run here was lost.
            let held = inbox.running.enter(&task_id);
            let span = tracing::info_span!(
                "webhook_job",
                id = %stored.id,
                attempt = tracing::field::Empty,
                layer = %stored.layer,
                task = %task_id,
            );
            let fence = match inbox.start_job(&task_id, &me).await {
                Ok(Some(fence)) => fence,
                Ok(None) => {
                    // Taken back while this worker seemed dead (its heartbeat lapsed):
                    // another worker has it now.
                    let _entered = span.enter();
                    tracing::warn!(
                        "webhook job taken back from this worker before it started; not run here"
                    );
                    return Ok(());
                }
                Err(err) => {
                    {
                        let _entered = span.enter();
                        tracing::warn!(error = %err, "could not start the webhook job; it goes back to the queue");
                    }
                    put_back(&inbox, task_id, me, span, held);
                    return Err(Box::new(err) as BoxError);
                }
            };
            // The attempts the job had when it started, and this one.
            let attempt = u32::try_from(fence.saturating_add(1)).unwrap_or(u32::MAX);
            span.record("attempt", attempt);
            let max_attempts = ctx
                .max_attempts()
                .and_then(|max| u32::try_from(max).ok())
                .unwrap_or_else(|| retry.attempts());
            let started = std::time::Instant::now();
            if attempt == 1 {
                let now = crate::clock::unix_millis(std::time::SystemTime::now());
                let waited = i64::try_from(now).unwrap_or(i64::MAX) - stored.received_at;
                let waited = u64::try_from(waited).unwrap_or(0);
                meter::start_delay(&stored.layer, Duration::from_millis(waited));
            }
            let ran = if attempt > max_attempts {
                // Its worker died during the last attempt (the queue took the job back
                // without looking at its attempts): running it again could take this worker
                // down too, for ever.
                Ran::Dead(WORKER_DIED.to_owned())
            } else {
                let attempt = Attempt {
                    inbox: &inbox,
                    me: &me,
                    task_id: &task_id,
                    fence,
                    number: (attempt, max_attempts),
                    timeout,
                };
                run_once(&*handler, &stored, attempt)
                    .instrument(span.clone())
                    .await
            };
            let delay = retry.delay_after(attempt);
            meter::attempt(
                &stored.layer,
                ran.outcome(attempt >= max_attempts),
                started.elapsed(),
            );
            let _entered = span.enter();
            if let Some(end) = ran.end(delay) {
                write_end(
                    &inbox,
                    task_id,
                    (Arc::clone(&me), fence),
                    (attempt, held),
                    end,
                    &span,
                );
            }
            ran.report((attempt, max_attempts), delay)
        };
        // Each attempt runs in a task of its own. A queue that fails under the worker (a
        // fetch or heartbeat refused: SQLite busy past its timeout behind a long `Tx`, a
        // connection lost) ends apalis's worker, and the worker starts again; the attempts
        // in flight go on to their ends rather than being dropped with it.
        let running = tokio::spawn(attempt);
        Box::pin(async move {
            running
                .await
                .unwrap_or_else(|err| Err(Box::new(err) as BoxError))
        })
    }
}

impl Ran {
    /// What became of the attempt, as the metrics name it; `last` where it was the job's
    /// last allowed attempt.
    fn outcome(&self, last: bool) -> &'static str {
        match self {
            Self::Done | Self::Committed => "done",
            Self::Lost => "lost",
            Self::Dead(_) => "dead_lettered",
            Self::Failed(_) if last => "dead_lettered",
            Self::Failed(error) if error.is::<DeadlinePassed>() => "timed_out",
            Self::Failed(_) => "failed",
        }
    }

    /// The end the worker writes for this outcome (none where the handler's transaction
    /// wrote it, or the job is no longer this attempt's), the job run again after `delay`
    /// if it failed with attempts left.
    fn end(&self, delay: Duration) -> Option<End> {
        match self {
            Self::Done => Some(End::Done),
            Self::Committed | Self::Lost => None,
            Self::Failed(error) => Some(End::Failed {
                killed: false,
                reason: error.to_string(),
                delay,
            }),
            Self::Dead(reason) => Some(End::Failed {
                killed: true,
                reason: reason.clone(),
                delay: Duration::ZERO,
            }),
        }
    }

    /// Logs the outcome of attempt `attempt` of `max_attempts`, and answers apalis with it.
    fn report(self, (attempt, max_attempts): (u32, u32), delay: Duration) -> Result<(), BoxError> {
        match self {
            Ran::Lost => {
                // Its heartbeat lapsed and the job was taken back while the handler ran:
                // nothing of this run committed, and the run that holds the job now does
                // the work.
                tracing::warn!("webhook job taken back from this worker while it ran; its transaction rolled back");
                Err("the job was taken back from this worker while it ran".into())
            }
            Ran::Done | Ran::Committed => {
                tracing::info!("webhook job handled");
                Ok(())
            }
            Ran::Dead(error) => {
                tracing::error!(%error, "webhook job dead-lettered at once: no retry can help");
                Err(Box::new(AbortError::new(error)) as BoxError)
            }
            Ran::Failed(error) if attempt >= max_attempts => {
                tracing::error!(%error, "webhook job failed its last attempt; dead-lettered");
                Err(error)
            }
            Ran::Failed(error) => {
                tracing::warn!(%error, retry_in_ms = crate::report::millis(delay), "webhook job failed; it will run again");
                Err(error)
            }
        }
    }
}

/// Writes the end of the attempt `attempt` of the job `task_id`, held by `holder`, beside
/// the attempt rather than in it: a worker told to stop waits for its running attempts
/// before it lets go of a fetch in flight, whose transaction may hold SQLite's write lock
/// (see [`Ends`]).
fn write_end<D: Dialect>(
    inbox: &Inbox<D>,
    task_id: String,
    holder: (Arc<str>, i64),
    (attempt, held): (u32, Held),
    end: End,
    span: &tracing::Span,
) {
    let queue = inbox.clone();
    let write = async move {
        let _held = held;
        let holder = (&*holder.0, holder.1);
        match settle(|| queue.end_job(&task_id, holder, attempt, &end)).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!("webhook job taken back from this worker while it ran; its end is written by the run that holds it"),
            // It stays with this worker: taken back, and run again, once the worker stops
            // or its heartbeat lapses.
            Err(err) => tracing::error!(error = %err, "could not write the end of the webhook job"),
        }
    };
    inbox.ends.spawn(write.instrument(span.clone()));
}

/// Puts the job `task_id`, fetched by `me` but not started, back in the queue as it was, for
/// any worker: beside the attempt, as an end is.
fn put_back<D: Dialect>(
    inbox: &Inbox<D>,
    task_id: String,
    me: Arc<str>,
    span: tracing::Span,
    held: Held,
) {
    let queue = inbox.clone();
    let put_back = async move {
        let _held = held;
        if let Err(err) = settle(|| queue.unfetch_job(&task_id, &me)).await {
            tracing::error!(error = %err, "could not put the webhook job back; it goes back once this worker stops or its heartbeat lapses");
        }
    };
    inbox.ends.spawn(put_back.instrument(span));
}

/// How long a stopping worker waits for the ends of its attempts to be written.
const ENDS_WAIT: Duration = Duration::from_secs(30);

/// The ends of attempts being written, shared by an inbox's clones: a worker that stops
/// waits for them before it puts back what it fetched.
///
/// A worker told to stop waits for its running attempts before apalis lets go of the fetch
/// it may have in flight. On SQLite that fetch's transaction can hold the file's write lock
/// meanwhile: an end written inside the attempt would wait for it, and the worker for the
/// attempt, for ever. Written beside the attempt, the end waits only until the worker has
/// stopped fetching.
#[derive(Debug, Default)]
pub(crate) struct Ends {
    pending: std::sync::atomic::AtomicUsize,
    written: tokio::sync::Notify,
}

impl Ends {
    /// Writes an end in the background.
    fn spawn(self: &Arc<Self>, write: impl Future<Output = ()> + Send + 'static) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        let ends = Arc::clone(self);
        tokio::spawn(async move {
            write.await;
            if ends.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                ends.written.notify_waiters();
            }
        });
    }

    /// Waits until no end is being written, for at most [`ENDS_WAIT`]: the database may be
    /// gone for good. What is not written by then stays with this worker, and goes back to
    /// the queue once its heartbeat lapses.
    pub(crate) async fn wait_a_while(&self) {
        if tokio::time::timeout(ENDS_WAIT, self.wait()).await.is_err() {
            tracing::warn!(
                pending = self.pending.load(Ordering::Acquire),
                "stopped before the ends of some webhook jobs were written; they run again once this worker's heartbeat lapses"
            );
        }
    }

    /// Waits until no end is being written.
    async fn wait(&self) {
        loop {
            let written = self.written.notified();
            let mut written = std::pin::pin!(written);
            written.as_mut().enable();
            if self.pending.load(Ordering::Acquire) == 0 {
                return;
            }
            written.await;
        }
    }
}

/// Runs `write` until it is done or fails for good: the end of a job must reach the queue,
/// or the job stays held by this worker until it stops. While the database is unavailable,
/// a worker has nothing else to do.
async fn settle<T, F, Fut>(mut write: F) -> Result<T, InboxError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, InboxError>>,
{
    let mut pause = Duration::from_millis(50);
    loop {
        match write().await {
            Err(err) if err.kind() == InboxErrorKind::Unavailable => {
                tracing::warn!(error = %err, retry_in_ms = crate::report::millis(pause), "could not write to the inbox's queue; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            written => return written,
        }
    }
}

/// The reason a job whose worker died during its last attempt is dead-lettered with.
pub(crate) const WORKER_DIED: &str = "its worker died during the last attempt";

/// How long an attempt may run unless the worker says otherwise: five minutes.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// One attempt of a job, as the worker runs it.
struct Attempt<'a, D: Dialect> {
    inbox: &'a Inbox<D>,
    /// The worker, which holds the job.
    me: &'a str,
    task_id: &'a str,
    /// The job's count of attempts when this attempt started: with `me`, what the handler's
    /// transaction completes the job under.
    fence: i64,
    /// This attempt's number, and how many the job gets.
    number: (u32, u32),
    timeout: Duration,
}

async fn run_once<H, A, D>(handler: &H, stored: &StoredDelivery, attempt: Attempt<'_, D>) -> Ran
where
    H: Handler<A, D::Db>,
    D: Dialect,
{
    let Some(event) = stored.event() else {
        return Ran::Dead("the stored body is not base64".to_owned());
    };
    let event = match H::Payload::from_event(event) {
        Ok(event) => event,
        Err(err) => return Ran::Dead(format!("body does not deserialize: {err}")),
    };
    let job = Job {
        task_id: attempt.task_id.to_owned(),
        attempt: attempt.number.0,
        max_attempts: attempt.number.1,
        layer: stored.layer.clone(),
        received_at: from_epoch_millis(stored.received_at),
        headers: stored.headers(),
    };
    let slot = H::TRANSACTION.then(|| {
        let writers = D::writers(&attempt.inbox.store);
        Slot::new(attempt.inbox.pool.clone(), D::BEGIN, writers)
    });
    // The wait for a writer's turn counts against the attempt's deadline.
    let tx = match &slot {
        Some(slot) => match tokio::time::timeout(attempt.timeout, slot.lend()).await {
            Ok(Ok(tx)) => Some(tx),
            Ok(Err(err)) => return Ran::Failed(format!("the handler's transaction: {err}").into()),
            Err(_) => {
                return Ran::Failed(Box::new(DeadlinePassed(
                    "the attempt's deadline passed before its transaction began".to_owned(),
                )))
            }
        },
        None => None,
    };
    let ran = run_handler(handler, event, job, tx, attempt.timeout).await;
    match slot.map(|slot| slot.take()) {
        None | Some(Taken::NotBegun) => ran,
        Some(Taken::Open(tx)) if matches!(ran, Ran::Done) => {
            let inbox = attempt.inbox;
            let holder = (attempt.me, attempt.fence);
            match inbox
                .complete_in(tx, attempt.task_id, holder, attempt.number.0)
                .await
            {
                Ok(true) => Ran::Committed,
                Ok(false) => Ran::Lost,
                Err(err) => Ran::Failed(Box::new(err)),
            }
        }
        Some(Taken::Open(tx)) => {
            roll_back_checked(tx).await;
            ran
        }
        Some(Taken::StillLent) => Ran::Failed(
            "the handler still held its Tx when it returned: nothing was committed".into(),
        ),
    }
}

/// Runs the handler under the attempt's deadline, catching its panics.
async fn run_handler<H, A, Db>(
    handler: &H,
    event: Event<H::Payload>,
    job: Job,
    tx: Option<Tx<Db>>,
    timeout: Duration,
) -> Ran
where
    H: Handler<A, Db>,
    Db: sqlx::Database,
{
    // A handler that is not an `async fn` runs code of its own when called, before its
    // future: a panic there fails the attempt like one in the future.
    let ran = match std::panic::catch_unwind(AssertUnwindSafe(|| handler.call(event, job, tx))) {
        Ok(future) => {
            match tokio::time::timeout(timeout, AssertUnwindSafe(future).catch_unwind()).await {
                Ok(ran) => ran,
                // The handler's future is dropped here, and its slot freed.
                Err(_) => {
                    return Ran::Failed(Box::new(DeadlinePassed(format!(
                        "the attempt ran past its deadline of {} ms",
                        timeout.as_millis()
                    ))))
                }
            }
        }
        Err(panic) => Err(panic),
    };
    match ran {
        Ok(Ok(())) => Ran::Done,
        Ok(Err(err)) => Ran::Failed(err),
        Err(panic) => Ran::Failed(format!("handler panicked: {}", panic_message(&*panic)).into()),
    }
}

/// An attempt that ran past its deadline: told apart from the handler's own errors in the
/// metrics (`timed_out`).
#[derive(Debug)]
struct DeadlinePassed(String);

impl fmt::Display for DeadlinePassed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for DeadlinePassed {}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string payload")
}
