//! The inbox in one SQLite file, on apalis-sqlite: the [`Sqlite`] dialect.

use std::time::Duration;

use apalis_core::error::WorkerError;
use apalis_core::task::Task;
use apalis_core::worker::builder::WorkerBuilder;
use apalis_sqlite::SqliteStorage;
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqliteSynchronous};
use sqlx::Arguments as _;
use sqlx::{Sqlite as Db, SqlitePool};
use tower::limit::ConcurrencyLimitLayer;

use super::attempt::JobService;
use super::dialect::{Arg, Backend, DbTx, Dialect, Pool, Row, Statements};
use super::error::InboxError;
use super::handler::Handler;
use super::job::StoredDelivery;
use super::shared::{self, METADATA_PREFIX};
use super::{Inbox, Settings};
use crate::store::sqlite::{open_pool, transient, BEGIN_IMMEDIATE};
use crate::store::{BoxFuture, Marked, SqliteStore};
use apalis_core::backend::ext::poll_strategy::{PollWith, Strategy};
use apalis_core::backend::ext::BackendExt as _;

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

/// The statements on the queue's jobs.
const STATEMENTS: Statements = Statements {
    // Each state counted on the index of (queue, status): a million done jobs are a count
    // of index entries, not a read of each job. Only failed jobs are read, for their
    // attempts.
    counts: "SELECT
            (SELECT COUNT(*) FROM Jobs WHERE job_type = ?1 AND status IN ('Pending', 'Queued')) + failed.retrying,
            (SELECT COUNT(*) FROM Jobs WHERE job_type = ?1 AND status = 'Running'),
            failed.retrying,
            (SELECT COUNT(*) FROM Jobs WHERE job_type = ?1 AND status = 'Killed') + failed.dead,
            (SELECT COUNT(*) FROM Jobs WHERE job_type = ?1 AND status = 'Done')
        FROM (SELECT COALESCE(SUM(attempts < max_attempts), 0) AS retrying,
                COALESCE(SUM(attempts >= max_attempts), 0) AS dead
            FROM Jobs WHERE job_type = ?1 AND status = 'Failed') AS failed",
    dead: "SELECT id, job, attempts, last_result FROM Jobs
        WHERE job_type = ?1 AND (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))
        ORDER BY done_at DESC LIMIT ?2",
    replay: "UPDATE Jobs SET status = 'Pending', attempts = 0, lock_by = NULL,
            lock_at = NULL, done_at = NULL, last_result = NULL,
            run_at = CAST(strftime('%s', 'now') AS INTEGER)
        WHERE job_type = ?1 AND (?2 IS NULL OR id = ?2)
        AND (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))",
    bump_depth: "UPDATE webhook_inbox_depth SET jobs = jobs + ?2 WHERE queue = ?1",
    purge: "DELETE FROM Jobs WHERE job_type = ?1 AND status = 'Done'
        AND done_at < CAST(strftime('%s', 'now') AS INTEGER) - ?2",
    finish: "UPDATE Jobs SET status = ?5, attempts = ?4, lock_by = NULL, lock_at = NULL,
            done_at = CAST(strftime('%s', 'now') AS INTEGER), last_result = ?6,
            run_at = CAST(strftime('%s', 'now') AS INTEGER) + ?7
        WHERE id = ?1 AND lock_by = ?2 AND status = 'Running' AND attempts = ?3",
    // A job `?2` fetched, marked as running before its handler starts.
    start: "UPDATE Jobs SET status = 'Running', lock_at = CAST(strftime('%s', 'now') AS INTEGER)
        WHERE id = ?1 AND lock_by = ?2 AND status IN ('Queued', 'Running')
        RETURNING attempts",
    // Every takeover of a job (the sweep, apalis's own) counts an attempt: the same count
    // and holder mean the same attempt. The holder is cleared with it, so that a late end
    // of an attempt taken over cannot write over the job done.
    complete: "UPDATE Jobs SET status = 'Done', done_at = CAST(strftime('%s', 'now') AS INTEGER),
            attempts = ?4, lock_by = NULL, lock_at = NULL
        WHERE id = ?1 AND lock_by = ?2 AND status = 'Running' AND attempts = ?3",
    done: "SELECT 1 FROM Jobs WHERE id = ?1 AND status = 'Done' AND lock_by IS NULL AND attempts = ?2",
    alive: "UPDATE Workers SET last_seen = CAST(strftime('%s', 'now') AS INTEGER)
        WHERE worker_type = ?1 AND id = ?2",
    // Jobs taken by workers of this queue silent for ?3 seconds, other than ?2.
    orphans: "SELECT Jobs.id, Jobs.status, Jobs.attempts, Jobs.max_attempts, Jobs.lock_by
        FROM Jobs JOIN Workers ON Jobs.lock_by = Workers.id
        WHERE Jobs.job_type = ?1 AND Jobs.status IN ('Running', 'Queued') AND Workers.id <> ?2
        AND CAST(strftime('%s', 'now') AS INTEGER) - Workers.last_seen >= ?3",
    stranded: "SELECT id, status, attempts, max_attempts, lock_by FROM Jobs
        WHERE job_type = ?1 AND lock_by = ?2 AND status = 'Running'
        AND lock_at <= CAST(strftime('%s', 'now') AS INTEGER) - ?3",
    orphan_dead: "UPDATE Jobs SET status = 'Killed', attempts = attempts + 1,
            lock_by = NULL, lock_at = NULL, done_at = CAST(strftime('%s', 'now') AS INTEGER),
            last_result = ?3
        WHERE id = ?1 AND lock_by = ?2 AND status = 'Running'",
    orphan_retry: "UPDATE Jobs SET status = 'Failed', attempts = attempts + 1,
            lock_by = NULL, lock_at = NULL, done_at = CAST(strftime('%s', 'now') AS INTEGER),
            last_result = ?3, run_at = CAST(strftime('%s', 'now') AS INTEGER) + ?4
        WHERE id = ?1 AND lock_by = ?2 AND status = 'Running'",
    unfetch: "UPDATE Jobs SET status = 'Pending', lock_by = NULL, lock_at = NULL
        WHERE job_type = ?1 AND lock_by = ?2 AND status = 'Queued' AND (?3 IS NULL OR id = ?3)",
    job: "SELECT id, status, attempts, max_attempts, last_result, job FROM Jobs
        WHERE job_type = ?1 AND id = ?2",
    attempts: "SELECT attempt, worker, started_at, ended_at, outcome, error
        FROM webhook_inbox_attempts WHERE job_id = ?1 ORDER BY started_at, attempt",
    purge_before: "DELETE FROM Jobs WHERE job_type = ?1 AND status = 'Done' AND done_at < ?2 / 1000",
    ended: "SELECT (ended_at - ?2) / ?3, outcome, COUNT(*)
        FROM webhook_inbox_attempts WHERE queue = ?1 AND ended_at >= ?2
        GROUP BY 1, 2",
    unmark_abandoned: "UPDATE Jobs SET attempts = MAX(attempts - 1, 0), last_result = NULL
        WHERE job_type = ?1 AND status = 'Pending' AND last_result = ?2",
};

