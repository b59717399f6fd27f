//! What the dialects' schemas and statements share word for word: the first migration,
//! written once with each database's names for its types, and the statements that read the
//! same in both.

use super::dialect::Statements;

/// The first migration of the inbox's schema, with the database's `$int` (64-bit) and
/// `$bytes` types, `$options` after the jobs table, and `$after_jobs` (statements run once
/// it is made). Every index names the statements that read it.
macro_rules! first_migration {
    (int: $int:literal, bytes: $bytes:literal, options: $options:literal, after_jobs: [$($after_jobs:literal),*]) => {
        &[
            concat!(
                "CREATE TABLE webhook_inbox_jobs (
                    id TEXT PRIMARY KEY NOT NULL,
                    queue TEXT NOT NULL,
                    event_id TEXT NOT NULL,
                    layer TEXT NOT NULL,
                    event_type TEXT,
                    tenant TEXT,
                    received_at ", $int, " NOT NULL,
                    delivery ", $bytes, " NOT NULL,
                    body ", $bytes, " NOT NULL,
                    state TEXT NOT NULL DEFAULT 'queued',
                    attempt ", $int, " NOT NULL DEFAULT 0,
                    max_attempts ", $int, " NOT NULL,
                    run_at ", $int, " NOT NULL,
                    holder TEXT,
                    lease_until ", $int, ",
                    last_error TEXT,
                    finished_at ", $int, "
                )", $options
            ),
            $($after_jobs,)*
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
            concat!(
                "CREATE TABLE webhook_inbox_job_attempts (
                    job_id TEXT NOT NULL,
                    queue TEXT NOT NULL,
                    attempt ", $int, " NOT NULL,
                    worker TEXT,
                    started_at ", $int, " NOT NULL,
                    ended_at ", $int, ",
                    outcome TEXT NOT NULL DEFAULT 'running',
                    error TEXT
                )"
            ),
            // `attempts`, `end_attempt`, `purge_attempts`.
            "CREATE INDEX webhook_inbox_job_attempts_job
                ON webhook_inbox_job_attempts (job_id, attempt)",
            // `ended` (the activity).
            "CREATE INDEX webhook_inbox_job_attempts_by_end
                ON webhook_inbox_job_attempts (queue, ended_at, outcome)",
            concat!(
                "CREATE TABLE IF NOT EXISTS webhook_inbox_depth (
                    queue TEXT PRIMARY KEY,
                    jobs ", $int, " NOT NULL
                )"
            ),
        ]
    };
}
pub(crate) use first_migration;

/// The second migration, the same in both dialects: the count of each queue's done jobs,
/// kept by the statements that end a job done or purge done jobs (`counts` reads it rather
/// than count a million index entries), in rows of a few shards so that concurrent ends
/// rarely wait for each other's row. Filled from the jobs already done.
pub(crate) const SECOND_MIGRATION: &[&str] = &[
    "CREATE TABLE webhook_inbox_done (
        queue TEXT NOT NULL,
        shard BIGINT NOT NULL,
        jobs BIGINT NOT NULL,
        PRIMARY KEY (queue, shard)
    )",
    "INSERT INTO webhook_inbox_done (queue, shard, jobs)
        SELECT queue, 0, COUNT(*) FROM webhook_inbox_jobs WHERE state = 'done' GROUP BY queue",
];

/// The activity's tick: 2^15 ms (about 33 s), the time a ULID's first seven characters tell,
/// so that a job's tick is read from its id as an attempt's is from its end.
pub(crate) const TICK_MS: i64 = 1 << 15;

/// The shard a purge takes its counts off in: one no door or end writes to, so that a purge
/// never waits for, nor holds, a row they take.
pub(crate) const PURGE_SHARD: i64 = -1;

