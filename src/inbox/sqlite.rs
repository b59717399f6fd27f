//! [`SqliteInbox`]: the inbox in one SQLite file, on apalis-sqlite.

use std::sync::Arc;
use std::time::Duration;

use apalis_sqlite::SqliteStorage;
use sqlx::sqlite::{SqliteConnectOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use super::depth::Depth;
use super::job::Stored;
use super::{shared, Settings};
use crate::clock::unix_millis_i64;
use crate::door::Enqueued;
use crate::store::sqlite::{open_pool, store_error};
use crate::store::{stored_key, SqliteStore, StoreError};

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

    inbox_methods!(SqlitePool);

    /// A dedup store in the same file: for layers that handle inline beside the inbox.
    pub fn store(&self) -> SqliteStore {
        SqliteStore::new(self.pool.clone())
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

    async fn enqueue(&self, stored: Stored, window: Duration) -> Result<Enqueued, StoreError> {
        if self.full().await? {
            return Ok(Enqueued::Full);
        }
        let key = stored_key(&stored.key).into_owned();
        let now = unix_millis_i64(std::time::SystemTime::now());
        let expires = now.saturating_add(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
        let task = shared::task(&stored, &self.settings)?;

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
            return Ok(shared::unmarked(completed));
        }
        apalis_sqlite::queries::push_tasks(&mut *tx, &self.settings.queue, &[task])
            .await
            .map_err(|err| StoreError::new(crate::store::StoreErrorKind::Backend, err))?;
        tx.commit().await.map_err(store_error)?;
        self.depth.added();
        Ok(Enqueued::Accepted)
    }

    /// Puts the failed job `task_id` off by `delay`, before apalis records its failure.
    async fn defer_job(&self, task_id: String, delay: Duration) -> Result<(), StoreError> {
        // The queue counts in whole seconds: round up, so a delay is never cut short.
        let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
        sqlx::query(DEFER)
            .bind(task_id)
            .bind(i64::try_from(secs).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }
}

inbox_impls!(SqliteInbox, SqliteStorage, apalis_sqlite::Config);
