//! The work done once: a handler's writes in its `Tx` commit if and only if the delivery is
//! recorded as done. The same suite on SQLite and PostgreSQL, inline (the layer's store) and
//! in an inbox worker: commit on success; rollback on a failure, an error, a panic, a
//! dropped future; a lost lease or a job taken over cannot commit; a failed commit answers
//! 503 and the retry does the work once; the extractor without a store answers 500; SQLite's
//! one writer neither deadlocks nor refuses concurrent deliveries behind a slow handler.
//!
//! PostgreSQL at `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`); without
//! one its trials are reported as ignored, or fail when `CI` is set. SQLite needs nothing.
#![cfg(all(
    feature = "inbox-sqlite",
    feature = "inbox-postgres",
    feature = "test-util"
))]

mod common;

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use common::inbox::unique;
use futures_util::FutureExt as _;
use tower::ServiceExt;
use tower_webhook::store::sqlite::sqlx;
use tower_webhook::testkit::Delivery;
use tower_webhook::{Event, Tx, VerifyWebhookLayer};

/// Each trial's tables: the effects (one row per run that committed), and a parent that a
/// deferred foreign key points at, to make a commit fail at will.
fn tables(name: &str) -> [String; 2] {
    [
        format!("CREATE TABLE {name}_parent (id BIGINT PRIMARY KEY)"),
        format!(
            "CREATE TABLE {name} (event_id TEXT NOT NULL,
                parent BIGINT REFERENCES {name}_parent (id) DEFERRABLE INITIALLY DEFERRED)"
        ),
    ]
}

/// A delivery through `app`: its status.
async fn deliver(app: &Router, delivery: &Delivery) -> StatusCode {
    let request: http::Request<Body> = delivery.request(&common::scheme()).unwrap();
    app.clone().oneshot(request).await.unwrap().status()
}

