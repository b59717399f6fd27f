//! The inbox in one SQLite file: the [`Sqlite`] dialect, its schema and its statements.

use std::time::Duration;

use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqliteSynchronous};
use sqlx::Arguments as _;
use sqlx::{Sqlite as Db, SqliteConnection};

use super::dialect::{Arg, Backend, DbTx, Dialect, Pool, Row, Statements};
use super::error::InboxError;
use super::Inbox;
use crate::store::sqlite::{open_pool, transient, BEGIN_IMMEDIATE};
use crate::store::{BoxFuture, Marked, SqliteStore};

/// SQLite, for [`Inbox`]: one process on one machine, no service to run.
#[derive(Debug, Clone, Copy)]
pub struct Sqlite;

/// The inbox in an SQLite file: one process on one machine, no service to run, nothing
/// lost when it restarts. See [the module](super) for what the layer answers.
///
/// The file holds the inbox's tables (`webhook_inbox_jobs`, `webhook_inbox_job_attempts`,
/// `webhook_inbox_depth`, `webhook_inbox_schema`) and the dedup marks (`webhook_claims`,
/// the table of [`SqliteStore`]). Each commit waits for the disk (`synchronous = FULL`): a
/// delivery answered 202 survives a power cut, not only a killed process.
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

/// Now, in milliseconds since the Unix epoch (one value for a whole statement).
macro_rules! now {
    () => {
        "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)"
    };
}

