//! One attempt of a job: the service apalis calls, the handler under its deadline, and
//! what becomes of the job.

use std::error::Error;
use std::fmt;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis_core::error::AbortError;
use apalis_core::task::Task;
use futures_util::FutureExt as _;
use tower_service::Service;
use tracing::Instrument as _;

use super::dialect::Dialect;
use super::ends::{put_back, write_end};
use super::handler::{BoxError, Handler};
use super::job::{from_epoch_millis, Job, Payload, StoredDelivery};
use super::meter;
use super::queue::End;
use super::Inbox;
use crate::event::Event;
use crate::store::BoxFuture;
use crate::tx::{roll_back_checked, Slot, Taken, Tx};

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
    /// [`Worker::attempt_timeout`](super::Worker::attempt_timeout) does.
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
