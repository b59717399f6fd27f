//! Handlers per second with a 10 ms handler, with and without its `Tx`: inline (32
//! deliveries at once through the layer and an axum router) and in an inbox worker (8 jobs
//! at once), on SQLite and on PostgreSQL.
//!
//!     cargo bench --bench tx --all-features
//!
//! What it shows: on SQLite a `Tx` holds the file's one write lock for the whole handler, so
//! handlers with one run one at a time (about 1 / 10 ms); on PostgreSQL they run side by
//! side, up to the pool's size. Not criterion: one row is many deliveries at once, and what
//! matters is the rate. Compare rows of one run, not runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use tower::ServiceExt;
use tower_webhook::inbox::{Dialect, Inbox, PostgresInbox, SqliteInbox};
use tower_webhook::scheme::StandardWebhooks;
use tower_webhook::store::postgres::sqlx;
use tower_webhook::store::{PostgresStore, SqliteStore};
use tower_webhook::testkit::Delivery;
use tower_webhook::{Event, Tx, VerifyWebhookLayer};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const HANDLER: Duration = Duration::from_millis(10);
const AT_ONCE: usize = 32;
const WORKERS: usize = 8;

fn layer() -> VerifyWebhookLayer {
    VerifyWebhookLayer::new(StandardWebhooks::new(SECRET).unwrap())
}

fn delivery(label: &str, n: usize) -> Delivery {
    Delivery::new(format!(r#"{{"type":"bench","n":{n}}}"#))
        .id(format!("tx-{label}-{}-{n}", std::process::id()))
        .uri("/webhooks")
}

/// Sends `n` deliveries through `app`, `AT_ONCE` at a time: handlers per second.
async fn inline(app: Router, label: &str, n: usize) -> f64 {
    let scheme = Arc::new(StandardWebhooks::new(SECRET).unwrap());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..AT_ONCE)
        .map(|_| {
            let (app, scheme, next, label) = (
                app.clone(),
                Arc::clone(&scheme),
                Arc::clone(&next),
                label.to_owned(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    let request: http::Request<axum::body::Body> =
                        delivery(&label, i).request(&*scheme).unwrap();
                    let status = app.clone().oneshot(request).await.unwrap().status();
                    assert_eq!(status, StatusCode::NO_CONTENT, "{label}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    rate(n, started)
}

fn rate(n: usize, started: Instant) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let n = n as f64;
    n / started.elapsed().as_secs_f64()
}

async fn plain(_: Event) -> StatusCode {
    tokio::time::sleep(HANDLER).await;
    StatusCode::NO_CONTENT
}

async fn with_sqlite_tx(_: Event, _tx: Tx<sqlx::Sqlite>) -> StatusCode {
    tokio::time::sleep(HANDLER).await;
    StatusCode::NO_CONTENT
}

async fn with_postgres_tx(_: Event, _tx: Tx<sqlx::Postgres>) -> StatusCode {
    tokio::time::sleep(HANDLER).await;
    StatusCode::NO_CONTENT
}

/// Queues `n` deliveries in `inbox`, then runs `handler` on them with `WORKERS` at once:
/// handlers per second.
async fn worker<D, H, A>(inbox: Inbox<D>, handler: H, label: &str, n: usize) -> f64
where
    D: Dialect,
    H: tower_webhook::inbox::Handler<A, D::Db>,
    A: 'static,
{
    let inbox = inbox.with_queue(&format!("tx-bench-{label}-{}", std::process::id()));
    let inbox = inbox.with_max_queued(u64::MAX);
    let app = Router::new()
        .route("/webhooks", post(tower_webhook::inbox::accepted))
        .layer(layer().with_inbox(inbox.clone()));
    let scheme = StandardWebhooks::new(SECRET).unwrap();
    for i in 0..n {
        let request: http::Request<axum::body::Body> = delivery(label, i).request(&scheme).unwrap();
        let status = app.clone().oneshot(request).await.unwrap().status();
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let started = Instant::now();
    let running = tokio::spawn(inbox.worker(handler).concurrency(WORKERS).run());
    while inbox.counts().await.unwrap().done < n as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = rate(n, started);
    running.abort();
    rate
}

fn row(mode: &str, rate: f64) {
    println!("| {mode:<40} | {rate:>10.0} |");
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|arg| arg == "--test" || arg == "--list") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("tower-webhook-bench-tx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    println!("a handler of {} ms\n", HANDLER.as_millis());
    println!("| mode                                     | handlers/s |");
    println!("| ---------------------------------------- | ---------: |");

    let store = SqliteStore::open(dir.join("inline.db")).await.unwrap();
    let app = |route| Router::new().route("/webhooks", route);
    let lite = layer().with_store(store);
    let rate = inline(app(post(plain)).layer(lite.clone()), "lite-plain", 1000).await;
    row("inline, SqliteStore", rate);
    let rate = inline(app(post(with_sqlite_tx)).layer(lite), "lite-tx", 200).await;
    row("inline, SqliteStore, Tx", rate);

    let inbox = SqliteInbox::open(dir.join("inbox.db")).await.unwrap();
    let plain_job = |_: Event| async {
        tokio::time::sleep(HANDLER).await;
        Ok::<_, String>(())
    };
    let rate = worker(inbox.clone(), plain_job, "lite-inbox-plain", 400).await;
    row("inbox worker, SqliteInbox", rate);
    let tx_job = |_: Event, _tx: Tx<sqlx::Sqlite>| async {
        tokio::time::sleep(HANDLER).await;
        Ok::<_, String>(())
    };
    let rate = worker(inbox, tx_job, "lite-inbox-tx", 200).await;
    row("inbox worker, SqliteInbox, Tx", rate);

    let Ok(store) = PostgresStore::connect(&url).await else {
        println!("\n(no PostgreSQL at {url}: its rows are skipped)");
        return;
    };
    store.create_table().await.unwrap();
    let pg = layer().with_store(store);
    let rate = inline(app(post(plain)).layer(pg.clone()), "pg-plain", 2000).await;
    row("inline, PostgresStore", rate);
    let rate = inline(app(post(with_postgres_tx)).layer(pg), "pg-tx", 2000).await;
    row("inline, PostgresStore, Tx", rate);

    let inbox = PostgresInbox::connect(&url).await.unwrap();
    let rate = worker(inbox.clone(), plain_job, "pg-inbox-plain", 400).await;
    row("inbox worker, PostgresInbox", rate);
    let tx_job = |_: Event, _tx: Tx<sqlx::Postgres>| async {
        tokio::time::sleep(HANDLER).await;
        Ok::<_, String>(())
    };
    let rate = worker(inbox, tx_job, "pg-inbox-tx", 400).await;
    row("inbox worker, PostgresInbox, Tx", rate);
    let _ = std::fs::remove_dir_all(&dir);
}