// Jobs waiting or running: what the bound counts.
const DEPTH: &str = "SELECT COUNT(*) FROM Jobs WHERE job_type = ?1
    AND (status IN ('Pending', 'Queued', 'Running') OR (status = 'Failed' AND attempts < max_attempts))";
// The bound's counter: jobs this queue took in since its last count, plus that count. It is
// counted again when it reaches the bound (workers finish jobs without telling it).
const CREATE_DEPTH: &str = "CREATE TABLE IF NOT EXISTS webhook_inbox_depth (
    queue TEXT PRIMARY KEY,
    jobs INTEGER NOT NULL
)";
const ADMIT: &str = "UPDATE webhook_inbox_depth SET jobs = jobs + ?3
    WHERE queue = ?1 AND jobs + ?3 <= ?2 RETURNING jobs";
const SET_DEPTH: &str = "INSERT INTO webhook_inbox_depth (queue, jobs) VALUES (?1, ?2)
    ON CONFLICT (queue) DO UPDATE SET jobs = excluded.jobs";

/// Now, in milliseconds since the Unix epoch.
macro_rules! now_ms {
    () => {
        "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)"
    };
}

/// What the inbox keeps to be looked at: each attempt of each job (written by triggers on
/// the job's state, in the statement that changes it), and the index of the deliveries' ids.
const BROWSE_SCHEMA: [&str; 8] = [
    "CREATE TABLE IF NOT EXISTS webhook_inbox_attempts (
        job_id TEXT NOT NULL,
        queue TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        worker TEXT,
        started_at INTEGER NOT NULL,
        ended_at INTEGER,
        outcome TEXT NOT NULL DEFAULT 'running',
        error TEXT
    )",
    "CREATE INDEX IF NOT EXISTS webhook_inbox_attempts_job ON webhook_inbox_attempts (job_id)",
    "CREATE INDEX IF NOT EXISTS webhook_inbox_attempts_by_end ON webhook_inbox_attempts (queue, ended_at, outcome)",
    concat!(
        "CREATE TRIGGER IF NOT EXISTS webhook_inbox_attempt_start AFTER UPDATE OF status ON Jobs
        WHEN NEW.status = 'Running' AND OLD.status <> 'Running' BEGIN
            INSERT INTO webhook_inbox_attempts (job_id, queue, attempt, worker, started_at)
            VALUES (NEW.id, NEW.job_type, NEW.attempts + 1, NEW.lock_by, ",
        now_ms!(),
        ");
        END"
    ),
    concat!(
        "CREATE TRIGGER IF NOT EXISTS webhook_inbox_attempt_end AFTER UPDATE OF status ON Jobs
        WHEN OLD.status = 'Running' AND NEW.status IN ('Done', 'Failed', 'Killed') BEGIN
            UPDATE webhook_inbox_attempts SET ended_at = ",
        now_ms!(),
        ", outcome = CASE WHEN NEW.status = 'Done' THEN 'done'
                    WHEN NEW.status = 'Killed' OR NEW.attempts >= NEW.max_attempts THEN 'dead'
                    ELSE 'failed' END,
                error = CASE WHEN NEW.status = 'Done' THEN NULL ELSE NEW.last_result END
            WHERE job_id = NEW.id AND ended_at IS NULL;
        END"
    ),
    // A running job put back in the queue by anything but its attempt's end (apalis's own
    // recovery of a silent worker's jobs): the attempt ended there, cut short. Otherwise
    // its record stayed open, and the next attempt's end closed both with its outcome.
    concat!(
        "CREATE TRIGGER IF NOT EXISTS webhook_inbox_attempt_taken AFTER UPDATE OF status ON Jobs
        WHEN OLD.status = 'Running' AND NEW.status NOT IN ('Running', 'Done', 'Failed', 'Killed')
        BEGIN
            UPDATE webhook_inbox_attempts SET ended_at = ",
        now_ms!(),
        ", outcome = 'failed', error = '",
        taken_back!(),
        "' WHERE job_id = NEW.id AND ended_at IS NULL;
        END"
    ),
    "CREATE TRIGGER IF NOT EXISTS webhook_inbox_attempts_gone AFTER DELETE ON Jobs BEGIN
        DELETE FROM webhook_inbox_attempts WHERE job_id = OLD.id;
    END",
    // On the small metadata the door writes, not the job: an insert parses no body. The
    // expression is `field("id")`'s, as SQLite needs to use it.
    "CREATE INDEX IF NOT EXISTS webhook_jobs_delivery ON Jobs
        ((CASE WHEN json_valid(metadata) THEN json_extract(metadata, '$.\"webhook.id\"') END))",
];