/// What a handler does after its insert, by the run it is (from 1).
#[derive(Clone, Copy, Debug)]
enum Then {
    Answer(u16),
    /// Inserts a row whose parent is missing: the commit fails.
    BreakCommit,
    Panic,
    /// Waits for ever (until its future is dropped).
    Hang,
    /// Sleeps this many milliseconds, then answers 204.
    Sleep(u64),
    /// Runs this statement (`COMMIT` or `ROLLBACK`) through the `Tx`, ending it by hand,
    /// then answers 204: a misuse the layer must refuse to take as done.
    EndByHand(&'static str),
}

/// Generates the suite for one database: `$db` the sqlx database, `$store` how a store and
/// its pool are made, `$inbox` how an inbox is.
macro_rules! suite {
    ($module:ident, $db:ty, $dialect:ty, $store:expr, $inbox:expr) => {
        mod $module {
            use super::*;

            type Db = $db;
            type Pool = sqlx::Pool<Db>;

            async fn store() -> (VerifyWebhookLayer, Pool) {
                #[allow(clippy::redundant_closure_call)]
                let (layer, pool): (VerifyWebhookLayer, Pool) = ($store)().await;
                (layer, pool)
            }

            async fn create(pool: &Pool, name: &str) {
                for sql in tables(name) {
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(pool)
                        .await
                        .unwrap();
                }
            }

            /// Rows of `name` for `id`.
            async fn rows(pool: &Pool, name: &str, id: &str) -> i64 {
                let sql = format!("SELECT COUNT(*) FROM {name} WHERE event_id = $1");
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_one(pool)
                    .await
                    .unwrap()
            }

            async fn insert(tx: &mut Tx<Db>, name: &str, id: &str, parent: Option<i64>) {
                let sql = format!("INSERT INTO {name} (event_id, parent) VALUES ($1, $2)");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .bind(parent)
                    .execute(&mut **tx)
                    .await
                    .unwrap();
            }

            /// Ends the handler's transaction by hand, as a misusing handler does.
            async fn end_by_hand(tx: &mut Tx<Db>, statement: &'static str) {
                sqlx::query(statement).execute(&mut **tx).await.unwrap();
            }

            /// An app whose handler inserts a row in its `Tx`, then does what `plan` says
            /// for the run it is; `runs` counts the runs.
            fn app(
                layer: VerifyWebhookLayer,
                name: &str,
                plan: fn(u32) -> Then,
                runs: &Arc<AtomicU32>,
            ) -> Router {
                let (name, runs) = (name.to_owned(), Arc::clone(runs));
                let handler = move |event: Event, mut tx: Tx<Db>| {
                    let (name, runs) = (name.clone(), Arc::clone(&runs));
                    async move {
                        let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                        let then = plan(run);
                        let parent = matches!(then, Then::BreakCommit).then_some(404);
                        insert(&mut tx, &name, event.id(), parent).await;
                        match then {
                            Then::Answer(status) => StatusCode::from_u16(status).unwrap(),
                            Then::BreakCommit => StatusCode::NO_CONTENT,
                            Then::Panic => panic!("the handler panics after its insert"),
                            Then::Hang => std::future::pending().await,
                            Then::Sleep(ms) => {
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                                StatusCode::NO_CONTENT
                            }
                            Then::EndByHand(statement) => {
                                end_by_hand(&mut tx, statement).await;
                                StatusCode::NO_CONTENT
                            }
                        }
                    }
                };
                Router::new().route("/webhooks", post(handler)).layer(layer)
            }

            /// One delivery, and an app whose handler inserts it in its `Tx` and then
            /// does what `plan` says for the run it is.
            struct Case {
                app: Router,
                pool: Pool,
                name: String,
                runs: Arc<AtomicU32>,
                delivery: Delivery,
                id: String,
            }

            impl Case {
                async fn new(plan: fn(u32) -> Then, lease: Option<Duration>) -> Self {
                    let (layer, pool) = store().await;
                    let layer = match lease {
                        Some(lease) => layer.with_lease(lease),
                        None => layer,
                    };
                    let name = unique("fx").replace('-', "_");
                    create(&pool, &name).await;
                    let runs = Arc::new(AtomicU32::new(0));
                    let app = app(layer, &name, plan, &runs);
                    let delivery = Delivery::new("{}").id(unique("evt"));
                    let id = common::inbox::delivery_id(&delivery);
                    Self {
                        app,
                        pool,
                        name,
                        runs,
                        delivery,
                        id,
                    }
                }

                async fn send(&self) -> StatusCode {
                    deliver(&self.app, &self.delivery).await
                }

                async fn rows(&self) -> i64 {
                    rows(&self.pool, &self.name, &self.id).await
                }

                /// The handler's runs, and the delivery's rows.
                async fn runs_and_rows(&self) -> (u32, i64) {
                    (self.runs.load(Ordering::SeqCst), self.rows().await)
                }
            }

            pub(super) async fn inline_commits_on_2xx_and_only_then() {
                let case = Case::new(|_| Then::Answer(204), None).await;
                assert_eq!(case.send().await, StatusCode::NO_CONTENT);
                assert_eq!(case.rows().await, 1);
                // The completion committed with it: a copy is a duplicate, not run again.
                assert_eq!(case.send().await, StatusCode::OK);
                assert_eq!(case.runs_and_rows().await, (1, 1));
            }

            pub(super) async fn inline_rolls_back_a_failure_an_error_status_and_a_panic() {
                let plan = |run| match run {
                    1 => Then::Answer(500),
                    2 => Then::Answer(409),
                    3 => Then::Panic,
                    _ => Then::Answer(204),
                };
                let case = Case::new(plan, None).await;
                assert_eq!(case.send().await, StatusCode::INTERNAL_SERVER_ERROR);
                assert_eq!(case.rows().await, 0);
                assert_eq!(case.send().await, StatusCode::CONFLICT);
                assert_eq!(case.rows().await, 0);
                let panicked = AssertUnwindSafe(case.send()).catch_unwind().await;
                assert!(
                    panicked.is_err(),
                    "the panic goes on once the claim is settled"
                );
                assert_eq!(case.rows().await, 0);
                // Each claim was released: the next copy runs at once, and commits.
                assert_eq!(case.send().await, StatusCode::NO_CONTENT);
                assert_eq!(case.runs_and_rows().await, (4, 1));
            }

            pub(super) async fn inline_rolls_back_a_dropped_future() {
                let plan = |run| {
                    if run == 1 {
                        Then::Hang
                    } else {
                        Then::Answer(204)
                    }
                };
                let case = Case::new(plan, None).await;
                let hung = tokio::time::timeout(Duration::from_millis(300), case.send());
                assert!(
                    hung.await.is_err(),
                    "the first run hangs until it is dropped"
                );
                // Rolled back and released in the background: the retry runs and commits.
                let mut last = StatusCode::TOO_MANY_REQUESTS;
                for _ in 0..50 {
                    last = case.send().await;
                    if last != StatusCode::TOO_MANY_REQUESTS {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                assert_eq!(last, StatusCode::NO_CONTENT);
                assert_eq!(case.runs_and_rows().await, (2, 1));
            }

            pub(super) async fn inline_a_lost_lease_cannot_commit() {
                // The first run outlives its lease; the second, a copy sent after the lease
                // ran out, is quick. On SQLite the copy's claim waits for the first run's
                // write lock (until 900 ms): the lease must outlast that wait.
                let plan = |run| {
                    if run == 1 {
                        Then::Sleep(900)
                    } else {
                        Then::Answer(204)
                    }
                };
                let case = Arc::new(Case::new(plan, Some(Duration::from_millis(600))).await);
                let slow = tokio::spawn({
                    let case = Arc::clone(&case);
                    async move { case.send().await }
                });
                tokio::time::sleep(Duration::from_millis(650)).await;
                let copy = case.send().await;
                let slow = slow.await.unwrap();
                // The first run lost its lease: nothing of it committed. The copy, which took
                // the claim after the lease ran out, did the work.
                assert_eq!(
                    (slow, copy),
                    (StatusCode::SERVICE_UNAVAILABLE, StatusCode::NO_CONTENT)
                );
                assert_eq!(case.send().await, StatusCode::OK);
                assert_eq!(case.runs_and_rows().await, (2, 1));
            }

            pub(super) async fn inline_a_copy_in_flight_is_refused_at_once() {
                // The first run holds its `Tx` (on SQLite, the file's write lock) for 1.5 s.
                let case = Arc::new(Case::new(|_| Then::Sleep(1500), None).await);
                let first = tokio::spawn({
                    let case = Arc::clone(&case);
                    async move { case.send().await }
                });
                tokio::time::sleep(Duration::from_millis(300)).await;
                assert_eq!(case.send().await, StatusCode::TOO_MANY_REQUESTS);
                assert!(
                    !first.is_finished(),
                    "the copy did not wait for the first run"
                );
                assert_eq!(first.await.unwrap(), StatusCode::NO_CONTENT);
                assert_eq!(case.send().await, StatusCode::OK);
                assert_eq!(case.runs_and_rows().await, (1, 1));
            }

            pub(super) async fn inline_a_failed_commit_answers_503_and_the_retry_does_the_work() {
                let plan = |run| {
                    if run == 1 {
                        Then::BreakCommit
                    } else {
                        Then::Answer(204)
                    }
                };
                let case = Case::new(plan, None).await;
                let request: http::Request<Body> =
                    case.delivery.request(&common::scheme()).unwrap();
                let response = case.app.clone().oneshot(request).await.unwrap();
                assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
                assert!(response.headers().contains_key(http::header::RETRY_AFTER));
                assert_eq!(case.rows().await, 0);
                assert_eq!(case.send().await, StatusCode::NO_CONTENT);
                assert_eq!(case.send().await, StatusCode::OK);
                assert_eq!(case.runs_and_rows().await, (2, 1));
            }

            pub(super) async fn inline_a_tx_the_handler_ended_answers_500_naming_it() {
                let plan = |run| match run {
                    1 => Then::EndByHand("COMMIT"),
                    2 => Then::EndByHand("ROLLBACK"),
                    _ => Then::Answer(204),
                };
                let case = Case::new(plan, None).await;
                for (run, rows) in [(1, 1), (2, 1)] {
                    let request: http::Request<Body> =
                        case.delivery.request(&common::scheme()).unwrap();
                    let response = case.app.clone().oneshot(request).await.unwrap();
                    assert_eq!(
                        response.status(),
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "run {run}"
                    );
                    let rejection = response
                        .extensions()
                        .get::<tower_webhook::Rejection>()
                        .cloned()
                        .unwrap();
                    assert_eq!(rejection.reason(), "tx_ended_by_handler");
                    let text = common::body_text(response).await;
                    assert!(text.contains("ended its Tx itself"), "{text}");
                    // Not marked done: the row the first run committed by hand stays (its
                    // writes escaped), the second's was rolled back by hand, and neither
                    // recorded the delivery as handled.
                    assert_eq!(case.rows().await, rows, "run {run}");
                }
                assert_eq!(case.send().await, StatusCode::NO_CONTENT);
                assert_eq!(case.send().await, StatusCode::OK);
                assert_eq!(case.runs_and_rows().await, (3, 2));
            }

            pub(super) async fn inline_concurrent_deliveries_behind_a_slow_handler() {
                let (layer, pool) = store().await;
                let name = unique("fx").replace('-', "_");
                create(&pool, &name).await;
                let runs = Arc::new(AtomicU32::new(0));
                let app = app(layer, &name, |_| Then::Sleep(50), &runs);
                let sends: Vec<_> = (0..20)
                    .map(|_| {
                        let app = app.clone();
                        tokio::spawn(async move {
                            deliver(&app, &Delivery::new("{}").id(unique("evt"))).await
                        })
                    })
                    .collect();
                for send in sends {
                    assert_eq!(send.await.unwrap(), StatusCode::NO_CONTENT);
                }
                let total: i64 =
                    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {name}")))
                        .fetch_one(&pool)
                        .await
                        .unwrap();
                assert_eq!(total, 20);
            }

            async fn inbox() -> tower_webhook::inbox::Inbox<$dialect> {
                #[allow(clippy::redundant_closure_call)]
                let inbox = ($inbox)().await;
                inbox.with_retry(
                    tower_webhook::inbox::RetryPolicy::exponential(
                        Duration::ZERO,
                        1,
                        Duration::ZERO,
                    )
                    .with_attempts(6),
                )
            }

            /// Waits until the inbox has `done` jobs done (up to 30 s): its counts then.
            async fn done(
                inbox: &tower_webhook::inbox::Inbox<$dialect>,
                done: u64,
            ) -> tower_webhook::inbox::Counts {
                common::inbox::read_until(
                    30,
                    || async { inbox.counts().await.unwrap() },
                    |counts| counts.done >= done,
                )
                .await
            }

            pub(super) async fn inbox_one_tx_handler_for_either_database() {
                super::one_tx_handler_for_either_database(inbox().await).await;
            }

            pub(super) async fn inbox_commits_with_the_job_and_rolls_back_failed_attempts() {
                let inbox = inbox().await;
                let pool = inbox.pool().clone();
                let name = unique("fx").replace('-', "_");
                create(&pool, &name).await;
                let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
                let handler = {
                    let name = name.clone();
                    move |event: Event, job: tower_webhook::inbox::Job, mut tx: Tx<Db>| {
                        let name = name.clone();
                        async move {
                            let parent = (job.attempt() == 3).then_some(404);
                            insert(&mut tx, &name, event.id(), parent).await;
                            match job.attempt() {
                                1 => Err("the first attempt fails after its insert".to_owned()),
                                2 => panic!("the second attempt panics after its insert"),
                                // The third's commit fails (a missing parent); the fourth's
                                // commits.
                                _ => Ok(()),
                            }
                        }
                    }
                };
                let worker = tokio::spawn(inbox.worker(handler).concurrency(2).run());
                let delivery = Delivery::new("{}").id(unique("evt"));
                let id = common::inbox::delivery_id(&delivery);
                let sent = common::inbox::send(&layer, &delivery).await.0;
                assert_eq!(sent, StatusCode::ACCEPTED);
                let counts = done(&inbox, 1).await;
                worker.abort();
                assert_eq!(
                    (counts.done, counts.dead, counts.failed),
                    (1, 0, 0),
                    "{counts:?}"
                );
                assert_eq!(
                    rows(&pool, &name, &id).await,
                    1,
                    "only the fourth attempt committed"
                );
            }

            pub(super) async fn inbox_a_tx_the_handler_ended_fails_its_attempt() {
                let inbox = inbox().await;
                let pool = inbox.pool().clone();
                let name = unique("fx").replace('-', "_");
                create(&pool, &name).await;
                let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
                let handler = {
                    let name = name.clone();
                    move |event: Event, job: tower_webhook::inbox::Job, mut tx: Tx<Db>| {
                        let name = name.clone();
                        async move {
                            insert(&mut tx, &name, event.id(), None).await;
                            match job.attempt() {
                                1 => end_by_hand(&mut tx, "COMMIT").await,
                                2 => end_by_hand(&mut tx, "ROLLBACK").await,
                                _ => {}
                            }
                            Ok::<_, String>(())
                        }
                    }
                };
                let worker = tokio::spawn(inbox.worker(handler).concurrency(2).run());
                let delivery = Delivery::new("{}").id(unique("evt"));
                let id = common::inbox::delivery_id(&delivery);
                let sent = common::inbox::send(&layer, &delivery).await.0;
                assert_eq!(sent, StatusCode::ACCEPTED);
                let counts = done(&inbox, 1).await;
                worker.abort();
                assert_eq!((counts.done, counts.dead), (1, 0), "{counts:?}");
                // The first attempt's row, committed by hand, stays; the second's was rolled
                // back by hand; the third's committed with the job.
                assert_eq!(rows(&pool, &name, &id).await, 2);
                let filter = tower_webhook::inbox::JobFilter::default();
                let page = inbox.jobs(&filter, None, 10).await.unwrap();
                let job = inbox.job(&page.jobs[0].task_id).await.unwrap().unwrap();
                let failed: Vec<_> = job
                    .attempts
                    .iter()
                    .filter(|attempt| attempt.outcome.as_str() == "failed")
                    .map(|attempt| (attempt.attempt, attempt.error.clone().unwrap_or_default()))
                    .collect();
                assert_eq!(failed.len(), 2, "{:?}", job.attempts);
                for (attempt, error) in failed {
                    assert!(
                        error.contains("ended its Tx itself"),
                        "attempt {attempt}: {error}"
                    );
                }
            }

            pub(super) async fn inbox_a_slow_handler_neither_blocks_the_door_nor_deadlocks() {
                let inbox = inbox().await;
                let pool = inbox.pool().clone();
                let name = unique("fx").replace('-', "_");
                create(&pool, &name).await;
                let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
                let handler = {
                    let name = name.clone();
                    move |event: Event, mut tx: Tx<Db>| {
                        let name = name.clone();
                        async move {
                            insert(&mut tx, &name, event.id(), None).await;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Ok::<_, String>(())
                        }
                    }
                };
                let worker = tokio::spawn(inbox.worker(handler).concurrency(4).run());
                let sends: Vec<_> = (0..30)
                    .map(|_| {
                        let layer = layer.clone();
                        tokio::spawn(async move {
                            let delivery = Delivery::new("{}").id(unique("evt"));
                            common::inbox::send(&layer, &delivery).await.0
                        })
                    })
                    .collect();
                for send in sends {
                    assert_eq!(send.await.unwrap(), StatusCode::ACCEPTED);
                }
                let counts = done(&inbox, 30).await;
                worker.abort();
                assert_eq!(counts.done, 30, "{counts:?}");
                let total: i64 =
                    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {name}")))
                        .fetch_one(&pool)
                        .await
                        .unwrap();
                assert_eq!(total, 30);
            }
        }
    };
}

suite!(
    sqlite,
    sqlx::Sqlite,
    tower_webhook::inbox::Sqlite,
    || async {
        let store = tower_webhook::store::SqliteStore::open(file("store"))
            .await
            .unwrap();
        let pool = store.pool().clone();
        (
            VerifyWebhookLayer::new(common::scheme()).with_store(store),
            pool,
        )
    },
    || async {
        tower_webhook::inbox::SqliteInbox::open(file("inbox"))
            .await
            .unwrap()
    }
);

suite!(
    postgres,
    sqlx::Postgres,
    tower_webhook::inbox::Postgres,
    || async {
        let store = tower_webhook::store::PostgresStore::connect(&common::database_url())
            .await
            .unwrap();
        store.create_table().await.unwrap();
        let pool = store.pool().clone();
        (
            VerifyWebhookLayer::new(common::scheme()).with_store(store),
            pool,
        )
    },
    || async {
        tower_webhook::inbox::PostgresInbox::connect(&common::database_url())
            .await
            .unwrap()
            .with_queue(&unique("tx-queue"))
    }
);

/// The handler of `one_tx_handler_for_either_database`, generic over the dialect: its row
/// in `table` once per delivery (the first attempt of a flaky one fails after its insert),
/// or, for the probe, every row of `table` sent to `rows`.
async fn record_once<D: tower_webhook::inbox::Dialect>(
    table: String,
    rows: tokio::sync::mpsc::UnboundedSender<Vec<tower_webhook::SqlRow>>,
    (event, job, mut tx): (
        Event<serde_json::Value>,
        tower_webhook::inbox::Job,
        Tx<D::Db>,
    ),
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use tower_webhook::SqlValue;
    tx.execute(
        &format!(
            "CREATE TABLE IF NOT EXISTS {table} \
             (event_id TEXT NOT NULL, attempt BIGINT NOT NULL, note TEXT)"
        ),
        &[],
    )
    .await?;
    if event.payload()["probe"] == true {
        let all = tx
            .fetch_all(
                &format!("SELECT event_id, attempt, note FROM {table} ORDER BY event_id"),
                &[],
            )
            .await?;
        let _ = rows.send(all);
        return Ok(());
    }
    let seen = tx
        .fetch_all(
            &format!("SELECT COUNT(*) FROM {table} WHERE event_id = $1"),
            &[event.id().into()],
        )
        .await?;
    assert_eq!(seen[0].get(0), Some(&SqlValue::Int(0)), "done once");
    let inserted = tx
        .execute(
            &format!("INSERT INTO {table} (event_id, attempt, note) VALUES ($1, $2, $3)"),
            &[event.id().into(), job.attempt().into(), None::<&str>.into()],
        )
        .await?;
    assert_eq!(inserted, 1);
    if event.payload()["flaky"] == true && job.attempt() == 1 {
        return Err("the first attempt fails after its insert".into());
    }
    Ok(())
}

/// #30, item 6: one `Tx` handler, written once over the dialect with the `Tx`'s neutral
/// statements (no bound, no macro), run on either database: each delivery's row once,
/// the failed attempt's rolled back, a NULL and an integer read back.
async fn one_tx_handler_for_either_database<D: tower_webhook::inbox::Dialect>(
    inbox: tower_webhook::inbox::Inbox<D>,
) {
    use tower_webhook::SqlValue;
    let table = unique("neutral").replace('-', "_");
    let (rows, mut read) = tokio::sync::mpsc::unbounded_channel::<Vec<tower_webhook::SqlRow>>();
    let handler = {
        let table = table.clone();
        move |event: Event<serde_json::Value>, job: tower_webhook::inbox::Job, tx: Tx<D::Db>| {
            record_once::<D>(table.clone(), rows.clone(), (event, job, tx))
        }
    };
    let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
    let worker = tokio::spawn(inbox.worker(handler).concurrency(1).run());
    let bodies = [
        r#"{"flaky":false}"#,
        r#"{"flaky":true}"#,
        r#"{"flaky":false}"#,
    ];
    let mut ids = Vec::new();
    for (n, body) in bodies.iter().enumerate() {
        let delivery = Delivery::new(*body).id(format!("{table}-{n}"));
        ids.push(common::inbox::delivery_id(&delivery));
        assert_eq!(
            common::inbox::send(&layer, &delivery).await.0,
            StatusCode::ACCEPTED
        );
    }
    let counts = common::inbox::read_until(
        30,
        || async { inbox.counts().await.unwrap() },
        |counts| counts.done >= 3,
    )
    .await;
    assert_eq!((counts.done, counts.dead), (3, 0), "{counts:?}");
    let probe = Delivery::new(r#"{"probe":true}"#).id(format!("{table}-probe"));
    assert_eq!(
        common::inbox::send(&layer, &probe).await.0,
        StatusCode::ACCEPTED
    );
    let all = tokio::time::timeout(Duration::from_secs(30), read.recv())
        .await
        .expect("the probe ran")
        .unwrap();
    worker.abort();
    let read: Vec<(String, i64, bool)> = all
        .iter()
        .map(|row| {
            (
                row.get(0).and_then(SqlValue::as_str).unwrap().to_owned(),
                row.get(1).and_then(SqlValue::as_i64).unwrap(),
                row.get(2).is_some_and(SqlValue::is_null),
            )
        })
        .collect();
    assert_eq!(
        read,
        [
            (ids[0].clone(), 1, true),
            (ids[1].clone(), 2, true),
            (ids[2].clone(), 1, true),
        ],
        "each delivery once, the failed attempt's row rolled back"
    );
}

/// A fresh SQLite file of this run.
fn file(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tower-webhook-tx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{}.db", unique(what)))
}

/// A job taken back from its worker while the handler ran (its heartbeat lapsed, and the
/// queue put it back, counting an attempt): the old run's transaction cannot complete it,
/// and the run that follows does the work. PostgreSQL only: on SQLite the handler's
/// transaction holds the file's write lock, so no takeover can happen while it runs.
async fn postgres_a_job_taken_over_cannot_commit() {
    use tower_webhook::inbox::PostgresInbox;
    let queue = unique("tx-queue");
    let inbox = PostgresInbox::connect(&common::database_url())
        .await
        .unwrap()
        .with_queue(&queue)
        .with_retry(
            tower_webhook::inbox::RetryPolicy::exponential(Duration::ZERO, 1, Duration::ZERO)
                .with_attempts(6),
        );
    let pool = inbox.pool().clone();
    let name = unique("fx").replace('-', "_");
    for sql in tables(&name) {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
    }
    let (inserted, taken) = (
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(tokio::sync::Notify::new()),
    );
    let handler = {
        let (name, inserted, taken) = (name.clone(), Arc::clone(&inserted), Arc::clone(&taken));
        move |event: Event, job: tower_webhook::inbox::Job, mut tx: Tx<sqlx::Postgres>| {
            let (name, inserted, taken) = (name.clone(), Arc::clone(&inserted), Arc::clone(&taken));
            async move {
                let sql = format!("INSERT INTO {name} (event_id) VALUES ($1)");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(event.id())
                    .execute(&mut *tx)
                    .await?;
                if job.attempt() == 1 {
                    inserted.notify_one();
                    taken.notified().await;
                }
                Ok::<_, sqlx::Error>(())
            }
        }
    };
    let worker = tokio::spawn(inbox.worker(handler).concurrency(2).run());
    let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
    let delivery = Delivery::new("{}").id(unique("evt"));
    let id = common::inbox::delivery_id(&delivery);
    let sent = common::inbox::send(&layer, &delivery).await.0;
    assert_eq!(sent, StatusCode::ACCEPTED);
    tokio::time::timeout(Duration::from_secs(20), inserted.notified())
        .await
        .expect("the first attempt ran");
    // What the sweep does to the job of a worker that seems dead.
    let taken_back = sqlx::query(
        "UPDATE webhook_inbox_jobs SET state = 'retrying', holder = NULL, lease_until = NULL,
            run_at = 0 WHERE queue = $1",
    )
    .bind(&queue)
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(taken_back.rows_affected(), 1);
    taken.notify_one();
    let counts = common::inbox::read_until(
        30,
        || async { inbox.counts().await.unwrap() },
        |counts| counts.done >= 1,
    )
    .await;
    assert_eq!(counts.done, 1, "{counts:?}");
    // The job done by a `Tx` has no holder: a late end of the run taken over cannot reopen
    // it (which would run it, and insert, again).
    tokio::time::sleep(Duration::from_secs(1)).await;
    worker.abort();
    let (status, held): (String, bool) =
        sqlx::query_as("SELECT state, holder IS NOT NULL FROM webhook_inbox_jobs WHERE queue = $1")
            .bind(&queue)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), held), ("done", false));
    let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {name} WHERE event_id = $1"
    )))
    .bind(&id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        rows, 1,
        "the run taken over rolled back; the next one committed"
    );
}

