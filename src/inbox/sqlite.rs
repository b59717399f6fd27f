//! [`SqliteInbox`]: the inbox in one SQLite file, on apalis-sqlite.

use std::sync::Arc;
use std::time::Duration;

use apalis_core::task::builder::TaskBuilder;
use apalis_core::worker::builder::WorkerBuilder;
use apalis_sqlite::SqliteStorage;
use sqlx::sqlite::{SqliteConnectOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use super::depth::Depth;
use super::job::{epoch_millis, Counts, DeadLetter, Stored};
use super::worker::{Adapter, Handler, InboxError, Queue, Worker};
use super::{sealed, Inbox, RetryPolicy, Settings};
use crate::door::{Door, Enqueued};
use crate::event::Event;
use crate::store::sqlite::{open_pool, store_error};
use crate::store::{stored_key, BoxFuture, SqliteStore, StoreError};
use http::HeaderMap;

/// The inbox in an SQLite file: one process on one machine, no service to run, nothing
/// lost when it restarts. See [the module](super) for what the layer answers.
///
/// The file holds apalis's `Jobs` and `Workers` tables and the dedup marks
/// (`webhook_claims`, the table of [`SqliteStore`]). Each commit waits for the disk
/// (`synchronous = FULL`): a delivery answered 202 survives a power cut, not only a killed
/// process.
///
/// ```no_run
/// use tower_webhook::inbox::SqliteInbox;
/// use tower_webhook::{scheme::StandardWebhooks, Event, VerifyWebhookLayer};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let inbox = SqliteInbox::open("webhooks.db").await?;
/// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?)
///     .with_inbox(inbox.clone());
/// tokio::spawn(inbox.worker(|event: Event| async move {
///     println!("handled event {}", event.id());
///     Ok::<_, std::io::Error>(())
/// }).run());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SqliteInbox {
    pool: SqlitePool,
    settings: Settings,
    depth: Arc<Depth>,
    /// One enqueue at a time from this process: SQLite has one writer, and writers that
    /// meet its lock sleep in its busy handler (up to 100 ms a turn), which made the tail.
    writer: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for SqliteInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteInbox")
            .field("queue", &self.settings.queue)
            .field("max_queued", &self.settings.max_queued)
            .finish_non_exhaustive()
    }
}

// The dedup mark, written in the enqueue's transaction: a fresh or expired key is marked
// completed for the dedup window; a live one is left as it is, and nothing is returned.
const MARK: &str = "INSERT INTO webhook_claims AS c (key, token, completed, expires_at)
    VALUES (?1, NULL, 1, ?2)
    ON CONFLICT (key) DO UPDATE SET token = NULL, completed = 1, expires_at = excluded.expires_at
        WHERE c.expires_at <= ?3
    RETURNING 1";
const MARKED_COMPLETED: &str = "SELECT completed FROM webhook_claims WHERE key = ?1";
// Jobs waiting or running: what the bound counts.
const DEPTH: &str = "SELECT COUNT(*) FROM Jobs WHERE job_type = ?1
    AND (status IN ('Pending', 'Queued', 'Running') OR (status = 'Failed' AND attempts < max_attempts))";
const COUNTS: &str = "SELECT
        COALESCE(SUM(status IN ('Pending', 'Queued') OR (status = 'Failed' AND attempts < max_attempts)), 0),
        COALESCE(SUM(status = 'Running'), 0),
        COALESCE(SUM(status = 'Failed' AND attempts < max_attempts), 0),
        COALESCE(SUM(status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts)), 0),
        COALESCE(SUM(status = 'Done'), 0)
    FROM Jobs WHERE job_type = ?1";
const DEFER: &str =
    "UPDATE Jobs SET run_at = CAST(strftime('%s', 'now') AS INTEGER) + ?2 WHERE id = ?1";
const DEAD: &str = "SELECT id, job, attempts, last_result FROM Jobs
    WHERE job_type = ?1 AND (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))
    ORDER BY done_at DESC LIMIT ?2";
const REPLAY: &str = "UPDATE Jobs SET status = 'Pending', attempts = 0, lock_by = NULL,
        lock_at = NULL, done_at = NULL, last_result = NULL,
        run_at = CAST(strftime('%s', 'now') AS INTEGER)
    WHERE job_type = ?1 AND (?2 IS NULL OR id = ?2)
    AND (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))";
