//! The inbox on PostgreSQL: the [`Postgres`] dialect, its schema and its statements.

use std::time::Duration;

use sqlx::postgres::{PgArguments, PgListener};
use sqlx::{Arguments as _, PgConnection, PgPool, Postgres as Db};

use super::dialect::{Arg, Backend, DbTx, Dialect, Pool, Row, Statements};
use super::error::InboxError;
use super::Inbox;
use crate::store::postgres::transient;
use crate::store::{BoxFuture, Marked, PostgresStore};

/// PostgreSQL, for [`Inbox`]: any number of receivers and workers on any number of
/// machines share one queue.
#[derive(Debug, Clone, Copy)]
pub struct Postgres;

/// The inbox on PostgreSQL: any number of receivers and workers, on any number of machines,
/// share one queue. See [the module](super) for what the layer answers.
///
/// The jobs live in the inbox's tables (`webhook_inbox_jobs`, `webhook_inbox_job_attempts`,
/// `webhook_inbox_depth`, `webhook_inbox_schema`, migrated by [`connect`](Self::connect)
/// and [`new`](Self::new)); the dedup marks in the table of [`PostgresStore`],
/// `webhook_claims`, written in the same transaction as the job. Each enqueue waits for its
/// commit, `synchronous_commit` on whatever the server's default: a delivery answered 202
/// is on disk.
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
pub type PostgresInbox = Inbox<Postgres>;

/// Now, in milliseconds since the Unix epoch: the clock, not the transaction's start (a
/// handler's transaction began before the handler ran).
macro_rules! now {
    () => {
        "(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT"
    };
}

/// The statements on the queue's jobs (see [`Statements`] for their arguments).
const STATEMENTS: Statements = Statements {
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
        " WHERE queue = $1 AND state = 'dead' AND ($2::TEXT IS NULL OR id = $2)"
    ),
    bump_depth: "UPDATE webhook_inbox_depth SET jobs = jobs + $2 WHERE queue = $1",
    // Workers on every machine take at once: each skips the rows another is taking.
    take: concat!(
        "UPDATE webhook_inbox_jobs AS jobs SET state = 'running', attempt = jobs.attempt + 1,
            holder = $2, lease_until = ",
        now!(),
        " + $4
        FROM (SELECT id FROM webhook_inbox_jobs
            WHERE queue = $1 AND state IN ('queued', 'retrying') AND run_at <= ",
        now!(),
        " ORDER BY run_at LIMIT $3 FOR UPDATE SKIP LOCKED) AS due
        WHERE jobs.id = due.id
        RETURNING jobs.id, jobs.delivery, jobs.attempt, jobs.max_attempts"
    ),
    started: concat!(
        "INSERT INTO webhook_inbox_job_attempts (job_id, queue, attempt, worker, started_at)
        SELECT id, queue, attempt, holder, ",
        now!(),
        " FROM webhook_inbox_jobs WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb))"
    ),
    renew: concat!(
        "UPDATE webhook_inbox_jobs SET lease_until = ",
        now!(),
        " + $3
        WHERE holder = $1 AND state = 'running'
        AND id IN (SELECT jsonb_array_elements_text($2::jsonb))"
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
    done: "SELECT 1::BIGINT FROM webhook_inbox_jobs WHERE id = $1 AND state = 'done' AND attempt = $2",
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
// counted again when it reaches the bound (workers finish jobs without telling it). Its row
// is updated last in each enqueue's transaction and stays locked until the commit: the
// check and the write are one step for every receiver on the database.
const ADMIT: &str = "UPDATE webhook_inbox_depth SET jobs = jobs + $3
    WHERE queue = $1 AND jobs + $3 <= $2 RETURNING jobs";
const ENSURE_DEPTH: &str =
    "INSERT INTO webhook_inbox_depth (queue, jobs) VALUES ($1, 0) ON CONFLICT (queue) DO NOTHING";
const LOCK_DEPTH: &str = "SELECT jobs FROM webhook_inbox_depth WHERE queue = $1 FOR UPDATE";
const SET_DEPTH: &str = "UPDATE webhook_inbox_depth SET jobs = $2 WHERE queue = $1";

/// The channel the door notifies once a batch commits, with the queue's name.
const CHANNEL: &str = "webhook_inbox";

/// The schema, migration by migration. Every index names the statements that read it.
const MIGRATIONS: &[&[&str]] = &[&[
    "CREATE TABLE webhook_inbox_jobs (
        id TEXT PRIMARY KEY,
        queue TEXT NOT NULL,
        event_id TEXT NOT NULL,
        layer TEXT NOT NULL,
        event_type TEXT,
        tenant TEXT,
        received_at BIGINT NOT NULL,
        delivery BYTEA NOT NULL,
        state TEXT NOT NULL DEFAULT 'queued',
        attempt BIGINT NOT NULL DEFAULT 0,
        max_attempts BIGINT NOT NULL,
        run_at BIGINT NOT NULL,
        holder TEXT,
        lease_until BIGINT,
        last_error TEXT,
        finished_at BIGINT
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
        attempt BIGINT NOT NULL,
        worker TEXT,
        started_at BIGINT NOT NULL,
        ended_at BIGINT,
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
        jobs BIGINT NOT NULL
    )",
]];

/// The tables a database holding an inbox has (the dedup marks' may have a name of the
/// app's own).
const INBOX_TABLES: [&str; 4] = [
    "webhook_inbox_jobs",
    "webhook_inbox_job_attempts",
    "webhook_inbox_depth",
    "webhook_inbox_schema",
];

impl Inbox<Postgres> {
    /// Connects to the database at `url` (a pool of its own, as
    /// [`PostgresStore::connect`] makes), migrates the inbox's schema and creates the marks'
    /// table. Safe to run from every replica at once.
    pub async fn connect(url: &str) -> Result<Self, InboxError> {
        let store = PostgresStore::connect(url).await?;
        Self::new(store.pool().clone()).await
    }

    /// The inbox on a pool of your own: migrates the inbox's schema and creates the marks'
    /// table. A start with the schema in place takes no lock and writes nothing.
    pub async fn new(pool: PgPool) -> Result<Self, InboxError> {
        super::schema::migrate::<Postgres>(&pool).await?;
        let store = PostgresStore::new(pool.clone());
        store.create_table().await?;
        Ok(Self::from_parts(pool, store))
    }

    /// Connects to the inbox already in the database at `url`, creating and changing
    /// nothing: no table or migration, and none of the locks that take. A database that
    /// holds no inbox is refused. For tools that look at an inbox receivers keep (the
    /// `webhook-inbox` command line).
    pub async fn connect_existing(url: &str) -> Result<Self, InboxError> {
        let store = PostgresStore::connect(url).await?;
        let pool = store.pool().clone();
        let present: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM unnest($1::TEXT[]) AS name WHERE to_regclass(name) IS NOT NULL",
        )
        .bind(INBOX_TABLES)
        .fetch_all(&pool)
        .await
        .map_err(Postgres::error)?;
        let place = sqlx::query_scalar::<_, String>("SELECT current_database()")
            .fetch_one(&pool)
            .await
            .map_err(Postgres::error)?;
        InboxError::unless_inbox(&format!("database {place}"), &INBOX_TABLES, &present)?;
        Ok(Self::from_parts(pool, store))
    }
}

