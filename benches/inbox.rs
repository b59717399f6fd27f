//! Acknowledgements per second and their latency, over loopback HTTP: the inbox on SQLite
//! and on PostgreSQL, next to the inline mode on the same database (its dedup store, and a
//! handler that does nothing).
//!
//!     cargo bench --bench inbox --all-features
//!     cargo bench --bench inbox --all-features -- postgres   # one database's rows only
//!
//! 32 connections with keep-alive send 1 KiB deliveries, each with a fresh id, for a fixed
//! number of requests per row; the table gives requests per second, the latency of an
//! answer at the 50th and 99th percentiles, and the answers that were not 2xx. The burst
//! rows send 2 000 at once over 256 connections under the default bound; the commit-to-start
//! rows send one delivery at a time to an idle inbox and time its handler's start from the
//! 202. The "beside Tx handlers" rows send 400 deliveries at a steady 40 a second, each on a
//! connection of its own, to an SQLite inbox whose worker runs `Tx` handlers that hold the
//! file's write lock for 20 or 100 ms: the door's latency beside them, an answer later than 3 s
//! counted as not 2xx (the sender would have sent it again). The CPU columns are per answer, read from `/proc`: this process's (the server and
//! the load's own client; the inline rows show the client's share) and PostgreSQL's. Not criterion: one row is a whole server under
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
use tower_webhook::inbox::{accepted, Dialect, Inbox, PostgresInbox, SqliteInbox};
use tower_webhook::scheme::StandardWebhooks;
use tower_webhook::store::postgres::sqlx;
use tower_webhook::store::{PostgresStore, SqliteStore};
use tower_webhook::testkit::Delivery;
use tower_webhook::{Event, VerifyWebhookLayer};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The load of the main rows.
const STEADY: (usize, usize) = (32, 8_000);
/// A burst: 2 000 deliveries at once over 256 connections, under the default bound.
const BURST: (usize, usize) = (256, 2_000);
/// Deliveries sent one at a time to an idle inbox, for the delay from commit to start.
const STARTS: usize = 40;
/// A steady sender beside busy `Tx` handlers: deliveries a second, and how many.
const PACED: (u32, usize) = (40, 400);
/// How long the paced sender waits for an answer before it counts a timeout (and a sender
/// would send again).
const SENDER_TIMEOUT: Duration = Duration::from_secs(3);

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

