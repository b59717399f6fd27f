//! The inbox on PostgreSQL, on apalis-postgres: the [`Postgres`] dialect.

use std::time::Duration;

use apalis_core::error::WorkerError;
use apalis_core::task::Task;
use apalis_core::worker::builder::WorkerBuilder;
use apalis_postgres::PostgresStorage;
use sqlx::postgres::PgArguments;
use sqlx::{Arguments as _, PgPool, Postgres as Db};
use tower::limit::ConcurrencyLimitLayer;

use super::attempt::JobService;
use super::dialect::{Arg, Backend, DbTx, Dialect, Pool, Row, Statements};
use super::error::InboxError;
use super::handler::Handler;
use super::job::StoredDelivery;
use super::shared::{self, METADATA_PREFIX};
use super::{Inbox, Settings};
use crate::store::postgres::transient;
use crate::store::{BoxFuture, Marked, PostgresStore};
use apalis_core::backend::ext::poll_strategy::{PollWith, Strategy};
use apalis_core::backend::ext::BackendExt as _;

/// PostgreSQL, for [`Inbox`]: any number of receivers and workers on any number of
/// machines share one queue.
#[derive(Debug, Clone, Copy)]
pub struct Postgres;

/// The inbox on PostgreSQL: any number of receivers and workers, on any number of machines,
/// share one queue. See [the module](super) for what the layer answers.
///
/// The jobs live in apalis's schema (`apalis.jobs`, `apalis.workers`, migrated by
/// [`connect`](Self::connect) and [`new`](Self::new)); the dedup marks in the table of
/// [`PostgresStore`], `webhook_claims`, written in the same transaction as the job. Each
/// enqueue waits for its commit, `synchronous_commit` on whatever the server's default: a
/// delivery answered 202 is on disk.
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