/// Three workers whose slots wait on 2-second `Tx` handlers, on a pool of eight, are neither
/// starved of the connections their listeners hold nor taken for dead: every job runs once.
/// (Before: apalis's heartbeat goes with its fetches, which stop while the slots are busy,
/// and the listeners' connections were counted among the handlers' turns; jobs were taken
/// back from live workers and run again.)
async fn postgres_busy_workers_on_a_small_pool_are_not_taken_for_dead() {
    use tower_webhook::inbox::PostgresInbox;
    let queue = unique("tx-queue");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect(&common::database_url())
        .await
        .unwrap();
    let inbox = PostgresInbox::new(pool)
        .await
        .unwrap()
        .with_queue(&queue)
        .with_heartbeat(Duration::from_secs(1))
        .with_retry(
            tower_webhook::inbox::RetryPolicy::exponential(Duration::ZERO, 1, Duration::ZERO)
                .with_attempts(6),
        );
    let pool = inbox.pool().clone();
    let name = unique("fx").replace('-', "_");
    for sql in tables(&name) {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
    }
    let handler = {
        let name = name.clone();
        move |event: Event, mut tx: Tx<sqlx::Postgres>| {
            let name = name.clone();
            async move {
                let sql = format!("INSERT INTO {name} (event_id) VALUES ($1)");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(event.id())
                    .execute(&mut *tx)
                    .await?;
                // Longer than two heartbeats: the worker must be seen alive meanwhile.
                tokio::time::sleep(Duration::from_secs(2)).await;
                Ok::<_, sqlx::Error>(())
            }
        }
    };
    let workers: Vec<_> = (0..3)
        .map(|_| tokio::spawn(inbox.worker(handler.clone()).concurrency(4).run()))
        .collect();
    let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
    for _ in 0..12 {
        let delivery = Delivery::new("{}").id(unique("evt"));
        assert_eq!(
            common::inbox::send(&layer, &delivery).await.0,
            StatusCode::ACCEPTED
        );
    }
    let counts = common::inbox::read_until(
        60,
        || async { inbox.counts().await.unwrap() },
        |counts| counts.done + counts.dead >= 12,
    )
    .await;
    for worker in workers {
        worker.abort();
    }
    assert_eq!((counts.done, counts.dead), (12, 0), "{counts:?}");
    let not_done: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT outcome, error FROM webhook_inbox_job_attempts WHERE queue = $1 AND outcome <> 'done'",
    )
    .bind(&queue)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(not_done.is_empty(), "attempts not done: {not_done:?}");
    let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {name}")))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 12, "each job ran once");
}