/// Sends `requests` signed deliveries over `connections` connections, opened before the
/// clock starts: requests per second, the sorted latencies, and how many answers were not
/// 202 or 204.
async fn load(
    addr: std::net::SocketAddr,
    label: &str,
    (connections, requests): (usize, usize),
) -> Load {
    let scheme = StandardWebhooks::new(SECRET).unwrap();
    let pad = "x".repeat(1000);
    // Signed before the clock starts: the sender's cost is not the receiver's.
    let total = requests;
    let requests: Vec<http::Request<Full<Bytes>>> = (0..total)
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
    let refused = Arc::new(AtomicUsize::new(0));
    let go = Arc::new(tokio::sync::Barrier::new(connections + 1));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (requests, next, refused) = (
            Arc::clone(&requests),
            Arc::clone(&next),
            Arc::clone(&refused),
        );
        let go = Arc::clone(&go);
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let io = hyper_util::rt::TokioIo::new(stream);
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(connection);
            let mut latencies = Vec::new();
            go.wait().await;
            loop {
                if next.fetch_add(1, Ordering::Relaxed) >= total {
                    return latencies;
                }
                let Some(request) = requests.lock().unwrap().pop() else {
                    return latencies;
                };
                sender.ready().await.unwrap();
                let sent = Instant::now();
                let response = sender.send_request(request).await.unwrap();
                latencies.push(sent.elapsed());
                if !matches!(
                    response.status(),
                    StatusCode::ACCEPTED | StatusCode::NO_CONTENT
                ) {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    go.wait().await;
    let started = Instant::now();
    let cpu = cpu_ticks();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    let (own, postgres) = cpu_ticks();
    let rate = f64::from(u32::try_from(latencies.len()).unwrap()) / elapsed.as_secs_f64();
    latencies.sort();
    // Microseconds of CPU per answer, at 100 ticks a second.
    let answers = f64::from(u32::try_from(total).unwrap_or(u32::MAX));
    let per_answer =
        |ticks: u64| f64::from(u32::try_from(ticks).unwrap_or(u32::MAX)) * 1e4 / answers;
    Load {
        rate,
        latencies,
        refused: refused.load(Ordering::Relaxed),
        cpu_us: (per_answer(own - cpu.0), per_answer(postgres - cpu.1)),
    }
}

/// Sends `count` signed deliveries at `per_second`, each on a connection of its own
/// (opened on schedule, as a sender's are), whatever the answers before: the sorted
/// latencies, and how many were not 2xx or took longer than [`SENDER_TIMEOUT`].
async fn paced(addr: std::net::SocketAddr, label: &str, (per_second, count): (u32, usize)) -> Load {
    let scheme = StandardWebhooks::new(SECRET).unwrap();
    let started = Instant::now();
    let cpu = cpu_ticks();
    let mut tasks = Vec::with_capacity(count);
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / per_second);
    for n in 0..count {
        ticks.tick().await;
        let request: http::Request<Full<Bytes>> =
            Delivery::new(format!(r#"{{"type":"bench","n":{n}}}"#))
                .id(format!("paced-{label}-{}-{n}", std::process::id()))
                .uri("/webhooks")
                .request(&scheme)
                .unwrap();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let io = hyper_util::rt::TokioIo::new(stream);
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(connection);
            let response = sender.send_request(request).await.unwrap();
            let took = sent.elapsed();
            let ok = matches!(
                response.status(),
                StatusCode::ACCEPTED | StatusCode::NO_CONTENT
            );
            (took, ok && took < SENDER_TIMEOUT)
        }));
    }
    let mut latencies = Vec::with_capacity(count);
    let mut refused = 0;
    for task in tasks {
        let (took, ok) = task.await.unwrap();
        latencies.push(took);
        refused += usize::from(!ok);
    }
    let elapsed = started.elapsed();
    let (own, postgres) = cpu_ticks();
    latencies.sort();
    let answers = f64::from(u32::try_from(count).unwrap_or(u32::MAX));
    let per_answer =
        |ticks: u64| f64::from(u32::try_from(ticks).unwrap_or(u32::MAX)) * 1e4 / answers;
    Load {
        rate: answers / elapsed.as_secs_f64(),
        latencies,
        refused,
        cpu_us: (per_answer(own - cpu.0), per_answer(postgres - cpu.1)),
    }
}