/// The statements on the queue's jobs.
const STATEMENTS: Statements = Statements {
    counts: "SELECT
            COUNT(*) FILTER (WHERE status IN ('Pending', 'Queued') OR (status = 'Failed' AND attempts < max_attempts)),
            COUNT(*) FILTER (WHERE status = 'Running'),
            COUNT(*) FILTER (WHERE status = 'Failed' AND attempts < max_attempts),
            COUNT(*) FILTER (WHERE status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts)),
            COUNT(*) FILTER (WHERE status = 'Done')
        FROM apalis.jobs WHERE job_type = $1",
    dead: "SELECT id, job, attempts::BIGINT, last_result::TEXT FROM apalis.jobs
        WHERE job_type = $1 AND (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))
        ORDER BY done_at DESC NULLS LAST LIMIT $2",
    replay: "UPDATE apalis.jobs SET status = 'Pending', attempts = 0, lock_by = NULL,
            lock_at = NULL, done_at = NULL, last_result = NULL, run_at = now()
        WHERE job_type = $1 AND ($2::TEXT IS NULL OR id = $2)
        AND (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))",
    bump_depth: "UPDATE webhook_inbox_depth SET jobs = jobs + $2 WHERE queue = $1",
    purge: "DELETE FROM apalis.jobs WHERE job_type = $1 AND status = 'Done'
        AND done_at < now() - make_interval(secs => $2)",
    finish: "UPDATE apalis.jobs SET status = $5, attempts = CAST($4 AS INTEGER), lock_by = NULL,
            lock_at = NULL, done_at = now(), last_result = $6::jsonb,
            run_at = now() + make_interval(secs => $7)
        WHERE id = $1 AND lock_by = $2 AND status = 'Running' AND attempts::BIGINT = $3",
    // A job `$2` fetched, marked as running before its handler starts.
    start: "UPDATE apalis.jobs SET status = 'Running', lock_at = now()
        WHERE id = $1 AND lock_by = $2 AND status IN ('Queued', 'Running')
        RETURNING attempts::BIGINT",
    // Every takeover of a job (the sweep, apalis's own) counts an attempt: the same count
    // and holder mean the same attempt. The holder is cleared with it, so that a late end
    // of an attempt taken over cannot write over the job done. The clock, not `now()`: the
    // transaction began before the handler ran.
    complete: "UPDATE apalis.jobs SET status = 'Done', done_at = clock_timestamp(),
            attempts = CAST($4 AS INTEGER), lock_by = NULL, lock_at = NULL
        WHERE id = $1 AND lock_by = $2 AND status = 'Running' AND attempts::BIGINT = $3",
    done: "SELECT 1::BIGINT FROM apalis.jobs
        WHERE id = $1 AND status = 'Done' AND lock_by IS NULL AND attempts::BIGINT = $2",
    alive: "UPDATE apalis.workers SET last_seen = now() WHERE worker_type = $1 AND id = $2",
    // Jobs taken by workers of this queue silent for $3 seconds, other than $2.
    orphans: "SELECT jobs.id, jobs.status, jobs.attempts::BIGINT, jobs.max_attempts::BIGINT, jobs.lock_by
        FROM apalis.jobs AS jobs JOIN apalis.workers AS workers ON jobs.lock_by = workers.id
        WHERE jobs.job_type = $1 AND jobs.status IN ('Running', 'Queued') AND workers.id <> $2
        AND now() - workers.last_seen >= make_interval(secs => $3)",
    stranded: "SELECT id, status, attempts::BIGINT, max_attempts::BIGINT, lock_by FROM apalis.jobs
        WHERE job_type = $1 AND lock_by = $2 AND status = 'Running'
        AND lock_at <= now() - make_interval(secs => $3)",
    orphan_dead: "UPDATE apalis.jobs SET status = 'Killed', attempts = attempts + 1,
            lock_by = NULL, lock_at = NULL, done_at = now(), last_result = $3::jsonb
        WHERE id = $1 AND lock_by = $2 AND status = 'Running'",
    orphan_retry: "UPDATE apalis.jobs SET status = 'Failed', attempts = attempts + 1,
            lock_by = NULL, lock_at = NULL, done_at = now(), last_result = $3::jsonb,
            run_at = now() + make_interval(secs => $4)
        WHERE id = $1 AND lock_by = $2 AND status = 'Running'",
    unfetch: "UPDATE apalis.jobs SET status = 'Pending', lock_by = NULL, lock_at = NULL
        WHERE job_type = $1 AND lock_by = $2 AND status = 'Queued' AND ($3::TEXT IS NULL OR id = $3)",
    job: "SELECT id, status, attempts::BIGINT, max_attempts::BIGINT, last_result::text, job FROM apalis.jobs
        WHERE job_type = $1 AND id = $2",
    attempts: "SELECT attempt::BIGINT, worker, started_at, ended_at, outcome, error
        FROM webhook_inbox_attempts WHERE job_id = $1 ORDER BY started_at, attempt",
    purge_before: "DELETE FROM apalis.jobs WHERE job_type = $1 AND status = 'Done'
        AND done_at < to_timestamp($2::BIGINT / 1000.0)",
    ended: "SELECT ((ended_at - $2) / $3)::BIGINT, outcome, COUNT(*)
        FROM webhook_inbox_attempts WHERE queue = $1 AND ended_at >= $2
        GROUP BY 1, 2",
    unmark_abandoned: "UPDATE apalis.jobs SET attempts = GREATEST(attempts - 1, 0), last_result = NULL
        WHERE job_type = $1 AND status = 'Pending' AND last_result = $2::jsonb",
};

// Jobs waiting or running: what the bound counts.
const DEPTH: &str = "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = $1
    AND (status IN ('Pending', 'Queued', 'Running') OR (status = 'Failed' AND attempts < max_attempts))";
// The bound's counter: jobs this queue took in since its last count, plus that count. It is
// counted again when it reaches the bound (workers finish jobs without telling it). Its row
// is updated last in each enqueue's transaction and stays locked until the commit: the
// check and the write are one step for every receiver on the database.
const CREATE_DEPTH: &str = "CREATE TABLE IF NOT EXISTS webhook_inbox_depth (
    queue TEXT PRIMARY KEY,
    jobs BIGINT NOT NULL
)";
const ADMIT: &str = "UPDATE webhook_inbox_depth SET jobs = jobs + $3
    WHERE queue = $1 AND jobs + $3 <= $2 RETURNING jobs";
const ENSURE_DEPTH: &str =
    "INSERT INTO webhook_inbox_depth (queue, jobs) VALUES ($1, 0) ON CONFLICT (queue) DO NOTHING";