/// The tick of the job whose id (a ULID) is the column `$id`, with the database's
/// `$position(haystack, needle)` (1 for the first character): its first seven characters
/// read as a number in ULIDs' base 32 (Crockford's alphabet).
macro_rules! ulid_tick {
    ($position:literal, $id:literal) => {
        concat!(
            "((CAST(",
            $position,
            "('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(",
            $id,
            ", 1, 1)) AS BIGINT) - 1) * 1073741824",
            " + (CAST(",
            $position,
            "('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(",
            $id,
            ", 2, 1)) AS BIGINT) - 1) * 33554432",
            " + (CAST(",
            $position,
            "('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(",
            $id,
            ", 3, 1)) AS BIGINT) - 1) * 1048576",
            " + (CAST(",
            $position,
            "('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(",
            $id,
            ", 4, 1)) AS BIGINT) - 1) * 32768",
            " + (CAST(",
            $position,
            "('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(",
            $id,
            ", 5, 1)) AS BIGINT) - 1) * 1024",
            " + (CAST(",
            $position,
            "('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(",
            $id,
            ", 6, 1)) AS BIGINT) - 1) * 32",
            " + (CAST(",
            $position,
            "('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(",
            $id,
            ", 7, 1)) AS BIGINT) - 1))"
        )
    };
}
pub(crate) use ulid_tick;

/// The third migration, with the database's `$position` (see [`ulid_tick!`]): the activity's
/// counts, by queue, [tick](TICK_MS), kind (`accepted`, or an attempt's outcome: `done`,
/// `failed`, `dead`) and shard, kept by the statements that write what they count (the
/// door's batch, an attempt's end, a purge), so that the activity of a day reads a few
/// thousand counts rather than a million rows. Filled from the jobs and attempts there.
macro_rules! third_migration {
    (position: $position:literal) => {
        &[
            "CREATE TABLE webhook_inbox_activity (
                queue TEXT NOT NULL,
                tick BIGINT NOT NULL,
                kind TEXT NOT NULL,
                shard BIGINT NOT NULL,
                n BIGINT NOT NULL,
                PRIMARY KEY (queue, tick, kind, shard)
            )",
            concat!(
                "INSERT INTO webhook_inbox_activity (queue, tick, kind, shard, n)
                SELECT queue, ",
                $crate::inbox::sql::ulid_tick!($position, "id"),
                ", 'accepted', 0, COUNT(*) FROM webhook_inbox_jobs GROUP BY 1, 2"
            ),
            "INSERT INTO webhook_inbox_activity (queue, tick, kind, shard, n)
                SELECT queue, ended_at / 32768, outcome, 0, COUNT(*)
                FROM webhook_inbox_job_attempts WHERE ended_at IS NOT NULL GROUP BY 1, 2, 3",
        ]
    };
}
pub(crate) use third_migration;

/// The statement that takes the deliveries of the jobs a purge deletes (queue `$1`, done
/// before `$2`) off the activity, in the shard `$3`, with the database's `$position` (see
/// [`ulid_tick!`]).
macro_rules! purge_accepted {
    ($position:literal) => {
        concat!(
            "INSERT INTO webhook_inbox_activity (queue, tick, kind, shard, n)
            SELECT queue, ",
            $crate::inbox::sql::ulid_tick!($position, "id"),
            ", 'accepted', $3, -COUNT(*) FROM webhook_inbox_jobs
            WHERE queue = $1 AND state = 'done' AND finished_at < $2
            GROUP BY 1, 2 ORDER BY 2
            ON CONFLICT (queue, tick, kind, shard)
            DO UPDATE SET n = webhook_inbox_activity.n + excluded.n"
        )
    };
}
pub(crate) use purge_accepted;

/// Takes the attempts of the jobs a purge deletes (queue `$1`, done before `$2`) off the
/// activity, in the shard `$3`.
pub(crate) const PURGE_ENDED: &str =
    "INSERT INTO webhook_inbox_activity (queue, tick, kind, shard, n)
    SELECT queue, ended_at / 32768, outcome, $3, -COUNT(*) FROM webhook_inbox_job_attempts
    WHERE job_id IN (SELECT id FROM webhook_inbox_jobs
        WHERE queue = $1 AND state = 'done' AND finished_at < $2)
    AND ended_at IS NOT NULL
    GROUP BY 1, 2, 3 ORDER BY 2, 3
    ON CONFLICT (queue, tick, kind, shard) DO UPDATE SET n = webhook_inbox_activity.n + excluded.n";