/// The tables an SQLite file holding an inbox has: apalis's, the bound's and the attempts'
/// (the dedup marks' may be elsewhere).
const INBOX_TABLES: [&str; 4] = [
    "Jobs",
    "Workers",
    "webhook_inbox_depth",
    "webhook_inbox_attempts",
];

impl Inbox<Sqlite> {
    /// Opens (or creates) the inbox in the SQLite file at `path`: apalis's tables, migrated
    /// to the current schema, and the dedup marks.
    pub async fn open(path: impl AsRef<std::path::Path>) -> Result<Self, InboxError> {
        Self::open_with(SqliteConnectOptions::new().filename(path)).await
    }

    /// Opens the inbox at an sqlx URL (`sqlite://webhooks.db`).
    pub async fn connect(url: &str) -> Result<Self, InboxError> {
        let options = url.parse::<SqliteConnectOptions>().map_err(Sqlite::error)?;
        Self::open_with(options).await
    }

    /// Opens the inbox already in the SQLite file at `path`, creating and changing nothing:
    /// no file, table or migration, and the file's journal mode left as it is. A file that
    /// holds no inbox is refused. For tools that look at an inbox a receiver keeps (the
    /// `webhook-inbox` command line), where a mistyped path must not become a new one, nor
    /// an unrelated database be written to.
    pub async fn open_existing(path: impl AsRef<std::path::Path>) -> Result<Self, InboxError> {
        Self::attach(SqliteConnectOptions::new().filename(path)).await
    }