/// The extractor on a route whose layer has no store on its database answers 500, naming
/// what is missing.
async fn the_extractor_without_a_store_answers_500() {
    async fn handler(_: Event, _: Tx<sqlx::Sqlite>) -> StatusCode {
        StatusCode::NO_CONTENT
    }
    let memory = VerifyWebhookLayer::new(common::scheme())
        .with_store(tower_webhook::store::MemoryStore::new());
    let postgres = tower_webhook::store::PostgresStore::new(
        sqlx::postgres::PgPoolOptions::new()
            .connect_lazy(&common::database_url())
            .unwrap(),
    );
    // Its table made here: on a fresh database the claim would otherwise fail first (503).
    postgres.create_table().await.unwrap();
    let other_database = VerifyWebhookLayer::new(common::scheme()).with_store(postgres);
    for layer in [memory, other_database] {
        let app = Router::new().route("/webhooks", post(handler)).layer(layer);
        let request: http::Request<Body> = Delivery::new("{}")
            .id(unique("evt"))
            .request(&common::scheme())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let text = common::body_text(response).await;
        assert!(
            text.contains("SQLite") && text.contains("VerifyWebhookLayer"),
            "{text}"
        );
    }
}

fn main() -> std::process::ExitCode {
    // The trials' handlers panic on purpose; say so in one line rather than a backtrace.
    common::quiet_planned_panics("after its insert");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let reachable = runtime.block_on(async {
        tower_webhook::store::PostgresStore::connect(&common::database_url())
            .await
            .map(drop)
            .map_err(|err| err.to_string())
    });
    drop(runtime);
    macro_rules! both {
        ($($test:ident),* $(,)?) => {
            (
                vec![$(common::trial(concat!("sqlite::", stringify!($test)), sqlite::$test)),*],
                vec![$(common::trial(concat!("postgres::", stringify!($test)), postgres::$test)),*],
            )
        };
    }
    let (mut trials, mut on_postgres) = both!(
        inline_commits_on_2xx_and_only_then,
        inline_rolls_back_a_failure_an_error_status_and_a_panic,
        inline_rolls_back_a_dropped_future,
        inline_a_lost_lease_cannot_commit,
        inline_a_copy_in_flight_is_refused_at_once,
        inline_a_failed_commit_answers_503_and_the_retry_does_the_work,
        inline_a_tx_the_handler_ended_answers_500_naming_it,
        inline_concurrent_deliveries_behind_a_slow_handler,
        inbox_commits_with_the_job_and_rolls_back_failed_attempts,
        inbox_a_tx_the_handler_ended_fails_its_attempt,
        inbox_a_slow_handler_neither_blocks_the_door_nor_deadlocks,
        inbox_one_tx_handler_for_either_database,
    );
    trials.push(common::trial(
        "the_extractor_without_a_store_answers_500",
        the_extractor_without_a_store_answers_500,
    ));
    on_postgres.push(common::trial(
        "postgres::inbox_a_job_taken_over_cannot_commit",
        postgres_a_job_taken_over_cannot_commit,
    ));
    on_postgres.push(common::trial(
        "postgres::inbox_busy_workers_on_a_small_pool_are_not_taken_for_dead",
        postgres_busy_workers_on_a_small_pool_are_not_taken_for_dead,
    ));
    let url = common::database_url();
    trials.extend(common::needing(
        "PostgreSQL",
        "DATABASE_URL",
        &url,
        reachable,
        on_postgres,
    ));
    common::run(trials)
}