/// Adds `$5` to the activity's count of `$3` in the queue `$1`'s tick `$2`, shard `$4`
/// (PostgreSQL's door and ends count in the statements that write what they count).
#[cfg_attr(not(feature = "inbox-sqlite"), allow(dead_code))]
pub(crate) const TALLY_ACTIVITY: &str =
    "INSERT INTO webhook_inbox_activity (queue, tick, kind, shard, n)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (queue, tick, kind, shard) DO UPDATE SET n = webhook_inbox_activity.n + excluded.n";

/// The activity's counts of the queue `$1` from the tick `$2` on: tick, kind, count.
pub(crate) const ACTIVITY: &str = "SELECT tick, kind, CAST(SUM(n) AS BIGINT)
    FROM webhook_inbox_activity WHERE queue = $1 AND tick >= $2 GROUP BY tick, kind";

/// Adds `$3` to the count of the queue `$1`'s done jobs, in its shard `$2`.
pub(crate) const TALLY_DONE: &str = "INSERT INTO webhook_inbox_done (queue, shard, jobs)
    VALUES ($1, $2, $3)
    ON CONFLICT (queue, shard) DO UPDATE SET jobs = webhook_inbox_done.jobs + excluded.jobs";

/// What a replay sets on a dead job, with the database's expression of `$now`: queued
/// again now, attempts from zero.
macro_rules! replayed {
    ($now:expr) => {
        concat!(
            "state = 'queued', attempt = 0, holder = NULL, lease_until = NULL, ",
            "last_error = NULL, finished_at = NULL, run_at = ",
            $now
        )
    };
}
pub(crate) use replayed;

/// The statement `replay`, with the database's expression of `$now`.
macro_rules! replay {
    ($now:expr) => {
        concat!(
            "UPDATE webhook_inbox_jobs SET ",
            $crate::inbox::sql::replayed!($now),
            " WHERE queue = $1 AND state = 'dead' AND (CAST($2 AS TEXT) IS NULL OR id = $2)"
        )
    };
}
pub(crate) use replay;

/// The statement `lapsed`, with the database's expression of `$now`.
macro_rules! lapsed {
    ($now:expr) => {
        concat!(
            "SELECT id, attempt, max_attempts, holder FROM webhook_inbox_jobs
            WHERE queue = $1 AND state = 'running' AND lease_until < ",
            $now
        )
    };
}
pub(crate) use lapsed;

