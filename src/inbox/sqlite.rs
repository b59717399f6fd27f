//! The inbox in one SQLite file, on apalis-sqlite: the [`Sqlite`] dialect.

use std::time::Duration;

use apalis_core::error::WorkerError;
use apalis_core::task::Task;
use apalis_core::worker::builder::WorkerBuilder;
use apalis_sqlite::SqliteStorage;
use sqlx::sqlite::{SqliteConnectOptions, SqliteSynchronous};
use sqlx::{Sqlite as Db, SqlitePool, Transaction};

use super::dialect::{Backend, Dialect};
use super::error::InboxError;
use super::shared::{self, DeadRow, Orphan, OrphanRow};
use super::worker::{Adapter, Handler, Queue};
use super::{Inbox, Settings};
use crate::store::sqlite::{open_pool, transient};
use crate::store::{sqlx_error_kind, BoxFuture, Marked, SqliteStore, StoreErrorKind};

/// SQLite, for [`Inbox`]: one process on one machine, no service to run.
#[derive(Debug, Clone, Copy)]
pub struct Sqlite;

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
pub type SqliteInbox = Inbox<Sqlite>;

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

impl Inbox<Sqlite> {
    /// Opens (or creates) the inbox in the SQLite file at `path`: apalis's tables, migrated
    /// to the current schema, and the dedup marks.
    pub async fn open(path: impl AsRef<std::path::Path>) -> Result<Self, InboxError> {
        Self::open_with(SqliteConnectOptions::new().filename(path)).await
    }

    /// Opens the inbox at an sqlx URL (`sqlite://webhooks.db`).
    pub async fn connect(url: &str) -> Result<Self, InboxError> {
        let options = url.parse::<SqliteConnectOptions>().map_err(db_error)?;
        Self::open_with(options).await
    }

    async fn open_with(options: SqliteConnectOptions) -> Result<Self, InboxError> {
        let pool = open_pool(options, SqliteSynchronous::Full).await?;
        // apalis's own `setup` would also turn `synchronous` off on one of the pool's
        // connections: the migrations alone keep every commit durable.
        SqliteStorage::<()>::migrations()
            .run(&pool)
            .await
            .map_err(|err| db_error(err.into()))?;
        sqlx::query(CREATE_DEPTH)
            .execute(&pool)
            .await
            .map_err(db_error)?;
        let store = SqliteStore::new(pool.clone());
        store.create_table().await?;
        Ok(Self::from_parts(pool, store))
    }
}

/// An inbox error from sqlx's: a busy or unreachable file is unavailable.
fn db_error(err: sqlx::Error) -> InboxError {
    let unavailable = sqlx_error_kind(&err, transient) == StoreErrorKind::Unavailable;
    InboxError::database(err, unavailable)
}

/// Runs `query` on `pool`: how many rows it changed.
async fn execute(
    pool: &SqlitePool,
    query: sqlx::query::Query<'_, Db, sqlx::sqlite::SqliteArguments>,
) -> Result<u64, InboxError> {
    Ok(query.execute(pool).await.map_err(db_error)?.rows_affected())
}

