//! What the console and `webhook-inbox` ask of an inbox holding 1 000 000 jobs, on SQLite
//! and on PostgreSQL: each listing and lookup, the median and worst of 15 runs.
//!
//!     cargo bench --bench browse --all-features
//!
//! The jobs are written straight into the inbox's table (as the door writes them, one
//! statement for all, with the inbox's indexes in place): 97 % done, 2 % dead-lettered,
//! 1 % queued, over five layers (one of them rare: 1 in 1 000) and twenty event types, each
//! with one attempt, the attempts' ends spread over the last day; then the counts the door
//! and the ends keep (the done jobs, the activity's per tick), as they would have kept them.
//! `found`: the jobs of the page, the attempts of the job, the done jobs counted, the
//! deliveries accepted / attempts handled. Not criterion: a row is one query on a big
//! table, and its worst run matters as much as its median.

use std::time::{Duration, Instant};

use tower_webhook::inbox::{Dialect, Inbox, JobFilter, JobState, PostgresInbox, SqliteInbox};

const JOBS: i64 = 1_000_000;
const RUNS: usize = 15;

/// The time of the jobs' ids (ms since the epoch): 23 and a half hours ago, so that the
/// activity's last day counts them all as accepted, half an hour from any of its buckets'
/// edges.
fn made_at() -> u64 {
    static MADE_AT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MADE_AT.get_or_init(|| {
        let ago = std::time::SystemTime::now() - Duration::from_secs(23 * 3600 + 1800);
        let ms = ago
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        u64::try_from(ms).unwrap()
    })
}

/// The first ten characters (the time) of a ULID made at [`made_at`]: the jobs' ids are it
/// and a counter.
fn prefix() -> &'static str {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PREFIX.get_or_init(|| ulid::Ulid::from_parts(made_at(), 0).to_string()[..10].to_owned())
}

/// The activity's counts of the queue's jobs and attempts, as the door and the ends keep
/// them: the attempts' in eight shards (by the last digit of their job's id), as
/// PostgreSQL's ends spread them.
fn activity_counts(queue: &str) -> [String; 2] {
    let tick = made_at() / 32_768;
    [
        format!(
            "INSERT INTO webhook_inbox_activity (queue, tick, kind, shard, n)
            VALUES ('{queue}', {tick}, 'accepted', 0, {JOBS})"
        ),
        format!(
            "INSERT INTO webhook_inbox_activity (queue, tick, kind, shard, n)
            SELECT queue, ended_at / 32768, outcome, CAST(substr(job_id, 26, 1) AS BIGINT) % 8,
                COUNT(*)
            FROM webhook_inbox_job_attempts WHERE queue = '{queue}' GROUP BY 1, 2, 3, 4"
        ),
    ]
}

/// The statements that fill a queue `$q` with [`JOBS`] jobs, on SQLite.
fn sqlite_fill(queue: &str) -> Vec<String> {
    let prefix = prefix();
    vec![format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {JOBS})
        INSERT INTO webhook_inbox_jobs (id, queue, event_id, layer, event_type, received_at,
            delivery, body, state, attempt, max_attempts, run_at, finished_at, last_error)
        SELECT '{prefix}' || printf('%016d', i), '{queue}', 'evt_' || i,
            CASE WHEN i % 1000 = 7 THEN 'rare' ELSE 'layer-' || (i % 4) END,
            'type.' || (i % 20), 1764900000000 + i,
            CAST(json_object('id', 'evt_' || i, 'key', 'k' || i, 'scheme', 'standard-webhooks',
                'layer', CASE WHEN i % 1000 = 7 THEN 'rare' ELSE 'layer-' || (i % 4) END,
                'event_type', 'type.' || (i % 20), 'received_at', 1764900000000 + i,
                'headers', json_array()) AS BLOB), X'7b7d',
            CASE WHEN i % 100 = 0 THEN 'queued' WHEN i % 50 = 1 THEN 'dead' ELSE 'done' END,
            CASE WHEN i % 100 = 0 THEN 0 WHEN i % 50 = 1 THEN 3 ELSE 1 END, 3,
            1764900000000, 1764900000000 + i * 100,
            CASE WHEN i % 50 = 1 THEN 'the handler failed' END
        FROM n"
    ), format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {JOBS})
        INSERT INTO webhook_inbox_job_attempts (job_id, queue, attempt, worker, started_at, ended_at, outcome)
        SELECT '{prefix}' || printf('%016d', i), '{queue}', 1, 'bench',
            (strftime('%s', 'now') - 86400) * 1000 + i * 86, (strftime('%s', 'now') - 86400) * 1000 + i * 86 + 5,
            CASE WHEN i % 50 = 1 THEN 'dead' ELSE 'done' END
        FROM n"
    ), done_count(queue)]
    .into_iter()
    .chain(activity_counts(queue))
    .collect()
}

