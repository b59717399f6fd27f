//! [`Inbox`]: the inbox on any [`Dialect`], written once: its settings, its operations, the
//! write the layer makes, and what its workers ask of the queue.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

use super::attempt::{JobService, DEFAULT_ATTEMPT_TIMEOUT};
use super::dialect::Arg::{Int, MaybeText, Secs, Text};
use super::dialect::Dialect;
use super::dialect::{Backend, Pool};
use super::door;
use super::error::{InboxError, InboxErrorKind};
use super::handler::Handler;
use super::job::{Counts, DeadLetter, StoredDelivery};
use super::shared::{self, DeadRow, Orphan, OrphanRow, OrphanTuple};
use super::worker::{self, Worker};
use super::{RetryPolicy, Settings};
use crate::door::{Door, DoorError, Enqueued};
use crate::event::Event;
use crate::store::BoxFuture;
use crate::tx::{roll_back, Open};

/// An inbox: the layer writes each verified delivery to it and answers `202 Accepted` once
/// the write is committed; [workers](Self::worker) run the handler later, with retries.
///
/// One type for every database: [`SqliteInbox`](super::SqliteInbox) is `Inbox<Sqlite>`,
/// [`PostgresInbox`](super::PostgresInbox) is `Inbox<Postgres>`. Code generic over the
/// [`Dialect`] is written once for both; see [the module](super) for what the layer answers.
pub struct Inbox<D: Dialect> {
    pub(crate) pool: Pool<D>,
    pub(crate) settings: Settings,
    /// Where the dedup marks go.
    pub(crate) store: D::Store,
    /// The layer's writes, batched.
    door: Arc<door::Door<D>>,
    /// Tells this process's workers that the door committed jobs.
    wake: Arc<tokio::sync::watch::Sender<u64>>,
    /// The ends of attempts being written by this process's workers.
    pub(crate) ends: Arc<super::ends::Ends>,
    /// The jobs whose attempts this process's workers run.
    pub(crate) running: Arc<super::running::Running>,
}

impl<D: Dialect> Clone for Inbox<D> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            settings: self.settings.clone(),
            store: self.store.clone(),
            door: Arc::clone(&self.door),
            wake: Arc::clone(&self.wake),
            ends: Arc::clone(&self.ends),
            running: Arc::clone(&self.running),
        }
    }
}

impl<D: Dialect> fmt::Debug for Inbox<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(D::NAME)
            .field("queue", &self.settings.queue)
            .field("max_queued", &self.settings.max_queued)
            .finish_non_exhaustive()
    }
}

impl<D: Dialect> Inbox<D> {
    /// The inbox on `pool`, its marks through `store`, with the default settings.
    pub(crate) fn from_parts(pool: Pool<D>, store: D::Store) -> Self {
        let settings = Settings::default();
        let wake = Arc::new(tokio::sync::watch::Sender::new(0));
        Self {
            door: door::door(
                pool.clone(),
                store.clone(),
                settings.clone(),
                Arc::clone(&wake),
            ),
            pool,
            settings,
            store,
            wake,
            ends: Arc::default(),
            running: Arc::default(),
        }
    }

    /// This inbox with a door of its settings: the door writes with the settings it was
    /// made with.
    fn with_door(mut self) -> Self {
        let (pool, store) = (self.pool.clone(), self.store.clone());
        let wake = Arc::clone(&self.wake);
        self.door = door::door(pool, store, self.settings.clone(), wake);
        self
    }

    /// Wakes when the door of this inbox, in this process, commits jobs.
    pub(crate) fn wakeups(&self) -> tokio::sync::watch::Receiver<u64> {
        self.wake.subscribe()
    }

    /// Writes to and works on the queue `name` (default
    /// [`DEFAULT_QUEUE`](super::DEFAULT_QUEUE)): one database can hold an inbox per sender,
    /// each with its own workers.
    #[must_use]
    pub fn with_queue(mut self, name: &str) -> Self {
        self.settings.queue = Arc::from(name);
        self.with_door()
    }