/// The update of the job that `end` makes (its arguments are `end`'s), with the database's
/// expression of `$now`.
macro_rules! end_job {
    ($now:expr) => {
        concat!(
            "UPDATE webhook_inbox_jobs SET state = $4, holder = NULL, lease_until = NULL,
                last_error = $5, finished_at = ",
            $now,
            ", run_at = ",
            $now,
            " + $6
            WHERE id = $1 AND holder = $2 AND attempt = $3 AND state = 'running'
            AND ($7 = 0 OR lease_until < ",
            $now,
            ")"
        )
    };
}
pub(crate) use end_job;

/// The statements that read the same in both dialects; each dialect's own fill the rest
/// (`..sql::SHARED` after them).
pub(crate) const SHARED: Statements = Statements {
    counts: COUNTS,
    dead: DEAD,
    bump_depth: BUMP_DEPTH,
    done: DONE,
    job: JOB,
    attempts: ATTEMPTS,
    purge_attempts: PURGE_ATTEMPTS,
    purge_before: PURGE_BEFORE,
    // Each dialect's own.
    end_done: None,
    end_activity: None,
    purge_accepted: "",
    replay: "",
    take: "",
    started: None,
    renew: "",
    lapsed: "",
    end: "",
    end_attempt: None,
};

/// Each state counted on the index of (queue, state), but done jobs, which are read from
/// their count (`webhook_inbox_done`): the states of jobs still to run are as many as the
/// bound lets in, done jobs as many as the weeks kept.
const COUNTS: &str = "SELECT
    (SELECT COUNT(*) FROM webhook_inbox_jobs WHERE queue = $1 AND state IN ('queued', 'retrying')),
    (SELECT COUNT(*) FROM webhook_inbox_jobs WHERE queue = $1 AND state = 'running'),
    (SELECT COUNT(*) FROM webhook_inbox_jobs WHERE queue = $1 AND state = 'retrying'),
    (SELECT COUNT(*) FROM webhook_inbox_jobs WHERE queue = $1 AND state = 'dead'),
    (SELECT CAST(COALESCE(SUM(jobs), 0) AS BIGINT) FROM webhook_inbox_done WHERE queue = $1)";
const DEAD: &str = "SELECT id, delivery, attempt, last_error FROM webhook_inbox_jobs
    WHERE queue = $1 AND state = 'dead' ORDER BY finished_at DESC LIMIT $2";
const BUMP_DEPTH: &str = "UPDATE webhook_inbox_depth SET jobs = jobs + $2 WHERE queue = $1";
const DONE: &str = "SELECT CAST(1 AS BIGINT) FROM webhook_inbox_jobs
    WHERE id = $1 AND state = 'done' AND attempt = $2";
const JOB: &str = "SELECT id, state, attempt, max_attempts, last_error, delivery, body
    FROM webhook_inbox_jobs WHERE queue = $1 AND id = $2";
const ATTEMPTS: &str = "SELECT attempt, worker, started_at, ended_at, outcome, error
    FROM webhook_inbox_job_attempts WHERE job_id = $1 ORDER BY started_at, attempt";
const PURGE_ATTEMPTS: &str = "DELETE FROM webhook_inbox_job_attempts WHERE job_id IN
    (SELECT id FROM webhook_inbox_jobs WHERE queue = $1 AND state = 'done' AND finished_at < $2)";
const PURGE_BEFORE: &str = "DELETE FROM webhook_inbox_jobs
    WHERE queue = $1 AND state = 'done' AND finished_at < $2";

/// Jobs waiting or running: what the bound counts.
pub(crate) const DEPTH: &str = "SELECT COUNT(*) FROM webhook_inbox_jobs
    WHERE queue = $1 AND state IN ('queued', 'retrying', 'running')";
/// The bound's counter: jobs this queue took in since its last count, plus that count. It
/// is counted again when it reaches the bound (workers finish jobs without telling it).
macro_rules! admit {
    () => {
        "UPDATE webhook_inbox_depth SET jobs = jobs + $3
            WHERE queue = $1 AND jobs + $3 <= $2 RETURNING jobs"
    };
}
// PostgreSQL's door sends it with its `NOTIFY`.
#[cfg_attr(not(feature = "inbox-postgres"), allow(unused_imports))]
pub(crate) use admit;
/// [`admit!`] as a statement: SQLite's.
#[cfg_attr(not(feature = "inbox-sqlite"), allow(dead_code))]
pub(crate) const ADMIT: &str = admit!();

/// The tables a database holding an inbox has (the dedup marks' may be elsewhere, or have a
/// name of the app's own).
pub(crate) const INBOX_TABLES: [&str; 6] = [
    "webhook_inbox_jobs",
    "webhook_inbox_job_attempts",
    "webhook_inbox_depth",
    "webhook_inbox_schema",
    "webhook_inbox_done",
    "webhook_inbox_activity",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The statements that divide a time by the tick say the tick's length.
    #[test]
    fn the_statements_tick_as_the_reader_does() {
        let divided = format!("ended_at / {TICK_MS}");
        assert!(PURGE_ENDED.contains(&divided));
        for migration in [
            third_migration!(position: "instr"),
            third_migration!(position: "strpos"),
        ] {
            assert!(migration[2].contains(&divided));
        }
        #[cfg(feature = "inbox-postgres")]
        {
            use crate::inbox::dialect::Backend as _;
            assert!(crate::inbox::Postgres::SQL.end.contains(&divided));
        }
        // A ULID's first seven characters are the time over 2^15.
        assert_eq!(TICK_MS, 1 << (48 - (3 + 6 * 5)));
    }
}