/// The count of the queue's done jobs, as the statements that end jobs keep it.
fn done_count(queue: &str) -> String {
    format!(
        "INSERT INTO webhook_inbox_done (queue, shard, jobs)
        SELECT queue, 0, COUNT(*) FROM webhook_inbox_jobs
        WHERE queue = '{queue}' AND state = 'done' GROUP BY queue"
    )
}

/// The same on PostgreSQL.
fn postgres_fill(queue: &str) -> Vec<String> {
    let prefix = prefix();
    vec![format!(
        "INSERT INTO webhook_inbox_jobs (id, queue, event_id, layer, event_type, received_at,
            delivery, body, state, attempt, max_attempts, run_at, finished_at, last_error)
        SELECT '{prefix}' || lpad(i::text, 16, '0'), '{queue}', 'evt_' || i,
            CASE WHEN i % 1000 = 7 THEN 'rare' ELSE 'layer-' || (i % 4) END,
            'type.' || (i % 20), 1764900000000 + i,
            convert_to(json_build_object('id', 'evt_' || i, 'key', 'k' || i, 'scheme', 'standard-webhooks',
                'layer', CASE WHEN i % 1000 = 7 THEN 'rare' ELSE 'layer-' || (i % 4) END,
                'event_type', 'type.' || (i % 20), 'received_at', 1764900000000 + i,
                'headers', json_build_array())::text, 'UTF8'), convert_to('{{}}', 'UTF8'),
            CASE WHEN i % 100 = 0 THEN 'queued' WHEN i % 50 = 1 THEN 'dead' ELSE 'done' END,
            CASE WHEN i % 100 = 0 THEN 0 WHEN i % 50 = 1 THEN 3 ELSE 1 END, 3,
            1764900000000, 1764900000000 + i * 100,
            CASE WHEN i % 50 = 1 THEN 'the handler failed' END
        FROM generate_series(1, {JOBS}) AS i"
    ), format!(
        "INSERT INTO webhook_inbox_job_attempts (job_id, queue, attempt, worker, started_at, ended_at, outcome)
        SELECT '{prefix}' || lpad(i::text, 16, '0'), '{queue}', 1, 'bench',
            (extract(epoch FROM now())::BIGINT - 86400) * 1000 + i * 86,
            (extract(epoch FROM now())::BIGINT - 86400) * 1000 + i * 86 + 5,
            CASE WHEN i % 50 = 1 THEN 'dead' ELSE 'done' END
        FROM generate_series(1, {JOBS}) AS i",
    ), done_count(queue)]
    .into_iter()
    .chain(activity_counts(queue))
    .collect()
}

/// Times `op` [`RUNS`] times (each must succeed): the median, the worst, and its answer.
async fn time<T, E: std::fmt::Debug, F: std::future::Future<Output = Result<T, E>>>(
    mut op: impl FnMut() -> F,
) -> (Duration, Duration, T) {
    let mut runs = Vec::with_capacity(RUNS);
    let mut last = None;
    for _ in 0..RUNS {
        let started = Instant::now();
        let answer = op().await.expect("the query succeeds");
        runs.push(started.elapsed());
        last = Some(answer);
    }
    runs.sort_unstable();
    (runs[RUNS / 2], runs[RUNS - 1], last.expect("runs"))
}

/// A table row: the query, what it found, its median and worst.
fn row(name: &str, found: &str, (median, worst): (Duration, Duration)) {
    println!(
        "| {name:<40} | {found:>7} | {:>9.2} | {:>9.2} |",
        median.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3
    );
}

async fn page<D: Dialect>(inbox: &Inbox<D>, name: &str, filter: &JobFilter, after: Option<&str>) {
    let (median, worst, page) = time(|| inbox.jobs(filter, after, 50)).await;
    row(name, &page.jobs.len().to_string(), (median, worst));
}

async fn rows<D: Dialect>(inbox: &Inbox<D>) {
    let all = JobFilter::default();
    page(inbox, "first page, 50 newest", &all, None).await;
    let deep = format!("{}{:016}", prefix(), JOBS / 10);
    page(inbox, "a page 900 000 jobs deep", &all, Some(&deep)).await;
    for (name, filter) in [
        (
            "state dead (2 %)",
            JobFilter::default().state(JobState::Dead),
        ),
        (
            "state queued (1 %)",
            JobFilter::default().state(JobState::Queued),
        ),
        (
            "state running (none)",
            JobFilter::default().state(JobState::Running),
        ),
        ("layer common (25 %)", JobFilter::default().layer("layer-1")),
        ("layer rare (0.1 %)", JobFilter::default().layer("rare")),
        (
            "event type (5 %)",
            JobFilter::default().event_type("type.3"),
        ),
        (
            "state dead + layer + type",
            JobFilter::default()
                .state(JobState::Dead)
                .layer("layer-1")
                .event_type("type.1"),
        ),
        ("event id", JobFilter::default().event_id("evt_123457")),
        (
            "event id, none such",
            JobFilter::default().event_id("evt_none"),
        ),
    ] {
        page(inbox, name, &filter, None).await;
    }
    let task = format!("{}{:016}", prefix(), 123_457);
    let (median, worst, job) = time(|| inbox.job(&task)).await;
    let attempts = job.map_or(0, |job| job.attempts.len());
    row(
        "one job with its attempts",
        &attempts.to_string(),
        (median, worst),
    );
    let (median, worst, counts) = time(|| inbox.counts()).await;
    row("counts by state", &counts.done.to_string(), (median, worst));
    for (name, bucket, buckets) in [
        ("activity, the last hour (12 buckets)", 300, 12),
        ("activity, the last day (24 buckets)", 3600, 24),
    ] {
        let (median, worst, activity) =
            time(|| inbox.activity(Duration::from_secs(bucket), buckets)).await;
        let accepted: u64 = activity.accepted.iter().sum();
        let handled: u64 = activity.handled.iter().sum();
        row(name, &format!("{accepted}/{handled}"), (median, worst));
    }
}