    /// [`open_existing`](Self::open_existing) with the file and its options read from an
    /// sqlx URL (`sqlite://webhooks.db`); a `mode=rwc` in it creates nothing either.
    pub(crate) async fn attach(options: SqliteConnectOptions) -> Result<Self, InboxError> {
        let name = options.get_filename().display().to_string();
        let options = options
            .create_if_missing(false)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options)
            .await
            .map_err(Sqlite::error)?;
        let present: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (SELECT value FROM json_each(?))",
        )
        .bind(serde_json::to_string(&INBOX_TABLES).unwrap_or_default())
        .fetch_all(&pool)
        .await
        .map_err(Sqlite::error)?;
        InboxError::unless_inbox(&name, &INBOX_TABLES, &present)?;
        let store = SqliteStore::new(pool.clone());
        Ok(Self::from_parts(pool, store))
    }

    async fn open_with(options: SqliteConnectOptions) -> Result<Self, InboxError> {
        let pool = open_pool(options, SqliteSynchronous::Full).await?;
        // apalis's own `setup` would also turn `synchronous` off on one of the pool's
        // connections: the migrations alone keep every commit durable.
        SqliteStorage::<()>::migrations()
            .run(&pool)
            .await
            .map_err(|err| Sqlite::error(err.into()))?;
        for statement in [CREATE_DEPTH].iter().chain(&BROWSE_SCHEMA) {
            sqlx::query(*statement)
                .execute(&pool)
                .await
                .map_err(Sqlite::error)?;
        }
        let store = SqliteStore::new(pool.clone());
        store.create_table().await?;
        Ok(Self::from_parts(pool, store))
    }
}

