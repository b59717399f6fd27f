//! [`PostgresInbox`]: the inbox on PostgreSQL, on apalis-postgres.

use std::sync::Arc;
use std::time::Duration;

use apalis_postgres::PostgresStorage;
use sqlx::PgPool;

use super::depth::Depth;
use super::job::Stored;
use super::{shared, Settings};
use crate::door::Enqueued;
use crate::store::postgres::store_error;
use crate::store::{stored_key, PostgresStore, StoreError};

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

    inbox_methods!(PgPool);

    /// A dedup store on the same pool and table: for layers that handle inline beside the
    /// inbox.
    pub fn store(&self) -> PostgresStore {
        PostgresStore::new(self.pool.clone())
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

    async fn enqueue(&self, stored: Stored, window: Duration) -> Result<Enqueued, StoreError> {
        if self.full().await? {
            return Ok(Enqueued::Full);
        }
        let key = stored_key(&stored.key).into_owned();
        let window = window.as_secs_f64();
        let task = shared::task(&stored, &self.settings)?;

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
            return Ok(shared::unmarked(completed));
        }
        apalis_postgres::queries::push_tasks(&mut *tx, &self.settings.queue, vec![task])
            .await
            .map_err(|err| StoreError::new(crate::store::StoreErrorKind::Backend, err))?;
        tx.commit().await.map_err(store_error)?;
        self.depth.added();
        Ok(Enqueued::Accepted)
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
