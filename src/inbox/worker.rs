//! Workers: run the user's handler on each job, with retries, backoff and a dead-letter.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{select, Either};
use tokio::sync::Semaphore;

use super::attempt::DEFAULT_ATTEMPT_TIMEOUT;
use super::dialect::Dialect;
use super::error::InboxError;
use super::handler::Handler;
use super::meter;
use super::Inbox;

impl<D: Dialect> Inbox<D> {
    /// A worker that runs `handler` on this inbox's jobs. See [`Worker`].
    pub fn worker<H, A>(&self, handler: H) -> Worker<D, H, A>
    where
        H: Handler<A, D::Db>,
        A: 'static,
    {
        Worker::new(self.clone(), handler)
    }
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

    /// Names the worker: the holder of the jobs it runs, in the attempts' records and its
    /// logs. Names must be unique among running workers; the default is made unique from
    /// the process id.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Runs until the process ends.
    pub async fn run(self) -> Result<(), InboxError> {
        self.run_until(std::future::pending()).await
    }

    /// Runs until `signal` resolves (Ctrl-C, say), then stops taking jobs and waits for the
    /// running ones to finish and their ends to be written.
    ///
    /// A database that fails under the worker (busy, restarting, unreachable) stops
    /// nothing: the worker looks again after a pause, and the attempts running go on to
    /// their ends, written once the database answers.
    pub async fn run_until(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), InboxError> {
        let name: Arc<str> = Arc::from(self.name.unwrap_or_else(unique_name));
        let inbox = self.inbox;
        let signal = Box::pin(signal);
        let mut held_back = D::writers(&inbox.store).hold_back();
        if held_back.short > 0 {
            tracing::warn!(
                max_connections = inbox.pool.options().get_max_connections(),
                "the inbox's pool is too small for its running workers: each holds {} \
                 connection besides its handlers' transactions, and 3 are kept for the door, \
                 takes and lease renewals; size the pool as 3 + {} per worker + the `Tx` \
                 handlers to run at once",
                crate::store::writers::Writers::PER_WORKER,
                crate::store::writers::Writers::PER_WORKER,
            );
        }
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let taking = take_jobs(
            &inbox,
            (&name, &slots, stopped),
            (&self.handler, self.timeout),
        );
        let stopping = async move {
            signal.await;
            let _ = stop.send(true);
        };
        let sweeping = watch(inbox.clone(), Arc::clone(&name));
        let listening = D::listen(&inbox.pool, &inbox.settings.queue, Arc::clone(&inbox.wake));
        // The turns held back are taken as the handlers' transactions end, beside the rest;
        // once held, they are kept until the worker stops.
        let beside = async {
            futures_util::future::join3(sweeping, listening, held_back.hold()).await;
        };
        let all = u32::try_from(self.concurrency).unwrap_or(u32::MAX);
        let working = async {
            futures_util::future::join(taking, stopping).await;
            // Stopped taking jobs: wait for the attempts running, then for their ends, their
            // leases renewed meanwhile (a handler may run longer than a lease).
            let _ = slots.acquire_many(all).await;
            inbox.ends.wait_a_while().await;
        };
        let _ = select(std::pin::pin!(working), std::pin::pin!(beside)).await;
        drop(held_back);
        Ok(())
    }
}

/// Takes the jobs due whenever the worker `me` has free `slots`, and runs each in a task of
/// its own with `handler` under `timeout`, as soon as the door commits (in this process,
/// or on PostgreSQL in any) or every poll interval. Never ends.
async fn take_jobs<D, H, A>(
    inbox: &Inbox<D>,
    (me, slots, mut stop): (&Arc<str>, &Arc<Semaphore>, Stop),
    (handler, timeout): (&Arc<H>, Duration),
) where
    D: Dialect,
    H: Handler<A, D::Db>,
    A: 'static,
{
    let mut wakeups = inbox.wakeups();
    let mut pause = PAUSE;
    loop {
        let Some(Ok(first)) = until_stopped(&mut stop, Arc::clone(slots).acquire_owned()).await
        else {
            return;
        };
        let mut permits = vec![first];
        while let Ok(permit) = Arc::clone(slots).try_acquire_owned() {
            permits.push(permit);
        }
        wakeups.borrow_and_update();
        // Never cut short by the stop: a take cancelled as it commits would leave its jobs
        // running and held by no attempt until their lease lapsed.
        let taken = match inbox.take(me, permits.len()).await {
            Ok(taken) => {
                pause = PAUSE;
                taken
            }
            Err(err) => {
                // Busy, restarting, unreachable: look again after a pause, longer each time.
                tracing::warn!(error = %err, retry_in_ms = crate::pipeline::report::millis(pause), "could not take jobs from the inbox's queue; trying again");
                drop(permits);
                if until_stopped(&mut stop, tokio::time::sleep(pause))
                    .await
                    .is_none()
                {
                    return;
                }
                pause = (pause * 2).min(MAX_PAUSE);
                continue;
            }
        };
        let all_slots_filled = taken.len() == permits.len();
        for (job, permit) in taken.into_iter().zip(permits.drain(..)) {
            let held = inbox.running.enter(&job.id, me);
            let attempt = super::attempt::run(
                inbox.clone(),
                Arc::clone(handler),
                Arc::clone(me),
                (job, held),
                timeout,
            );
            tokio::spawn(async move {
                attempt.await;
                drop(permit);
            });
        }
        drop(permits);
        if !all_slots_filled {
            // Nothing more is due: wait for a commit, or the next look.
            let look = tokio::time::timeout(inbox.settings.poll_interval, wakeups.changed());
            if until_stopped(&mut stop, look).await.is_none() {
                return;
            }
        }
    }
}

/// Turns true when the worker is told to stop.
type Stop = tokio::sync::watch::Receiver<bool>;

/// What `future` gives, unless the worker is told to stop first.
async fn until_stopped<F: Future>(stop: &mut Stop, future: F) -> Option<F::Output> {
    let stopped = stop.wait_for(|stopped| *stopped);
    match select(std::pin::pin!(future), std::pin::pin!(stopped)).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(_) => None,
    }
}

/// The first pause after the queue failed under a worker; it doubles up to [`MAX_PAUSE`].
const PAUSE: Duration = Duration::from_millis(100);
/// The longest pause between two looks at a queue that fails.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Every heartbeat, renews the leases of the attempts the worker `me` runs, and takes back
/// the jobs whose lease lapsed (their worker died, or runs them no more). Never ends: run
/// beside the worker.
async fn watch<D: Dialect>(inbox: Inbox<D>, me: Arc<str>) {
    let every = inbox.settings.heartbeat;
    loop {
        inbox.running.tick(&me);
        if let Err(err) = inbox.renew(&me).await {
            tracing::warn!(error = %err, "could not renew the leases of this worker's jobs");
        }
        match inbox.sweep().await {
            Ok(0) => {}
            Ok(jobs) => tracing::warn!(
                jobs,
                "took back jobs whose lease lapsed (their worker died, or lost them)"
            ),
            Err(err) => tracing::warn!(error = %err, "could not look for jobs whose lease lapsed"),
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