const LOCK_DEPTH: &str = "SELECT jobs FROM webhook_inbox_depth WHERE queue = $1 FOR UPDATE";
const SET_DEPTH: &str = "UPDATE webhook_inbox_depth SET jobs = $2 WHERE queue = $1";

/// What the inbox keeps to be looked at: each attempt of each job (written by a trigger on
/// the job's state, in the statement that changes it), and the index of the deliveries' ids.
const BROWSE_SCHEMA: [&str; 9] = [
    "SELECT pg_advisory_xact_lock(7245091368231790171)",
    // The index's first build reads every job there is: longer than a store's statement
    // timeout on a big table.
    "SET LOCAL statement_timeout = 0",
    "CREATE TABLE IF NOT EXISTS webhook_inbox_attempts (
        job_id TEXT NOT NULL,
        queue TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        worker TEXT,
        started_at BIGINT NOT NULL,
        ended_at BIGINT,
        outcome TEXT NOT NULL DEFAULT 'running',
        error TEXT
    )",
    "CREATE INDEX IF NOT EXISTS webhook_inbox_attempts_job ON webhook_inbox_attempts (job_id)",
    "CREATE INDEX IF NOT EXISTS webhook_inbox_attempts_by_end ON webhook_inbox_attempts (queue, ended_at, outcome)",
    "CREATE OR REPLACE FUNCTION webhook_inbox_attempt() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            now_ms BIGINT := (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT;
        BEGIN
            IF TG_OP = 'DELETE' THEN
                DELETE FROM webhook_inbox_attempts WHERE job_id = OLD.id;
                RETURN OLD;
            END IF;
            IF NEW.status = 'Running' AND OLD.status <> 'Running' THEN
                INSERT INTO webhook_inbox_attempts (job_id, queue, attempt, worker, started_at)
                VALUES (NEW.id, NEW.job_type, NEW.attempts + 1, NEW.lock_by, now_ms);
            ELSIF OLD.status = 'Running' AND NEW.status IN ('Done', 'Failed', 'Killed') THEN
                UPDATE webhook_inbox_attempts SET ended_at = now_ms,
                    outcome = CASE WHEN NEW.status = 'Done' THEN 'done'
                        WHEN NEW.status = 'Killed' OR NEW.attempts >= NEW.max_attempts THEN 'dead'
                        ELSE 'failed' END,
                    error = CASE WHEN NEW.status = 'Done' THEN NULL ELSE NEW.last_result::text END
                WHERE job_id = NEW.id AND ended_at IS NULL;
            END IF;
            RETURN NEW;
        END $$",
    // The conditions are the triggers' own (`WHEN`): apalis's fetches and every other
    // change of state do not call the function at all.
    "DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'webhook_inbox_attempt_edges'
                AND tgrelid = 'apalis.jobs'::regclass) THEN
            CREATE TRIGGER webhook_inbox_attempt_edges AFTER UPDATE OF status
            ON apalis.jobs FOR EACH ROW
            WHEN ((NEW.status = 'Running' AND OLD.status <> 'Running')
                OR (OLD.status = 'Running' AND NEW.status IN ('Done', 'Failed', 'Killed')))
            EXECUTE FUNCTION webhook_inbox_attempt();
            CREATE TRIGGER webhook_inbox_attempts_gone AFTER DELETE
            ON apalis.jobs FOR EACH ROW EXECUTE FUNCTION webhook_inbox_attempt();
        END IF;
    END $$",
    // A running job put back in the queue by anything but its attempt's end (apalis's own
    // recovery of a silent worker's jobs): the attempt ended there, cut short. Otherwise
    // its record stayed open, and the next attempt's end closed both with its outcome.
    concat!(
        "CREATE OR REPLACE FUNCTION webhook_inbox_attempt_taken() RETURNS trigger
        LANGUAGE plpgsql AS $$ BEGIN
            UPDATE webhook_inbox_attempts
            SET ended_at = (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT,
                outcome = 'failed', error = '",
        taken_back!(),
        "' WHERE job_id = NEW.id AND ended_at IS NULL;
            RETURN NEW;
        END $$"
    ),
    "DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'webhook_inbox_attempt_taken'
                AND tgrelid = 'apalis.jobs'::regclass) THEN
            CREATE TRIGGER webhook_inbox_attempt_taken AFTER UPDATE OF status
            ON apalis.jobs FOR EACH ROW
            WHEN (OLD.status = 'Running' AND NEW.status NOT IN ('Running', 'Done', 'Failed', 'Killed'))
            EXECUTE FUNCTION webhook_inbox_attempt_taken();
        END IF;
    END $$",
];
// On the metadata (an hstore) the door writes, not the job: neither an insert nor any
// later change of the job's state (a new row version in every index) parses the job.
const EVENT_ID_INDEX: &str = "CREATE INDEX IF NOT EXISTS webhook_jobs_delivery
    ON apalis.jobs ((metadata -> 'webhook.id'))";

