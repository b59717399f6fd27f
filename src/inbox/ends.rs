//! The ends of attempts, written beside the attempts and waited for when a worker stops.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument as _;

use super::dialect::Dialect;
use super::error::{InboxError, InboxErrorKind};
use super::lease::Fate;
use super::running::Held;
use super::Inbox;

/// Writes `fate` as the end of attempt `attempt` of the job `task_id`, held by `me`, beside
/// the attempt: retried while the database is unavailable (the attempt's slot is free
/// meanwhile), and waited for when the worker stops. The job counts as running here, its
/// lease renewed, until its end is written.
pub(crate) fn write_end<D: Dialect>(
    inbox: &Inbox<D>,
    task_id: String,
    (me, attempt): (Arc<str>, i64),
    (fate, held): (Fate, Held),
    span: &tracing::Span,
) {
    let queue = inbox.clone();
    let write = async move {
        let _held = held;
        match until_written(|| queue.end_job(&task_id, (&me, attempt), &fate)).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!("webhook job taken back from this worker while it ran; its end is written by the run that holds it"),
            // Its lease lapses once this worker stops renewing it: taken back, and run
            // again.
            Err(err) => tracing::error!(error = %err, "could not write the end of the webhook job"),
        }
    };
    inbox.ends.spawn(write.instrument(span.clone()));
}

/// How long a stopping worker waits for the ends of its attempts to be written.
const ENDS_WAIT: Duration = Duration::from_secs(30);

/// The ends of attempts being written, shared by an inbox's clones: a worker that stops
/// waits for them.
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
    /// gone for good. What is not written by then goes back to the queue once its lease
    /// lapses.
    pub(crate) async fn wait_a_while(&self) {
        if tokio::time::timeout(ENDS_WAIT, self.wait()).await.is_err() {
            tracing::warn!(
                pending = self.pending.load(Ordering::Acquire),
                "stopped before the ends of some webhook jobs were written; they run again once their leases lapse"
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
/// or the job runs again once its lease lapses. While the database is unavailable,
/// a worker has nothing else to do.
async fn until_written<T, F, Fut>(mut write: F) -> Result<T, InboxError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, InboxError>>,
{
    let mut pause = Duration::from_millis(50);
    loop {
        match write().await {
            Err(err) if err.kind() == InboxErrorKind::Unavailable => {
                tracing::warn!(error = %err, retry_in_ms = crate::pipeline::report::millis(pause), "could not write to the inbox's queue; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            written => return written,
        }
    }
}