fn header(name: &str, filled: Duration) {
    println!(
        "\n{name}: {JOBS} jobs written in {:.1} s\n",
        filled.as_secs_f64()
    );
    println!(
        "| {:<40} | {:>7} | {:>9} | {:>9} |",
        "query", "found", "median ms", "worst ms"
    );
    println!("| {:-<40} | {:->6}: | {:->8}: | {:->8}: |", "", "", "", "");
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|arg| arg == "--test" || arg == "--list") {
        return;
    }
    let dir =
        std::env::temp_dir().join(format!("tower-webhook-bench-browse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inbox = SqliteInbox::open(dir.join("inbox.db")).await.unwrap();
    let started = Instant::now();
    for statement in sqlite_fill(tower_webhook::inbox::DEFAULT_QUEUE) {
        tower_webhook::store::sqlite::sqlx::query(
            tower_webhook::store::sqlite::sqlx::AssertSqlSafe(statement),
        )
        .execute(inbox.pool())
        .await
        .unwrap();
    }
    tower_webhook::store::sqlite::sqlx::query("ANALYZE")
        .execute(inbox.pool())
        .await
        .unwrap();
    header("SQLite", started.elapsed());
    rows(&inbox).await;
    drop(inbox);
    let _ = std::fs::remove_dir_all(&dir);

    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let Ok(inbox) = PostgresInbox::connect(&url).await else {
        println!("\nPostgreSQL at {url} unreachable: its rows are skipped");
        return;
    };
    let queue = format!("bench-browse-{}", std::process::id());
    let inbox = inbox.with_queue(&queue);
    let started = Instant::now();
    let mut tx = inbox.pool().begin().await.unwrap();
    // What a run stopped midway left behind goes first.
    let leftovers = [
        "SET LOCAL statement_timeout = 0",
        "DELETE FROM webhook_inbox_job_attempts WHERE queue LIKE 'bench-browse-%'",
        "DELETE FROM webhook_inbox_jobs WHERE queue LIKE 'bench-browse-%'",
        "DELETE FROM webhook_inbox_done WHERE queue LIKE 'bench-browse-%'",
        "DELETE FROM webhook_inbox_activity WHERE queue LIKE 'bench-browse-%'",
    ];
    let fill = leftovers
        .into_iter()
        .map(str::to_owned)
        .chain(postgres_fill(&queue));
    for statement in fill {
        tower_webhook::store::postgres::sqlx::query(
            tower_webhook::store::postgres::sqlx::AssertSqlSafe(statement),
        )
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    // What autovacuum does after a million inserts (`autovacuum_vacuum_insert_threshold`):
    // the visibility map set, so that an index-only scan does not visit the heap. Right
    // after the fill, before it, counting the 30 000 jobs not done took 200 ms of heap
    // fetches; after it, 5 ms.
    for table in [
        "webhook_inbox_jobs",
        "webhook_inbox_job_attempts",
        "webhook_inbox_activity",
    ] {
        tower_webhook::store::postgres::sqlx::query(
            tower_webhook::store::postgres::sqlx::AssertSqlSafe(format!("VACUUM ANALYZE {table}")),
        )
        .execute(inbox.pool())
        .await
        .unwrap();
    }
    header("PostgreSQL", started.elapsed());
    rows(&inbox).await;
    let mut tx = inbox.pool().begin().await.unwrap();
    for cleanup in [
        "SET LOCAL statement_timeout = 0",
        "DELETE FROM webhook_inbox_job_attempts WHERE queue = $1",
        "DELETE FROM webhook_inbox_jobs WHERE queue = $1",
        "DELETE FROM webhook_inbox_done WHERE queue = $1",
        "DELETE FROM webhook_inbox_activity WHERE queue = $1",
    ] {
        let query = tower_webhook::store::postgres::sqlx::query(cleanup);
        let query = if cleanup.contains("$1") {
            query.bind(&queue)
        } else {
            query
        };
        query.execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
}