/// An SQLite inbox at [`PACED`] with a worker whose `Tx` handlers write a row and hold the
/// transaction (the file's one write lock) for `hold`: the door's latency beside them.
async fn beside_tx_handlers(dir: &std::path::Path, hold: Duration) -> Load {
    use tower_webhook::store::sqlite::sqlx as lite;
    use tower_webhook::Tx;
    let name = format!("tx-{}ms", hold.as_millis());
    let inbox = SqliteInbox::open(dir.join(format!("{name}.db")))
        .await
        .unwrap()
        .with_max_queued(u64::MAX);
    lite::query("CREATE TABLE IF NOT EXISTS handled (id TEXT PRIMARY KEY)")
        .execute(inbox.pool())
        .await
        .unwrap();
    let handler = move |event: Event, mut tx: Tx<lite::Sqlite>| async move {
        lite::query("INSERT INTO handled (id) VALUES (?)")
            .bind(event.id())
            .execute(&mut *tx)
            .await?;
        tokio::time::sleep(hold).await;
        Ok::<_, lite::Error>(())
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(inbox.worker(handler).run_until(async {
        let _ = stopped.await;
    }));
    let app = Router::new()
        .route("/webhooks", post(accepted))
        .layer(layer().with_inbox(inbox));
    let load = paced(serve(app).await, &name, PACED).await;
    let _ = stop.send(());
    let _ = worker.await;
    load
}

/// What a row of load measured.
struct Load {
    rate: f64,
    latencies: Vec<Duration>,
    refused: usize,
    /// CPU per answer, in microseconds: this process (the server and the load's client)
    /// and PostgreSQL.
    cpu_us: (f64, f64),
}

/// Sends one delivery at a time to an idle inbox whose worker runs `inbox`'s jobs, and
/// measures from the 202 (the job committed) to the handler's start: the sorted delays.
async fn commit_to_start<D: Dialect>(
    door: Inbox<D>,
    workers: Inbox<D>,
    label: &str,
) -> Vec<Duration> {
    let (started, mut starts) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let worker = tokio::spawn(
        workers
            .worker(move |_: Event| {
                let _ = started.send(Instant::now());
                async { Ok::<_, std::convert::Infallible>(()) }
            })
            .run(),
    );
    let app = Router::new()
        .route("/webhooks", post(accepted))
        .layer(layer().with_inbox(door));
    let addr = serve(app).await;
    let scheme = StandardWebhooks::new(SECRET).unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(connection);
    // The worker starts, and its first fetch finds nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut delays = Vec::new();
    for n in 0..STARTS {
        let request: http::Request<Full<Bytes>> = Delivery::new("{}")
            .id(format!("start-{label}-{}-{n}", std::process::id()))
            .uri("/webhooks")
            .request(&scheme)
            .unwrap();
        sender.ready().await.unwrap();
        let response = sender.send_request(request).await.unwrap();
        let committed = Instant::now();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let started = tokio::time::timeout(Duration::from_secs(30), starts.recv())
            .await
            .expect("the job started")
            .unwrap();
        delays.push(started.saturating_duration_since(committed));
        // Idle again, at a moment out of step with any polling.
        tokio::time::sleep(Duration::from_millis(150 + 37 * (n as u64 % 7))).await;
    }
    worker.abort();
    delays.sort();
    delays
}

/// CPU time used so far, in clock ticks: this process's, and all of PostgreSQL's processes'
/// (its backends do the inbox's work on PostgreSQL), read from `/proc`.
fn cpu_ticks() -> (u64, u64) {
    fn ticks(stat: &str) -> Option<(String, u64)> {
        // After the command's closing parenthesis, utime and stime are the 12th and 13th
        // fields.
        let (head, rest) = stat.rsplit_once(')')?;
        let name = head.split_once('(')?.1.to_owned();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let used = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some((name, used))
    }
    let own = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| ticks(&stat))
        .map_or(0, |(_, used)| used);
    let mut postgres = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if let Some((name, used)) = ticks(&stat) {
            if name == "postgres" {
                postgres += used;
            }
        }
    }
    (own, postgres)
}

/// The latency at `per_mille` thousandths of the sorted samples.
fn percentile(sorted: &[Duration], per_mille: usize) -> Duration {
    sorted[((sorted.len() - 1) * per_mille / 1000).min(sorted.len() - 1)]
}

fn row(label: &str, load: &Load) {
    println!(
        "| {label:<40} | {:>9.0} | {:>8.2} | {:>8.2} | {:>7} | {:>8.0} | {:>8.0} |",
        load.rate,
        percentile(&load.latencies, 500).as_secs_f64() * 1e3,
        percentile(&load.latencies, 990).as_secs_f64() * 1e3,
        load.refused,
        load.cpu_us.0,
        load.cpu_us.1,
    );
}

