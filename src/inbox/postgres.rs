//! The inbox on PostgreSQL: the [`Postgres`] dialect, its schema and its statements.

use std::time::Duration;

use sqlx::postgres::{PgArguments, PgListener};
use sqlx::{Arguments as _, PgConnection, PgPool, Postgres as Db};

use super::dialect::{Arg, Backend, DbTx, Dialect, Pool, Row, Statements};
use super::door::{Batch, NewJob};
use super::error::InboxError;
use super::{sql, Inbox};
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
/// `webhook_inbox_depth`, `webhook_inbox_done`, `webhook_inbox_activity`,
/// `webhook_inbox_schema`, migrated by [`connect`](Self::connect)
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
    replay: sql::replay!(now!()),
    // Workers on every machine take at once: each skips the rows another is taking. The
    // starts are recorded in the same statement: one round trip, one commit.
    take: concat!(
        "WITH taken AS (
            UPDATE webhook_inbox_jobs AS jobs SET state = 'running', attempt = jobs.attempt + 1,
                holder = $2, lease_until = ",
        now!(),
        " + $4
            FROM (SELECT id FROM webhook_inbox_jobs
                WHERE queue = $1 AND state IN ('queued', 'retrying') AND run_at <= ",
        now!(),
        " ORDER BY run_at LIMIT $3 FOR UPDATE SKIP LOCKED) AS due
            WHERE jobs.id = due.id
            RETURNING jobs.id, jobs.queue, jobs.delivery, jobs.body, jobs.attempt,
                jobs.max_attempts
        ), started AS (
            INSERT INTO webhook_inbox_job_attempts (job_id, queue, attempt, worker, started_at)
            SELECT id, queue, attempt, $2, ",
        now!(),
        " FROM taken
        )
        SELECT id, delivery, body, attempt, max_attempts FROM taken"
    ),
    started: None,
    renew: concat!(
        "UPDATE webhook_inbox_jobs SET lease_until = ",
        now!(),
        " + $3
        WHERE holder = $1 AND state = 'running'
        AND id IN (SELECT jsonb_array_elements_text($2::jsonb))"
    ),
    lapsed: sql::lapsed!(now!()),
    // The attempt's record closed in the same statement: one round trip, one commit.
    end: concat!(
        "WITH ended AS (",
        sql::end_job!(now!()),
        "
            RETURNING id, attempt, queue, state
        ), closed AS (
            UPDATE webhook_inbox_job_attempts AS attempts SET ended_at = ",
        now!(),
        ", outcome = $8, error = $5
            FROM ended WHERE attempts.job_id = ended.id AND attempts.attempt = ended.attempt
            AND attempts.ended_at IS NULL
            RETURNING attempts.queue, attempts.job_id, attempts.ended_at
        ), counted AS (
            INSERT INTO webhook_inbox_activity (queue, tick, kind, shard, n)
            SELECT queue, ended_at / 32768, $8, hashtext(job_id) & 7, 1 FROM closed
            ON CONFLICT (queue, tick, kind, shard) DO UPDATE SET n = webhook_inbox_activity.n + 1
        ), tallied AS (
            INSERT INTO webhook_inbox_done (queue, shard, jobs)
            SELECT queue, hashtext(id) & 7, 1 FROM ended WHERE state = 'done'
            ON CONFLICT (queue, shard) DO UPDATE SET jobs = webhook_inbox_done.jobs + 1
        )
        SELECT id FROM ended"
    ),
    end_attempt: None,
    purge_accepted: sql::purge_accepted!("strpos"),
    ..sql::SHARED
};

/// The door's batch (queue `$1`, max attempts `$2`, its jobs' columns as arrays from `$5`),
/// and its count in the activity (tick `$3`, shard `$4`). One text whatever the batch's
/// size: prepared once per connection, where rows of `VALUES` made a statement (and a plan)
/// per size.
const INSERT_JOBS: &str = concat!(
    "WITH jobs AS (
        INSERT INTO webhook_inbox_jobs (id, queue, event_id, layer, event_type, tenant,
            received_at, delivery, body, max_attempts, run_at)
        SELECT id, $1, event_id, layer, event_type, tenant, received_at, delivery, body, $2, ",
    now!(),
    "
        FROM unnest($5::TEXT[], $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::TEXT[], $10::BIGINT[],
            $11::BYTEA[], $12::BYTEA[])
            AS job (id, event_id, layer, event_type, tenant, received_at, delivery, body)
        RETURNING 1
    )
    INSERT INTO webhook_inbox_activity (queue, tick, kind, shard, n)
    SELECT $1, $3, 'accepted', $4, COUNT(*) FROM jobs
    ON CONFLICT (queue, tick, kind, shard) DO UPDATE SET n = webhook_inbox_activity.n + excluded.n"
);

const ENSURE_DEPTH: &str =
    "INSERT INTO webhook_inbox_depth (queue, jobs) VALUES ($1, 0) ON CONFLICT (queue) DO NOTHING";
