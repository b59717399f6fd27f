//! Looking at what an inbox holds, the same suite on SQLite and PostgreSQL: listing newest
//! first with paging, filters by state, layer and event type, search by event id, one job
//! with every attempt, the activity, replay by filter, and purging done jobs.
//!
//! PostgreSQL at `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`); without
//! one its trials are reported as ignored, or fail when `CI` is set.
#![cfg(all(
    feature = "inbox-sqlite",
    feature = "inbox-postgres",
    feature = "test-util"
))]

mod common;

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use common::inbox::{no_wait, send_five, unique, work_five, Five};
use tower_webhook::inbox::{
    AttemptOutcome, Dialect, Inbox, JobFilter, JobState, PostgresInbox, SqliteInbox,
};

// One story, its steps in the order an operator takes them.
#[allow(clippy::too_many_lines)]
async fn browse_suite<D: Dialect>(inbox: Inbox<D>) {
    let inbox = inbox.with_retry(no_wait());
    let Five { a1, a2, a3, b1, b2 } = send_five(&inbox).await;

    // Before any worker: all queued, the newest first.
    let page = inbox.jobs(&JobFilter::default(), None, 50).await.unwrap();
    let ids: Vec<&str> = page.jobs.iter().map(|job| job.event_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            b2.as_str(),
            b1.as_str(),
            a3.as_str(),
            a2.as_str(),
            a1.as_str()
        ]
    );
    assert!(page.next.is_none());
    assert!(page.jobs.iter().all(|job| job.state == JobState::Queued));
    assert_eq!(page.jobs[0].layer, "shop");
    assert_eq!(page.jobs[0].event_type.as_deref(), Some("orders"));

    work_five(&inbox).await;

    // Paging: two at a time, every job once, newest first.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = inbox
            .jobs(&JobFilter::default(), after.as_deref(), 2)
            .await
            .unwrap();
        assert!(page.jobs.len() <= 2);
        seen.extend(page.jobs.iter().map(|job| job.event_id.clone()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            b2.as_str(),
            b1.as_str(),
            a3.as_str(),
            a2.as_str(),
            a1.as_str()
        ]
    );

    let list = |filter: JobFilter| {
        let inbox = inbox.clone();
        async move {
            let page = inbox.jobs(&filter, None, 50).await.unwrap();
            page.jobs
                .into_iter()
                .map(|job| job.event_id)
                .collect::<Vec<String>>()
        }
    };
    assert_eq!(
        list(JobFilter::default().state(JobState::Dead)).await,
        [a3.as_str()]
    );
    assert_eq!(
        list(JobFilter::default().state(JobState::Done)).await.len(),
        4
    );
    assert!(list(JobFilter::default().state(JobState::Running))
        .await
        .is_empty());
    assert_eq!(
        list(JobFilter::default().layer("shop")).await,
        [b2.as_str(), b1.as_str()]
    );
    assert_eq!(
        list(JobFilter::default().event_type("push")).await,
        [b1.as_str(), a3.as_str(), a1.as_str()]
    );
    assert_eq!(
        list(JobFilter::default().layer("github").event_type("push")).await,
        [a3.as_str(), a1.as_str()]
    );
    assert_eq!(
        list(JobFilter::default().event_id(&a2)).await,
        [a2.as_str()]
    );
    assert!(list(JobFilter::default().event_id("no-such-delivery"))
        .await
        .is_empty());
    // Blank texts (a form's empty fields) are no condition.
    assert_eq!(list(JobFilter::default().layer(" ")).await.len(), 5);

    // One job: its delivery and every attempt.
    let dead = &inbox
        .jobs(&JobFilter::default().event_id(&a3), None, 1)
        .await
        .unwrap()
        .jobs[0];
    assert_eq!(dead.state, JobState::Dead);
    assert_eq!(dead.attempts, 3);
    assert!(dead
        .last_error
        .as_deref()
        .unwrap()
        .contains("the handler refused"));
    let by_task = list(JobFilter::default().event_id(&dead.task_id)).await;
    assert_eq!(
        by_task,
        [a3.as_str()],
        "the search finds a job by its own id too"
    );
    let detail = inbox.job(&dead.task_id).await.unwrap().unwrap();
    assert_eq!(&detail.body[..], br#"{"n":3,"fail":true}"#);
    assert_eq!(detail.scheme, "github");
    assert!(detail
        .headers
        .iter()
        .any(|(name, value)| name == "x-github-event" && value == "push"));
    let outcomes: Vec<AttemptOutcome> = detail.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [
            AttemptOutcome::Failed,
            AttemptOutcome::Failed,
            AttemptOutcome::Dead
        ]
    );
    assert_eq!(
        detail
            .attempts
            .iter()
            .map(|a| a.attempt)
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    for attempt in &detail.attempts {
        assert!(attempt.duration.is_some());
        assert!(attempt.worker.is_some());
        assert!(attempt
            .error
            .as_deref()
            .unwrap()
            .contains("the handler refused"));
    }
    let flaky = &inbox
        .jobs(&JobFilter::default().event_id(&a2), None, 1)
        .await
        .unwrap()
        .jobs[0];
    let flaky = inbox.job(&flaky.task_id).await.unwrap().unwrap();
    let outcomes: Vec<AttemptOutcome> = flaky.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [AttemptOutcome::Failed, AttemptOutcome::Done]);
    assert_eq!(flaky.attempts[1].error, None);
    assert!(inbox.job("no-such-job").await.unwrap().is_none());

    // The activity of the last hour: every delivery, every attempt.
    let activity = inbox.activity(Duration::from_secs(300), 12).await.unwrap();
    assert_eq!(activity.accepted.len(), 12);
    assert_eq!(activity.accepted.iter().sum::<u64>(), 5, "{activity:?}");
    assert_eq!(
        activity.accepted[11], 5,
        "all in the last bucket: {activity:?}"
    );
    assert_eq!(activity.handled.iter().sum::<u64>(), 4);
    assert_eq!(activity.failed.iter().sum::<u64>(), 3);
    assert_eq!(activity.dead_lettered.iter().sum::<u64>(), 1);
    // From a time of one's choosing: an hour before, nothing; the open last bucket, all.
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let activity = inbox
        .activity_from(hour_ago, Duration::from_secs(1800), 2)
        .await
        .unwrap();
    assert_eq!(activity.since, hour_ago);
    assert_eq!((activity.accepted[0], activity.accepted[1]), (0, 5));
    assert_eq!((activity.handled[0], activity.handled[1]), (0, 4));
    let later = inbox
        .activity_from(
            SystemTime::now() + Duration::from_secs(60),
            Duration::from_secs(60),
            1,
        )
        .await
        .unwrap();
    assert_eq!((later.accepted[0], later.handled[0]), (0, 0));
    // Buckets and starts however far off answer, and never panic.
    let far = inbox.activity(Duration::MAX, 1_000).await.unwrap();
    assert_eq!(far.accepted.iter().sum::<u64>(), 5, "{far:?}");
    let century = Duration::from_secs(100 * 365 * 86_400);
    let far = inbox
        .activity_from(SystemTime::now() + century, Duration::MAX, 3)
        .await
        .unwrap();
    assert_eq!(far.accepted, [0, 0, 0]);

    // Replay by filter: only dead letters, only those the filter matches.
    assert_eq!(
        inbox
            .replay_matching(&JobFilter::default().layer("shop"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        inbox
            .replay_matching(&JobFilter::default().state(JobState::Done))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        inbox
            .replay_matching(&JobFilter::default().event_type("push"))
            .await
            .unwrap(),
        1
    );
    let replayed = inbox.job(&dead.task_id).await.unwrap().unwrap();
    assert_eq!(replayed.summary.state, JobState::Queued);
    assert_eq!(replayed.summary.attempts, 0);
    assert_eq!(replayed.attempts.len(), 3, "the history stays");

    // Purge: the done jobs go, with their attempts; the replayed one stays.
    let purged = inbox
        .purge_done_before(SystemTime::now() + Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(purged, 4);
    let left: HashSet<String> = list(JobFilter::default()).await.into_iter().collect();
    assert_eq!(left, HashSet::from([a3.clone()]));
    assert!(inbox.job(&flaky.summary.task_id).await.unwrap().is_none());
}

/// A running job taken back under its attempt (its lease lapsed, held by a worker that no
/// longer answers): that attempt's record ends there, failed and saying why, and the next
/// attempt's is its own. Before, the first record stayed open and the second attempt's end
/// closed both, done twice. `take_back` makes the job of the given id look held by a silent
/// worker, its lease lapsed; the worker's sweep does the rest.
async fn attempts_exact_through_a_takeover<D: Dialect, F, Fut>(inbox: Inbox<D>, take_back: F)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use tokio::sync::{mpsc, oneshot};
    let inbox = inbox.with_retry(no_wait());
    let id = common::inbox::send_github(&inbox, "github", "push", r#"{"n":1}"#).await;
    let task_id = inbox
        .jobs(&JobFilter::default().event_id(&id), None, 1)
        .await
        .unwrap()
        .jobs[0]
        .task_id
        .clone();
    // The first attempt waits until it is told, after the takeover; the second succeeds.
    let (started, mut first) = mpsc::unbounded_channel::<oneshot::Sender<()>>();
    let handler = move |_: tower_webhook::Event, job: tower_webhook::inbox::Job| {
        let started = started.clone();
        async move {
            if job.attempt() == 1 {
                let (release, released) = oneshot::channel();
                let _ = started.send(release);
                let _ = released.await;
            }
            Ok::<_, std::convert::Infallible>(())
        }
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(inbox.worker(handler).run_until(async {
        let _ = stopped.await;
    }));
    let release = first.recv().await.unwrap();
    take_back(task_id.clone()).await;
    let done = common::inbox::read_until(
        20,
        || inbox.counts(),
        |counts| counts.as_ref().is_ok_and(|c| c.done == 1),
    )
    .await
    .unwrap();
    assert_eq!(done.done, 1, "{done:?}");
    let _ = release.send(());
    let _ = stop.send(());
    worker.await.unwrap().unwrap();
    let job = inbox.job(&task_id).await.unwrap().unwrap();
    let outcomes: Vec<AttemptOutcome> = job.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [AttemptOutcome::Failed, AttemptOutcome::Done],
        "{job:?}"
    );
    assert_eq!(
        job.attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(
        job.attempts[0]
            .error
            .as_deref()
            .is_some_and(|error| error.contains("taken back")),
        "{:?}",
        job.attempts[0]
    );
    assert!(job.attempts.iter().all(|a| a.duration.is_some()));
    let activity = inbox.activity(Duration::from_secs(300), 1).await.unwrap();
    assert_eq!(
        (activity.handled[0], activity.failed[0]),
        (1, 1),
        "{activity:?}"
    );
}

/// The deliveries and ended attempts of a queue, as rows: each job's id, and each ended
/// attempt's end (ms) and outcome.
type Rows = (Vec<String>, Vec<(i64, String)>);

const JOB_IDS: &str = "SELECT id FROM webhook_inbox_jobs WHERE queue = $1";
const ENDS: &str = "SELECT ended_at, outcome FROM webhook_inbox_job_attempts
    WHERE queue = $1 AND ended_at IS NOT NULL";

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap())
}

/// The activity counted from every row, as the activity is defined.
fn counted_from_rows((ids, ends): &Rows, since: i64, bucket: i64, buckets: usize) -> [Vec<u64>; 4] {
    let mut series: [Vec<u64>; 4] = std::array::from_fn(|_| vec![0; buckets]);
    let slot = |ms: i64| {
        (ms >= since).then(|| {
            usize::try_from((ms - since) / bucket)
                .unwrap()
                .min(buckets - 1)
        })
    };
    for id in ids {
        let ms = i64::try_from(ulid::Ulid::from_string(id).unwrap().timestamp_ms()).unwrap();
        if let Some(i) = slot(ms) {
            series[0][i] += 1;
        }
    }
    for (ended_at, outcome) in ends {
        let kind = match outcome.as_str() {
            "done" => 1,
            "failed" => 2,
            "dead" => 3,
            other => panic!("an ended attempt's outcome: {other}"),
        };
        if let Some(i) = slot(*ended_at) {
            series[kind][i] += 1;
        }
    }
    series
}

/// The activity is what counting every row gives, for buckets of any length from any
/// time (edges inside a tick, on one, ticks held whole), and stays so after a purge.
async fn the_activity_is_what_its_rows_count<D: Dialect, F>(inbox: Inbox<D>, rows: impl Fn() -> F)
where
    F: std::future::Future<Output = Rows>,
{
    let inbox = inbox.with_retry(no_wait());
    for n in 0..24 {
        let body = match n % 6 {
            0 => format!(r#"{{"n":{n},"fail":true}}"#),
            1 => format!(r#"{{"n":{n},"flaky":true}}"#),
            _ => format!(r#"{{"n":{n}}}"#),
        };
        common::inbox::send_github(&inbox, "github", "push", &body).await;
        if n == 11 {
            // Ends between the deliveries: the worker takes the first half.
            common::inbox::work_until(&inbox, 10, 2).await;
        }
    }
    common::inbox::work_until(&inbox, 20, 4).await;
    let tick = 32_768;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut random = move |below: i64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        i64::try_from(seed % u64::try_from(below).unwrap()).unwrap()
    };
    let mut compare = |rows: Rows, cases: usize| {
        let times: Vec<i64> = rows
            .0
            .iter()
            .map(|id| i64::try_from(ulid::Ulid::from_string(id).unwrap().timestamp_ms()).unwrap())
            .chain(rows.1.iter().map(|(ended_at, _)| *ended_at))
            .collect();
        let (first, last) = (*times.iter().min().unwrap(), *times.iter().max().unwrap());
        (0..cases)
            .map(|_| {
                let bucket = match random(9) {
                    0 => 1_000,
                    1 => 1_001,
                    2 => tick - 1,
                    3 => tick,
                    4 => tick + 1,
                    5 => 3 * tick + 5,
                    6 => 3_600_000,
                    _ => 1_000 + random(200_000),
                };
                let buckets = 1 + random(30);
                let since = match random(4) {
                    // On a tick's edge.
                    0 => (first - random(3 * tick)) / tick * tick,
                    _ => first - random(3 * tick) + random(last - first + 2),
                };
                (
                    since,
                    bucket,
                    usize::try_from(buckets).unwrap(),
                    rows.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    for purged in [false, true] {
        if purged {
            // About half the done jobs go, with their attempts.
            let (_, ends) = rows().await;
            let mut done: Vec<i64> = ends
                .iter()
                .filter(|(_, outcome)| outcome == "done")
                .map(|(ended_at, _)| *ended_at)
                .collect();
            done.sort_unstable();
            let middle = done[done.len() / 2];
            let before = SystemTime::UNIX_EPOCH + millis(middle);
            assert!(inbox.purge_done_before(before).await.unwrap() > 0);
        }
        for (since, bucket, buckets, rows) in compare(rows().await, 150) {
            let activity = inbox
                .activity_from(
                    SystemTime::UNIX_EPOCH + millis(since),
                    millis(bucket),
                    u32::try_from(buckets).unwrap(),
                )
                .await
                .unwrap();
            let [accepted, handled, failed, dead] =
                counted_from_rows(&rows, since, bucket, buckets);
            assert_eq!(
                (
                    &activity.accepted,
                    &activity.handled,
                    &activity.failed,
                    &activity.dead_lettered
                ),
                (&accepted, &handled, &failed, &dead),
                "from {since}, {buckets} of {bucket} ms, purged: {purged}"
            );
        }
    }
}

/// A running job held by a silent worker, its lease lapsed.
const TAKE_BACK: &str = "UPDATE webhook_inbox_jobs SET holder = 'a-silent-worker',
    lease_until = 0 WHERE id = $1 AND state = 'running'";

async fn sqlite_inbox() -> SqliteInbox {
    let dir = std::env::temp_dir().join(format!("tower-webhook-browse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    SqliteInbox::open(dir.join(format!("{}.db", unique("browse"))))
        .await
        .unwrap()
}

async fn postgres_inbox() -> PostgresInbox {
    PostgresInbox::connect(&common::database_url())
        .await
        .unwrap()
        .with_queue(&unique("test-queue"))
}

fn main() -> std::process::ExitCode {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let reachable = runtime.block_on(common::inbox::postgres_reachable());
    let clean = reachable.is_ok();
    let mut trials = vec![
        common::trial("sqlite::browse", || async {
            browse_suite(sqlite_inbox().await).await;
        }),
        common::trial("sqlite::the_activity_is_what_its_rows_count", || async {
            let inbox = sqlite_inbox().await;
            let pool = inbox.pool().clone();
            the_activity_is_what_its_rows_count(inbox, || {
                let pool = pool.clone();
                async move {
                    use tower_webhook::store::sqlite::sqlx;
                    let ids = sqlx::query_scalar(JOB_IDS)
                        .bind(tower_webhook::inbox::DEFAULT_QUEUE)
                        .fetch_all(&pool);
                    let ends = sqlx::query_as(ENDS)
                        .bind(tower_webhook::inbox::DEFAULT_QUEUE)
                        .fetch_all(&pool);
                    (ids.await.unwrap(), ends.await.unwrap())
                }
            })
            .await;
        }),
        common::trial("sqlite::attempts_exact_through_a_takeover", || async {
            let inbox = sqlite_inbox().await;
            let pool = inbox.pool().clone();
            attempts_exact_through_a_takeover(inbox, |id| {
                let pool = pool.clone();
                async move {
                    tower_webhook::store::sqlite::sqlx::query(TAKE_BACK)
                        .bind(id)
                        .execute(&pool)
                        .await
                        .unwrap();
                }
            })
            .await;
        }),
    ];
    trials.extend(common::needing(
        "PostgreSQL",
        "DATABASE_URL",
        &common::database_url(),
        reachable,
        vec![
            common::trial("postgres::browse", || async {
                browse_suite(postgres_inbox().await).await;
            }),
            common::trial("postgres::the_activity_is_what_its_rows_count", || async {
                let queue = unique("test-queue");
                let inbox = PostgresInbox::connect(&common::database_url())
                    .await
                    .unwrap()
                    .with_queue(&queue);
                let pool = inbox.pool().clone();
                the_activity_is_what_its_rows_count(inbox, || {
                    let (pool, queue) = (pool.clone(), queue.clone());
                    async move {
                        use tower_webhook::store::postgres::sqlx;
                        let ids = sqlx::query_scalar(JOB_IDS).bind(&queue).fetch_all(&pool);
                        let ends = sqlx::query_as(ENDS).bind(&queue).fetch_all(&pool);
                        (ids.await.unwrap(), ends.await.unwrap())
                    }
                })
                .await;
            }),
            common::trial("postgres::attempts_exact_through_a_takeover", || async {
                let inbox = postgres_inbox().await;
                let pool = inbox.pool().clone();
                attempts_exact_through_a_takeover(inbox, |id| {
                    let pool = pool.clone();
                    async move {
                        tower_webhook::store::postgres::sqlx::query(TAKE_BACK)
                            .bind(id)
                            .execute(&pool)
                            .await
                            .unwrap();
                    }
                })
                .await;
            }),
        ],
    ));
    let code = common::run(trials);
    if clean {
        runtime.block_on(common::inbox::remove_this_runs_rows());
    }
    code
}