impl Inbox<Postgres> {
    /// Connects to the database at `url` (a pool of its own, as
    /// [`PostgresStore::connect`] makes), migrates apalis's schema and creates the marks'
    /// table. Safe to run from every replica at once.
    pub async fn connect(url: &str) -> Result<Self, InboxError> {
        let store = PostgresStore::connect(url).await?;
        Self::new(store.pool().clone()).await
    }

    /// The inbox on a pool of your own: migrates apalis's schema and creates the marks'
    /// table.
    pub async fn new(pool: PgPool) -> Result<Self, InboxError> {
        PostgresStorage::<()>::setup(&pool)
            .await
            .map_err(|err| InboxError::database(err, false))?;
        sqlx::query(CREATE_DEPTH)
            .execute(&pool)
            .await
            .map_err(Postgres::error)?;
        create_browse_schema(&pool).await?;
        let store = PostgresStore::new(pool.clone());
        store.create_table().await?;
        Ok(Self::from_parts(pool, store))
    }
}

impl Inbox<Postgres> {
    /// Connects to the inbox already in the database at `url`, creating and changing
    /// nothing: no schema, table, trigger or migration, and none of the locks that take. A
    /// database that holds no inbox is refused. For tools that look at an inbox receivers
    /// keep (the `webhook-inbox` command line).
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

/// The tables a database holding an inbox has: apalis's, the bound's and the attempts'
/// (the dedup marks' may have a name of the app's own).
const INBOX_TABLES: [&str; 4] = [
    "apalis.jobs",
    "apalis.workers",
    "webhook_inbox_depth",
    "webhook_inbox_attempts",
];

/// Whether everything of [`BROWSE_SCHEMA`] and [`EVENT_ID_INDEX`] is there.
const BROWSE_SCHEMA_READY: &str = "SELECT
    (SELECT COUNT(*) FROM pg_class WHERE relname IN ('webhook_inbox_attempts',
        'webhook_inbox_attempts_job', 'webhook_inbox_attempts_by_end', 'webhook_jobs_delivery')) = 4
    AND (SELECT COUNT(*) FROM pg_proc
        WHERE proname IN ('webhook_inbox_attempt', 'webhook_inbox_attempt_taken')) = 2
    AND (SELECT COUNT(*) FROM pg_trigger WHERE tgrelid = 'apalis.jobs'::regclass
        AND tgname IN ('webhook_inbox_attempt_edges', 'webhook_inbox_attempts_gone',
            'webhook_inbox_attempt_taken')) = 3";

/// Creates what the inbox keeps to be looked at, where it is not there yet. Once it is, a
/// start takes no lock: the statements that create it lock apalis's table and the
/// attempts' even when there is nothing to create, and with workers running (a handler's
/// transaction holds the job's row and its trigger writes an attempt) that deadlocked.
/// Replicas starting together take turns, and look again once it is theirs.
async fn create_browse_schema(pool: &PgPool) -> Result<(), InboxError> {
    let ready = |conn| async move {
        sqlx::query_scalar::<_, bool>(BROWSE_SCHEMA_READY)
            .fetch_one(conn)
            .await
            .map_err(Postgres::error)
    };
    if ready(pool).await? {
        return Ok(());
    }
    let mut tx = pool.begin().await.map_err(Postgres::error)?;
    let (turn, rest) = BROWSE_SCHEMA.split_at(2);
    for &statement in turn {
        sqlx::query(statement)
            .execute(&mut *tx)
            .await
            .map_err(Postgres::error)?;
    }
    let done = sqlx::query_scalar::<_, bool>(BROWSE_SCHEMA_READY)
        .fetch_one(&mut *tx)
        .await
        .map_err(Postgres::error)?;
    if !done {
        for &statement in rest.iter().chain([&EVENT_ID_INDEX]) {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(Postgres::error)?;
        }
    }
    tx.commit().await.map_err(Postgres::error)
}

/// `args` as this database binds them.
fn arguments(args: &[Arg<'_>]) -> Result<PgArguments, InboxError> {
    let mut bound = PgArguments::default();
    for arg in args {
        match *arg {
            Arg::Text(text) => bound.add(text),
            Arg::MaybeText(text) => bound.add(text),
            Arg::Int(number) => bound.add(number),
            Arg::Secs(secs) => bound.add(secs.as_secs_f64()),
        }
        .map_err(|err| InboxError::database(err, false))?;
    }
    Ok(bound)
}

impl Dialect for Postgres {}

impl Backend for Postgres {
    type Db = Db;
    type Store = PostgresStore;
    type Storage = PollWith<PostgresStorage<StoredDelivery>, Strategy>;

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

    async fn push(
        tx: &mut DbTx<Self>,
        queue: &str,
        tasks: Vec<Task<Vec<u8>>>,
    ) -> Result<(), InboxError> {
        apalis_postgres::queries::push_tasks(&mut **tx, queue, tasks)
            .await
            .map(drop)
            .map_err(|err| InboxError::database(err, false))
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

    const JOBS: &'static str = "apalis.jobs";
    const PARAM: char = '$';
    const LAST_RESULT: &'static str = "last_result::text";
    const REPLAY_SET: &'static str = "status = 'Pending', attempts = 0, lock_by = NULL,
        lock_at = NULL, done_at = NULL, last_result = NULL, run_at = now()";

    fn field(name: &str) -> String {
        format!("(metadata -> '{METADATA_PREFIX}{name}')")
    }

    async fn execute_on(
        conn: &mut sqlx::PgConnection,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> Result<u64, InboxError> {
        let query = sqlx::query_with(sql, arguments(args)?);
        Ok(query
            .execute(conn)
            .await
            .map_err(Postgres::error)?
            .rows_affected())
    }

    async fn fetch<T: Row>(
        pool: &PgPool,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> Result<Vec<T>, InboxError> {
        let query = sqlx::query_as_with(sql, arguments(args)?);
        query.fetch_all(pool).await.map_err(Postgres::error)
    }

    async fn fetch_built<T: Row>(
        pool: &PgPool,
        sql: String,
        args: &[Arg<'_>],
    ) -> Result<Vec<T>, InboxError> {
        let query = sqlx::query_as_with(sqlx::AssertSqlSafe(sql), arguments(args)?);
        query.fetch_all(pool).await.map_err(Postgres::error)
    }

    async fn execute_built(
        pool: &PgPool,
        sql: String,
        args: &[Arg<'_>],
    ) -> Result<u64, InboxError> {
        let query = sqlx::query_with(sqlx::AssertSqlSafe(sql), arguments(args)?);
        Ok(query
            .execute(pool)
            .await
            .map_err(Postgres::error)?
            .rows_affected())
    }

    async fn cleanup(store: &PostgresStore) -> Result<(), InboxError> {
        store.cleanup().await?;
        Ok(())
    }

    fn storage(
        pool: &Pool<Self>,
        settings: &Settings,
        batch: usize,
        wakeups: tokio::sync::watch::Receiver<u64>,
    ) -> Self::Storage {
        let config = apalis_postgres::Config::default()
            .queue(&*settings.queue)
            .batch_size(batch)
            .heartbeat_interval(settings.heartbeat)
            .missed_heartbeats(shared::MISSED_HEARTBEATS)
            // The worker's service writes each attempt's start and outcome itself, fenced
            // by the attempt (see `queue.rs`): apalis's, guarded by the worker's name
            // only, could land late on the next attempt of the same job by this worker.
            .lock_tasks(false)
            .persist_results(false);
        // Jobs committed by any process wake the workers too: the queue's insert trigger
        // notifies, and each worker listens on a connection of its own.
        let notified = apalis_postgres::Pubsub::new(pool.clone(), settings.queue.to_string());
        PostgresStorage::new(pool)
            .with_config(config)
            .poll_with_strategy(shared::strategy(settings, wakeups).stream(notified))
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