/// `args` as this database binds them.
fn arguments(args: &[Arg<'_>]) -> Result<SqliteArguments, InboxError> {
    let mut bound = SqliteArguments::default();
    for arg in args {
        match *arg {
            Arg::Text(text) => bound.add(text),
            Arg::MaybeText(text) => bound.add(text),
            Arg::Int(number) => bound.add(number),
            Arg::Secs(secs) => bound.add(whole_secs(secs)),
        }
        .map_err(|err| InboxError::database(err, false))?;
    }
    Ok(bound)
}

/// `delay` in the queue's whole seconds, rounded up: a delay is never cut short.
fn whole_secs(delay: Duration) -> i64 {
    let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

impl Dialect for Sqlite {}

impl Backend for Sqlite {
    type Db = Db;
    type Store = SqliteStore;
    type Storage = PollWith<SqliteStorage<StoredDelivery>, Strategy>;

    const NAME: &'static str = "SqliteInbox";
    const BEGIN: Option<&'static str> = Some(BEGIN_IMMEDIATE);
    const ONE_WRITER: bool = true;

    fn writers(store: &SqliteStore) -> std::sync::Arc<crate::tx::Writers> {
        std::sync::Arc::clone(crate::tx::TxStore::tx_writers(store))
    }

    fn transient(code: &str) -> bool {
        transient(code)
    }

    async fn mark_many(
        store: &SqliteStore,
        tx: &mut DbTx<Self>,
        keys: &[(&str, Duration)],
    ) -> Result<Vec<Marked>, InboxError> {
        Ok(store.mark_many(tx, keys).await?)
    }

    async fn push(
        tx: &mut DbTx<Self>,
        queue: &str,
        tasks: Vec<Task<Vec<u8>>>,
    ) -> Result<(), InboxError> {
        // All the jobs in one statement, with the columns apalis's own insert writes (the
        // rest take the table's defaults: pending, no attempt yet): one step of the writer
        // for a batch at the door rather than one a job.
        let rows = vec!["(?, ?, ?, ?, ?, ?, ?)"; tasks.len()].join(", ");
        let sql = format!(
            "INSERT INTO Jobs (job, id, job_type, max_attempts, run_at, priority, metadata)
            VALUES {rows}"
        );
        let now = i64::try_from(crate::clock::unix_millis(std::time::SystemTime::now()) / 1000)
            .unwrap_or(i64::MAX);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for task in &tasks {
            let id = task.task_id().map(ToString::to_string);
            let metadata = serde_json::to_string(task.metadata())
                .map_err(|err| InboxError::database(err, false))?;
            query = query
                .bind(&task.args)
                .bind(id.unwrap_or_else(|| ulid::Ulid::generate().to_string()))
                .bind(queue)
                .bind(
                    task.max_attempts()
                        .map_or(25, |max| i64::try_from(max).unwrap_or(i64::MAX)),
                )
                .bind(
                    task.run_at()
                        .map_or(now, |at| i64::try_from(at).unwrap_or(now)),
                )
                .bind(i64::try_from(task.priority().unwrap_or_default()).unwrap_or(i64::MAX))
                .bind(metadata);
        }
        query
            .execute(&mut **tx)
            .await
            .map(drop)
            .map_err(Sqlite::error)
    }

    async fn admit(
        tx: &mut DbTx<Self>,
        queue: &str,
        max: i64,
        added: i64,
    ) -> Result<bool, InboxError> {
        let counted: Option<i64> = sqlx::query_scalar(ADMIT)
            .bind(queue)
            .bind(max)
            .bind(added)
            .fetch_optional(&mut **tx)
            .await
            .map_err(Sqlite::error)?;
        if counted.is_some() {
            return Ok(true);
        }
        // At the bound by the counter (or no counter yet): count the jobs, these
        // included. SQLite's one writer makes the count and the write one step.
        let jobs: i64 = sqlx::query_scalar(DEPTH)
            .bind(queue)
            .fetch_one(&mut **tx)
            .await
            .map_err(Sqlite::error)?;
        sqlx::query(SET_DEPTH)
            .bind(queue)
            .bind(jobs)
            .execute(&mut **tx)
            .await
            .map_err(Sqlite::error)?;
        Ok(jobs <= max)
    }

    const SQL: Statements = STATEMENTS;

    const JOBS: &'static str = "Jobs";
    const PARAM: char = '?';
    const LAST_RESULT: &'static str = "last_result";
    const REPLAY_SET: &'static str = "status = 'Pending', attempts = 0, lock_by = NULL,
        lock_at = NULL, done_at = NULL, last_result = NULL,
        run_at = CAST(strftime('%s', 'now') AS INTEGER)";

    fn field(name: &str) -> String {
        // `json_extract` fails on text that is not JSON: another queue's metadata may be
        // anything, and an index whose expression fails would fail that queue's inserts.
        format!(
            "(CASE WHEN json_valid(metadata) THEN json_extract(metadata, '$.\"{METADATA_PREFIX}{name}\"') END)"
        )
    }

    async fn execute_on(
        conn: &mut sqlx::SqliteConnection,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> Result<u64, InboxError> {
        let query = sqlx::query_with(sql, arguments(args)?);
        Ok(query
            .execute(conn)
            .await
            .map_err(Sqlite::error)?
            .rows_affected())
    }

    async fn fetch<T: Row>(
        pool: &SqlitePool,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> Result<Vec<T>, InboxError> {
        let query = sqlx::query_as_with(sql, arguments(args)?);
        query.fetch_all(pool).await.map_err(Sqlite::error)
    }

    async fn fetch_built<T: Row>(
        pool: &SqlitePool,
        sql: String,
        args: &[Arg<'_>],
    ) -> Result<Vec<T>, InboxError> {
        let query = sqlx::query_as_with(sqlx::AssertSqlSafe(sql), arguments(args)?);
        query.fetch_all(pool).await.map_err(Sqlite::error)
    }

    async fn execute_built(
        pool: &SqlitePool,
        sql: String,
        args: &[Arg<'_>],
    ) -> Result<u64, InboxError> {
        let query = sqlx::query_with(sqlx::AssertSqlSafe(sql), arguments(args)?);
        Ok(query
            .execute(pool)
            .await
            .map_err(Sqlite::error)?
            .rows_affected())
    }

    async fn cleanup(store: &SqliteStore) -> Result<(), InboxError> {
        store.cleanup(10_000).await?;
        Ok(())
    }

    fn storage(
        pool: &Pool<Self>,
        settings: &Settings,
        batch: usize,
        wakeups: tokio::sync::watch::Receiver<u64>,
    ) -> Self::Storage {
        let config = apalis_sqlite::Config::default()
            .queue(&*settings.queue)
            .batch_size(batch)
            .heartbeat_interval(settings.heartbeat)
            .missed_heartbeats(shared::MISSED_HEARTBEATS)
            // The service writes each attempt's start and outcome itself (`queue.rs`).
            .lock_tasks(false)
            .persist_results(false);
        SqliteStorage::new(pool)
            .with_config(config)
            .poll_with_strategy(shared::strategy(settings, wakeups))
    }

    fn run<H, A>(
        pool: &Pool<Self>,
        settings: &Settings,
        (name, batch): (String, usize),
        wakeups: tokio::sync::watch::Receiver<u64>,
        service: JobService<H, A, Self>,
        signal: BoxFuture<()>,
    ) -> BoxFuture<Result<(), InboxError>>
    where
        H: Handler<A, Db>,
        A: 'static,
    {
        let backend = Self::storage(pool, settings, batch, wakeups);
        let worker = WorkerBuilder::new(name)
            .backend(backend)
            .layer(ConcurrencyLimitLayer::new(batch))
            .build(service);
        Box::pin(async move {
            let stop = async move {
                signal.await;
                Ok::<(), WorkerError>(())
            };
            worker.run_until(stop).await.map_err(shared::worker_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delivery_id_index_is_the_listings_expression() {
        // SQLite uses an index on an expression only for that very expression.
        let index = BROWSE_SCHEMA
            .iter()
            .find(|statement| statement.contains("webhook_jobs_delivery"))
            .unwrap();
        assert!(index.contains(&Sqlite::field("id")), "{index}");
    }
}