/// `args` as this database binds them.
fn arguments(args: &[Arg<'_>]) -> Result<PgArguments, InboxError> {
    let mut bound = PgArguments::default();
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

impl Dialect for Postgres {}

impl Backend for Postgres {
    type Db = Db;
    type Store = PostgresStore;

    const NAME: &'static str = "PostgresInbox";
    const BEGIN: Option<&'static str> = None;
    // Concurrent transactions wait for the bound's counter only to commit.
    const ONE_WRITER: bool = false;

    fn writers(store: &PostgresStore) -> std::sync::Arc<crate::tx::Writers> {
        std::sync::Arc::clone(crate::tx::TxStore::tx_writers(store))
    }

    fn transient(code: &str) -> bool {
        transient(code)
    }

    async fn mark_many(
        store: &PostgresStore,
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
            .map_err(Postgres::error)?;
        if counted.is_some() {
            return Ok(true);
        }
        // At the bound by the counter (or no counter yet). Lock the counter first, then
        // count: a statement that starts after the lock sees every job committed by
        // whoever held it before, and those who come after add to this count.
        for statement in [ENSURE_DEPTH, LOCK_DEPTH] {
            sqlx::query(statement)
                .bind(queue)
                .execute(&mut **tx)
                .await
                .map_err(Postgres::error)?;
        }
        let jobs: i64 = sqlx::query_scalar(DEPTH)
            .bind(queue)
            .fetch_one(&mut **tx)
            .await
            .map_err(Postgres::error)?;
        sqlx::query(SET_DEPTH)
            .bind(queue)
            .bind(jobs)
            .execute(&mut **tx)
            .await
            .map_err(Postgres::error)?;
        Ok(jobs <= max)
    }

    const SQL: Statements = STATEMENTS;
    const NOW: &'static str = now!();
    const MIGRATIONS: &'static [&'static [&'static str]] = MIGRATIONS;
    const SCHEMA_TABLE: &'static str =
        "SELECT CASE WHEN to_regclass('webhook_inbox_schema') IS NULL THEN 0 ELSE 1 END::BIGINT";
    // Replicas starting together take turns, and look again once it is theirs.
    const MIGRATION_LOCK: Option<&'static str> =
        Some("SELECT pg_advisory_xact_lock(7245091368231790171)");
    const NOTIFY: Option<&'static str> = Some("SELECT pg_notify('webhook_inbox', $1)");

    async fn execute_on(
        conn: &mut PgConnection,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<u64, InboxError> {
        let query = sqlx::query_with(sqlx::AssertSqlSafe(sql), arguments(args)?);
        Ok(query
            .execute(conn)
            .await
            .map_err(Postgres::error)?
            .rows_affected())
    }

    async fn fetch_on<T: Row>(
        conn: &mut PgConnection,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<T>, InboxError> {
        let query = sqlx::query_as_with(sqlx::AssertSqlSafe(sql), arguments(args)?);
        query.fetch_all(conn).await.map_err(Postgres::error)
    }

    async fn cleanup(store: &PostgresStore) -> Result<(), InboxError> {
        store.cleanup().await?;
        Ok(())
    }

    fn listen(
        pool: &Pool<Self>,
        queue: &str,
        wake: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    ) -> BoxFuture<()> {
        let (pool, queue) = (pool.clone(), queue.to_owned());
        Box::pin(async move {
            loop {
                // On any failure, listen again (the poll finds what was committed
                // meanwhile).
                match listen_once(&pool, &queue, &wake).await {
                    Ok(never) => match never {},
                    Err(err) => {
                        tracing::debug!(error = %err, "the inbox's listener failed; listening again in a second");
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    }
}

/// Tells `wake` of each notification for `queue`, on a connection of its own (outside the
/// pool), until it fails.
async fn listen_once(
    pool: &PgPool,
    queue: &str,
    wake: &tokio::sync::watch::Sender<u64>,
) -> Result<std::convert::Infallible, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    loop {
        let notification = listener.recv().await?;
        if notification.payload() == queue {
            wake.send_modify(|commits| *commits = commits.wrapping_add(1));
        }
    }
}
