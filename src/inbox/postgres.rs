//! [`PostgresInbox`]: the inbox on PostgreSQL, on apalis-postgres.

use std::time::Duration;

use apalis_postgres::PostgresStorage;
use sqlx::PgPool;

use super::job::Stored;
use super::{shared, Settings};
use crate::door::Enqueued;
use crate::store::postgres::store_error;
use crate::store::{Marked, PostgresStore, StoreError};

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
    /// Where the dedup marks go: its table.
    store: PostgresStore,
}

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
// A job `$2` fetched, marked as running before its handler starts.
const START: &str = "UPDATE apalis.jobs SET status = 'Running', lock_at = now()
    WHERE id = $1 AND lock_by = $2 AND status IN ('Queued', 'Running')";
const DEAD: &str = "SELECT id, job, attempts::BIGINT, last_result::TEXT FROM apalis.jobs
    WHERE job_type = $1 AND (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))
    ORDER BY done_at DESC NULLS LAST LIMIT $2";
const REPLAY: &str = "UPDATE apalis.jobs SET status = 'Pending', attempts = 0, lock_by = NULL,
        lock_at = NULL, done_at = NULL, last_result = NULL, run_at = now()
    WHERE job_type = $1 AND ($2::TEXT IS NULL OR id = $2)
    AND (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))";
// The bound's counter: jobs this queue took in since its last count, plus that count. It is
// counted again when it reaches the bound (workers finish jobs without telling it). Its row
// is updated last in each enqueue's transaction and stays locked until the commit: the
// check and the write are one step for every receiver on the database.
const CREATE_DEPTH: &str = "CREATE TABLE IF NOT EXISTS webhook_inbox_depth (
    queue TEXT PRIMARY KEY,
    jobs BIGINT NOT NULL
)";
const ADMIT: &str =
    "UPDATE webhook_inbox_depth SET jobs = jobs + 1 WHERE queue = $1 AND jobs < $2 RETURNING jobs";
const ENSURE_DEPTH: &str =
    "INSERT INTO webhook_inbox_depth (queue, jobs) VALUES ($1, 0) ON CONFLICT (queue) DO NOTHING";
const LOCK_DEPTH: &str = "SELECT jobs FROM webhook_inbox_depth WHERE queue = $1 FOR UPDATE";
const SET_DEPTH: &str = "UPDATE webhook_inbox_depth SET jobs = $2 WHERE queue = $1";
const BUMP_DEPTH: &str = "UPDATE webhook_inbox_depth SET jobs = jobs + $2 WHERE queue = $1";
// Jobs taken by workers of this queue silent for $3 seconds, other than $2.
const ORPHANS: &str =
    "SELECT jobs.id, jobs.status, jobs.attempts::BIGINT, jobs.max_attempts::BIGINT, jobs.lock_by
    FROM apalis.jobs AS jobs JOIN apalis.workers AS workers ON jobs.lock_by = workers.id
    WHERE jobs.job_type = $1 AND jobs.status IN ('Running', 'Queued') AND workers.id <> $2
    AND now() - workers.last_seen >= make_interval(secs => $3)";
const ORPHAN_DEAD: &str = "UPDATE apalis.jobs SET status = 'Killed', attempts = attempts + 1,
        lock_by = NULL, lock_at = NULL, done_at = now(), last_result = $3::jsonb
    WHERE id = $1 AND lock_by = $2 AND status = 'Running'";
const ORPHAN_RETRY: &str = "UPDATE apalis.jobs SET status = 'Failed', attempts = attempts + 1,
        lock_by = NULL, lock_at = NULL, done_at = now(), last_result = $3::jsonb,
        run_at = now() + make_interval(secs => $4)
    WHERE id = $1 AND lock_by = $2 AND status = 'Running'";
const UNFETCH: &str = "UPDATE apalis.jobs SET status = 'Pending', lock_by = NULL, lock_at = NULL
    WHERE job_type = $1 AND lock_by = $2 AND status = 'Queued' AND ($3::TEXT IS NULL OR id = $3)";