const PURGE: &str = "DELETE FROM Jobs WHERE job_type = ?1 AND status = 'Done'
    AND done_at < CAST(strftime('%s', 'now') AS INTEGER) - ?2";

impl SqliteInbox {
    /// Opens (or creates) the inbox in the SQLite file at `path`: apalis's tables, migrated
    /// to the current schema, and the dedup marks.
    pub async fn open(path: impl AsRef<std::path::Path>) -> Result<Self, StoreError> {
        Self::open_with(SqliteConnectOptions::new().filename(path)).await
    }

    /// Opens the inbox at an sqlx URL (`sqlite://webhooks.db`).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = url.parse::<SqliteConnectOptions>().map_err(store_error)?;
        Self::open_with(options).await
    }

    async fn open_with(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let pool = open_pool(options, SqliteSynchronous::Full).await?;
        // apalis's own `setup` would also turn `synchronous` off on one of the pool's
        // connections: the migrations alone keep every commit durable.
        SqliteStorage::<()>::migrations()
            .run(&pool)
            .await
            .map_err(|err| store_error(err.into()))?;
        SqliteStore::new(pool.clone()).create_table().await?;
        Ok(Self {
            pool,
            settings: Settings::default(),
            depth: Arc::new(Depth::default()),
            writer: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Writes to and works on the queue `name` (default [`DEFAULT_QUEUE`](super::DEFAULT_QUEUE)):
    /// one file can hold an inbox per sender, each with its own workers.
    #[must_use]
    pub fn with_queue(mut self, name: &str) -> Self {
        self.settings.queue = Arc::from(name);
        self.depth = Arc::new(Depth::default());
        self
    }

    /// Answers 429 with `Retry-After` while the queue holds `jobs` or more waiting or
    /// running (default [`DEFAULT_MAX_QUEUED`](super::DEFAULT_MAX_QUEUED)).
    #[must_use]
    pub fn with_max_queued(mut self, jobs: u64) -> Self {
        self.settings.max_queued = jobs;
        self
    }

    /// How failed jobs are retried. The number of attempts is written with each job as it
    /// is queued.
    #[must_use]
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.settings.retry = policy;
        self
    }

    /// How often workers tell the queue they are alive (default
    /// [`DEFAULT_HEARTBEAT`](super::DEFAULT_HEARTBEAT), at least a second). A worker silent
    /// for twice that is taken for dead, and its jobs run again.
    #[must_use]
    pub fn with_heartbeat(mut self, every: Duration) -> Self {
        self.settings.heartbeat = every.max(Duration::from_secs(1));
        self
    }

    /// A dedup store in the same file: for layers that handle inline beside the inbox.
    pub fn store(&self) -> SqliteStore {
        SqliteStore::new(self.pool.clone())
    }

    /// The pool the inbox runs on.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A worker that runs `handler` on this inbox's jobs. See [`Worker`].
    pub fn worker<H, A>(&self, handler: H) -> Worker<Self, H, A>
    where
        H: Handler<A>,
        A: 'static,
    {
        Worker::new(self.clone(), handler)
    }

    /// How many jobs the queue holds, by state.
    pub async fn counts(&self) -> Result<Counts, StoreError> {
        let (queued, running, failed, dead, done): (i64, i64, i64, i64, i64) =
            sqlx::query_as(COUNTS)
                .bind(&*self.settings.queue)
                .fetch_one(&self.pool)
                .await
                .map_err(store_error)?;
        let n = |count: i64| u64::try_from(count).unwrap_or(0);
        Ok(Counts {
            queued: n(queued),
            running: n(running),
            failed: n(failed),
            dead: n(dead),
            done: n(done),
        })
    }

    /// The dead-lettered jobs, the most recent first, at most `limit`.
    pub async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        let rows: Vec<(String, Vec<u8>, i64, Option<String>)> = sqlx::query_as(DEAD)
            .bind(&*self.settings.queue)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .map(|(id, job, attempts, last)| DeadLetter::from_row(id, &job, attempts, last))
            .collect())
    }

    /// Queues the dead-lettered job `task_id` again, with all its attempts; whether there
    /// was such a job.
    pub async fn replay(&self, task_id: &str) -> Result<bool, StoreError> {
        Ok(self.replay_where(Some(task_id)).await? == 1)
    }

    /// Queues every dead-lettered job again; how many.
    pub async fn replay_all(&self) -> Result<u64, StoreError> {
        self.replay_where(None).await
    }

    async fn replay_where(&self, task_id: Option<&str>) -> Result<u64, StoreError> {
        let done = sqlx::query(REPLAY)
            .bind(&*self.settings.queue)
            .bind(task_id)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected())
    }

    /// Deletes finished jobs older than `age`, and expired dedup marks; how many jobs.
    /// Run it now and then (hourly): finished jobs only take room.
    pub async fn purge(&self, age: Duration) -> Result<u64, StoreError> {
        let done = sqlx::query(PURGE)
            .bind(&*self.settings.queue)
            .bind(i64::try_from(age.as_secs()).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        self.store().cleanup(10_000).await?;
        Ok(done.rows_affected())
    }

    async fn depth(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(DEPTH)
            .bind(&*self.settings.queue)
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn enqueue(&self, stored: Stored, window: Duration) -> Result<Enqueued, StoreError> {
        let max = self.settings.max_queued;
        if self.depth.over(max) && self.depth.recount(self.depth().await?) >= max {
            return Ok(Enqueued::Full);
        }
        let key = stored_key(&stored.key).into_owned();
        let now = epoch_millis(std::time::SystemTime::now());
        let expires = now.saturating_add(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
        let job = serde_json::to_vec(&stored)
            .map_err(|err| StoreError::new(crate::store::StoreErrorKind::Backend, err))?;
        let task = TaskBuilder::new(job)
            .max_attempts(self.settings.retry.attempts() as usize)
            .build();

        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        let marked: Option<i64> = sqlx::query_scalar(MARK)
            .bind(&key)
            .bind(expires)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_error)?;
        if marked.is_none() {
            let completed: Option<bool> = sqlx::query_scalar(MARKED_COMPLETED)
                .bind(&key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(store_error)?;
            tx.rollback().await.map_err(store_error)?;
            return Ok(if completed == Some(false) {
                Enqueued::InFlight
            } else {
                Enqueued::Duplicate
            });
        }
        apalis_sqlite::queries::push_tasks(&mut *tx, &self.settings.queue, &[task])
            .await
            .map_err(|err| StoreError::new(crate::store::StoreErrorKind::Backend, err))?;
        tx.commit().await.map_err(store_error)?;
        self.depth.added();
        Ok(Enqueued::Accepted)
    }
}

impl Inbox for SqliteInbox {}

impl sealed::Sealed for SqliteInbox {
    fn door(&self) -> Arc<dyn Door> {
        Arc::new(self.clone())
    }
}

impl Door for SqliteInbox {
    fn enqueue(
        &self,
        event: &Event,
        key: &str,
        layer: &str,
        headers: &HeaderMap,
        window: Duration,
    ) -> BoxFuture<Result<Enqueued, StoreError>> {
        let stored = Stored::new(event, key, layer, headers);
        let inbox = self.clone();
        Box::pin(async move { inbox.enqueue(stored, window).await })
    }
}

impl Queue for SqliteInbox {
    fn defer(&self, task_id: String, delay: Duration) -> BoxFuture<Result<(), StoreError>> {
        let pool = self.pool.clone();
        // The queue counts in whole seconds: round up, so a delay is never cut short.
        let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
        Box::pin(async move {
            sqlx::query(DEFER)
                .bind(task_id)
                .bind(i64::try_from(secs).unwrap_or(i64::MAX))
                .execute(&pool)
                .await
                .map_err(store_error)?;
            Ok(())
        })
    }

    fn retry(&self) -> RetryPolicy {
        self.settings.retry
    }

    fn run<H, A>(
        &self,
        name: String,
        batch: usize,
        service: Adapter<H, A, Self>,
        signal: BoxFuture<()>,
    ) -> BoxFuture<Result<(), InboxError>>
    where
        H: Handler<A>,
        A: 'static,
    {
        let config = apalis_sqlite::Config::default()
            .queue(&*self.settings.queue)
            .batch_size(batch)
            .heartbeat_interval(self.settings.heartbeat);
        let backend = SqliteStorage::<Stored>::new(&self.pool).with_config(config);
        let worker = WorkerBuilder::new(name).backend(backend).build(service);
        Box::pin(async move {
            worker
                .run_until(async move {
                    signal.await;
                    Ok::<(), apalis_core::error::WorkerError>(())
                })
                .await
                .map_err(InboxError::new)
        })
    }
}