/// `delay` in the queue's whole seconds, rounded up: a delay is never cut short.
fn whole_secs(delay: Duration) -> i64 {
    let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

impl Dialect for Sqlite {}

impl Backend for Sqlite {
    type Pool = SqlitePool;
    type Store = SqliteStore;
    type Tx = Transaction<'static, Db>;

    const NAME: &'static str = "SqliteInbox";
    const ONE_WRITER: bool = true;

    async fn begin(pool: &SqlitePool) -> Result<Self::Tx, InboxError> {
        pool.begin().await.map_err(db_error)
    }

    async fn commit(tx: Self::Tx) -> Result<(), InboxError> {
        tx.commit().await.map_err(db_error)
    }

    async fn mark(
        store: &SqliteStore,
        tx: &mut Self::Tx,
        key: &str,
        window: Duration,
    ) -> Result<Marked, InboxError> {
        Ok(store.mark(tx, key, window).await?)
    }

    async fn push(tx: &mut Self::Tx, queue: &str, task: Task<Vec<u8>>) -> Result<(), InboxError> {
        apalis_sqlite::queries::push_tasks(&mut **tx, queue, &[task])
            .await
            .map(drop)
            .map_err(|err| InboxError::database(err, false))
    }

    async fn admit(tx: &mut Self::Tx, queue: &str, max: i64) -> Result<bool, InboxError> {
        let counted: Option<i64> = sqlx::query_scalar(ADMIT)
            .bind(queue)
            .bind(max)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_error)?;
        if counted.is_some() {
            return Ok(true);
        }
        // At the bound by the counter (or no counter yet): count the jobs, this one
        // included. SQLite's one writer makes the count and the write one step.
        let jobs: i64 = sqlx::query_scalar(DEPTH)
            .bind(queue)
            .fetch_one(&mut **tx)
            .await
            .map_err(db_error)?;
        sqlx::query(SET_DEPTH)
            .bind(queue)
            .bind(jobs)
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
        Ok(jobs <= max)
    }

    async fn counts(pool: &SqlitePool, queue: &str) -> Result<[i64; 5], InboxError> {
        let (queued, running, failed, dead, done) = sqlx::query_as(COUNTS)
            .bind(queue)
            .fetch_one(pool)
            .await
            .map_err(db_error)?;
        Ok([queued, running, failed, dead, done])
    }

    async fn dead(pool: &SqlitePool, queue: &str, limit: u32) -> Result<Vec<DeadRow>, InboxError> {
        sqlx::query_as(DEAD)
            .bind(queue)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(db_error)
    }

    async fn replay(
        pool: &SqlitePool,
        queue: &str,
        task_id: Option<&str>,
    ) -> Result<u64, InboxError> {
        let done = execute(pool, sqlx::query(REPLAY).bind(queue).bind(task_id)).await?;
        // The replayed jobs count against the bound as new ones do.
        let added = i64::try_from(done).unwrap_or(i64::MAX);
        execute(pool, sqlx::query(BUMP_DEPTH).bind(queue).bind(added)).await?;
        Ok(done)
    }

    async fn purge(
        pool: &SqlitePool,
        store: &SqliteStore,
        queue: &str,
        age: Duration,
    ) -> Result<u64, InboxError> {
        let age = i64::try_from(age.as_secs()).unwrap_or(i64::MAX);
        let done = execute(pool, sqlx::query(PURGE).bind(queue).bind(age)).await?;
        store.cleanup(10_000).await?;
        Ok(done)
    }

    async fn defer(pool: &SqlitePool, task_id: &str, delay: Duration) -> Result<(), InboxError> {
        execute(
            pool,
            sqlx::query(DEFER).bind(task_id).bind(whole_secs(delay)),
        )
        .await?;
        Ok(())
    }

    async fn start(pool: &SqlitePool, task_id: &str, me: &str) -> Result<bool, InboxError> {
        Ok(execute(pool, sqlx::query(START).bind(task_id).bind(me)).await? == 1)
    }

    async fn orphans(
        pool: &SqlitePool,
        queue: &str,
        me: &str,
        dead_after: Duration,
    ) -> Result<Vec<OrphanRow>, InboxError> {
        let silent = i64::try_from(dead_after.as_secs().max(1)).unwrap_or(i64::MAX);
        let rows: Vec<(String, String, i64, i64, String)> = sqlx::query_as(ORPHANS)
            .bind(queue)
            .bind(me)
            .bind(silent)
            .fetch_all(pool)
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(OrphanRow::from).collect())
    }

    async fn take_back(
        pool: &SqlitePool,
        queue: &str,
        row: &OrphanRow,
        fate: Orphan,
    ) -> Result<u64, InboxError> {
        let (id, holder) = (&row.id, &row.holder);
        let query = match fate {
            Orphan::Unfetch => sqlx::query(UNFETCH).bind(queue).bind(holder).bind(id),
            Orphan::Dead(reason) => sqlx::query(ORPHAN_DEAD).bind(id).bind(holder).bind(reason),
            Orphan::Retry { reason, delay } => {
                let query = sqlx::query(ORPHAN_RETRY).bind(id).bind(holder).bind(reason);
                query.bind(whole_secs(delay))
            }
        };
        execute(pool, query).await
    }

    async fn unfetch(pool: &SqlitePool, queue: &str, me: &str) -> Result<u64, InboxError> {
        execute(
            pool,
            sqlx::query(UNFETCH)
                .bind(queue)
                .bind(me)
                .bind(None::<String>),
        )
        .await
    }

    async fn restore_abandoned(pool: &SqlitePool, queue: &str) -> Result<u64, InboxError> {
        execute(
            pool,
            sqlx::query(UNMARK_ABANDONED)
                .bind(queue)
                .bind(shared::ABANDONED),
        )
        .await
    }

    fn run<H, A, Q>(
        pool: &Self::Pool,
        settings: &Settings,
        (name, batch): (String, usize),
        service: Adapter<H, A, Q>,
        signal: BoxFuture<()>,
    ) -> BoxFuture<Result<(), InboxError>>
    where
        H: Handler<A>,
        A: 'static,
        Q: Queue,
    {
        let config = apalis_sqlite::Config::default()
            .queue(&*settings.queue)
            .batch_size(batch)
            .heartbeat_interval(settings.heartbeat)
            .missed_heartbeats(shared::MISSED_HEARTBEATS);
        let backend = SqliteStorage::<super::job::Stored>::new(pool).with_config(config);
        let worker = WorkerBuilder::new(name).backend(backend).build(service);
        Box::pin(async move {
            let stop = async move {
                signal.await;
                Ok::<(), WorkerError>(())
            };
            worker.run_until(stop).await.map_err(shared::worker_error)
        })
    }
}
