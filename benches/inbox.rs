//! Acknowledgements per second and their latency, over loopback HTTP: the inbox on SQLite
//! and on PostgreSQL, next to the inline mode on the same database (its dedup store, and a
//! handler that does nothing).
//!
//!     cargo bench --bench inbox --all-features
//!
//! 32 connections with keep-alive send 1 KiB deliveries, each with a fresh id, for a fixed
//! number of requests per row; the table gives requests per second and the latency of an
//! answer at the 50th and 99th percentiles. Not criterion: one row is a whole server under
//! load, and what matters is its throughput and tail. Run it on a quiet machine; compare
//! rows of one run, not runs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http_body_util::Full;
use tower_webhook::inbox::{accepted, PostgresInbox, SqliteInbox};
use tower_webhook::scheme::StandardWebhooks;
use tower_webhook::store::postgres::sqlx;
use tower_webhook::store::{PostgresStore, SqliteStore};
use tower_webhook::testkit::Delivery;
use tower_webhook::{Event, VerifyWebhookLayer};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const CONNECTIONS: usize = 32;
const REQUESTS: usize = 8_000;

fn layer() -> VerifyWebhookLayer {
    VerifyWebhookLayer::new(StandardWebhooks::new(SECRET).unwrap())
}

async fn handle(_event: Event) -> StatusCode {
    StatusCode::NO_CONTENT
}

/// Serves `app` on a free loopback port; its address.
async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Sends `REQUESTS` signed deliveries over `CONNECTIONS` connections: requests per second,
/// and the sorted latencies.
async fn load(addr: std::net::SocketAddr, label: &str) -> (f64, Vec<Duration>) {
    let scheme = StandardWebhooks::new(SECRET).unwrap();
    let pad = "x".repeat(1000);
    // Signed before the clock starts: the sender's cost is not the receiver's.
    let requests: Vec<http::Request<Full<Bytes>>> = (0..REQUESTS)
        .map(|n| {
            Delivery::new(format!(r#"{{"type":"bench","n":{n},"pad":"{pad}"}}"#))
                .id(format!("bench-{label}-{}-{n}", std::process::id()))
                .uri("/webhooks")
                .request(&scheme)
                .unwrap()
        })
        .collect();
    let requests = Arc::new(std::sync::Mutex::new(requests));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut connections = Vec::new();
    for _ in 0..CONNECTIONS {
        let (requests, next) = (Arc::clone(&requests), Arc::clone(&next));
        connections.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let io = hyper_util::rt::TokioIo::new(stream);
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(connection);
            let mut latencies = Vec::new();
            loop {
                if next.fetch_add(1, Ordering::Relaxed) >= REQUESTS {
                    return latencies;
                }
                let Some(request) = requests.lock().unwrap().pop() else {
                    return latencies;
                };
                sender.ready().await.unwrap();
                let sent = Instant::now();
                let response = sender.send_request(request).await.unwrap();
                latencies.push(sent.elapsed());
                assert!(response.status().is_success(), "{}", response.status());
            }
        }));
    }
    let mut latencies = Vec::new();
    for connection in connections {
        latencies.extend(connection.await.unwrap());
    }
    let rate = f64::from(u32::try_from(latencies.len()).unwrap()) / started.elapsed().as_secs_f64();
    latencies.sort();
    (rate, latencies)
}

/// The latency at `per_mille` thousandths of the sorted samples.
fn percentile(sorted: &[Duration], per_mille: usize) -> Duration {
    sorted[((sorted.len() - 1) * per_mille / 1000).min(sorted.len() - 1)]
}

fn row(label: &str, rate: f64, latencies: &[Duration]) {
    println!(
        "| {label:<34} | {rate:>9.0} | {:>8.2} | {:>8.2} |",
        percentile(latencies, 500).as_secs_f64() * 1e3,
        percentile(latencies, 990).as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() {
    // `cargo test --benches` runs each bench binary with `--test`-like flags: do nothing then.
    if std::env::args().any(|arg| arg == "--test" || arg == "--list") {
        return;
    }
    let dir =
        std::env::temp_dir().join(format!("tower-webhook-bench-inbox-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());

    println!("{CONNECTIONS} connections, {REQUESTS} deliveries of 1 KiB per row\n");
    println!("| mode                               |  answers/s | p50 (ms) | p99 (ms) |");
    println!("| ---------------------------------- | ---------: | -------: | -------: |");

    let store = SqliteStore::open(dir.join("inline.db")).await.unwrap();
    let app = Router::new()
        .route("/webhooks", post(handle))
        .layer(layer().with_store(store));
    let (rate, lat) = load(serve(app).await, "inline-sqlite").await;
    row("inline, SqliteStore", rate, &lat);

    let inbox = SqliteInbox::open(dir.join("inbox.db"))
        .await
        .unwrap()
        .with_max_queued(u64::MAX);
    let app = Router::new()
        .route("/webhooks", post(accepted))
        .layer(layer().with_inbox(inbox));
    let (rate, lat) = load(serve(app).await, "inbox-sqlite").await;
    row("inbox, SqliteInbox (202)", rate, &lat);

    match PostgresStore::connect(&url).await {
        Ok(store) => {
            store.create_table().await.unwrap();
            let app = Router::new()
                .route("/webhooks", post(handle))
                .layer(layer().with_store(store));
            let (rate, lat) = load(serve(app).await, "inline-pg").await;
            row("inline, PostgresStore", rate, &lat);

            let queue = format!("bench-{}", std::process::id());
            let inbox = PostgresInbox::connect(&url)
                .await
                .unwrap()
                .with_queue(&queue)
                .with_max_queued(u64::MAX);
            let app = Router::new()
                .route("/webhooks", post(accepted))
                .layer(layer().with_inbox(inbox.clone()));
            let (rate, lat) = load(serve(app).await, "inbox-pg").await;
            row("inbox, PostgresInbox (202)", rate, &lat);
            // The bench's jobs are never worked, and its marks are of no use: remove them.
            let _ = sqlx::query("DELETE FROM apalis.jobs WHERE job_type = $1")
                .bind(&queue)
                .execute(inbox.pool())
                .await;
            let run = format!("-{}-", std::process::id());
            let _ = sqlx::query(
                "DELETE FROM webhook_claims WHERE position(convert_to($1, 'UTF8') in key) > 0",
            )
            .bind(&run)
            .execute(inbox.pool())
            .await;
        }
        Err(err) => println!("| PostgreSQL rows skipped: {err} |"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