fn start_row(label: &str, delays: &[Duration]) {
    println!(
        "| {label:<40} | {:>9} | {:>8.2} | {:>8.2} | {:>7} | {:>8} | {:>8} |",
        "",
        percentile(delays, 500).as_secs_f64() * 1e3,
        percentile(delays, 990).as_secs_f64() * 1e3,
        "",
        "",
        "",
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

    println!(
        "{} connections, {} deliveries of 1 KiB per row; the burst: {} at once over {} \
         connections, under the default bound; commit to start: {} deliveries one at a time to \
         an idle inbox, from the 202 to the handler's start\n",
        STEADY.0, STEADY.1, BURST.1, BURST.0, STARTS
    );
    println!(
        "| mode                                     |  answers/s | p50 (ms) | p99 (ms) | not 2xx | CPU here (µs) | CPU PG (µs) |"
    );
    println!(
        "| ---------------------------------------- | ---------: | -------: | -------: | ------: | -------: | -------: |"
    );

    // `-- sqlite` or `-- postgres` runs that database's rows only.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let wanted = |rows: &str| only.is_empty() || only.iter().any(|arg| arg == rows);
    if wanted("sqlite") {
        sqlite_rows(&dir).await;
    }
    if wanted("postgres") {
        postgres_rows(&url).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The SQLite rows: inline, the inbox, its burst, and commit to start.
async fn sqlite_rows(dir: &std::path::Path) {
    let store = SqliteStore::open(dir.join("inline.db")).await.unwrap();
    let app = Router::new()
        .route("/webhooks", post(handle))
        .layer(layer().with_store(store));
    row(
        "inline, SqliteStore",
        &load(serve(app).await, "inline-sqlite", STEADY).await,
    );

    let inbox = SqliteInbox::open(dir.join("inbox.db"))
        .await
        .unwrap()
        .with_max_queued(u64::MAX);
    let app = Router::new()
        .route("/webhooks", post(accepted))
        .layer(layer().with_inbox(inbox));
    row(
        "inbox, SqliteInbox (202)",
        &load(serve(app).await, "inbox-sqlite", STEADY).await,
    );

    let inbox = SqliteInbox::open(dir.join("burst.db")).await.unwrap();
    let app = Router::new()
        .route("/webhooks", post(accepted))
        .layer(layer().with_inbox(inbox));
    row(
        "inbox, SqliteInbox, burst",
        &load(serve(app).await, "burst-sqlite", BURST).await,
    );

    let inbox = SqliteInbox::open(dir.join("start.db")).await.unwrap();
    let delays = commit_to_start(inbox.clone(), inbox, "sqlite").await;
    start_row("commit to start, SqliteInbox", &delays);

    for hold in [20, 100] {
        let load = beside_tx_handlers(dir, Duration::from_millis(hold)).await;
        row(&format!("SqliteInbox 40/s, {hold} ms Tx handlers"), &load);
    }
}

/// The PostgreSQL rows, where it is reachable.
async fn postgres_rows(url: &str) {
    match PostgresStore::connect(url).await {
        Ok(store) => {
            store.create_table().await.unwrap();
            let app = Router::new()
                .route("/webhooks", post(handle))
                .layer(layer().with_store(store));
            row(
                "inline, PostgresStore",
                &load(serve(app).await, "inline-pg", STEADY).await,
            );

            let store = PostgresStore::connect(url)
                .await
                .unwrap()
                .with_synchronous_commit(true);
            let app = Router::new()
                .route("/webhooks", post(handle))
                .layer(layer().with_store(store));
            row(
                "inline, PostgresStore, synchronous commit",
                &load(serve(app).await, "inline-pg-sync", STEADY).await,
            );

            let queue = format!("bench-{}", std::process::id());
            let inbox = PostgresInbox::connect(url)
                .await
                .unwrap()
                .with_queue(&queue)
                .with_max_queued(u64::MAX);
            let app = Router::new()
                .route("/webhooks", post(accepted))
                .layer(layer().with_inbox(inbox.clone()));
            row(
                "inbox, PostgresInbox (202)",
                &load(serve(app).await, "inbox-pg", STEADY).await,
            );

            let burst = PostgresInbox::connect(url)
                .await
                .unwrap()
                .with_queue(&format!("{queue}-burst"));
            let app = Router::new()
                .route("/webhooks", post(accepted))
                .layer(layer().with_inbox(burst));
            row(
                "inbox, PostgresInbox, burst",
                &load(serve(app).await, "burst-pg", BURST).await,
            );

            let starts = PostgresInbox::connect(url)
                .await
                .unwrap()
                .with_queue(&format!("{queue}-start"));
            let delays = commit_to_start(starts.clone(), starts.clone(), "pg").await;
            start_row("commit to start, PostgresInbox", &delays);
            // Workers on another pool, as on another machine: woken by NOTIFY.
            let elsewhere = PostgresInbox::connect(url)
                .await
                .unwrap()
                .with_queue(&format!("{queue}-start"));
            let delays = commit_to_start(starts, elsewhere, "pg-elsewhere").await;
            start_row("commit to start, PostgresInbox elsewhere", &delays);

            // The bench's jobs and marks are of no use: remove them.
            let _ = sqlx::query("DELETE FROM webhook_inbox_jobs WHERE queue LIKE $1 || '%'")
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
}