const UNMARK_ABANDONED: &str =
    "UPDATE apalis.jobs SET attempts = GREATEST(attempts - 1, 0), last_result = NULL
    WHERE job_type = $1 AND status = 'Pending' AND last_result = $2::jsonb";
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
        sqlx::query(CREATE_DEPTH)
            .execute(&pool)
            .await
            .map_err(store_error)?;
        let store = PostgresStore::new(pool.clone());
        store.create_table().await?;
        Ok(Self {
            pool,
            settings: Settings::default(),
            store,
        })
    }

    inbox_methods!(PgPool);

    /// Writes the dedup marks through `store` (its table): the store an inline layer beside
    /// the inbox uses, so that both see each other's marks. It must be on this inbox's
    /// database, its table created ([`PostgresStore::create_table`]).
    #[must_use]
    pub fn with_store(mut self, store: PostgresStore) -> Self {
        self.store = store;
        self
    }

    /// The store the dedup marks go through, on the same database and table: for layers
    /// that handle inline beside the inbox.
    pub fn store(&self) -> PostgresStore {
        self.store.clone()
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
        self.store.cleanup().await?;
        Ok(done.rows_affected())
    }

    async fn enqueue(&self, stored: Stored, window: Duration) -> Result<Enqueued, StoreError> {
        let max = self.settings.max_queued;
        if max == 0 {
            return Ok(Enqueued::Full);
        }
        let task = shared::task(&stored, &self.settings)?;
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        let marked = self.store.mark(&mut tx, &stored.key, window).await?;
        if marked != Marked::Fresh {
            tx.rollback().await.map_err(store_error)?;
            return Ok(Enqueued::from(marked));
        }
        apalis_postgres::queries::push_tasks(&mut *tx, &self.settings.queue, vec![task])
            .await
            .map_err(|err| StoreError::new(crate::store::StoreErrorKind::Backend, err))?;
        if !self.admit(&mut tx, max).await? {
            tx.rollback().await.map_err(store_error)?;
            return Ok(Enqueued::Full);
        }
        tx.commit().await.map_err(store_error)?;
        Ok(Enqueued::Accepted)
    }

    /// Counts the job just written against the bound `max`: whether it fits. Last in the
    /// transaction, so that the counter's row is locked for as short a time as can be.
    async fn admit(&self, conn: &mut sqlx::PgConnection, max: u64) -> Result<bool, StoreError> {
        let queue = &*self.settings.queue;
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let counted: Option<i64> = sqlx::query_scalar(ADMIT)
            .bind(queue)
            .bind(max)
            .fetch_optional(&mut *conn)
            .await
            .map_err(store_error)?;
        if counted.is_some() {
            return Ok(true);
        }
        // At the bound by the counter (or no counter yet). Lock the counter first, then
        // count: a statement that starts after the lock sees every job committed by whoever
        // held it before, and those who come after add to this count.
        for statement in [ENSURE_DEPTH, LOCK_DEPTH] {
            sqlx::query(statement)
                .bind(queue)
                .execute(&mut *conn)
                .await
                .map_err(store_error)?;
        }
        let jobs: i64 = sqlx::query_scalar(DEPTH)
            .bind(queue)
            .fetch_one(&mut *conn)
            .await
            .map_err(store_error)?;
        sqlx::query(SET_DEPTH)
            .bind(queue)
            .bind(jobs)
            .execute(&mut *conn)
            .await
            .map_err(store_error)?;
        Ok(jobs <= max)
    }

    /// Takes back the jobs of workers silent for `dead_after`, other than `me`.
    async fn sweep_jobs(&self, me: String, dead_after: Duration) -> Result<u64, StoreError> {
        let queue = &*self.settings.queue;
        let rows: Vec<(String, String, i64, i64, String)> = sqlx::query_as(ORPHANS)
            .bind(queue)
            .bind(&me)
            .bind(dead_after.as_secs_f64())
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        let mut taken = 0;
        for (id, status, attempts, max, holder) in rows {
            // Each statement checks that the dead worker still holds the job: of two
            // workers sweeping at once, one takes it.
            let done = match shared::Orphan::of(&status, attempts, max, self.settings.retry) {
                shared::Orphan::Unfetch => sqlx::query(UNFETCH).bind(queue).bind(&holder).bind(&id),
                shared::Orphan::Dead(reason) => sqlx::query(ORPHAN_DEAD)
                    .bind(&id)
                    .bind(&holder)
                    .bind(reason),
                shared::Orphan::Retry { reason, delay } => sqlx::query(ORPHAN_RETRY)
                    .bind(&id)
                    .bind(&holder)
                    .bind(reason)
                    .bind(delay.as_secs_f64()),
            }
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
            taken += done.rows_affected();
        }
        self.restore_abandoned().await?;
        Ok(taken)
    }

    /// Puts the jobs `me` fetched but never started back, attempts unchanged.
    async fn unfetch_jobs(&self, me: String) -> Result<u64, StoreError> {
        let done = sqlx::query(UNFETCH)
            .bind(&*self.settings.queue)
            .bind(&me)
            .bind(None::<String>)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected() + self.restore_abandoned().await?)
    }

    /// Takes back the attempt apalis adds to a job fetched but not started when its worker
    /// stops: the job never ran.
    async fn restore_abandoned(&self) -> Result<u64, StoreError> {
        let done = sqlx::query(UNMARK_ABANDONED)
            .bind(&*self.settings.queue)
            .bind(shared::ABANDONED)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected())
    }

    /// Marks the job `task_id` as running if `me` still holds it.
    async fn start_job(&self, task_id: String, me: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(START)
            .bind(task_id)
            .bind(me)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected() == 1)
    }

    /// Puts the failed job `task_id` off by `delay`, before apalis records its failure.
    async fn defer_job(&self, task_id: String, delay: Duration) -> Result<(), StoreError> {
        sqlx::query(DEFER)
            .bind(task_id)
            .bind(delay.as_secs_f64())
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }
}

inbox_impls!(PostgresInbox, PostgresStorage, apalis_postgres::Config);
