//! The inbox under the conditions an outside review found it wanting, on SQLite and on
//! PostgreSQL: a burst against the queue's bound, marks written through the store's own
//! settings, a handler that never returns, workers that die mid-job on their last attempt or
//! with attempts left, and workers stopped at every point of a fetch.
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
use std::time::{Duration, UNIX_EPOCH};

use common::inbox::{counting, eventually, first_dead_letters, read_until, send, unique};
use http::StatusCode;
use tower_webhook::inbox::{PostgresInbox, RetryPolicy, SqliteInbox};
use tower_webhook::store::postgres::sqlx as pg;
use tower_webhook::store::sqlite::sqlx as lite;
use tower_webhook::testkit::Delivery;
use tower_webhook::{Event, Unparsed, VerifyWebhookLayer};

fn run_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("tower-webhook-hardening-{}", std::process::id()))
}

/// Where a fresh inbox of each backend is: an SQLite file, or a PostgreSQL queue.
#[derive(Clone)]
enum Place {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Place {
    fn sqlite() -> Self {
        std::fs::create_dir_all(run_dir()).unwrap();
        Self::Sqlite(run_dir().join(format!("{}.db", unique("inbox"))))
    }

    fn postgres() -> Self {
        Self::Postgres(unique("test-queue"))
    }
}

/// The operations the trials need, on either inbox: the two types share their method
/// names, not a trait.
macro_rules! on_inbox {
    ($place:expr, $retry:expr, |$inbox:ident| $body:expr) => {
        match $place {
            Place::Sqlite(path) => {
                let $inbox = SqliteInbox::open(path).await.unwrap().with_retry($retry);
                $body
            }
            Place::Postgres(queue) => {
                let $inbox = PostgresInbox::connect(&common::database_url())
                    .await
                    .unwrap()
                    .with_queue(queue)
                    .with_retry($retry);
                $body
            }
        }
    };
}

/// Every job of the place's queue: (state, attempts, held by a worker, `run_at` in the
/// future).
async fn jobs(place: &Place) -> Vec<(String, i64, bool, bool)> {
    match place {
        Place::Sqlite(path) => {
            let inbox = SqliteInbox::open(path).await.unwrap();
            lite::query_as(
                "SELECT state, attempt, holder IS NOT NULL,
                    run_at > CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)
                 FROM webhook_inbox_jobs",
            )
            .fetch_all(inbox.pool())
            .await
            .unwrap()
        }
        Place::Postgres(queue) => {
            let inbox = PostgresInbox::connect(&common::database_url())
                .await
                .unwrap();
            pg::query_as(
                "SELECT state, attempt, holder IS NOT NULL,
                    run_at > (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT
                 FROM webhook_inbox_jobs WHERE queue = $1",
            )
            .bind(queue)
            .fetch_all(inbox.pool())
            .await
            .unwrap()
        }
    }
}

fn quick(attempts: u32, backoff: Duration) -> RetryPolicy {
    RetryPolicy::exponential(backoff, 1, backoff).with_attempts(attempts)
}

/// Item 1: twenty deliveries at once against a bound of three: three are queued, the rest
/// answered 429, and the queue holds three.
async fn a_burst_never_passes_the_bound(place: Place) {
    on_inbox!(&place, quick(3, Duration::ZERO), |inbox| {
        let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.with_max_queued(3));
        let sends: Vec<_> = (0..20)
            .map(|_| {
                let layer = layer.clone();
                tokio::spawn(async move {
                    send(&layer, &Delivery::new("{}").id(unique("burst")))
                        .await
                        .0
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for send in sends {
            statuses.push(send.await.unwrap());
        }
        let accepted = statuses
            .iter()
            .filter(|s| **s == StatusCode::ACCEPTED)
            .count();
        let refused = statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count();
        assert_eq!((accepted, refused), (3, 17), "{statuses:?}");
    });
    assert_eq!(jobs(&place).await.len(), 3);
}

/// Item 1, across receivers: two inboxes on two pools, one queue, a bound of five, forty
/// deliveries at once through both: the database's counter makes the bound exact.
async fn two_receivers_on_two_pools_share_one_bound() {
    let queue = unique("test-queue");
    let receiver = || async {
        let inbox = PostgresInbox::connect(&common::database_url())
            .await
            .unwrap()
            .with_queue(&queue)
            .with_max_queued(5);
        VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox)
    };
    let layers = [receiver().await, receiver().await];
    let sends: Vec<_> = (0..40)
        .map(|n| {
            let layer = layers[n % 2].clone();
            tokio::spawn(async move {
                send(&layer, &Delivery::new("{}").id(unique("two-pools")))
                    .await
                    .0
            })
        })
        .collect();
    let mut accepted = 0;
    for send in sends {
        let status = send.await.unwrap();
        assert!(
            status == StatusCode::ACCEPTED || status == StatusCode::TOO_MANY_REQUESTS,
            "{status}"
        );
        accepted += usize::from(status == StatusCode::ACCEPTED);
    }
    assert_eq!(accepted, 5);
    assert_eq!(jobs(&Place::Postgres(queue)).await.len(), 5);
}

/// Item 7, SQLite: the inbox writes its marks by the clock of the store it was given, so an
/// inline layer on that store, and the clock's time, decide when they expire.
async fn sqlite_marks_follow_the_stores_clock() {
    let Place::Sqlite(path) = Place::sqlite() else {
        unreachable!()
    };
    let clock = tower_webhook::clock::ManualClock::starting_now();
    let inbox = SqliteInbox::open(&path).await.unwrap();
    let store = inbox.store().with_clock(clock.clone());
    let inbox = inbox.with_store(store.clone());
    let window = Duration::from_secs(3600);
    let queued = VerifyWebhookLayer::new(common::scheme())
        .with_dedup_window(window)
        .with_inbox(inbox);
    // The layer's own clock (timestamps) stays the system's: only the store's moves.
    let inline = VerifyWebhookLayer::new(common::scheme()).with_store(store);
    let delivery = Delivery::new("{}").id(unique("clock"));
    assert_eq!(send(&queued, &delivery).await.0, StatusCode::ACCEPTED);
    // By the store's clock the window has passed: the mark is gone for the inline layer
    // (whose handler runs), and for the inbox, which queues the delivery again.
    clock.advance(window + Duration::from_secs(1));
    assert_eq!(
        handled_inline(&inline, &delivery).await,
        1,
        "the mark expired by the store's clock"
    );
}

/// Sends `delivery` through `inline` (answered 200): how many times its handler ran.
async fn handled_inline(inline: &VerifyWebhookLayer, delivery: &Delivery) -> usize {
    let runs = common::PerId::default();
    let service = tower::Layer::layer(inline, runs.service(Duration::ZERO));
    let request = delivery
        .request::<http_body_util::Full<bytes::Bytes>>(&common::scheme())
        .unwrap();
    let response = tower::ServiceExt::oneshot(service, request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    runs.runs(&common::inbox::delivery_id(delivery))
}

/// A job whose start was written as its connection failed: it reads `Running`, held by a
/// worker that lives and heartbeats but runs no attempt of it (the worker took the start
/// for failed). The worker takes it back itself after two heartbeats, the lost attempt
/// counted, and runs it. (Before, only the jobs of dead workers were taken back: this one
/// waited for as long as its worker lived.)
async fn a_job_its_live_worker_lost_is_taken_back(place: Place) {
    const NAME: &str = "stranding-worker";
    let runs = Arc::new(AtomicU32::new(0));
    on_inbox!(&place, quick(3, Duration::ZERO), |inbox| {
        let inbox = inbox.with_heartbeat(Duration::from_secs(1));
        let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
        let delivery = Delivery::new("{}").id(unique("stranded"));
        assert_eq!(send(&layer, &delivery).await.0, StatusCode::ACCEPTED);
        // Not to be fetched before it is stranded: due in an hour.
        let name = format!("{NAME}-{}", unique("w"));
        let postpone = "UPDATE webhook_inbox_jobs SET run_at = run_at + 3600000 WHERE queue = $1";
        // Its start, as the take writes it, leased for two seconds.
        let strand = match &place {
            Place::Sqlite(_) => {
                "UPDATE webhook_inbox_jobs SET state = 'running', holder = $1, attempt = attempt + 1,
                    lease_until = CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) + 2000,
                    run_at = run_at - 3600000
                WHERE queue = $2"
            }
            Place::Postgres(_) => {
                "UPDATE webhook_inbox_jobs SET state = 'running', holder = $1, attempt = attempt + 1,
                    lease_until = (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT + 2000,
                    run_at = run_at - 3600000
                WHERE queue = $2"
            }
        };
        let queue = match &place {
            Place::Sqlite(_) => tower_webhook::inbox::DEFAULT_QUEUE.to_owned(),
            Place::Postgres(queue) => queue.clone(),
        };
        // `sqlx::query` takes its database from the pool: one statement for either inbox.
        lite::query(postpone)
            .bind(&queue)
            .execute(inbox.pool())
            .await
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = tokio::spawn(
            inbox
                .worker(counting::<Unparsed>(&runs))
                .name(name.clone())
                .run_until(async {
                    let _ = stopped.await;
                }),
        );
        // The worker runs, and a start of its own "committed" as its connection failed.
        tokio::time::sleep(Duration::from_millis(200)).await;
        lite::query(strand)
            .bind(&name)
            .bind(&queue)
            .execute(inbox.pool())
            .await
            .unwrap();
        let counts = read_until(
            20,
            || inbox.counts(),
            |counts| counts.as_ref().is_ok_and(|c| c.done == 1),
        )
        .await
        .unwrap();
        let _ = stop.send(());
        worker.await.unwrap().unwrap();
        assert_eq!((counts.done, counts.dead), (1, 0), "{counts:?}");
    });
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let rows = jobs(&place).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1),
        ("done", 2),
        "the lost attempt counted: {rows:?}"
    );
}

/// On SQLite, a `Tx` handler that holds the file's write lock for three times the busy
/// timeout, beside twenty short `Tx` jobs: the worker's fetches and heartbeats meet the lock
/// and wait, and no attempt is dropped for it. Each job runs once, none is dead-lettered.
/// (Before, the fetch's `SQLITE_BUSY` stopped the worker, its restart dropped every attempt
/// in flight, and the slow job ran again and again until dead, "its worker died".)
async fn sqlite_a_tx_held_past_the_busy_timeout_stops_nothing() {
    use tower_webhook::Tx;
    let Place::Sqlite(path) = Place::sqlite() else {
        unreachable!()
    };
    let inbox = SqliteInbox::open(&path)
        .await
        .unwrap()
        .with_retry(quick(3, Duration::ZERO));
    let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
    let slow = Delivery::new(r#"{"slow":true}"#).id(unique("slow"));
    assert_eq!(send(&layer, &slow).await.0, StatusCode::ACCEPTED);
    for _ in 0..20 {
        let short = Delivery::new("{}").id(unique("short"));
        assert_eq!(send(&layer, &short).await.0, StatusCode::ACCEPTED);
    }
    let runs: Arc<Mutex<Vec<String>>> = Arc::default();
    let handler = {
        let runs = Arc::clone(&runs);
        move |event: Event, mut tx: Tx<lite::Sqlite>| {
            runs.lock().unwrap().push(event.id().to_owned());
            async move {
                lite::query("CREATE TABLE IF NOT EXISTS effects (id TEXT PRIMARY KEY)")
                    .execute(&mut *tx)
                    .await?;
                lite::query("INSERT INTO effects VALUES (?)")
                    .bind(event.id())
                    .execute(&mut *tx)
                    .await?;
                if event.body().starts_with(br#"{"slow""#) {
                    tokio::time::sleep(Duration::from_secs(15)).await;
                }
                Ok::<_, lite::Error>(())
            }
        }
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(inbox.worker(handler).concurrency(4).run_until(async {
        let _ = stopped.await;
    }));
    let counts = read_until(
        60,
        || inbox.counts(),
        |counts| counts.as_ref().is_ok_and(|c| c.done + c.dead == 21),
    )
    .await
    .unwrap();
    let _ = stop.send(());
    worker.await.unwrap().unwrap();
    assert_eq!((counts.done, counts.dead), (21, 0), "{counts:?}");
    let runs = runs.lock().unwrap().clone();
    let mut once = runs.clone();
    once.sort();
    once.dedup();
    assert_eq!(runs.len(), once.len(), "a job ran twice: {runs:?}");
    let effects: i64 = lite::query_scalar("SELECT COUNT(*) FROM effects")
        .fetch_one(inbox.pool())
        .await
        .unwrap();
    assert_eq!(effects, 21);
}

/// On SQLite, a delivery at the door goes before the `Tx` handlers waiting for the file's
/// write lock: it waits for the transaction in progress only. Two handlers hold their
/// transactions until told; the door's delivery arrives while the first holds its own and
/// the second waits; once the first ends, the delivery is acknowledged while the second
/// still holds the lock it took after. (Before, the second took the lock first and the
/// door waited out SQLite's busy timeout: a 503.)
async fn sqlite_the_door_goes_before_waiting_tx_handlers() {
    use tokio::sync::{mpsc, oneshot};
    use tower_webhook::Tx;
    let Place::Sqlite(path) = Place::sqlite() else {
        unreachable!()
    };
    let inbox = SqliteInbox::open(&path).await.unwrap();
    let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
    for _ in 0..2 {
        let delivery = Delivery::new(r#"{"hold":true}"#).id(unique("held"));
        assert_eq!(send(&layer, &delivery).await.0, StatusCode::ACCEPTED);
    }
    // Each handler says it holds its transaction, and waits for its release.
    let (holding, mut held) = mpsc::unbounded_channel::<oneshot::Sender<()>>();
    let handler = move |event: Event, mut tx: Tx<lite::Sqlite>| {
        let holding = holding.clone();
        async move {
            lite::query("CREATE TABLE IF NOT EXISTS held (id TEXT)")
                .execute(&mut *tx)
                .await?;
            lite::query("INSERT INTO held VALUES (?)")
                .bind(event.id())
                .execute(&mut *tx)
                .await?;
            let (release, released) = oneshot::channel();
            if holding.send(release).is_ok() {
                let _ = released.await;
            }
            Ok::<_, lite::Error>(())
        }
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(inbox.worker(handler).concurrency(2).run_until(async {
        let _ = stopped.await;
    }));
    let first = held.recv().await.unwrap();
    let door = tokio::spawn({
        let layer = layer.clone();
        async move {
            let delivery = Delivery::new("{}").id(unique("door"));
            send(&layer, &delivery).await.0
        }
    });
    // Time for the delivery to reach the door and wait there, behind the first handler
    // and beside the second, which waits for its turn.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !door.is_finished(),
        "the door waits for the transaction in progress"
    );
    let _ = first.send(());
    let second = tokio::time::timeout(Duration::from_secs(30), held.recv())
        .await
        .expect("the second handler runs")
        .unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(30), door)
        .await
        .expect("the door answers while the second handler holds the lock")
        .unwrap();
    assert_eq!(answered, StatusCode::ACCEPTED);
    let _ = second.send(());
    // The door's own job runs too; its handler is released as it asks.
    let third = tokio::time::timeout(Duration::from_secs(30), held.recv())
        .await
        .expect("the third job runs")
        .unwrap();
    let _ = third.send(());
    let counts = read_until(
        20,
        || inbox.counts(),
        |counts| counts.as_ref().is_ok_and(|c| c.done == 3),
    )
    .await
    .unwrap();
    assert_eq!((counts.done, counts.dead), (3, 0), "{counts:?}");
    let _ = stop.send(());
    worker.await.unwrap().unwrap();
}

/// A worker stopped at any point of its fetches and heartbeats leaves none of its pool's
/// connections inside a transaction: a `BEGIN` cancelled in flight (sqlx before 0.9.1) kept
/// its session open, and every later statement on that connection ran in it, never
/// committed (a purge or a replay reported done and undone).
async fn postgres_a_stopped_worker_leaves_no_transaction_open() {
    const CONNECTIONS: u32 = 3;
    let pool = pg::postgres::PgPoolOptions::new()
        .max_connections(CONNECTIONS)
        .connect(&common::database_url())
        .await
        .unwrap();
    let inbox = PostgresInbox::new(pool.clone())
        .await
        .unwrap()
        .with_queue(&unique("test-queue"));
    let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
    for round in 0..40u64 {
        let delivery = Delivery::new("{}").id(unique("open"));
        assert_eq!(send(&layer, &delivery).await.0, StatusCode::ACCEPTED);
        let stop = tokio::time::sleep(Duration::from_micros(round * 500));
        inbox
            .worker(|_: Event| async { Ok::<_, Infallible>(()) })
            .run_until(stop)
            .await
            .unwrap();
        // Every connection at once: each one the pool holds is asked in turn. In a
        // transaction begun before, its start is earlier than the statement's.
        let mut held = Vec::new();
        for _ in 0..CONNECTIONS {
            held.push(pool.acquire().await.unwrap());
        }
        for conn in &mut held {
            let row = pg::raw_sql("SELECT now() = statement_timestamp()")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            let outside: bool = pg::Row::get(&row, 0);
            assert!(
                outside,
                "round {round}: a connection left inside a transaction"
            );
        }
    }
}

/// Item 7, PostgreSQL: the inbox writes its marks to the table of the store it was given, so
/// an inline layer on that store sees the queued delivery as done.
async fn postgres_marks_go_to_the_stores_table() {
    let Place::Postgres(queue) = Place::postgres() else {
        unreachable!()
    };
    let inbox = PostgresInbox::connect(&common::database_url())
        .await
        .unwrap()
        .with_queue(&queue);
    let table = format!("tw_inbox_marks_{}", &unique("t").replace('-', "_"));
    let store = inbox.store().with_table(&table).unwrap();
    store.create_table().await.unwrap();
    let queued =
        VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.with_store(store.clone()));
    let delivery = Delivery::new("{}").id(unique("table"));
    assert_eq!(send(&queued, &delivery).await.0, StatusCode::ACCEPTED);
    let in_table: i64 = pg::query_scalar(pg::AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{table}\""
    )))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(in_table, 1, "the mark is in the store's table");
    let inline = VerifyWebhookLayer::new(common::scheme()).with_store(store.clone());
    assert_eq!(
        handled_inline(&inline, &delivery).await,
        0,
        "a duplicate of the queued delivery"
    );
    pg::query(pg::AssertSqlSafe(format!("DROP TABLE \"{table}\"")))
        .execute(store.pool())
        .await
        .unwrap();
}

/// Item 3: a handler that never returns is cut at the attempt's deadline, its slot freed
/// for the next job (one slot in all), retried, and dead-lettered after its last attempt.
async fn a_hung_handler_is_cut_at_its_deadline(place: Place) {
    on_inbox!(&place, quick(2, Duration::ZERO), |inbox| {
        let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
        let hung = Delivery::new(r#"{"hang":true}"#).id(unique("hung"));
        let fine = Delivery::new(r#"{"hang":false}"#).id(unique("fine"));
        assert_eq!(send(&layer, &hung).await.0, StatusCode::ACCEPTED);
        assert_eq!(send(&layer, &fine).await.0, StatusCode::ACCEPTED);
        let handled = Arc::new(AtomicU32::new(0));
        let worker = {
            let handled = Arc::clone(&handled);
            inbox.worker(move |event: Event<serde_json::Value>| {
                let handled = Arc::clone(&handled);
                async move {
                    if event.payload()["hang"] == true {
                        std::future::pending::<()>().await;
                    }
                    handled.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Infallible>(())
                }
            })
        };
        let task = tokio::spawn(
            worker
                .concurrency(1)
                .attempt_timeout(Duration::from_millis(300))
                .run(),
        );
        let dead = read_until(
            30,
            || async { inbox.dead_letters(10).await.unwrap() },
            |dead| !dead.is_empty(),
        )
        .await;
        assert!(eventually(10, || handled.load(Ordering::SeqCst) == 1).await);
        task.abort();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].id, common::inbox::delivery_id(&hung));
        assert_eq!(dead[0].attempts, 2);
        let error = dead[0].last_error.clone().unwrap_or_default();
        assert!(error.contains("deadline of 300 ms"), "{error}");
    });
}

/// A worker on a runtime of its own, its inbox on a pool of its own, whose handler says
/// when it starts and then never returns: `kill` ends it as a crash would (no stop, no last
/// heartbeat), leaving its job running under its name.
struct Doomed {
    runtime: tokio::runtime::Runtime,
}

impl Doomed {
    fn start(place: &Place, retry: RetryPolicy, started: Arc<AtomicU32>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let place = place.clone();
        runtime.spawn(async move {
            on_inbox!(&place, retry, |inbox| {
                let inbox = inbox.with_heartbeat(Duration::from_secs(1));
                let worker = inbox.worker(move |_: Event| {
                    started.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<Result<(), Infallible>>()
                });
                let _ = worker.concurrency(1).run().await;
            });
        });
        Self { runtime }
    }