/// The statements on the queue's jobs (see [`Statements`] for their arguments).
const STATEMENTS: Statements = Statements {
    // Each state counted on the index of (queue, state): a million done jobs are a count of
    // index entries, not a read of each job.
    counts: "SELECT
            (SELECT COUNT(*) FROM webhook_inbox_jobs WHERE queue = $1 AND state IN ('queued', 'retrying')),
            (SELECT COUNT(*) FROM webhook_inbox_jobs WHERE queue = $1 AND state = 'running'),
            (SELECT COUNT(*) FROM webhook_inbox_jobs WHERE queue = $1 AND state = 'retrying'),
            (SELECT COUNT(*) FROM webhook_inbox_jobs WHERE queue = $1 AND state = 'dead'),
            (SELECT COUNT(*) FROM webhook_inbox_jobs WHERE queue = $1 AND state = 'done')",
    dead: "SELECT id, delivery, attempt, last_error FROM webhook_inbox_jobs
        WHERE queue = $1 AND state = 'dead' ORDER BY finished_at DESC LIMIT $2",
    replay: concat!(
        "UPDATE webhook_inbox_jobs SET state = 'queued', attempt = 0, holder = NULL,
            lease_until = NULL, last_error = NULL, finished_at = NULL, run_at = ",
        now!(),
        " WHERE queue = $1 AND state = 'dead' AND ($2 IS NULL OR id = $2)"
    ),
    bump_depth: "UPDATE webhook_inbox_depth SET jobs = jobs + $2 WHERE queue = $1",
    // The file's one writer makes the choice and the update one step.
    take: concat!(
        "UPDATE webhook_inbox_jobs SET state = 'running', attempt = attempt + 1, holder = $2,
            lease_until = ",
        now!(),
        " + $4
        WHERE id IN (SELECT id FROM webhook_inbox_jobs
            WHERE queue = $1 AND state IN ('queued', 'retrying') AND run_at <= ",
        now!(),
        " ORDER BY run_at LIMIT $3)
        RETURNING id, delivery, attempt, max_attempts"
    ),
    started: concat!(
        "INSERT INTO webhook_inbox_job_attempts (job_id, queue, attempt, worker, started_at)
        SELECT id, queue, attempt, holder, ",
        now!(),
        " FROM webhook_inbox_jobs WHERE id IN (SELECT value FROM json_each($1))"
    ),
    renew: concat!(
        "UPDATE webhook_inbox_jobs SET lease_until = ",
        now!(),
        " + $3
        WHERE holder = $1 AND state = 'running' AND id IN (SELECT value FROM json_each($2))"
    ),
    lapsed: concat!(
        "SELECT id, attempt, max_attempts, holder FROM webhook_inbox_jobs
        WHERE queue = $1 AND state = 'running' AND lease_until < ",
        now!()
    ),
    end: concat!(
        "UPDATE webhook_inbox_jobs SET state = $4, holder = NULL, lease_until = NULL,
            last_error = $5, finished_at = ",
        now!(),
        ", run_at = ",
        now!(),
        " + $6
        WHERE id = $1 AND holder = $2 AND attempt = $3 AND state = 'running'
        AND ($7 = 0 OR lease_until < ",
        now!(),
        ")"
    ),
    end_attempt: concat!(
        "UPDATE webhook_inbox_job_attempts SET ended_at = ",
        now!(),
        ", outcome = $3, error = $4
        WHERE job_id = $1 AND attempt = $2 AND ended_at IS NULL"
    ),
    done: "SELECT 1 FROM webhook_inbox_jobs WHERE id = $1 AND state = 'done' AND attempt = $2",
    job: "SELECT id, state, attempt, max_attempts, last_error, delivery FROM webhook_inbox_jobs
        WHERE queue = $1 AND id = $2",
    attempts: "SELECT attempt, worker, started_at, ended_at, outcome, error
        FROM webhook_inbox_job_attempts WHERE job_id = $1 ORDER BY started_at, attempt",
    purge_attempts: "DELETE FROM webhook_inbox_job_attempts WHERE job_id IN
        (SELECT id FROM webhook_inbox_jobs WHERE queue = $1 AND state = 'done' AND finished_at < $2)",
    purge_before: "DELETE FROM webhook_inbox_jobs
        WHERE queue = $1 AND state = 'done' AND finished_at < $2",
    ended: "SELECT (ended_at - $2) / $3, outcome, COUNT(*)
        FROM webhook_inbox_job_attempts WHERE queue = $1 AND ended_at >= $2
        GROUP BY 1, 2",
};

// Jobs waiting or running: what the bound counts.
const DEPTH: &str = "SELECT COUNT(*) FROM webhook_inbox_jobs
    WHERE queue = $1 AND state IN ('queued', 'retrying', 'running')";
// The bound's counter: jobs this queue took in since its last count, plus that count. It is
// counted again when it reaches the bound (workers finish jobs without telling it).
const ADMIT: &str = "UPDATE webhook_inbox_depth SET jobs = jobs + $3
    WHERE queue = $1 AND jobs + $3 <= $2 RETURNING jobs";
const SET_DEPTH: &str = "INSERT INTO webhook_inbox_depth (queue, jobs) VALUES ($1, $2)
    ON CONFLICT (queue) DO UPDATE SET jobs = excluded.jobs";

/// The schema, migration by migration. Every index names the statements that read it.
const MIGRATIONS: &[&[&str]] = &[&[
    "CREATE TABLE webhook_inbox_jobs (
        id TEXT PRIMARY KEY NOT NULL,
        queue TEXT NOT NULL,
        event_id TEXT NOT NULL,
        layer TEXT NOT NULL,
        event_type TEXT,
        tenant TEXT,
        received_at INTEGER NOT NULL,
        delivery BLOB NOT NULL,
        state TEXT NOT NULL DEFAULT 'queued',
        attempt INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        run_at INTEGER NOT NULL,
        holder TEXT,
        lease_until INTEGER,
        last_error TEXT,
        finished_at INTEGER
    )",
    // `take`.
    "CREATE INDEX webhook_inbox_jobs_due ON webhook_inbox_jobs (queue, run_at)
        WHERE state IN ('queued', 'retrying')",
    // `lapsed` (the sweep).
    "CREATE INDEX webhook_inbox_jobs_leased ON webhook_inbox_jobs (queue, lease_until)
        WHERE state = 'running'",
    // A listing of every job, newest first; the activity's deliveries accepted.
    "CREATE INDEX webhook_inbox_jobs_listed ON webhook_inbox_jobs (queue, id)",
    // A listing by state; `counts`, `dead`, the bound's count, `replay`.
    "CREATE INDEX webhook_inbox_jobs_by_state ON webhook_inbox_jobs (queue, state, id)",
    // A listing by layer.
    "CREATE INDEX webhook_inbox_jobs_by_layer ON webhook_inbox_jobs (queue, layer, id)",
    // A listing by event type.
    "CREATE INDEX webhook_inbox_jobs_by_type ON webhook_inbox_jobs (queue, event_type, id)",
    // A listing by event id.
    "CREATE INDEX webhook_inbox_jobs_by_event ON webhook_inbox_jobs (event_id)",
    // `purge_before`, `purge_attempts`.
    "CREATE INDEX webhook_inbox_jobs_finished ON webhook_inbox_jobs (queue, finished_at)
        WHERE state = 'done'",
    "CREATE TABLE webhook_inbox_job_attempts (
        job_id TEXT NOT NULL,
        queue TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        worker TEXT,
        started_at INTEGER NOT NULL,
        ended_at INTEGER,
        outcome TEXT NOT NULL DEFAULT 'running',
        error TEXT
    )",
    // `attempts`, `end_attempt`, `purge_attempts`.
    "CREATE INDEX webhook_inbox_job_attempts_job ON webhook_inbox_job_attempts (job_id, attempt)",
    // `ended` (the activity).
    "CREATE INDEX webhook_inbox_job_attempts_by_end
        ON webhook_inbox_job_attempts (queue, ended_at, outcome)",
    "CREATE TABLE IF NOT EXISTS webhook_inbox_depth (
        queue TEXT PRIMARY KEY,
        jobs INTEGER NOT NULL
    )",
]];