const LOCK_DEPTH: &str = "SELECT jobs FROM webhook_inbox_depth WHERE queue = $1 FOR UPDATE";
const SET_DEPTH: &str = "UPDATE webhook_inbox_depth SET jobs = $2 WHERE queue = $1";
/// The name of [`CHANNEL`], for the statements that notify it.
macro_rules! channel {
    () => {
        "webhook_inbox"
    };
}

/// [`sql::ADMIT`], and the notification of the jobs it let in, sent when they commit: one
/// round trip for both.
const ADMIT: &str = concat!(
    "WITH admitted AS (",
    sql::admit!(),
    ") SELECT jobs FROM admitted CROSS JOIN LATERAL (SELECT pg_notify('",
    channel!(),
    "', $1)) AS told"
);
/// Tells the workers of every process, once the transaction commits, that jobs are waiting
/// in the queue `$1`.
const NOTIFY: &str = concat!("SELECT pg_notify('", channel!(), "', $1)");

/// The channel the door notifies once a batch commits, with the queue's name.
const CHANNEL: &str = channel!();

/// The schema, migration by migration.
const MIGRATIONS: &[&[&str]] = &[
    sql::first_migration!(
        int: "BIGINT",
        bytes: "BYTEA",
        options: " WITH (toast_tuple_target = 128)",
        after_jobs: [
            // The stored delivery (a kilobyte or more) out of line, uncompressed, from the
            // insert on: each change of the job's state copies the small row, not the delivery.
            "ALTER TABLE webhook_inbox_jobs ALTER COLUMN delivery SET STORAGE EXTERNAL",
            "ALTER TABLE webhook_inbox_jobs ALTER COLUMN body SET STORAGE EXTERNAL"
        ]
    ),
    sql::SECOND_MIGRATION,
    sql::third_migration!(position: "strpos"),
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
        .bind(sql::INBOX_TABLES)
        .fetch_all(&pool)
        .await
        .map_err(Postgres::error)?;
        let place = sqlx::query_scalar::<_, String>("SELECT current_database()")
            .fetch_one(&pool)
            .await
            .map_err(Postgres::error)?;
        InboxError::unless_inbox(&format!("database {place}"), &sql::INBOX_TABLES, &present)?;
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

/// One column of `jobs`, as an array to bind.
fn column<'a, T>(jobs: &'a [NewJob<'a>], value: impl Fn(&'a NewJob<'a>) -> T) -> Vec<T> {
    jobs.iter().map(value).collect()
}

impl Dialect for Postgres {}

impl Backend for Postgres {
    type Db = Db;
    type Store = PostgresStore;

    const NAME: &'static str = "PostgresInbox";
    const BEGIN: Option<&'static str> = None;
    // Concurrent transactions wait for the bound's counter only to commit.
    const ONE_WRITER: bool = false;

    fn writers(store: &PostgresStore) -> std::sync::Arc<crate::store::writers::Writers> {
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

    async fn insert_jobs(tx: &mut DbTx<Self>, batch: &Batch<'_>) -> Result<(), InboxError> {
        let jobs = &batch.jobs[..];
        sqlx::query(INSERT_JOBS)
            .bind(batch.queue)
            .bind(batch.max_attempts)
            .bind(batch.tick)
            .bind(batch.shard)
            .bind(column(jobs, |job| job.id.as_str()))
            .bind(column(jobs, |job| job.stored.id.as_str()))
            .bind(column(jobs, |job| job.stored.layer.as_str()))
            .bind(column(jobs, |job| job.stored.event_type.as_deref()))
            .bind(column(jobs, |job| job.stored.tenant.as_deref()))
            .bind(column(jobs, |job| job.stored.received_at))
            .bind(column(jobs, |job| job.delivery.as_slice()))
            .bind(column(jobs, |job| &job.stored.body[..]))
            .execute(&mut **tx)
            .await
            .map_err(Postgres::error)?;
        Ok(())
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
        let jobs: i64 = sqlx::query_scalar(sql::DEPTH)
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
        let fits = jobs <= max;
        if fits {
            sqlx::query(NOTIFY)
                .bind(queue)
                .execute(&mut **tx)
                .await
                .map_err(Postgres::error)?;
        }
        Ok(fits)
    }

    const SQL: Statements = STATEMENTS;
    const REPLAYED: &'static str = sql::replayed!(now!());
    const MIGRATIONS: &'static [&'static [&'static str]] = MIGRATIONS;
    const SCHEMA_TABLE: &'static str =
        "SELECT CASE WHEN to_regclass('webhook_inbox_schema') IS NULL THEN 0 ELSE 1 END::BIGINT";
    // Replicas starting together take turns, and look again once it is theirs.
    const MIGRATION_LOCK: Option<&'static str> =
        Some("SELECT pg_advisory_xact_lock(7245091368231790171)");

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
