//! The inbox, the same suite on SQLite and PostgreSQL: 202 once stored, duplicates, the
//! bound, outages, retries with backoff, the dead-letter and replay, payloads that do not
//! fit, panics, and a worker stopped mid-job whose job another worker finishes.
//!
//! PostgreSQL at `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`); without
//! one its trials are reported as ignored, or fail when `CI` is set. SQLite needs nothing.
#![cfg(all(
    feature = "inbox-sqlite",
    feature = "inbox-postgres",
    feature = "test-util"
))]

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::inbox::{
    counting, delivery_id, eventually, first_dead_letters, no_wait, read_until, recording, send,
    unique, Seen,
};
use http::StatusCode;
use tower_webhook::inbox::{Job, PostgresInbox, RetryPolicy, SqliteInbox};
use tower_webhook::testkit::Delivery;
use tower_webhook::{Event, VerifyWebhookLayer};

/// The suite, for one backend: `$inbox` is an async expression that makes a fresh inbox
/// (its own queue) with the given retry policy, or `None` where its server is unreachable.
macro_rules! inbox_suite {
    ($backend:literal, $inbox:expr, $lock:expr, $poison:expr) => {
        vec![
            common::trial(
                concat!(
                    $backend,
                    "::a_write_slower_than_the_timeout_answers_503_then_commits"
                ),
                || async {
                    let inbox = $inbox(no_wait()).await.unwrap();
                    let layer = VerifyWebhookLayer::new(common::scheme())
                        .with_inbox(inbox.clone())
                        .with_store_timeout(Duration::from_millis(300));
                    let delivery = Delivery::new("{}").id(unique("slow-write"));
                    // Another writer holds the marks' table: the write waits past the timeout.
                    let lock = $lock(&inbox).await;
                    let (status, _, retry_after) = send(&layer, &delivery).await;
                    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
                    assert!(retry_after.is_some());
                    drop(lock);
                    // The write abandoned at the timeout is finished in the background: once it
                    // commits, the sender's retry is a duplicate of a queued delivery.
                    let mut answer = (StatusCode::SERVICE_UNAVAILABLE, false, None);
                    for _ in 0..100 {
                        answer = send(&layer, &delivery).await;
                        if answer.0 != StatusCode::TOO_MANY_REQUESTS
                            && answer.0 != StatusCode::SERVICE_UNAVAILABLE
                        {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    assert!(
                        matches!(
                            (answer.0, answer.1),
                            (StatusCode::OK, true) | (StatusCode::ACCEPTED, false)
                        ),
                        "{answer:?}"
                    );
                    assert_eq!(
                        inbox.counts().await.unwrap().queued,
                        1,
                        "queued exactly once"
                    );
                },
            ),
            common::trial(
                concat!($backend, "::purge_drops_finished_jobs_but_keeps_live_marks"),
                || async {
                    let inbox = $inbox(no_wait()).await.unwrap();
                    let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
                    let delivery = Delivery::new("{}").id(unique("purge"));
                    assert_eq!(send(&layer, &delivery).await.0, StatusCode::ACCEPTED);
                    let worker = inbox.worker(|_: Event| async { Ok::<_, Infallible>(()) });
                    let task = tokio::spawn(worker.run());
                    let done = read_until(
                        10,
                        || async { inbox.counts().await.unwrap().done },
                        |done| *done == 1,
                    )
                    .await;
                    task.abort();
                    assert_eq!(done, 1);
                    // Finish times are kept in whole seconds (SQLite): let one pass.
                    tokio::time::sleep(Duration::from_millis(1100)).await;
                    assert_eq!(inbox.purge(Duration::ZERO).await.unwrap(), 1);
                    assert_eq!(inbox.counts().await.unwrap().done, 0);
                    // The dedup mark lives out its window: a copy is still a duplicate.
                    let (status, duplicate, _) = send(&layer, &delivery).await;
                    assert_eq!((status, duplicate), (StatusCode::OK, true));
                },
            ),
            common::trial(
                concat!($backend, "::concurrency_bounds_the_running_handlers"),
                || async {
                    let inbox = $inbox(no_wait()).await.unwrap();
                    let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
                    for _ in 0..4 {
                        assert_eq!(
                            send(&layer, &Delivery::new("{}").id(unique("one-at-a-time")))
                                .await
                                .0,
                            StatusCode::ACCEPTED
                        );
                    }
                    let running = Arc::new(AtomicU32::new(0));
                    let most = Arc::new(AtomicU32::new(0));
                    let done = Arc::new(AtomicU32::new(0));
                    let worker = {
                        let (running, most, done) =
                            (Arc::clone(&running), Arc::clone(&most), Arc::clone(&done));
                        inbox.worker(move |_: Event| {
                            let (running, most, done) =
                                (Arc::clone(&running), Arc::clone(&most), Arc::clone(&done));
                            async move {
                                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                                most.fetch_max(now, Ordering::SeqCst);
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                running.fetch_sub(1, Ordering::SeqCst);
                                done.fetch_add(1, Ordering::SeqCst);
                                Ok::<_, Infallible>(())
                            }
                        })
                    };
                    let task = tokio::spawn(worker.concurrency(2).run());
                    assert!(eventually(20, || done.load(Ordering::SeqCst) == 4).await);
                    task.abort();
                    // Unbounded, the worker fetches the next batch while the first runs: 4 at once.
                    assert!(
                        most.load(Ordering::SeqCst) <= 2,
                        "{} at once",
                        most.load(Ordering::SeqCst)
                    );
                },
            ),
            common::trial(
                concat!($backend, "::accepted_once_stored_then_handled"),
                || async {
                    let inbox = $inbox(no_wait()).await.unwrap();
                    let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
                    let delivery = Delivery::new(r#"{"type":"user.created"}"#).id(unique("msg"));
                    assert_eq!(send(&layer, &delivery).await.0, StatusCode::ACCEPTED);
                    assert_eq!(inbox.counts().await.unwrap().queued, 1);

                    let seen = Seen::default();
                    let worker = {
                        let seen = Arc::clone(&seen);
                        inbox.worker(move |event: Event<serde_json::Value>, job: Job| {
                            let seen = Arc::clone(&seen);
                            async move {
                                assert_eq!(event.payload()["type"], "user.created");
                                assert_eq!(event.scheme(), "standard-webhooks");
                                assert!(job.headers().contains_key("webhook-id"));
                                seen.lock()
                                    .unwrap()
                                    .push((event.id().to_owned(), job.attempt()));
                                Ok::<_, Infallible>(())
                            }
                        })
                    };
                    let running = tokio::spawn(worker.run());
                    let id = delivery_id(&delivery);
                    assert!(eventually(10, || seen.lock().unwrap().len() == 1).await);
                    assert_eq!(seen.lock().unwrap()[0], (id, 1));
                    // A copy is a duplicate, answered 200, and not queued again.
                    let (status, duplicate, _) = send(&layer, &delivery).await;
                    assert_eq!((status, duplicate), (StatusCode::OK, true));
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    assert_eq!(seen.lock().unwrap().len(), 1);
                    running.abort();
                },
            ),
            common::trial(
                concat!($backend, "::a_failed_attempt_runs_again"),
                || async {
                    let inbox = $inbox(no_wait()).await.unwrap();
                    let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
                    let delivery = Delivery::new("{}").id(unique("retry"));
                    assert_eq!(send(&layer, &delivery).await.0, StatusCode::ACCEPTED);
                    let seen = Seen::default();
                    let worker = inbox.worker(recording(&seen, |attempt| {
                        if attempt == 1 {
                            Err("the first attempt fails".to_owned())
                        } else {
                            Ok(())
                        }
                    }));
                    let running = tokio::spawn(worker.run());
                    assert!(eventually(15, || seen.lock().unwrap().len() == 2).await);
                    let attempts: Vec<u32> = seen.lock().unwrap().iter().map(|s| s.1).collect();
                    assert_eq!(attempts, [1, 2]);
                    running.abort();
                },
            ),
            common::trial(
                concat!($backend, "::a_panic_before_the_future_runs_again"),
                || async {
                    let inbox = $inbox(no_wait()).await.unwrap();
                    let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
                    assert_eq!(
                        send(&layer, &Delivery::new("{}").id(unique("sync-panic")))
                            .await
                            .0,
                        StatusCode::ACCEPTED
                    );
                    let seen = Seen::default();
                    let worker = {
                        let seen = Arc::clone(&seen);
                        // Not an async fn: the closure's own body runs when the job is called.
                        inbox.worker(move |event: Event, job: Job| {
                            seen.lock()
                                .unwrap()
                                .push((event.id().to_owned(), job.attempt()));
                            assert!(job.attempt() > 1, "the first call panics");
                            async { Ok::<_, Infallible>(()) }
                        })
                    };
                    let running = tokio::spawn(worker.run());
                    assert!(eventually(15, || seen.lock().unwrap().len() == 2).await);
                    running.abort();
                },
            ),
            common::trial(concat!($backend, "::a_panic_runs_again"), || async {
                let inbox = $inbox(no_wait()).await.unwrap();
                let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
                assert_eq!(
                    send(&layer, &Delivery::new("{}").id(unique("panic")))
                        .await
                        .0,
                    StatusCode::ACCEPTED
                );
                let seen = Seen::default();
                let worker = inbox.worker(recording(&seen, |attempt| {
                    assert!(attempt > 1, "the first attempt panics");
                    Ok(())
                }));
                let running = tokio::spawn(worker.run());
                assert!(eventually(15, || seen.lock().unwrap().len() == 2).await);
                running.abort();
            }),
            common::trial(
                concat!($backend, "::out_of_attempts_is_dead_lettered_and_replayed"),
                || async {
                    let inbox = $inbox(no_wait().with_attempts(2)).await.unwrap();
                    let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
                    let delivery = Delivery::new("{}").id(unique("dead"));
                    assert_eq!(send(&layer, &delivery).await.0, StatusCode::ACCEPTED);
                    let failing = inbox.worker(|_: Event| async { Err::<(), _>("always fails") });
                    let running = tokio::spawn(failing.run());
                    let dead = read_until(
                        15,
                        || async { inbox.dead_letters(10).await.unwrap() },
                        |dead| !dead.is_empty(),
                    )
                    .await;
                    running.abort();
                    assert_eq!(dead.len(), 1);
                    assert_eq!(dead[0].id, delivery_id(&delivery));
                    assert_eq!(dead[0].attempts, 2);
                    assert_eq!(dead[0].last_error.as_deref(), Some("always fails"));
                    assert_eq!(inbox.counts().await.unwrap().dead, 1);

                    assert!(inbox.replay(&dead[0].task_id).await.unwrap());
                    assert!(!inbox.replay("no-such-task").await.unwrap());
                    let seen = Seen::default();
                    let worker = inbox.worker(recording(&seen, |_| Ok(())));
                    let running = tokio::spawn(worker.run());
                    assert!(eventually(10, || seen.lock().unwrap().len() == 1).await);
                    // apalis records a completion a moment after the handler returns (it
                    // batches acknowledgements): until then the job still counts as queued.
                    let counts = read_until(
                        10,
                        || async { inbox.counts().await.unwrap() },
                        |counts| (counts.dead, counts.queued) == (0, 0),
                    )
                    .await;
                    running.abort();
                    assert_eq!((counts.dead, counts.queued), (0, 0));
                },
            ),
            common::trial(
                concat!($backend, "::a_body_that_does_not_fit_is_dead_at_once"),
                || async {
                    #[derive(serde::Deserialize)]
                    struct Strict {
                        #[allow(dead_code)]
                        amount: u64,
                    }
                    let inbox = $inbox(no_wait()).await.unwrap();
                    let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
                    assert_eq!(
                        send(
                            &layer,
                            &Delivery::new(r#"{"amount":"ten"}"#).id(unique("shape"))
                        )
                        .await
                        .0,
                        StatusCode::ACCEPTED
                    );
                    let runs = Arc::new(AtomicU32::new(0));
                    let running = tokio::spawn(inbox.worker(counting::<Strict>(&runs)).run());
                    let dead = first_dead_letters(&inbox, 10).await;
                    running.abort();
                    assert_eq!(dead.len(), 1);
                    assert_eq!(dead[0].attempts, 1);
                    assert!(dead[0]
                        .last_error
                        .as_deref()
                        .unwrap_or("")
                        .contains("does not deserialize"));
                    assert_eq!(runs.load(Ordering::Relaxed), 0);
                },
            ),
            common::trial(
                concat!($backend, "::over_the_bound_answers_429"),
                || async {
                    let inbox = $inbox(no_wait()).await.unwrap().with_max_queued(2);
                    let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
                    for _ in 0..2 {
                        assert_eq!(
                            send(&layer, &Delivery::new("{}").id(unique("full")))
                                .await
                                .0,
                            StatusCode::ACCEPTED
                        );
                    }
                    let (status, _, retry_after) =
                        send(&layer, &Delivery::new("{}").id(unique("full"))).await;
                    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
                    assert!(retry_after.is_some());
                    assert_eq!(inbox.counts().await.unwrap().queued, 2);
                    assert_eq!(layer.stats().snapshot().inbox_full, 1);
                },
            ),
            common::trial(
                concat!(
                    $backend,
                    "::a_failed_write_answers_503_and_acknowledges_nothing"
                ),
                || async {
                    let inbox = $inbox(no_wait()).await.unwrap();
                    let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
                    inbox.pool().close().await;
                    let (status, _, retry_after) =
                        send(&layer, &Delivery::new("{}").id(unique("down"))).await;
                    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
                    assert!(retry_after.is_some());
                },
            ),
            common::trial(
                concat!($backend, "::a_worker_stopped_mid_job_leaves_it_to_another"),
                || async {
                    let inbox = $inbox(no_wait())
                        .await
                        .unwrap()
                        .with_heartbeat(Duration::from_secs(1));
                    let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
                    let delivery = Delivery::new("{}").id(unique("orphan"));
                    assert_eq!(send(&layer, &delivery).await.0, StatusCode::ACCEPTED);
                    let started = Arc::new(AtomicU32::new(0));
                    let stuck = {
                        let started = Arc::clone(&started);
                        inbox.worker(move |_: Event| {
                            started.fetch_add(1, Ordering::Relaxed);
                            async { std::future::pending::<Result<(), Infallible>>().await }
                        })
                    };
                    let first = tokio::spawn(stuck.run());
                    assert!(eventually(10, || started.load(Ordering::Relaxed) == 1).await);
                    // Gone without a word, as a killed process: no shutdown, no more heartbeats.
                    first.abort();
                    let seen = Seen::default();
                    let worker = inbox.worker(recording(&seen, |_| Ok(())));
                    let second = tokio::spawn(worker.run());
                    assert!(eventually(20, || seen.lock().unwrap().len() == 1).await);
                    second.abort();
                    let (id, attempt) = seen.lock().unwrap()[0].clone();
                    assert_eq!(id, delivery_id(&delivery));
                    assert!(attempt >= 2, "the cut-short run counts as an attempt");
                },
            ),
            common::trial(
                concat!($backend, "::graceful_shutdown_finishes_the_running_job"),
                || async {
                    let inbox = $inbox(no_wait()).await.unwrap();
                    let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
                    assert_eq!(
                        send(&layer, &Delivery::new("{}").id(unique("drain")))
                            .await
                            .0,
                        StatusCode::ACCEPTED
                    );
                    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
                    let started_tx = Mutex::new(Some(started_tx));
                    let finished = Arc::new(AtomicU32::new(0));
                    let worker = {
                        let finished = Arc::clone(&finished);
                        inbox.worker(move |_: Event| {
                            if let Some(tx) = started_tx.lock().unwrap().take() {
                                let _ = tx.send(());
                            }
                            let finished = Arc::clone(&finished);
                            async move {
                                tokio::time::sleep(Duration::from_millis(500)).await;
                                finished.fetch_add(1, Ordering::Relaxed);
                                Ok::<_, Infallible>(())
                            }
                        })
                    };
                    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
                    let running = tokio::spawn(worker.run_until(async move {
                        let _ = stop_rx.await;
                    }));
                    tokio::time::timeout(Duration::from_secs(10), started_rx)
                        .await
                        .unwrap()
                        .unwrap();
                    stop_tx.send(()).unwrap();
                    tokio::time::timeout(Duration::from_secs(10), running)
                        .await
                        .unwrap()
                        .unwrap()
                        .unwrap();
                    assert_eq!(finished.load(Ordering::Relaxed), 1);
                    assert_eq!(inbox.counts().await.unwrap().done, 1);
                },
            ),
            common::trial(
                concat!($backend, "::a_burst_is_answered_as_if_written_alone"),
                || async {
                    let inbox = $inbox(no_wait()).await.unwrap();
                    let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
                    // 60 distinct deliveries, and one more sent 20 times, all at once: they
                    // share transactions, and the copies meet in the same one.
                    let mut deliveries: Vec<Delivery> = (0..60)
                        .map(|n| Delivery::new("{}").id(unique(&format!("burst-{n}"))))
                        .collect();
                    let copied = Delivery::new("{}").id(unique("copied"));
                    deliveries.extend(std::iter::repeat(copied).take(20));
                    let answers = burst(&layer, deliveries).await;
                    let accepted = answers
                        .iter()
                        .filter(|answer| **answer == (StatusCode::ACCEPTED, false))
                        .count();
                    let duplicates = answers
                        .iter()
                        .filter(|answer| **answer == (StatusCode::OK, true))
                        .count();
                    assert_eq!((accepted, duplicates), (61, 19), "{answers:?}");
                    assert_eq!(inbox.counts().await.unwrap().queued, 61);
                },
            ),
            common::trial(
                concat!($backend, "::the_bound_is_exact_under_a_burst"),
                || async {
                    let inbox = $inbox(no_wait()).await.unwrap().with_max_queued(10);
                    let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
                    let deliveries = (0..40)
                        .map(|n| Delivery::new("{}").id(unique(&format!("bound-{n}"))))
                        .collect();
                    let answers = burst(&layer, deliveries).await;
                    let count = |status| answers.iter().filter(|answer| answer.0 == status).count();
                    assert_eq!(
                        (
                            count(StatusCode::ACCEPTED),
                            count(StatusCode::TOO_MANY_REQUESTS)
                        ),
                        (10, 30),
                        "{answers:?}"
                    );
                    assert_eq!(inbox.counts().await.unwrap().queued, 10);
                },
            ),
            common::trial(
                concat!($backend, "::a_committed_job_wakes_an_idle_worker"),
                || async {
                    // Neither the poll nor the heartbeat comes round within the trial: only
                    // the door's wake-up can start the job.
                    let inbox = $inbox(no_wait())
                        .await
                        .unwrap()
                        .with_poll_interval(Duration::from_secs(3600))
                        .with_heartbeat(Duration::from_secs(3600));
                    let seen = Seen::default();
                    let worker = tokio::spawn(inbox.worker(recording(&seen, |_| Ok(()))).run());
                    // The worker's first look finds nothing.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
                    for n in 0..3 {
                        let delivery = Delivery::new("{}").id(unique(&format!("wake-{n}")));
                        assert_eq!(send(&layer, &delivery).await.0, StatusCode::ACCEPTED);
                        assert!(
                            eventually(20, || seen.lock().unwrap().len() == n + 1).await,
                            "job {n} did not start"
                        );
                    }
                    worker.abort();
                },
            ),
            common::trial(
                concat!($backend, "::a_delivery_whose_rows_fail_fails_alone"),
                || async {
                    let inbox = $poison($inbox(no_wait()).await.unwrap(), true).await;
                    let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
                    let mut deliveries: Vec<Delivery> = (0..30)
                        .map(|n| Delivery::new("{}").id(unique(&format!("healthy-{n}"))))
                        .collect();
                    deliveries.insert(15, Delivery::new("{}").id(unique("poison")));
                    let answers = burst(&layer, deliveries).await;
                    $poison(inbox.clone(), false).await;
                    let count = |status| answers.iter().filter(|answer| answer.0 == status).count();
                    assert_eq!(answers[15].0, StatusCode::SERVICE_UNAVAILABLE);
                    assert_eq!(count(StatusCode::ACCEPTED), 30, "{answers:?}");
                    assert_eq!(inbox.counts().await.unwrap().queued, 30);
                },
            ),
        ]
    };
}

/// Makes the job of any delivery whose id starts with `poison-` fail to be written (or,
/// `on` false, no longer).
async fn poison_sqlite(inbox: SqliteInbox, on: bool) -> SqliteInbox {
    if on {
        tower_webhook::store::sqlite::sqlx::query(
            "CREATE TRIGGER poison BEFORE INSERT ON webhook_inbox_jobs
             WHEN CAST(NEW.delivery AS TEXT) LIKE '%\"id\":\"poison-%'
             BEGIN SELECT RAISE(ABORT, 'a poisoned row'); END",
        )
        .execute(inbox.pool())
        .await
        .unwrap();
    }
    inbox
}

/// As [`poison_sqlite`], on the shared table of jobs: only for this run's deliveries.
async fn poison_postgres(inbox: PostgresInbox, on: bool) -> PostgresInbox {
    use tower_webhook::store::postgres::sqlx;
    let name = format!("tower_webhook_poison_{}", std::process::id());
    let statements = if on {
        vec![
            format!(
                "CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF position('\"id\":\"poison-{pid}-' in convert_from(NEW.delivery, 'UTF8')) > 0 THEN
                        RAISE EXCEPTION 'a poisoned row';
                    END IF;
                    RETURN NEW;
                END $$",
                pid = std::process::id()
            ),
            format!(
                "CREATE TRIGGER {name} BEFORE INSERT ON webhook_inbox_jobs
                FOR EACH ROW EXECUTE FUNCTION {name}()"
            ),
        ]
    } else {
        vec![
            format!("DROP TRIGGER IF EXISTS {name} ON webhook_inbox_jobs"),
            format!("DROP FUNCTION IF EXISTS {name}()"),
        ]
    };
    for statement in statements {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(inbox.pool())
            .await
            .unwrap();
    }
    inbox
}

/// Sends `deliveries` through `layer` all at once: each one's status and whether it is a
/// duplicate, in order.
async fn burst(layer: &VerifyWebhookLayer, deliveries: Vec<Delivery>) -> Vec<(StatusCode, bool)> {
    let sends = deliveries.into_iter().map(|delivery| {
        let layer = layer.clone();
        tokio::spawn(async move {
            let (status, duplicate, _) = send(&layer, &delivery).await;
            (status, duplicate)
        })
    });
    let mut answers = Vec::new();
    for sent in sends.collect::<Vec<_>>() {
        answers.push(sent.await.unwrap());
    }
    answers
}

fn run_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("tower-webhook-inbox-{}", std::process::id()))
}

async fn sqlite(retry: RetryPolicy) -> Option<SqliteInbox> {
    std::fs::create_dir_all(run_dir()).unwrap();
    let path = run_dir().join(format!("{}.db", unique("inbox")));
    Some(SqliteInbox::open(path).await.unwrap().with_retry(retry))
}

async fn postgres(retry: RetryPolicy) -> Option<PostgresInbox> {
    let url = common::database_url();
    match PostgresInbox::connect(&url).await {
        Ok(inbox) => Some(inbox.with_queue(&unique("test-queue")).with_retry(retry)),
        Err(err) => common::unreachable("PostgreSQL", "DATABASE_URL", &url, err),
    }
}

/// Holds SQLite's write lock until dropped: a transaction that wrote.
async fn lock_sqlite(
    inbox: &SqliteInbox,
) -> tower_webhook::store::sqlite::sqlx::Transaction<
    'static,
    tower_webhook::store::sqlite::sqlx::Sqlite,
> {
    let mut tx = inbox.pool().begin().await.unwrap();
    tower_webhook::store::sqlite::sqlx::query("DELETE FROM webhook_claims WHERE key = x'00'")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

/// Holds the marks' table locked until dropped.
async fn lock_postgres(
    inbox: &PostgresInbox,
) -> tower_webhook::store::postgres::sqlx::Transaction<
    'static,
    tower_webhook::store::postgres::sqlx::Postgres,
> {
    let mut tx = inbox.pool().begin().await.unwrap();
    tower_webhook::store::postgres::sqlx::query(
        "LOCK TABLE webhook_claims IN ACCESS EXCLUSIVE MODE",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx
}

/// A PostgreSQL worker that loses its database for a while (a restart, a failover) goes on
/// working once it answers again. The worker reaches the database through a proxy that
/// refuses and cuts connections for 7 s; the door writes directly.
async fn a_postgres_worker_outlives_an_outage() {
    use common::proxy::{socket_addr, through, Fault, FaultProxy};
    let url = common::database_url();
    let door = postgres(no_wait()).await.unwrap();
    let proxy = FaultProxy::start(socket_addr(&url, 5432)).await;
    let queue = unique("test-queue");
    let door = door.with_queue(&queue);
    let behind_proxy = PostgresInbox::connect(&through(&url, proxy.addr()))
        .await
        .unwrap()
        .with_queue(&queue)
        .with_retry(no_wait());
    let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(door);
    let seen = Seen::default();
    let running = tokio::spawn(behind_proxy.worker(recording(&seen, |_| Ok(()))).run());
    let first = Delivery::new("{}").id(unique("before-outage"));
    assert_eq!(send(&layer, &first).await.0, StatusCode::ACCEPTED);
    assert!(eventually(10, || seen.lock().unwrap().len() == 1).await);

    proxy.down(Fault::Refuse);
    // Longer than the pool's 3 s wait for a connection: the worker's queries fail.
    tokio::time::sleep(Duration::from_secs(7)).await;
    proxy.up().await;

    let second = Delivery::new("{}").id(unique("after-outage"));
    assert_eq!(send(&layer, &second).await.0, StatusCode::ACCEPTED);
    assert!(
        eventually(40, || seen.lock().unwrap().len() == 2).await,
        "the worker stopped working after the outage (its task finished: {})",
        running.is_finished()
    );
    running.abort();
}

fn main() -> std::process::ExitCode {
    // The trials' handlers panic on purpose; say so in one line rather than a backtrace.
    common::quiet_planned_panics("panics");
    let sqlite_trials = inbox_suite!("sqlite", sqlite, lock_sqlite, poison_sqlite);
    let postgres_trials = inbox_suite!("postgres", postgres, lock_postgres, poison_postgres);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let reachable = runtime.block_on(common::inbox::postgres_reachable());
    let clean = reachable.is_ok();
    let mut trials = sqlite_trials;
    trials.extend(common::needing(
        "PostgreSQL",
        "DATABASE_URL",
        &common::database_url(),
        reachable,
        {
            let mut postgres_trials = postgres_trials;
            postgres_trials.extend(trials![a_postgres_worker_outlives_an_outage]);
            postgres_trials
        },
    ));
    let code = common::run(trials);
    let _ = std::fs::remove_dir_all(run_dir());
    if clean {
        runtime.block_on(common::inbox::remove_this_runs_rows());
    }
    code
}
