//! [`PostgresInbox`]: the inbox on PostgreSQL, on apalis-postgres.

use std::sync::Arc;
use std::time::Duration;

use apalis_core::task::builder::TaskBuilder;
use apalis_core::worker::builder::WorkerBuilder;
use apalis_postgres::PostgresStorage;
use sqlx::PgPool;

use super::depth::Depth;
use super::job::{Counts, DeadLetter, Stored};
use super::worker::{Adapter, Handler, InboxError, Queue, Worker};
use super::{sealed, Inbox, RetryPolicy, Settings};
use crate::door::{Door, Enqueued};
use crate::event::Event;
use crate::store::postgres::store_error;
use crate::store::{stored_key, BoxFuture, PostgresStore, StoreError};
use http::HeaderMap;

/// The inbox on PostgreSQL: any number of receivers and workers, on any number of machines,
/// share one queue. See [the module](super) for what the layer answers.
///
/// The jobs live in apalis's schema (`apalis.jobs`, `apalis.workers`, migrated by
/// [`connect`](Self::connect) and [`new`](Self::new)); the dedup marks in the table of
/// [`PostgresStore`], `webhook_claims`, written in the same transaction as the job. Each
/// enqueue waits for its commit (`synchronous_commit` as the server has it, on by default):
/// a delivery answered 202 is on disk.
///
/// ```no_run
/// use tower_webhook::inbox::PostgresInbox;
/// use tower_webhook::{scheme::StandardWebhooks, Event, VerifyWebhookLayer};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let inbox = PostgresInbox::connect("postgres://postgres@127.0.0.1:5432/app").await?;
/// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?)
///     .with_inbox(inbox.clone());
/// // On this machine or any other:
/// tokio::spawn(inbox.worker(|event: Event| async move {
///     println!("handled event {}", event.id());
///     Ok::<_, std::io::Error>(())
/// }).run());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresInbox {
    pool: PgPool,
    settings: Settings,
    depth: Arc<Depth>,
}

impl std::fmt::Debug for PostgresInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresInbox")
            .field("queue", &self.settings.queue)
            .field("max_queued", &self.settings.max_queued)
            .finish_non_exhaustive()
    }
}

// The dedup mark, written in the enqueue's transaction: a fresh or expired key is marked
// completed for the dedup window; a live one is left as it is, and nothing is returned. A
// concurrent enqueue of the same key waits for this transaction, then finds the mark.
const MARK: &str = "INSERT INTO webhook_claims AS c (key, token, completed, expires_at)
    VALUES ($1, NULL, TRUE, now() + make_interval(secs => $2))
    ON CONFLICT (key) DO UPDATE SET token = NULL, completed = TRUE, expires_at = excluded.expires_at
        WHERE c.expires_at <= now()
    RETURNING 1::BIGINT";
const MARKED_COMPLETED: &str = "SELECT completed FROM webhook_claims WHERE key = $1";
// Jobs waiting or running: what the bound counts.
const DEPTH: &str = "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = $1
    AND (status IN ('Pending', 'Queued', 'Running') OR (status = 'Failed' AND attempts < max_attempts))";
const COUNTS: &str = "SELECT
        COUNT(*) FILTER (WHERE status IN ('Pending', 'Queued') OR (status = 'Failed' AND attempts < max_attempts)),
        COUNT(*) FILTER (WHERE status = 'Running'),
        COUNT(*) FILTER (WHERE status = 'Failed' AND attempts < max_attempts),
        COUNT(*) FILTER (WHERE status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts)),
        COUNT(*) FILTER (WHERE status = 'Done')
    FROM apalis.jobs WHERE job_type = $1";
const DEFER: &str =
    "UPDATE apalis.jobs SET run_at = now() + make_interval(secs => $2) WHERE id = $1";
const DEAD: &str = "SELECT id, job, attempts::BIGINT, last_result::TEXT FROM apalis.jobs
    WHERE job_type = $1 AND (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))
    ORDER BY done_at DESC NULLS LAST LIMIT $2";
const REPLAY: &str = "UPDATE apalis.jobs SET status = 'Pending', attempts = 0, lock_by = NULL,
        lock_at = NULL, done_at = NULL, last_result = NULL, run_at = now()
    WHERE job_type = $1 AND ($2::TEXT IS NULL OR id = $2)
    AND (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))";
const PURGE: &str = "DELETE FROM apalis.jobs WHERE job_type = $1 AND status = 'Done'
    AND done_at < now() - make_interval(secs => $2)";

impl PostgresInbox {
    /// Connects to the database at `url` (a pool of its own, as
    /// [`PostgresStore::connect`] makes), migrates apalis's schema and creates the marks'
    /// table. Safe to run from every replica at once.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let store = PostgresStore::connect(url).await?;
        Self::new(store.pool().clone()).await
    }

    /// The inbox on a pool of your own: migrates apalis's schema and creates the marks'
    /// table.
    pub async fn new(pool: PgPool) -> Result<Self, StoreError> {
        PostgresStorage::<()>::setup(&pool)
            .await
            .map_err(|err| StoreError::new(crate::store::StoreErrorKind::Backend, err))?;
        PostgresStore::new(pool.clone()).create_table().await?;
        Ok(Self {
            pool,
            settings: Settings::default(),
            depth: Arc::new(Depth::default()),
        })
    }

    /// Writes to and works on the queue `name` (default [`DEFAULT_QUEUE`](super::DEFAULT_QUEUE)):
    /// one database can hold an inbox per sender, each with its own workers.
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

    /// A dedup store on the same pool and table: for layers that handle inline beside the
    /// inbox.
    pub fn store(&self) -> PostgresStore {
        PostgresStore::new(self.pool.clone())
    }

    /// The pool the inbox runs on.
    pub fn pool(&self) -> &PgPool {
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
            .bind(age.as_secs_f64())
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        self.store().cleanup().await?;
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
        let window = window.as_secs_f64();
        let job = serde_json::to_vec(&stored)
            .map_err(|err| StoreError::new(crate::store::StoreErrorKind::Backend, err))?;
        let task = TaskBuilder::new(job)
            .max_attempts(self.settings.retry.attempts() as usize)
            .build();

        let mut tx = self.pool.begin().await.map_err(store_error)?;
        let marked: Option<i64> = sqlx::query_scalar(MARK)
            .bind(&key)
            .bind(window)
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
        apalis_postgres::queries::push_tasks(&mut *tx, &self.settings.queue, vec![task])
            .await
            .map_err(|err| StoreError::new(crate::store::StoreErrorKind::Backend, err))?;
        tx.commit().await.map_err(store_error)?;
        self.depth.added();
        Ok(Enqueued::Accepted)
    }
}

impl Inbox for PostgresInbox {}

impl sealed::Sealed for PostgresInbox {
    fn door(&self) -> Arc<dyn Door> {
        Arc::new(self.clone())
    }
}

impl Door for PostgresInbox {
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

impl Queue for PostgresInbox {
    fn defer(&self, task_id: String, delay: Duration) -> BoxFuture<Result<(), StoreError>> {
        let pool = self.pool.clone();
        Box::pin(async move {
            sqlx::query(DEFER)
                .bind(task_id)
                .bind(delay.as_secs_f64())
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
        let config = apalis_postgres::Config::default()
            .queue(&*self.settings.queue)
            .batch_size(batch)
            .heartbeat_interval(self.settings.heartbeat);
        let backend = PostgresStorage::<Stored>::new(&self.pool).with_config(config);
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