    fn kill(self) {
        self.runtime.shutdown_background();
    }
}

/// Item 2: a job whose worker dies during each attempt is taken back after each death, as a
/// failed attempt put off by its backoff (not at once); when its worker dies during the
/// last attempt it is dead-lettered with that reason, never run again, and replayable.
async fn a_job_whose_worker_dies_is_retried_then_dead_lettered(place: Place) {
    let retry = quick(2, Duration::from_secs(2));
    let delivery = Delivery::new("{}").id(unique("poison"));
    on_inbox!(&place, retry, |inbox| {
        let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox);
        assert_eq!(send(&layer, &delivery).await.0, StatusCode::ACCEPTED);
    });
    let started = Arc::new(AtomicU32::new(0));
    for attempt in 1..=2 {
        let doomed = Doomed::start(&place, retry, Arc::clone(&started));
        assert!(
            eventually(30, || started.load(Ordering::SeqCst) == attempt).await,
            "attempt {attempt} started"
        );
        doomed.kill();
        if attempt == 1 {
            // The next worker's sweep takes it back: a failed attempt, put off.
            let watcher = Doomed::start(&place, retry, Arc::new(AtomicU32::new(0)));
            let rows = read_until(
                15,
                || jobs(&place),
                |rows| rows.iter().any(|row| row.0 == "retrying"),
            )
            .await;
            watcher.kill();
            assert_eq!(rows.len(), 1);
            let (status, attempts, held, later) = rows[0].clone();
            assert_eq!((status.as_str(), attempts, held), ("retrying", 1, false));
            assert!(later, "the retry waits for its backoff");
        }
    }
    let handled = Arc::new(AtomicU32::new(0));
    on_inbox!(&place, retry, |inbox| {
        let inbox = inbox.with_heartbeat(Duration::from_secs(1));
        let task = tokio::spawn(inbox.worker(counting::<Unparsed>(&handled)).run());
        let dead = first_dead_letters(&inbox, 20).await;
        assert_eq!(dead.len(), 1, "dead-lettered");
        assert_eq!(
            dead[0].last_error.as_deref(),
            Some("its worker died during the last attempt")
        );
        assert_eq!(inbox.counts().await.unwrap().dead, 1);
        assert_eq!(handled.load(Ordering::SeqCst), 0, "never run a third time");
        assert!(inbox.replay(&dead[0].task_id).await.unwrap());
        assert!(
            eventually(20, || handled.load(Ordering::SeqCst) == 1).await,
            "the replayed job runs"
        );
        task.abort();
    });
}