/// The tables an SQLite file holding an inbox has (the dedup marks' may be elsewhere).
const INBOX_TABLES: [&str; 4] = [
    "webhook_inbox_jobs",
    "webhook_inbox_job_attempts",
    "webhook_inbox_depth",
    "webhook_inbox_schema",
];

impl Inbox<Sqlite> {
    /// Opens (or creates) the inbox in the SQLite file at `path`: its tables, migrated to
    /// the current schema, and the dedup marks.
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
        super::schema::migrate::<Sqlite>(&pool).await?;
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
            Arg::Bytes(bytes) => bound.add(bytes),
        }
        .map_err(|err| InboxError::database(err, false))?;
    }
    Ok(bound)
}

impl Dialect for Sqlite {}

impl Backend for Sqlite {
    type Db = Db;
    type Store = SqliteStore;

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
    const NOW: &'static str = now!();
    const MIGRATIONS: &'static [&'static [&'static str]] = MIGRATIONS;
    const SCHEMA_TABLE: &'static str = "SELECT COUNT(*) FROM sqlite_master
        WHERE type = 'table' AND name = 'webhook_inbox_schema'";
    // The migration's transaction is `BEGIN IMMEDIATE`: it holds the file's write lock.
    const MIGRATION_LOCK: Option<&'static str> = None;
    const NOTIFY: Option<&'static str> = None;

    async fn execute_on(
        conn: &mut SqliteConnection,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<u64, InboxError> {
        let query = sqlx::query_with(sqlx::AssertSqlSafe(sql), arguments(args)?);
        Ok(query
            .execute(conn)
            .await
            .map_err(Sqlite::error)?
            .rows_affected())
    }

    async fn fetch_on<T: Row>(
        conn: &mut SqliteConnection,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<T>, InboxError> {
        let query = sqlx::query_as_with(sqlx::AssertSqlSafe(sql), arguments(args)?);
        query.fetch_all(conn).await.map_err(Sqlite::error)
    }

    async fn cleanup(store: &SqliteStore) -> Result<(), InboxError> {
        store.cleanup(10_000).await?;
        Ok(())
    }

    fn listen(
        _pool: &Pool<Self>,
        _queue: &str,
        _wake: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    ) -> BoxFuture<()> {
        // Only this process writes to the file: its door wakes its workers itself.
        Box::pin(std::future::pending())
    }
}