    /// Answers 429 with `Retry-After` while the queue holds `jobs` waiting or running
    /// already (default [`DEFAULT_MAX_QUEUED`](super::DEFAULT_MAX_QUEUED)): it never holds
    /// more, however many deliveries arrive at once, from this process or from others on
    /// the same database (the check is part of each delivery's transaction).
    #[must_use]
    pub fn with_max_queued(mut self, jobs: u64) -> Self {
        self.settings.max_queued = jobs;
        self.with_door()
    }

    /// How failed jobs are retried. The number of attempts is written with each job as it
    /// is queued.
    #[must_use]
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.settings.retry = policy;
        self.with_door()
    }

    /// How often workers tell the queue they are alive (default
    /// [`DEFAULT_HEARTBEAT`](super::DEFAULT_HEARTBEAT), at least a second). A worker silent
    /// for twice that is taken for dead, and its jobs run again.
    #[must_use]
    pub fn with_heartbeat(mut self, every: Duration) -> Self {
        self.settings.heartbeat = shared::heartbeat(every);
        self
    }

    /// How often an idle worker looks for jobs when nothing wakes it (default
    /// [`DEFAULT_POLL_INTERVAL`](super::DEFAULT_POLL_INTERVAL), at least 10 ms). Workers
    /// are woken at once by jobs this process's door commits and, on PostgreSQL, by jobs
    /// any process commits (`LISTEN`/`NOTIFY`); the look finds the rest, such as failed
    /// jobs whose backoff has ended.
    #[must_use]
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.settings.poll_interval = every.max(Duration::from_millis(10));
        self
    }

    /// Writes the dedup marks through `store`: the store an inline layer beside the inbox
    /// uses (its clock, its table), so that both see each other's marks. It must be on this
    /// inbox's database, its table created.
    #[must_use]
    pub fn with_store(mut self, store: D::Store) -> Self {
        self.store = store;
        self.with_door()
    }

    /// The store the dedup marks go through, on the same database: for layers that handle
    /// inline beside the inbox.
    pub fn store(&self) -> D::Store {
        self.store.clone()
    }

    /// The pool the inbox runs on.
    pub fn pool(&self) -> &Pool<D> {
        &self.pool
    }

    /// A worker that runs `handler` on this inbox's jobs. See [`Worker`].
    pub fn worker<H, A>(&self, handler: H) -> Worker<D, H, A>
    where
        H: Handler<A, D::Db>,
        A: 'static,
    {
        Worker::new(self.clone(), handler)
    }

    /// The apalis storage of this inbox's queue, fetching up to `batch` jobs at a time: with
    /// [`service`](Self::service) and [`watch`](Self::watch), the pieces of a worker built
    /// with apalis's own `WorkerBuilder` and layers. [`worker`](Self::worker) is made of them.
    ///
    /// ```no_run
    /// # async fn run(inbox: tower_webhook::inbox::SqliteInbox) -> Result<(), Box<dyn std::error::Error>> {
    /// use apalis_core::worker::builder::WorkerBuilder;
    /// use tower::limit::ConcurrencyLimitLayer;
    /// use tower_webhook::Event;
    ///
    /// let name = "billing-worker-1"; // unique among running workers
    /// let worker = WorkerBuilder::new(name)
    ///     .backend(inbox.storage(8))
    ///     .layer(ConcurrencyLimitLayer::new(8))
    ///     .build(inbox.service(name, |event: Event| async move {
    ///         println!("handled {}", event.id());
    ///         Ok::<_, std::io::Error>(())
    ///     }));
    /// // Takes back the jobs of workers that died, while this one runs.
    /// tokio::spawn({
    ///     let inbox = inbox.clone();
    ///     async move { inbox.watch(name).await }
    /// });
    /// worker.run().await?;
    /// inbox.release(name).await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn storage(&self, batch: usize) -> <D as Backend>::Storage {
        D::storage(&self.pool, &self.settings, batch.max(1), self.wakeups())
    }

    /// The service that runs `handler` on this inbox's jobs, for the worker named `worker`
    /// (the name given to apalis's `WorkerBuilder`): each attempt under
    /// [`DEFAULT_ATTEMPT_TIMEOUT`] unless told otherwise. See [`storage`](Self::storage).
    pub fn service<H, A>(&self, worker: &str, handler: H) -> JobService<H, A, D>
    where
        H: Handler<A, D::Db>,
        A: 'static,
    {
        JobService::new(
            worker,
            Arc::new(handler),
            self.clone(),
            DEFAULT_ATTEMPT_TIMEOUT,
        )
    }

    /// Every heartbeat, takes back the jobs of workers other than `worker` whose heartbeat
    /// lapsed twice, and the jobs `worker` holds running but runs no attempt of (its start
    /// or end lost with a connection): run it beside a worker of your own making, on this
    /// inbox or a clone of the one its [`service`](Self::service) came from (they share the
    /// attempts in flight). Never returns.
    pub async fn watch(&self, worker: &str) {
        match worker::watch(self.clone(), worker.to_owned()).await {}
    }

    /// Waits (up to 30 s) for the ends of the attempts this process's workers ran to be
    /// written, then puts back the jobs the stopped worker `worker` fetched but never
    /// started.
    pub async fn release(&self, worker: &str) {
        self.ends.wait_a_while().await;
        worker::release(self, worker.to_owned()).await;
    }

    /// How many jobs the queue holds, by state.
    pub async fn counts(&self) -> Result<Counts, InboxError> {
        let args = [Text(&self.settings.queue)];
        let counts: Vec<(i64, i64, i64, i64, i64)> =
            D::fetch(&self.pool, D::SQL.counts, &args).await?;
        Ok(shared::counts(
            counts.into_iter().next().unwrap_or_default(),
        ))
    }

    /// The dead-lettered jobs, the most recent first, at most `limit`.
    pub async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, InboxError> {
        let args = [Text(&self.settings.queue), Int(i64::from(limit))];
        let rows: Vec<DeadRow> = D::fetch(&self.pool, D::SQL.dead, &args).await?;
        Ok(rows
            .into_iter()
            .map(|(id, job, attempts, last)| DeadLetter::from_row(id, &job, attempts, last))
            .collect())
    }

    /// Queues the dead-lettered job `task_id` again, with all its attempts; whether there
    /// was such a job.
    pub async fn replay(&self, task_id: &str) -> Result<bool, InboxError> {
        Ok(self.replay_where(Some(task_id)).await? == 1)
    }

    /// Queues every dead-lettered job again; how many.
    pub async fn replay_all(&self) -> Result<u64, InboxError> {
        self.replay_where(None).await
    }

    async fn replay_where(&self, task_id: Option<&str>) -> Result<u64, InboxError> {
        let queue = &*self.settings.queue;
        let args = [Text(queue), MaybeText(task_id)];
        let replayed = D::execute(&self.pool, D::SQL.replay, &args).await?;
        self.count_replayed(replayed).await?;
        Ok(replayed)
    }

    /// Counts `replayed` jobs against the bound, as new ones are.
    pub(crate) async fn count_replayed(&self, replayed: u64) -> Result<(), InboxError> {
        let added = Int(i64::try_from(replayed).unwrap_or(i64::MAX));
        let args = [Text(&self.settings.queue), added];
        D::execute(&self.pool, D::SQL.bump_depth, &args).await?;
        Ok(())
    }

    /// Deletes finished jobs older than `age`, and expired dedup marks; how many jobs. Run
    /// it now and then (hourly): finished jobs only take room.
    pub async fn purge(&self, age: Duration) -> Result<u64, InboxError> {
        let args = [Text(&self.settings.queue), Secs(age)];
        let purged = D::execute(&self.pool, D::SQL.purge, &args).await?;
        D::cleanup(&self.store).await?;
        Ok(purged)
    }

    /// Writes the end of an attempt whose handler committed no transaction: the job
    /// `task_id` done, or failed, while `me` still holds the attempt it started with `fence`
    /// attempts. Whether it did: `false` where the job was taken back meanwhile (the run
    /// that holds it now writes its own end). The holder is cleared with it.
    ///
    /// The worker writes every end itself, rather than apalis: apalis's are guarded by the
    /// worker's name only, and one written late (they go out in batches) would land on the
    /// next attempt of the same job, fetched again by the same worker.
    pub(crate) async fn end_job(
        &self,
        task_id: &str,
        (me, fence): (&str, i64),
        attempt: u32,
        end: &End,
    ) -> Result<bool, InboxError> {
        let attempt = Int(i64::from(attempt));
        let head = [Text(task_id), Text(me), Int(fence), attempt];
        let ended = match end {
            End::Done => D::execute(&self.pool, D::SQL.complete, &head).await?,
            End::Failed {
                killed,
                reason,
                delay,
            } => {
                let status = if *killed { "Killed" } else { "Failed" };
                let result = shared::result(reason);
                let mut args = head.to_vec();
                args.extend([Text(status), Text(&result), Secs(*delay)]);
                D::execute(&self.pool, D::SQL.finish, &args).await?
            }
        };
        Ok(ended == 1)
    }

    /// Puts the job `task_id`, fetched by `me` but not started, back in the queue as it
    /// was; whether it was there.
    pub(crate) async fn unfetch_job(&self, task_id: &str, me: &str) -> Result<bool, InboxError> {
        Ok(self.unfetch(me, Some(task_id)).await? == 1)
    }

    /// Puts the jobs `me` fetched but never started (`task_id` alone, or every one) back,
    /// attempts unchanged: how many.
    async fn unfetch(&self, me: &str, task_id: Option<&str>) -> Result<u64, InboxError> {
        let args = [Text(&self.settings.queue), Text(me), MaybeText(task_id)];
        D::execute(&self.pool, D::SQL.unfetch, &args).await
    }

    /// Marks the job `task_id`, fetched by `me`, as running, before its handler starts: its
    /// count of attempts (with `me`, the fence of its completion), or `None` when `me` no
    /// longer holds it. Written before the handler starts (apalis's own mark, turned off,
    /// came after), so that a handler that takes its process down still has its attempt
    /// counted, and a poison job uses its attempts up.
    pub(crate) async fn start_job(
        &self,
        task_id: &str,
        me: &str,
    ) -> Result<Option<i64>, InboxError> {
        let args = [Text(task_id), Text(me)];
        let rows: Vec<(i64,)> = D::fetch(&self.pool, D::SQL.start, &args).await?;
        Ok(rows.first().map(|&(attempts,)| attempts))
    }

    /// Writes the job `task_id` done by attempt `attempt` in `tx`, the handler's
    /// transaction, while `me` still holds the attempt it started with `fence` attempts, and
    /// commits: `false` (rolled back) where it does not. The job's holder is cleared with it:
    /// the end of an attempt taken over, guarded by the holder, then leaves the job as it is.
    pub(crate) async fn complete_in(
        &self,
        tx: Open<D::Db>,
        task_id: &str,
        (me, fence): (&str, i64),
        attempt: u32,
    ) -> Result<bool, InboxError> {
        let mut tx = tx.or_roll_back().await.map_err(|err| {
            err.map_or_else(
                || InboxError::new(InboxErrorKind::Worker, crate::tx::EndedByHandler),
                D::error,
            )
        })?;
        let attempt = i64::from(attempt);
        let args = [Text(task_id), Text(me), Int(fence), Int(attempt)];
        match D::execute_on(&mut tx, D::SQL.complete, &args).await {
            Ok(1) => {}
            held => {
                roll_back(tx).await;
                return held.map(|_| false);
            }
        }
        let Err(err) = tx.commit().await else {
            return Ok(true);
        };
        // The commit's answer was lost, not necessarily the commit: the job says which.
        let args = [Text(task_id), Int(attempt)];
        match D::fetch::<(i64,)>(&self.pool, D::SQL.done, &args).await {
            Ok(rows) if !rows.is_empty() => Ok(true),
            _ => Err(D::error(err)),
        }
    }

    /// Tells the queue that the worker `me` is alive. apalis's own heartbeat goes with its
    /// fetches, which stop while every one of the worker's slots is busy: a worker whose jobs
    /// all waited for a turn among the handlers' transactions (or simply ran long) fell
    /// silent and was taken for dead, its jobs run again.
    pub(crate) async fn keep_alive(&self, me: &str) -> Result<u64, InboxError> {
        let args = [Text(&self.settings.queue), Text(me)];
        D::execute(&self.pool, D::SQL.alive, &args).await
    }

    /// Takes back the jobs of workers silent for `dead_after`, other than `me`.
    pub(crate) async fn sweep_jobs(
        &self,
        me: &str,
        dead_after: Duration,
    ) -> Result<u64, InboxError> {
        let queue = &*self.settings.queue;
        let args = [Text(queue), Text(me), Secs(dead_after)];
        let mut taken = 0;
        let rows: Vec<OrphanTuple> = D::fetch(&self.pool, D::SQL.orphans, &args).await?;
        for row in rows.into_iter().map(OrphanRow::from) {
            let retry = self.settings.retry;
            let fate = Orphan::of(&row.status, row.attempts, row.max_attempts, retry);
            taken += self.take_back(&row, &fate).await?;
        }
        self.restore_abandoned().await?;
        Ok(taken)
    }

    /// Writes `fate` on the job of `row`, while its holder still holds it (of two workers
    /// sweeping at once, one takes it): how many jobs it took back.
    async fn take_back(&self, row: &OrphanRow, fate: &Orphan) -> Result<u64, InboxError> {
        let (id, holder) = (Text(&row.id), Text(&row.holder));
        let (sql, args) = match fate {
            Orphan::Unfetch => (
                D::SQL.unfetch,
                vec![Text(&self.settings.queue), holder, MaybeText(Some(&row.id))],
            ),
            Orphan::Dead(reason) => (D::SQL.orphan_dead, vec![id, holder, Text(reason)]),
            Orphan::Retry { reason, delay } => (
                D::SQL.orphan_retry,
                vec![id, holder, Text(reason), Secs(*delay)],
            ),
        };
        D::execute(&self.pool, sql, &args).await
    }

    /// Takes back the jobs `me` holds running, started `older` ago or more, that no attempt
    /// of this process runs: their start committed as its connection failed, or their end
    /// could not be written, and `me`, alive, would hold them for as long as it lives (its
    /// heartbeat never lapses). Each counts the attempt, as any takeover does.
    pub(crate) async fn sweep_stranded(
        &self,
        me: &str,
        older: Duration,
    ) -> Result<u64, InboxError> {
        let queue = &*self.settings.queue;
        let args = [Text(queue), Text(me), Secs(older)];
        let rows: Vec<OrphanTuple> = D::fetch(&self.pool, D::SQL.stranded, &args).await?;
        let mut taken = 0;
        for row in rows.into_iter().map(OrphanRow::from) {
            if self.running.contains(&row.id) {
                continue;
            }
            let fate = Orphan::lost(row.attempts, row.max_attempts, self.settings.retry);
            taken += self.take_back(&row, &fate).await?;
        }
        Ok(taken)
    }

    /// Puts the jobs `me` fetched but never started back, attempts unchanged.
    pub(crate) async fn unfetch_jobs(&self, me: &str) -> Result<u64, InboxError> {
        let unfetched = self.unfetch(me, None).await?;
        Ok(unfetched + self.restore_abandoned().await?)
    }

    /// Takes back the attempt apalis adds to a job fetched but not started when its worker
    /// stops: the job never ran.
    async fn restore_abandoned(&self) -> Result<u64, InboxError> {
        let args = [Text(&self.settings.queue), Text(shared::ABANDONED)];
        D::execute(&self.pool, D::SQL.unmark_abandoned, &args).await
    }
}

/// How an attempt ended, as [`Inbox::end_job`] writes it.
#[derive(Debug, Clone)]
pub(crate) enum End {
    Done,
    /// Failed for `reason`: dead-lettered at once where `killed`, else run again after
    /// `delay` while the job has attempts left, dead-lettered after its last.
    Failed {
        killed: bool,
        reason: String,
        delay: Duration,
    },
}

impl<D: Dialect> Door for Inbox<D> {
    fn enqueue(
        &self,
        event: &Event,
        key: &str,
        layer: &str,
        headers: &HeaderMap,
        scheme: &dyn crate::scheme::Scheme,
        window: Duration,
    ) -> BoxFuture<Result<Enqueued, DoorError>> {
        if self.settings.max_queued == 0 {
            return Box::pin(async { Ok(Enqueued::Full) });
        }
        let stored = StoredDelivery::new(event, key, layer, headers, scheme);
        let door = Arc::clone(&self.door);
        Box::pin(async move {
            let answer = door.call(door::Entry { stored, window }).await;
            Ok(answer.unwrap_or_else(|_| Err(door::unanswered()))?)
        })
    }
}