/// Item 10: a worker stopped at many points of its work (before, during and after a fetch)
/// leaves no job fetched and locked: every job is done, or back in the queue with no
/// attempt counted.
async fn a_stop_at_any_point_puts_fetched_jobs_back(place: Place) {
    for step in 0..12u64 {
        let place = match &place {
            Place::Sqlite(_) => Place::sqlite(),
            Place::Postgres(_) => Place::postgres(),
        };
        let started = Arc::new(Mutex::new(0u32));
        on_inbox!(&place, quick(3, Duration::ZERO), |inbox| {
            let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
            for _ in 0..6 {
                let delivery = Delivery::new("{}").id(unique("stop"));
                assert_eq!(send(&layer, &delivery).await.0, StatusCode::ACCEPTED);
            }
            let worker = {
                let started = Arc::clone(&started);
                inbox.worker(move |_: Event| {
                    *started.lock().unwrap() += 1;
                    async {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok::<_, Infallible>(())
                    }
                })
            };
            let stop = tokio::time::sleep(Duration::from_millis(step * 25));
            worker.concurrency(2).run_until(stop).await.unwrap();
        });
        let rows = jobs(&place).await;
        let done = rows.iter().filter(|row| row.0 == "done").count();
        assert_eq!(
            done,
            *started.lock().unwrap() as usize,
            "step {step}: {rows:?}"
        );
        for (status, attempts, held, _) in &rows {
            if status != "done" {
                assert_eq!(
                    (status.as_str(), *attempts, *held),
                    ("queued", 0, false),
                    "step {step}: a job fetched and not started went back as it was: {rows:?}"
                );
            }
        }
    }
}

