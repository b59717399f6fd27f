//! [`Inbox`]: the inbox on any [`Dialect`], written once: its settings, its operations, the
//! write the layer makes, and what its workers ask of the queue.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

use super::dialect::Arg::{Int, MaybeText, Text};
use super::dialect::{self, Dialect, Pool};
use super::door;
use super::error::InboxError;
use super::job::{Counts, DeadLetter, StoredDelivery};
use super::rows::{CountsRow, DeadRow};
use super::sql;
use super::{RetryPolicy, Settings};
use crate::event::Event;
use crate::pipeline::handoff::{Enqueued, Handoff, HandoffError};
use crate::store::BoxFuture;

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
    pub(crate) wake: Arc<tokio::sync::watch::Sender<u64>>,
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

    /// How often workers renew the leases of the attempts they run, and take back the jobs
    /// whose lease lapsed (default [`DEFAULT_HEARTBEAT`](super::DEFAULT_HEARTBEAT), at least
    /// a second). A lease lasts twice that: a job whose worker died, or runs it no more, is
    /// taken back and runs again.
    #[must_use]
    pub fn with_heartbeat(mut self, every: Duration) -> Self {
        self.settings.heartbeat = every.max(Duration::from_secs(1));
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

    /// How many jobs the queue holds, by state.
    pub async fn counts(&self) -> Result<Counts, InboxError> {
        let args = [Text(&self.settings.queue)];
        let rows: Vec<CountsRow> = dialect::fetch::<D, _>(&self.pool, D::SQL.counts, &args).await?;
        Ok(rows
            .into_iter()
            .next()
            .map(Counts::from)
            .unwrap_or_default())
    }

    /// The dead-lettered jobs, the most recent first, at most `limit`.
    pub async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, InboxError> {
        let args = [Text(&self.settings.queue), Int(i64::from(limit))];
        let rows: Vec<DeadRow> = dialect::fetch::<D, _>(&self.pool, D::SQL.dead, &args).await?;
        Ok(rows.into_iter().map(DeadLetter::from).collect())
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
        let replayed = dialect::execute::<D>(&self.pool, D::SQL.replay, &args).await?;
        self.count_replayed(replayed).await?;
        Ok(replayed)
    }

    /// Counts `replayed` jobs against the bound, as new ones are.
    pub(crate) async fn count_replayed(&self, replayed: u64) -> Result<(), InboxError> {
        let added = Int(i64::try_from(replayed).unwrap_or(i64::MAX));
        let args = [Text(&self.settings.queue), added];
        dialect::execute::<D>(&self.pool, D::SQL.bump_depth, &args).await?;
        Ok(())
    }

    /// Deletes finished jobs older than `age`, and expired dedup marks; how many jobs. Run
    /// it now and then (hourly): finished jobs only take room.
    pub async fn purge(&self, age: Duration) -> Result<u64, InboxError> {
        let before = std::time::SystemTime::now()
            .checked_sub(age)
            .unwrap_or(std::time::UNIX_EPOCH);
        let purged = self.purge_done_before(before).await?;
        D::cleanup(&self.store).await?;
        Ok(purged)
    }

    /// Deletes the jobs done before `before`, with their attempts: how many. Dedup marks
    /// are kept (they expire on their own: see [`purge`](Self::purge)).
    pub async fn purge_done_before(
        &self,
        before: std::time::SystemTime,
    ) -> Result<u64, InboxError> {
        let before = crate::clock::unix_millis_i64(before);
        let args = [Text(&self.settings.queue), Int(before)];
        let mut tx = dialect::begin::<D>(&self.pool).await?;
        // The activity, less what is deleted, in the same transaction: counted off first,
        // while the rows are there.
        let off = [args[0], args[1], Int(sql::PURGE_SHARD)];
        D::execute_on(&mut tx, sql::PURGE_ENDED, &off).await?;
        D::execute_on(&mut tx, D::SQL.purge_accepted, &off).await?;
        D::execute_on(&mut tx, D::SQL.purge_attempts, &args).await?;
        let purged = D::execute_on(&mut tx, D::SQL.purge_before, &args).await?;
        if purged > 0 {
            // The count of done jobs, less those deleted, in the same transaction.
            let less = Int(-i64::try_from(purged).unwrap_or(i64::MAX));
            let args = [Text(&self.settings.queue), Int(sql::PURGE_SHARD), less];
            D::execute_on(&mut tx, sql::TALLY_DONE, &args).await?;
        }
        tx.commit().await.map_err(D::error)?;
        Ok(purged)
    }
}

impl<D: Dialect> Handoff for Inbox<D> {
    fn enqueue(
        &self,
        event: &Event,
        key: &str,
        layer: &str,
        headers: &HeaderMap,
        scheme: &dyn crate::scheme::Scheme,
        window: Duration,
    ) -> BoxFuture<Result<Enqueued, HandoffError>> {
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
