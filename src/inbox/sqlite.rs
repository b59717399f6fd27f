//! The inbox in one SQLite file: the [`Sqlite`] dialect, its schema and its statements.

use std::time::Duration;

use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqliteSynchronous};
use sqlx::Arguments as _;
use sqlx::{Sqlite as Db, SqliteConnection};

use std::fmt::Write as _;

use super::dialect::{Arg, Backend, DbTx, Dialect, Pool, Row, Statements};
use super::door::Batch;
use super::error::InboxError;
use super::{sql, Inbox};
use crate::store::sqlite::{open_pool, transient, BEGIN_IMMEDIATE};
use crate::store::{BoxFuture, Marked, SqliteStore};

/// SQLite, for [`Inbox`]: one process on one machine, no service to run.
#[derive(Debug, Clone, Copy)]
pub struct Sqlite;

/// The inbox in an SQLite file: one process on one machine, no service to run, nothing
/// lost when it restarts. See [the module](super) for what the layer answers.
///
/// The file holds the inbox's tables (`webhook_inbox_jobs`, `webhook_inbox_job_attempts`,
/// `webhook_inbox_depth`, `webhook_inbox_done`, `webhook_inbox_activity`,
/// `webhook_inbox_schema`) and the dedup marks (`webhook_claims`,
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
    replay: sql::replay!(now!()),
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
        RETURNING id, delivery, body, attempt, max_attempts"
    ),
    started: Some(concat!(
        "INSERT INTO webhook_inbox_job_attempts (job_id, queue, attempt, worker, started_at)
        SELECT id, queue, attempt, holder, ",
        now!(),
        " FROM webhook_inbox_jobs WHERE id IN (SELECT value FROM json_each($1))"
    )),
    renew: concat!(
        "UPDATE webhook_inbox_jobs SET lease_until = ",
        now!(),
        " + $3
        WHERE holder = $1 AND state = 'running' AND id IN (SELECT value FROM json_each($2))"
    ),
    lapsed: sql::lapsed!(now!()),
    end: concat!(sql::end_job!(now!()), " RETURNING id"),
    end_attempt: Some(concat!(
        "UPDATE webhook_inbox_job_attempts SET ended_at = ",
        now!(),
        ", outcome = $3, error = $4
        WHERE job_id = $1 AND attempt = $2 AND ended_at IS NULL RETURNING ended_at"
    )),
    end_done: Some(sql::TALLY_DONE),
    end_activity: Some(sql::TALLY_ACTIVITY),
    purge_accepted: sql::purge_accepted!("instr"),
    ..sql::SHARED
};

/// The door's insert, its rows' `VALUES` after it.
const INSERT_JOBS: &str = "INSERT INTO webhook_inbox_jobs (id, queue, event_id, layer, event_type,
    tenant, received_at, delivery, body, max_attempts, run_at) VALUES ";

const SET_DEPTH: &str = "INSERT INTO webhook_inbox_depth (queue, jobs) VALUES ($1, $2)
    ON CONFLICT (queue) DO UPDATE SET jobs = excluded.jobs";

/// The schema, migration by migration.
const MIGRATIONS: &[&[&str]] = &[
    sql::first_migration!(
        int: "INTEGER",
        bytes: "BLOB",
        options: "",
        after_jobs: []
    ),
    sql::SECOND_MIGRATION,
    sql::third_migration!(position: "instr"),
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
        .bind(serde_json::to_string(&sql::INBOX_TABLES).unwrap_or_default())
        .fetch_all(&pool)
        .await
        .map_err(Sqlite::error)?;
        InboxError::unless_inbox(&name, &sql::INBOX_TABLES, &present)?;
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

    fn writers(store: &SqliteStore) -> std::sync::Arc<crate::store::writers::Writers> {
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

    async fn insert_jobs(tx: &mut DbTx<Self>, batch: &Batch<'_>) -> Result<(), InboxError> {
        // One step of the writer: every job in one statement, bound one by one.
        const COLUMNS: usize = 10;
        let mut sql = String::from(INSERT_JOBS);
        let mut args = Vec::with_capacity(batch.jobs.len() * COLUMNS);
        for (row, job) in batch.jobs.iter().enumerate() {
            if row > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for column in 1..=COLUMNS {
                let _ = write!(sql, "${}, ", row * COLUMNS + column);
            }
            sql.push_str(now!());
            sql.push(')');
            let stored = job.stored;
            args.extend([
                Arg::Text(&job.id),
                Arg::Text(batch.queue),
                Arg::Text(&stored.id),
                Arg::Text(&stored.layer),
                Arg::MaybeText(stored.event_type.as_deref()),
                Arg::MaybeText(stored.tenant.as_deref()),
                Arg::Int(stored.received_at),
                Arg::Bytes(&job.delivery),
                Arg::Bytes(&stored.body),
                Arg::Int(batch.max_attempts),
            ]);
        }
        Self::execute_on(tx, &sql, &args).await?;
        let counted = [
            Arg::Text(batch.queue),
            Arg::Int(batch.tick),
            Arg::Text("accepted"),
            Arg::Int(batch.shard),
            Arg::Int(i64::try_from(batch.jobs.len()).unwrap_or(i64::MAX)),
        ];
        Self::execute_on(tx, sql::TALLY_ACTIVITY, &counted).await?;
        Ok(())
    }

    async fn admit(
        tx: &mut DbTx<Self>,
        queue: &str,
        max: i64,
        added: i64,
    ) -> Result<bool, InboxError> {
        let counted: Option<i64> = sqlx::query_scalar(sql::ADMIT)
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
        let jobs: i64 = sqlx::query_scalar(sql::DEPTH)
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
    const REPLAYED: &'static str = sql::replayed!(now!());
    const MIGRATIONS: &'static [&'static [&'static str]] = MIGRATIONS;
    const SCHEMA_TABLE: &'static str = "SELECT COUNT(*) FROM sqlite_master
        WHERE type = 'table' AND name = 'webhook_inbox_schema'";
    // The migration's transaction is `BEGIN IMMEDIATE`: it holds the file's write lock.
    const MIGRATION_LOCK: Option<&'static str> = None;

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