/// The inbox's schema is its own and versioned: a second open migrates nothing (one
/// version row, the jobs kept), a file whose schema is newer than this build is refused
/// with an error that says so, and nothing of apalis's is created.
async fn sqlite_the_schema_is_versioned() {
    let Place::Sqlite(path) = Place::sqlite() else {
        unreachable!()
    };
    let inbox = SqliteInbox::open(&path).await.unwrap();
    let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
    let delivery = Delivery::new("{}").id(unique("schema"));
    assert_eq!(send(&layer, &delivery).await.0, StatusCode::ACCEPTED);
    let again = SqliteInbox::open(&path).await.unwrap();
    assert_eq!(again.counts().await.unwrap().queued, 1);
    let tables: Vec<String> =
        lite::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(again.pool())
            .await
            .unwrap();
    assert_eq!(
        tables,
        [
            "webhook_claims",
            "webhook_inbox_activity",
            "webhook_inbox_depth",
            "webhook_inbox_done",
            "webhook_inbox_job_attempts",
            "webhook_inbox_jobs",
            "webhook_inbox_schema",
        ]
    );
    let versions: Vec<i64> = lite::query_scalar("SELECT version FROM webhook_inbox_schema")
        .fetch_all(again.pool())
        .await
        .unwrap();
    assert_eq!(versions, [3], "migrated once, to the current version");
    lite::query("INSERT INTO webhook_inbox_schema (version) VALUES (99)")
        .execute(again.pool())
        .await
        .unwrap();
    let refused = SqliteInbox::open(&path).await.unwrap_err();
    assert!(
        refused.to_string().contains("newer than this build"),
        "{refused}"
    );
}

