//! One attempt of a job: the handler under its deadline, and what becomes of the job.

use std::error::Error;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use tracing::Instrument as _;

use super::dialect::Dialect;
use super::ends::write_end;
use super::handler::{BoxError, Handler};
use super::job::{from_epoch_millis, Job, Payload, StoredDelivery};
use super::lease::Fate;
use super::meter;
use super::rows::Taken;
use super::running::Held;
use super::Inbox;
use crate::event::Event;
use crate::tx::{roll_back_checked, Slot, Taken as TxTaken, Tx};

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
    /// No retry can help (a body its type does not fit): dead-lettered at once.
    Dead(String),
}

/// Runs the attempt the worker `me` took of `taken` (counted as running here by `held`)
/// with `handler`, cut at `timeout`, and writes its end.
pub(crate) async fn run<D, H, A>(
    inbox: Inbox<D>,
    handler: Arc<H>,
    me: Arc<str>,
    (mut taken, held): (Taken, Held),
    timeout: Duration,
) where
    D: Dialect,
    H: Handler<A, D::Db>,
    A: 'static,
{
    let retry = inbox.settings.retry;
    let stored = StoredDelivery::read(&taken.delivery, std::mem::take(&mut taken.body));
    let (event_id, layer) = match &stored {
        Some(stored) => (stored.id.clone(), stored.layer.clone()),
        None => (String::new(), String::new()),
    };
    let attempt = u32::try_from(taken.attempt).unwrap_or(u32::MAX);
    let max_attempts = u32::try_from(taken.max_attempts).unwrap_or(u32::MAX);
    let span = tracing::info_span!(
        "webhook_job",
        id = %event_id,
        attempt,
        layer = %layer,
        task = %taken.id,
    );
    let started = std::time::Instant::now();
    let ran = match stored {
        None => Ran::Dead("the stored delivery does not read back".to_owned()),
        Some(stored) => {
            if attempt == 1 {
                let now = crate::clock::unix_millis_i64(std::time::SystemTime::now());
                let waited = now.saturating_sub(stored.received_at);
                let waited = u64::try_from(waited).unwrap_or(0);
                meter::start_delay(&stored.layer, Duration::from_millis(waited));
            }
            let attempt = Attempt {
                inbox: &inbox,
                me: &me,
                task_id: &taken.id,
                number: (attempt, max_attempts),
                timeout,
            };
            run_once(&*handler, &stored, attempt)
                .instrument(span.clone())
                .await
        }
    };
    let delay = retry.delay_after(attempt);
    meter::attempt(
        &layer,
        ran.outcome(attempt >= max_attempts),
        started.elapsed(),
    );
    let _entered = span.enter();
    if let Some(fate) = ran.fate(attempt >= max_attempts, delay) {
        write_end(&inbox, taken.id, (me, taken.attempt), (fate, held), &span);
    }
    ran.report((attempt, max_attempts), delay);
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

    /// The fate the worker writes for this outcome (none where the handler's transaction
    /// wrote it, or the job is no longer this attempt's): a failure run again after
    /// `delay`, or dead-lettered where it was the `last` attempt.
    fn fate(&self, last: bool, delay: Duration) -> Option<Fate> {
        match self {
            Self::Done => Some(Fate::Done),
            Self::Committed | Self::Lost => None,
            Self::Failed(error) if last => Some(Fate::Dead(error.to_string())),
            Self::Failed(error) => Some(Fate::Retry {
                error: error.to_string(),
                delay,
            }),
            Self::Dead(reason) => Some(Fate::Dead(reason.clone())),
        }
    }

    /// Logs the outcome of attempt `attempt` of `max_attempts`.
    fn report(self, (attempt, max_attempts): (u32, u32), delay: Duration) {
        match self {
            Ran::Lost => {
                // Its lease lapsed and the job was taken back while the handler ran:
                // nothing of this run committed, and the run that holds the job now does
                // the work.
                tracing::warn!("webhook job taken back from this worker while it ran; its transaction rolled back");
            }
            Ran::Done | Ran::Committed => tracing::info!("webhook job handled"),
            Ran::Dead(error) => {
                tracing::error!(%error, "webhook job dead-lettered at once: no retry can help");
            }
            Ran::Failed(error) if attempt >= max_attempts => {
                tracing::error!(%error, "webhook job failed its last attempt; dead-lettered");
            }
            Ran::Failed(error) => {
                tracing::warn!(%error, retry_in_ms = crate::pipeline::report::millis(delay), "webhook job failed; it will run again");
            }
        }
    }
}

/// How long an attempt may run unless the worker says otherwise: five minutes.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// One attempt of a job, as the worker runs it.
struct Attempt<'a, D: Dialect> {
    inbox: &'a Inbox<D>,
    /// The worker, which holds the job.
    me: &'a str,
    task_id: &'a str,
    /// This attempt's number, and how many the job gets.
    number: (u32, u32),
    timeout: Duration,
}

async fn run_once<H, A, D>(handler: &H, stored: &StoredDelivery, attempt: Attempt<'_, D>) -> Ran
where
    H: Handler<A, D::Db>,
    D: Dialect,
{
    let event = match H::Payload::from_event(stored.event()) {
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
        None | Some(TxTaken::NotBegun) => ran,
        Some(TxTaken::Open(tx)) if matches!(ran, Ran::Done) => {
            let holder = (attempt.me, i64::from(attempt.number.0));
            match attempt.inbox.complete_in(tx, attempt.task_id, holder).await {
                Ok(true) => Ran::Committed,
                Ok(false) => Ran::Lost,
                Err(err) => Ran::Failed(Box::new(err)),
            }
        }
        Some(TxTaken::Open(tx)) => {
            roll_back_checked(tx).await;
            ran
        }
        Some(TxTaken::StillLent) => Ran::Failed(
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
