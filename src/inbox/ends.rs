//! The ends of attempts, and the put-backs of jobs not started, written beside the attempts
//! and waited for when a worker stops.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument as _;

use super::dialect::Dialect;
use super::error::{InboxError, InboxErrorKind};
use super::queue::End;
use super::running::Held;
use super::Inbox;

/// Writes the end of the attempt `attempt` of the job `task_id`, held by `holder`, beside
/// the attempt rather than in it: a worker told to stop waits for its running attempts
/// before it lets go of a fetch in flight, whose transaction may hold SQLite's write lock
/// (see [`Ends`]).
pub(crate) fn write_end<D: Dialect>(
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
pub(crate) fn put_back<D: Dialect>(
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