/// A worker told to stop waits for its running attempt, and keeps renewing its lease
/// meanwhile: a handler that runs longer than a lease is not taken back by another worker
/// and run twice. (Before, the renewals stopped with the stop signal.)
async fn a_stopping_worker_keeps_its_attempts_leased(place: Place) {
    on_inbox!(&place, quick(3, Duration::ZERO), |inbox| {
        let inbox = inbox.with_heartbeat(Duration::from_secs(1));
        let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
        let runs = Arc::new(AtomicU32::new(0));
        let started = Arc::new(tokio::sync::Notify::new());
        let slow = {
            let (runs, started) = (Arc::clone(&runs), Arc::clone(&started));
            move |_: Event| {
                runs.fetch_add(1, Ordering::SeqCst);
                started.notify_one();
                async {
                    // Three leases (2 s each).
                    tokio::time::sleep(Duration::from_secs(6)).await;
                    Ok::<_, Infallible>(())
                }
            }
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let first = tokio::spawn(inbox.worker(slow.clone()).run_until(async {
            let _ = stopped.await;
        }));
        let delivery = Delivery::new("{}").id(unique("drain"));
        assert_eq!(send(&layer, &delivery).await.0, StatusCode::ACCEPTED);
        tokio::time::timeout(Duration::from_secs(20), started.notified())
            .await
            .expect("the attempt started");
        let _ = stop.send(());
        // Another worker sweeps all along.
        let second = tokio::spawn(inbox.worker(slow).run());
        first.await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        second.abort();
        let counts = inbox.counts().await.unwrap();
        assert_eq!(
            (counts.done, counts.failed, counts.dead),
            (1, 0, 0),
            "{counts:?}"
        );
    });
    assert_eq!(jobs(&place).await[0].1, 1, "one attempt");
}

/// Done jobs are read from their count, kept by the statements that end a job done (and,
/// on PostgreSQL, in shards) and by the purge: exact through failures, dead letters and a
/// purge, with no count of the jobs table.
async fn the_done_count_is_kept_exact(place: Place) {
    on_inbox!(&place, quick(1, Duration::ZERO), |inbox| {
        let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
        for (n, kind) in ["ok", "bad", "ok", "ok", "bad", "ok", "ok"]
            .iter()
            .enumerate()
        {
            let delivery = Delivery::new("{}").id(unique(&format!("{kind}-{n}")));
            assert_eq!(send(&layer, &delivery).await.0, StatusCode::ACCEPTED);
        }
        let worker = tokio::spawn(
            inbox
                .worker(|event: Event| async move {
                    if event.id().starts_with("bad") {
                        Err(std::io::Error::other("a bad delivery"))
                    } else {
                        Ok(())
                    }
                })
                .run(),
        );
        let counts = read_until(
            30,
            || async { inbox.counts().await.unwrap() },
            |counts| counts.done + counts.dead == 7,
        )
        .await;
        worker.abort();
        assert_eq!((counts.done, counts.dead, counts.queued), (5, 2, 0));
        let in_a_minute = std::time::SystemTime::now() + Duration::from_secs(60);
        assert_eq!(inbox.purge_done_before(in_a_minute).await.unwrap(), 5);
        let counts = inbox.counts().await.unwrap();
        assert_eq!((counts.done, counts.dead), (0, 2), "the purge counted off");
    });
}

/// A file of the first schema (no count of done jobs, no activity's counts) is refused by
/// the read-only open, saying why, and migrated by the next start, its done jobs and its
/// activity counted.
async fn sqlite_an_older_schema_is_migrated_with_its_counts() {
    let Place::Sqlite(path) = Place::sqlite() else {
        unreachable!()
    };
    let inbox = SqliteInbox::open(&path).await.unwrap();
    let layer = VerifyWebhookLayer::new(common::scheme()).with_inbox(inbox.clone());
    for n in 0..3 {
        let delivery = Delivery::new("{}").id(unique(&format!("old-{n}")));
        assert_eq!(send(&layer, &delivery).await.0, StatusCode::ACCEPTED);
    }
    let handled = Arc::new(AtomicU32::new(0));
    let worker = tokio::spawn(inbox.worker(counting::<Unparsed>(&handled)).run());
    let counts = read_until(
        30,
        || async { inbox.counts().await.unwrap() },
        |counts| counts.done == 3,
    )
    .await;
    worker.abort();
    assert_eq!(counts.done, 3);
    // The first schema, as an older build left it.
    for statement in [
        "DROP TABLE webhook_inbox_activity",
        "DROP TABLE webhook_inbox_done",
        "DELETE FROM webhook_inbox_schema",
        "INSERT INTO webhook_inbox_schema (version) VALUES (1)",
    ] {
        lite::query(statement).execute(inbox.pool()).await.unwrap();
    }
    drop(inbox);
    let refused = SqliteInbox::open_existing(&path).await.unwrap_err();
    assert!(refused.to_string().contains("older schema"), "{refused}");
    let again = SqliteInbox::open(&path).await.unwrap();
    assert_eq!(
        again.counts().await.unwrap().done,
        3,
        "counted by the migration"
    );
    let versions: Vec<i64> =
        lite::query_scalar("SELECT version FROM webhook_inbox_schema ORDER BY version")
            .fetch_all(again.pool())
            .await
            .unwrap();
    assert_eq!(versions, [1, 3]);
    // The activity counted by the migration too, read in buckets of one whole tick (2^15
    // ms) each, so from the migration's counts alone: each job in the tick of its id, each
    // attempt in the tick of its end.
    let tick = 32_768_i64;
    let ids: Vec<String> = lite::query_scalar("SELECT id FROM webhook_inbox_jobs")
        .fetch_all(again.pool())
        .await
        .unwrap();
    let ends: Vec<i64> = lite::query_scalar(
        "SELECT ended_at FROM webhook_inbox_job_attempts WHERE outcome = 'done'",
    )
    .fetch_all(again.pool())
    .await
    .unwrap();
    let made: Vec<i64> = ids
        .iter()
        .map(|id| i64::try_from(ulid::Ulid::from_string(id).unwrap().timestamp_ms()).unwrap())
        .collect();
    let first = made.iter().chain(&ends).min().unwrap() / tick - 2;
    let last = made.iter().chain(&ends).max().unwrap() / tick + 2;
    let buckets = usize::try_from(last - first + 1).unwrap();
    let mut accepted = vec![0; buckets];
    let mut handled = vec![0; buckets];
    for (times, series) in [(&made, &mut accepted), (&ends, &mut handled)] {
        for at in times {
            series[usize::try_from(at / tick - first).unwrap()] += 1;
        }
    }
    let activity = again
        .activity_from(
            UNIX_EPOCH + Duration::from_millis(u64::try_from(first * tick).unwrap()),
            Duration::from_millis(u64::try_from(tick).unwrap()),
            u32::try_from(buckets).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        (activity.accepted, activity.handled),
        (accepted, handled),
        "counted by the migration"
    );
}

fn main() -> std::process::ExitCode {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let reachable = runtime.block_on(async {
        PostgresInbox::connect(&common::database_url())
            .await
            .map(drop)
            .map_err(|err| err.to_string())
    });
    let clean = reachable.is_ok();
    let both =
        |name: &str,
         test: fn(Place) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>| {
            (
                common::trial(&format!("sqlite::{name}"), move || test(Place::sqlite())),
                common::trial(
                    &format!("postgres::{name}"),
                    move || test(Place::postgres()),
                ),
            )
        };
    let pairs = [
        both("a_burst_never_passes_the_bound", |p| {
            Box::pin(a_burst_never_passes_the_bound(p))
        }),
        both("a_hung_handler_is_cut_at_its_deadline", |p| {
            Box::pin(a_hung_handler_is_cut_at_its_deadline(p))
        }),
        both(
            "a_job_whose_worker_dies_is_retried_then_dead_lettered",
            |p| Box::pin(a_job_whose_worker_dies_is_retried_then_dead_lettered(p)),
        ),
        both("a_stop_at_any_point_puts_fetched_jobs_back", |p| {
            Box::pin(a_stop_at_any_point_puts_fetched_jobs_back(p))
        }),
        both("a_stopping_worker_keeps_its_attempts_leased", |p| {
            Box::pin(a_stopping_worker_keeps_its_attempts_leased(p))
        }),
        both("a_job_its_live_worker_lost_is_taken_back", |p| {
            Box::pin(a_job_its_live_worker_lost_is_taken_back(p))
        }),
        both("the_done_count_is_kept_exact", |p| {
            Box::pin(the_done_count_is_kept_exact(p))
        }),
    ];
    let (mut sqlite_trials, mut postgres_trials): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
    sqlite_trials.push(common::trial(
        "sqlite::the_schema_is_versioned",
        sqlite_the_schema_is_versioned,
    ));
    sqlite_trials.push(common::trial(
        "sqlite::an_older_schema_is_migrated_with_its_counts",
        sqlite_an_older_schema_is_migrated_with_its_counts,
    ));
    sqlite_trials.push(common::trial(
        "sqlite::marks_follow_the_stores_clock",
        sqlite_marks_follow_the_stores_clock,
    ));
    sqlite_trials.push(common::trial(
        "sqlite::the_door_goes_before_waiting_tx_handlers",
        sqlite_the_door_goes_before_waiting_tx_handlers,
    ));
    sqlite_trials.push(common::trial(
        "sqlite::a_tx_held_past_the_busy_timeout_stops_nothing",
        sqlite_a_tx_held_past_the_busy_timeout_stops_nothing,
    ));
    postgres_trials.extend(trials![
        two_receivers_on_two_pools_share_one_bound,
        postgres_marks_go_to_the_stores_table,
        postgres_a_stopped_worker_leaves_no_transaction_open,
    ]);
    let mut trials = sqlite_trials;
    trials.extend(common::needing(
        "PostgreSQL",
        "DATABASE_URL",
        &common::database_url(),
        reachable,
        postgres_trials,
    ));
    let code = common::run(trials);
    let _ = std::fs::remove_dir_all(run_dir());
    if clean {
        runtime.block_on(common::inbox::remove_this_runs_rows());
    }
    code
}
