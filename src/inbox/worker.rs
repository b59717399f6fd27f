//! Workers: run the user's handler on each job, with retries, backoff and a dead-letter.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::FutureExt as _;

use super::attempt::{JobService, DEFAULT_ATTEMPT_TIMEOUT};
use super::dialect::Dialect;
use super::error::InboxError;
use super::handler::Handler;
use super::meter;
use super::Inbox;

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
/// twice, and those `me` holds running but runs no attempt of. Never ends: run it beside the
/// worker `me`.
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
