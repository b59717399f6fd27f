//! [`SqliteInbox`]: the inbox in one SQLite file, on apalis-sqlite.

use std::sync::Arc;
use std::time::Duration;

use apalis_sqlite::SqliteStorage;
use sqlx::sqlite::{SqliteConnectOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use super::job::Stored;
use super::{shared, Settings};
use crate::door::Enqueued;
use crate::store::sqlite::{open_pool, store_error};
use crate::store::{Marked, SqliteStore, StoreError};

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
    /// Where the dedup marks go: its table, by its clock.
    store: SqliteStore,
    /// One enqueue at a time from this process: SQLite has one writer, and writers that
    /// meet its lock sleep in its busy handler (up to 100 ms a turn), which made the tail.
    writer: Arc<tokio::sync::Mutex<()>>,
}

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
// A job `?2` fetched, marked as running before its handler starts.
const START: &str =
    "UPDATE Jobs SET status = 'Running', lock_at = CAST(strftime('%s', 'now') AS INTEGER)
    WHERE id = ?1 AND lock_by = ?2 AND status IN ('Queued', 'Running')";
const DEAD: &str = "SELECT id, job, attempts, last_result FROM Jobs
    WHERE job_type = ?1 AND (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))
    ORDER BY done_at DESC LIMIT ?2";
const REPLAY: &str = "UPDATE Jobs SET status = 'Pending', attempts = 0, lock_by = NULL,
        lock_at = NULL, done_at = NULL, last_result = NULL,
        run_at = CAST(strftime('%s', 'now') AS INTEGER)
    WHERE job_type = ?1 AND (?2 IS NULL OR id = ?2)
    AND (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))";
// The bound's counter: jobs this queue took in since its last count, plus that count. It is
// counted again when it reaches the bound (workers finish jobs without telling it).
const CREATE_DEPTH: &str = "CREATE TABLE IF NOT EXISTS webhook_inbox_depth (
    queue TEXT PRIMARY KEY,
    jobs INTEGER NOT NULL
)";
const ADMIT: &str =
    "UPDATE webhook_inbox_depth SET jobs = jobs + 1 WHERE queue = ?1 AND jobs < ?2 RETURNING jobs";
const SET_DEPTH: &str = "INSERT INTO webhook_inbox_depth (queue, jobs) VALUES (?1, ?2)
    ON CONFLICT (queue) DO UPDATE SET jobs = excluded.jobs";
const BUMP_DEPTH: &str = "UPDATE webhook_inbox_depth SET jobs = jobs + ?2 WHERE queue = ?1";
// Jobs taken by workers of this queue silent for ?3 seconds, other than ?2.
const ORPHANS: &str = "SELECT Jobs.id, Jobs.status, Jobs.attempts, Jobs.max_attempts, Jobs.lock_by
    FROM Jobs JOIN Workers ON Jobs.lock_by = Workers.id
    WHERE Jobs.job_type = ?1 AND Jobs.status IN ('Running', 'Queued') AND Workers.id <> ?2
    AND CAST(strftime('%s', 'now') AS INTEGER) - Workers.last_seen >= ?3";
const ORPHAN_DEAD: &str = "UPDATE Jobs SET status = 'Killed', attempts = attempts + 1,
        lock_by = NULL, lock_at = NULL, done_at = CAST(strftime('%s', 'now') AS INTEGER),
        last_result = ?3
    WHERE id = ?1 AND lock_by = ?2 AND status = 'Running'";
const ORPHAN_RETRY: &str = "UPDATE Jobs SET status = 'Failed', attempts = attempts + 1,
        lock_by = NULL, lock_at = NULL, done_at = CAST(strftime('%s', 'now') AS INTEGER),
        last_result = ?3, run_at = CAST(strftime('%s', 'now') AS INTEGER) + ?4
    WHERE id = ?1 AND lock_by = ?2 AND status = 'Running'";
const UNFETCH: &str = "UPDATE Jobs SET status = 'Pending', lock_by = NULL, lock_at = NULL
    WHERE job_type = ?1 AND lock_by = ?2 AND status = 'Queued' AND (?3 IS NULL OR id = ?3)";
const UNMARK_ABANDONED: &str = "UPDATE Jobs SET attempts = MAX(attempts - 1, 0), last_result = NULL
    WHERE job_type = ?1 AND status = 'Pending' AND last_result = ?2";
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
        sqlx::query(CREATE_DEPTH)
            .execute(&pool)
            .await
            .map_err(store_error)?;
        let store = SqliteStore::new(pool.clone());
        store.create_table().await?;
        Ok(Self {
            pool,
            settings: Settings::default(),
            store,
            writer: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    inbox_methods!(SqlitePool);

    /// Writes the dedup marks through `store` (its clock): the store an inline layer beside
    /// the inbox uses, so that both see each other's marks. It must be on this inbox's file.
    #[must_use]
    pub fn with_store(mut self, store: SqliteStore) -> Self {
        self.store = store;
        self
    }

    /// The store the dedup marks go through, on the same file: for layers that handle
    /// inline beside the inbox.
    pub fn store(&self) -> SqliteStore {
        self.store.clone()
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
        self.store.cleanup(10_000).await?;
        Ok(done.rows_affected())
    }

    async fn enqueue(&self, stored: Stored, window: Duration) -> Result<Enqueued, StoreError> {
        let max = self.settings.max_queued;
        if max == 0 {
            return Ok(Enqueued::Full);
        }
        let task = shared::task(&stored, &self.settings)?;
        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        let marked = self.store.mark(&mut tx, &stored.key, window).await?;
        if marked != Marked::Fresh {
            tx.rollback().await.map_err(store_error)?;
            return Ok(Enqueued::from(marked));
        }
        apalis_sqlite::queries::push_tasks(&mut *tx, &self.settings.queue, &[task])
            .await
            .map_err(|err| StoreError::new(crate::store::StoreErrorKind::Backend, err))?;
        // In the same transaction, under SQLite's one writer: the check and the write are one
        // step, for every process on the file.
        if !self.admit(&mut tx, max).await? {
            tx.rollback().await.map_err(store_error)?;
            return Ok(Enqueued::Full);
        }
        tx.commit().await.map_err(store_error)?;
        Ok(Enqueued::Accepted)
    }

    /// Counts the job just written against the bound `max`: whether it fits.
    async fn admit(&self, conn: &mut sqlx::SqliteConnection, max: u64) -> Result<bool, StoreError> {
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
        // At the bound by the counter (or no counter yet): count the jobs, this one included.
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
            .bind(i64::try_from(dead_after.as_secs().max(1)).unwrap_or(i64::MAX))
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
                    .bind(whole_secs(delay)),
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
            .bind(whole_secs(delay))
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }
}

/// `delay` in the queue's whole seconds, rounded up: a delay is never cut short.
fn whole_secs(delay: Duration) -> i64 {
    let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

inbox_impls!(SqliteInbox, SqliteStorage, apalis_sqlite::Config);
