//! The inbox's promise, end to end: the example server in inbox mode (SQLite, then
//! PostgreSQL) under a retrying sender of 500 unique deliveries, its handler slower than the
//! sender's timeout and failing a share of first attempts, killed with SIGKILL three times
//! mid-run and restarted. Every delivery answered 2xx must be handled (0 lost); the handler
//! runs beyond one per delivery are counted and printed.
//!
//! With `HANDLER_EFFECT=tx` (SQLite and PostgreSQL, inline and inbox), the handler writes one
//! row per delivery in `demo_effects`, in the delivery's transaction: every delivery answered
//! 2xx must have exactly one row, however the kills fell.
//!
//! Runs the `server` example's binary, which `cargo test --all-features` builds beside this
//! test. PostgreSQL at `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! without one its trial is ignored, or fails when `CI` is set.
#![cfg(all(
    feature = "inbox-sqlite",
    feature = "inbox-postgres",
    feature = "test-util"
))]

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tokio::net::TcpStream;
use tower_webhook::testkit::Delivery;

const DELIVERIES: usize = 500;
const CONCURRENCY: usize = 32;
const KILLS: usize = 3;
/// The sender gives up on an answer after this long, and retries.
const SENDER_TIMEOUT: Duration = Duration::from_secs(1);
/// The handler takes longer than the sender waits.
const HANDLER_DELAY_MS: &str = "1200";
const FAIL_RATE: &str = "0.2";

/// The `server` example's binary, built by `cargo test` beside this test's.
fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let target = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>/deps");
    let server = target.join("examples").join("server");
    assert!(
        server.exists(),
        "{} is missing: `cargo test --all-features` builds it; alone, run `cargo build --all-features --example server` first",
        server.display()
    );
    server
}

/// What the servers printed, per delivery id: handler runs started, and completed.
#[derive(Default)]
struct Seen {
    started: HashMap<String, usize>,
    handled: HashMap<String, usize>,
}

type Runs = Arc<Mutex<Seen>>;

/// One incarnation of the receiver.
struct Receiver {
    child: Child,
}

impl Receiver {
    fn start(env: &[(&str, String)], runs: &Runs) -> Self {
        let mut command = Command::new(server_binary());
        command
            .env("WEBHOOK_SECRET", common::SECRET)
            .env("HANDLER_DELAY_MS", HANDLER_DELAY_MS)
            .env("HANDLER_FAIL_RATE", FAIL_RATE)
            .env("WORKER_CONCURRENCY", CONCURRENCY.to_string())
            .env_remove("REDIS_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("the server starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let runs = Arc::clone(runs);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let id = |rest: &str| rest.split_whitespace().next().unwrap_or("").to_owned();
                let mut seen = runs.lock().unwrap();
                if let Some(rest) = line.strip_prefix("handled event ") {
                    *seen.handled.entry(id(rest)).or_default() += 1;
                } else if let Some(rest) = line.strip_prefix("working on event ") {
                    *seen.started.entry(id(rest)).or_default() += 1;
                }
            }
        });
        Self { child }
    }

    /// Whether the server ended on its own within `within`.
    async fn exits_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self
                .child
                .try_wait()
                .expect("the server's status")
                .is_some()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    fn kill(mut self) {
        // SIGKILL: no shutdown, no last heartbeat, nothing flushed.
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

/// Posts `request` over a fresh connection to `addr`: the status, or `None` for no answer
/// within the sender's timeout (or no connection).
async fn post(addr: std::net::SocketAddr, request: Request<Full<Bytes>>) -> Option<u16> {
    let attempt = async {
        let stream = TcpStream::connect(addr).await.ok()?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.ok()?;
        tokio::spawn(connection);
        let response = sender.send_request(request).await.ok()?;
        Some(response.status().as_u16())
    };
    tokio::time::timeout(SENDER_TIMEOUT, attempt).await.ok()?
}

/// What the run found.
struct Outcome {
    acknowledged: usize,
    lost: Vec<String>,
    /// With `HANDLER_EFFECT=tx`: the rows of `demo_effects` per delivery id of the run.
    effects: Option<HashMap<String, i64>>,
    /// Handler runs started beyond one per delivery: the first attempts that fail on
    /// purpose, and runs cut short by a SIGKILL.
    extra_runs: usize,
    /// Handler runs that completed beyond one per delivery.
    extra_completions: usize,
    attempts: usize,
}

/// Where a `HANDLER_EFFECT=tx` run's server writes `demo_effects`.
enum Effects {
    Sqlite(PathBuf),
    Postgres,
}

impl Effects {
    /// The rows of `demo_effects` per delivery id starting with `prefix`.
    async fn rows(&self, prefix: &str) -> HashMap<String, i64> {
        use tower_webhook::store::sqlite::sqlx;
        const SQL: &str = "SELECT event_id, COUNT(*) FROM demo_effects
            WHERE substr(event_id, 1, length($1)) = $1 GROUP BY event_id";
        let rows: Result<Vec<(String, i64)>, sqlx::Error> = match self {
            // Read only, and closed at once: the reader must not stand in the writers' way.
            Effects::Sqlite(path) => match sqlx::SqlitePool::connect_with(
                sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(path)
                    .read_only(true),
            )
            .await
            {
                Ok(pool) => {
                    let rows = sqlx::query_as(SQL).bind(prefix).fetch_all(&pool).await;
                    pool.close().await;
                    rows
                }
                Err(err) => Err(err),
            },
            Effects::Postgres => match sqlx::PgPool::connect(&common::database_url()).await {
                Ok(pool) => {
                    let rows = sqlx::query_as(SQL).bind(prefix).fetch_all(&pool).await;
                    pool.close().await;
                    rows
                }
                Err(err) => Err(err),
            },
        };
        match rows {
            Ok(rows) => rows.into_iter().collect(),
            Err(err) => {
                eprintln!("(demo_effects not read: {err})");
                HashMap::new()
            }
        }
    }
}

/// The sender's tasks, and what they tell.
struct Sending {
    senders: Vec<tokio::task::JoinHandle<()>>,
    acknowledged: Arc<Mutex<HashSet<String>>>,
    attempts: Arc<std::sync::atomic::AtomicUsize>,
}

/// A sender of a delivery per id (its body padded with `pad` bytes), [`CONCURRENCY`] at a
/// time, each retried until it gets a 2xx. Each try goes to the next of `addrs` after the
/// last one's, as a sender's retries land on whichever replica a balancer picks.
fn send_retrying(ids: &[String], addrs: &[std::net::SocketAddr], pad: usize) -> Sending {
    let acknowledged = Arc::new(Mutex::new(HashSet::new()));
    let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..CONCURRENCY {
        let (ids, addrs, acknowledged, attempts, next) = (
            ids.to_vec(),
            addrs.to_vec(),
            Arc::clone(&acknowledged),
            Arc::clone(&attempts),
            Arc::clone(&next),
        );
        senders.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(id) = ids.get(n) else { return };
                let body = format!(
                    r#"{{"type":"crash.test","n":{n},"pad":"{}"}}"#,
                    "x".repeat(pad)
                );
                let delivery = Delivery::new(body).id(id.clone());
                for turn in n.. {
                    attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let request = delivery.request(&common::scheme()).unwrap();
                    if post(addrs[turn % addrs.len()], request)
                        .await
                        .is_some_and(|s| (200..300).contains(&s))
                    {
                        acknowledged.lock().unwrap().insert(id.clone());
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }));
    }
    Sending {
        senders,
        acknowledged,
        attempts,
    }
}

async fn run(backend: &str, env: Vec<(&'static str, String)>) -> Outcome {
    run_with(backend, env, None).await
}

async fn run_with(
    backend: &str,
    env: Vec<(&'static str, String)>,
    effects: Option<Effects>,
) -> Outcome {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let mut env = env;
    env.push(("BIND", addr.to_string()));
    let runs = Runs::default();
    let receiver = Arc::new(Mutex::new(Some(Receiver::start(&env, &runs))));

    let run_id = format!("{backend}-{}-{}", std::process::id(), unique_suffix());
    let ids: Vec<String> = (0..DELIVERIES)
        .map(|n| format!("crash-{run_id}-{n}"))
        .collect();
    // The sender: 32 at a time, each delivery retried until it gets a 2xx.
    let Sending {
        senders,
        acknowledged,
        attempts,
    } = send_retrying(&ids, &[addr], 960);

    // The killer: SIGKILL mid-run, three times, each followed by a restart.
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let old = receiver.lock().unwrap().take();
        if let Some(old) = old {
            old.kill();
        }
        *receiver.lock().unwrap() = Some(Receiver::start(&env, &runs));
    }
    for sender in senders {
        tokio::time::timeout(Duration::from_secs(180), sender)
            .await
            .expect("every delivery acknowledged within 3 minutes")
            .unwrap();
    }

    // Every acknowledged delivery handled: wait for the workers (and the heartbeat that
    // returns a killed worker's jobs to the queue).
    let acknowledged: HashSet<String> = acknowledged.lock().unwrap().clone();
    let prefix = format!("crash-{run_id}-");
    let lost = unhandled(&acknowledged, &runs, effects.as_ref(), &prefix).await;
    if let Some(receiver) = receiver.lock().unwrap().take() {
        receiver.kill();
    }
    // A last look, once no receiver can commit any more.
    let rows = match &effects {
        Some(effects) => Some(effects.rows(&prefix).await),
        None => None,
    };
    let seen = runs.lock().unwrap();
    let beyond_one = |runs: &HashMap<String, usize>| -> usize {
        ids.iter()
            .filter_map(|id| runs.get(id))
            .map(|n| n.saturating_sub(1))
            .sum()
    };
    Outcome {
        acknowledged: acknowledged.len(),
        lost,
        effects: rows,
        extra_runs: beyond_one(&seen.started),
        extra_completions: beyond_one(&seen.handled),
        attempts: attempts.load(std::sync::atomic::Ordering::Relaxed),
    }
}

/// The deliveries of `acknowledged` not handled within two minutes. With `HANDLER_EFFECT=tx`,
/// handled means its row committed (ids starting with `prefix`): a run that printed its line
/// but was killed before the commit left nothing, and its retry does the work.
async fn unhandled(
    acknowledged: &HashSet<String>,
    runs: &Runs,
    effects: Option<&Effects>,
    prefix: &str,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rows = match effects {
            Some(effects) => Some(effects.rows(prefix).await),
            None => None,
        };
        let lost: Vec<String> = {
            let seen = runs.lock().unwrap();
            acknowledged
                .iter()
                .filter(|id| match &rows {
                    Some(rows) => !rows.contains_key(*id),
                    None => !seen.handled.contains_key(*id),
                })
                .cloned()
                .collect()
        };
        if lost.is_empty() || Instant::now() > deadline {
            return lost;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

fn report(backend: &str, outcome: &Outcome) {
    println!(
        "crash test ({backend}): {DELIVERIES} deliveries, {} acknowledged, {} lost; handler runs \
         beyond one per delivery: {} started (failing first attempts and runs cut short by \
         SIGKILL), {} completed; {} send attempts, {KILLS} SIGKILLs",
        outcome.acknowledged,
        outcome.lost.len(),
        outcome.extra_runs,
        outcome.extra_completions,
        outcome.attempts,
    );
    assert_eq!(outcome.acknowledged, DELIVERIES);
    assert!(
        outcome.lost.is_empty(),
        "{} lost, among them: {:?}",
        outcome.lost.len(),
        &outcome.lost[..outcome.lost.len().min(5)]
    );
    if let Some(rows) = &outcome.effects {
        let twice: Vec<_> = rows.iter().filter(|(_, n)| **n >= 2).collect();
        println!(
            "crash test ({backend}, HANDLER_EFFECT=tx): {} deliveries answered 2xx, {} rows in \
             demo_effects, {} ids with two or more rows",
            outcome.acknowledged,
            rows.values().sum::<i64>(),
            twice.len()
        );
        assert!(twice.is_empty(), "done twice: {twice:?}");
        assert_eq!(
            rows.len(),
            outcome.acknowledged,
            "a row for every delivery answered 2xx"
        );
    }
}

/// `HANDLER_EFFECT=tx`: the handler's row commits with the delivery's completion, through
/// three SIGKILLs: exactly one row per delivery answered 2xx, inline and in the inbox.
async fn sqlite_tx_effects_exactly_once(inbox: bool) {
    let (mode, var) = if inbox {
        ("sqlite-inbox", "WEBHOOK_INBOX")
    } else {
        ("sqlite-inline", "WEBHOOK_STORE")
    };
    // Its own file: the two SQLite trials run at once.
    let dir = std::env::temp_dir().join(format!(
        "tower-webhook-crash-tx-{mode}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("webhooks.db");
    let env = vec![
        (var, format!("sqlite:{}", path.display())),
        ("HANDLER_EFFECT", "tx".to_owned()),
        // SQLite runs one `Tx` at a time (it holds the file's write lock): 500 handlers of
        // 1.2 s would take ten minutes.
        ("HANDLER_DELAY_MS", "10".to_owned()),
    ];
    let outcome = run_with(mode, env, Some(Effects::Sqlite(path))).await;
    let _ = std::fs::remove_dir_all(&dir);
    report(mode, &outcome);
}

async fn postgres_tx_effects_exactly_once(inbox: bool) {
    let queue = format!("crash-tx-{}-{}", std::process::id(), unique_suffix());
    let mut env = vec![
        ("DATABASE_URL", common::database_url()),
        ("HANDLER_EFFECT", "tx".to_owned()),
        // Inline, the answer waits for the handler (the sender gives up after 1 s); in the
        // inbox, each `Tx` holds one of the pool's connections.
        ("HANDLER_DELAY_MS", "100".to_owned()),
    ];
    let mode = if inbox {
        env.push(("WEBHOOK_INBOX", "postgres".to_owned()));
        env.push(("WEBHOOK_INBOX_QUEUE", queue.clone()));
        "postgres-inbox"
    } else {
        "postgres-inline"
    };
    let outcome = run_with(mode, env, Some(Effects::Postgres)).await;
    if let Ok(pool) =
        tower_webhook::store::postgres::sqlx::PgPool::connect(&common::database_url()).await
    {
        use tower_webhook::store::postgres::sqlx;
        // This trial's rows only: the other PostgreSQL trials of this process run at once.
        let run = format!("crash-{mode}-{}-", std::process::id());
        let _ = sqlx::query("DELETE FROM webhook_inbox_jobs WHERE queue = $1")
            .bind(&queue)
            .execute(&pool)
            .await;
        let _ = sqlx::query("DELETE FROM demo_effects WHERE position($1 in event_id) = 1")
            .bind(&run)
            .execute(&pool)
            .await;
        let _ = sqlx::query(
            "DELETE FROM webhook_claims WHERE position(convert_to($1, 'UTF8') in key) > 0",
        )
        .bind(&run)
        .execute(&pool)
        .await;
    }
    report(mode, &outcome);
}

async fn sqlite_survives_sigkill() {
    let dir = std::env::temp_dir().join(format!("tower-webhook-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("inbox.db");
    let outcome = run(
        "sqlite",
        vec![("WEBHOOK_INBOX", format!("sqlite:{}", path.display()))],
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    report("sqlite", &outcome);
}

async fn postgres_survives_sigkill() {
    let queue = format!("crash-{}-{}", std::process::id(), unique_suffix());
    let outcome = run(
        "postgres",
        vec![
            ("WEBHOOK_INBOX", "postgres".to_owned()),
            ("DATABASE_URL", common::database_url()),
            ("WEBHOOK_INBOX_QUEUE", queue.clone()),
        ],
    )
    .await;
    // The run's jobs and marks leave the shared test database (its ids carry the queue's
    // name: `crash-<backend>-<pid>-<time>-<n>`).
    if let Ok(inbox) = tower_webhook::inbox::PostgresInbox::connect(&common::database_url()).await {
        use tower_webhook::store::postgres::sqlx;
        let run = format!("-{}-", std::process::id());
        let _ = sqlx::query("DELETE FROM webhook_inbox_jobs WHERE queue = $1")
            .bind(&queue)
            .execute(inbox.pool())
            .await;
        let _ = sqlx::query(
            "DELETE FROM webhook_claims WHERE position(convert_to('crash-postgres' || $1, 'UTF8') in key) > 0",
        )
        .bind(&run)
        .execute(inbox.pool())
        .await;
    }
    report("postgres", &outcome);
}

/// Sends one delivery until it is acknowledged.
async fn deliver_one(addr: std::net::SocketAddr, id: &str) {
    let delivery = Delivery::new(r#"{"type":"poison.test"}"#).id(id.to_owned());
    for _ in 0..200 {
        let request = delivery.request(&common::scheme()).unwrap();
        if post(addr, request)
            .await
            .is_some_and(|s| (200..300).contains(&s))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{id} was never acknowledged");
}

/// Waits until the servers printed `n` starts of the handler on `id`.
async fn started(runs: &Runs, id: &str, n: usize, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if runs.lock().unwrap().started.get(id).copied().unwrap_or(0) >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// How a poison job takes its receiver down.
#[derive(Clone, Copy, PartialEq)]
enum Death {
    /// A SIGKILL from outside once its handler has started.
    Killed,
    /// Its handler aborts the process as it starts, before apalis has written anything of
    /// the attempt.
    Aborts,
}

/// A poison job: its handler takes the receiver down on every attempt. After its last
/// attempt it is dead-lettered, with the reason, and never taken again, however often the
/// receiver restarts.
async fn poison_job_is_dead_lettered(
    backend: &str,
    death: Death,
    mut env: Vec<(&'static str, String)>,
) -> String {
    const ATTEMPTS: usize = 3;
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    env.extend([
        ("BIND", addr.to_string()),
        ("HANDLER_DELAY_MS", "600000".to_owned()),
        ("HANDLER_FAIL_RATE", "0".to_owned()),
        ("WEBHOOK_INBOX_ATTEMPTS", ATTEMPTS.to_string()),
        ("WEBHOOK_INBOX_BACKOFF_MS", "1000".to_owned()),
        ("WEBHOOK_INBOX_HEARTBEAT_SECS", "1".to_owned()),
    ]);
    let runs = Runs::default();
    let id = format!(
        "poison-{backend}-{}-{}",
        std::process::id(),
        unique_suffix()
    );
    if death == Death::Aborts {
        env.extend([
            ("HANDLER_ABORT_TYPE", "poison.test".to_owned()),
            ("WEBHOOK_INBOX_BACKOFF_MS", "200".to_owned()),
        ]);
    }
    let mut receiver = Receiver::start(&env, &runs);
    deliver_one(addr, &id).await;
    match death {
        Death::Killed => {
            for attempt in 1..=ATTEMPTS {
                assert!(
                    started(&runs, &id, attempt, Duration::from_secs(30)).await,
                    "attempt {attempt} started"
                );
                receiver.kill();
                receiver = Receiver::start(&env, &runs);
            }
        }
        Death::Aborts => {
            // Each receiver dies as the job starts; the one that lives has dead-lettered
            // it. Restarts stop two past the attempts, where a job whose attempts were not
            // counted would go on killing receivers.
            for _ in 0..ATTEMPTS + 2 {
                if !receiver.exits_within(Duration::from_secs(10)).await {
                    break;
                }
                receiver = Receiver::start(&env, &runs);
            }
        }
    }
    // The last receiver takes the job back and dead-letters it; a few heartbeats more, it
    // has not started it again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    receiver.kill();
    let starts = runs.lock().unwrap().started.get(&id).copied().unwrap_or(0);
    println!("poison job ({backend}): {starts} starts of {ATTEMPTS} attempts, then dead-lettered");
    assert_eq!(starts, ATTEMPTS, "the job ran past its attempts");
    id
}

/// The one dead letter of an inbox: the poison job's, with its reason.
fn assert_dead_lettered(letters: &[tower_webhook::inbox::DeadLetter], id: &str) {
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].id, id);
    assert_eq!(
        letters[0].last_error.as_deref(),
        Some("its worker died during the last attempt")
    );
}

async fn sqlite_poison_job_is_dead_lettered(death: Death) {
    let dir = std::env::temp_dir().join(format!(
        "tower-webhook-poison-{}-{}",
        std::process::id(),
        unique_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("inbox.db");
    let env = vec![("WEBHOOK_INBOX", format!("sqlite:{}", path.display()))];
    let id = poison_job_is_dead_lettered("sqlite", death, env).await;
    let inbox = tower_webhook::inbox::SqliteInbox::open(&path)
        .await
        .unwrap();
    assert_dead_lettered(&inbox.dead_letters(10).await.unwrap(), &id);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn postgres_poison_job_is_dead_lettered(death: Death) {
    let queue = format!("poison-{}-{}", std::process::id(), unique_suffix());
    let env = vec![
        ("WEBHOOK_INBOX", "postgres".to_owned()),
        ("DATABASE_URL", common::database_url()),
        ("WEBHOOK_INBOX_QUEUE", queue.clone()),
    ];
    let id = poison_job_is_dead_lettered("postgres", death, env).await;
    let inbox = tower_webhook::inbox::PostgresInbox::connect(&common::database_url())
        .await
        .unwrap()
        .with_queue(&queue);
    let letters = inbox.dead_letters(10).await.unwrap();
    remove_queue(&inbox, &queue).await;
    assert_dead_lettered(&letters, &id);
}

/// Deletes a queue's jobs from the shared test database.
async fn remove_queue(inbox: &tower_webhook::inbox::PostgresInbox, queue: &str) {
    use tower_webhook::store::postgres::sqlx;
    let _ = sqlx::query("DELETE FROM webhook_inbox_jobs WHERE queue = $1")
        .bind(queue)
        .execute(inbox.pool())
        .await;
}

/// A receiver killed with SIGKILL holding a running job on PostgreSQL: another receiver
/// takes the job back within two to three heartbeats (10 to 15 s with the default 5 s),
/// not the 50 s of apalis-postgres's own default.
async fn postgres_dead_workers_jobs_come_back_within_three_heartbeats() {
    let queue = format!("recover-{}-{}", std::process::id(), unique_suffix());
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let env = vec![
        ("WEBHOOK_INBOX", "postgres".to_owned()),
        ("DATABASE_URL", common::database_url()),
        ("WEBHOOK_INBOX_QUEUE", queue.clone()),
        ("BIND", addr.to_string()),
        ("HANDLER_DELAY_MS", "600000".to_owned()),
        ("HANDLER_FAIL_RATE", "0".to_owned()),
    ];
    let runs = Runs::default();
    let id = format!("recover-{}-{}", std::process::id(), unique_suffix());
    let first = Receiver::start(&env, &runs);
    deliver_one(addr, &id).await;
    assert!(started(&runs, &id, 1, Duration::from_secs(30)).await);
    first.kill();
    let killed = Instant::now();
    let second = Receiver::start(&env, &runs);
    let inbox = tower_webhook::inbox::PostgresInbox::connect(&common::database_url())
        .await
        .unwrap()
        .with_queue(&queue);
    let mut back = None;
    while killed.elapsed() < Duration::from_secs(40) {
        if inbox.counts().await.unwrap().running == 0 {
            back = Some(killed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    second.kill();
    remove_queue(&inbox, &queue).await;
    let back = back.expect("the dead receiver's job came back");
    println!(
        "a SIGKILLed receiver's job came back after {:.1} s",
        back.as_secs_f64()
    );
    assert!(back <= Duration::from_secs(16), "{back:?}");
}

/// The soak: a retrying sender of [`SOAK_DELIVERIES`] over two receivers on one PostgreSQL
/// queue, `Tx` handlers, each receiver killed (SIGKILL) once mid-run and PostgreSQL itself stopped
/// with `-m immediate` and started again twice. Every acknowledged delivery handled, its
/// `Tx` row exactly once, none dead-lettered. It stops the shared server, so it is not run
/// by `cargo test` (CI runs suites side by side on one server): run it alone with
///
///     cargo test --all-features --test crash -- --ignored soak
async fn postgres_soak_through_kills_and_a_database_restart() {
    let queue = format!("soak-{}-{}", std::process::id(), unique_suffix());
    let env = vec![
        ("WEBHOOK_INBOX", "postgres".to_owned()),
        ("DATABASE_URL", common::database_url()),
        ("WEBHOOK_INBOX_QUEUE", queue.clone()),
        ("HANDLER_EFFECT", "tx".to_owned()),
        ("HANDLER_DELAY_MS", "20".to_owned()),
    ];
    let free = || {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let addrs = [free(), free()];
    let runs = Runs::default();
    let with_bind = |addr: std::net::SocketAddr| {
        let mut env = env.clone();
        env.push(("BIND", addr.to_string()));
        env
    };
    let receivers: Arc<Mutex<[Option<Receiver>; 2]>> = Arc::new(Mutex::new([
        Some(Receiver::start(&with_bind(addrs[0]), &runs)),
        Some(Receiver::start(&with_bind(addrs[1]), &runs)),
    ]));
    let prefix = format!("soak-{}-{}-", std::process::id(), unique_suffix());
    let ids: Vec<String> = (0..SOAK_DELIVERIES)
        .map(|n| format!("{prefix}{n}"))
        .collect();
    let started = Instant::now();
    let Sending {
        senders,
        acknowledged,
        attempts,
    } = send_retrying(&ids, &addrs, 0);
    // The chaos, a few seconds apart: a receiver killed and restarted, the database stopped
    // at once and started again, the other receiver, the database again.
    let kill = |which: usize| {
        let old = receivers.lock().unwrap()[which].take();
        if let Some(old) = old {
            old.kill();
        }
        receivers.lock().unwrap()[which] = Some(Receiver::start(&with_bind(addrs[which]), &runs));
    };
    tokio::time::sleep(Duration::from_secs(4)).await;
    kill(0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    restart_postgres_immediately().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    kill(1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    restart_postgres_immediately().await;
    for sender in senders {
        tokio::time::timeout(Duration::from_secs(600), sender)
            .await
            .expect("every delivery acknowledged within 10 minutes")
            .unwrap();
    }
    let sent_in = started.elapsed();
    let acknowledged: HashSet<String> = acknowledged.lock().unwrap().clone();
    let effects = Effects::Postgres;
    let lost = unhandled(&acknowledged, &runs, Some(&effects), &prefix).await;
    let rows = effects.rows(&prefix).await;
    let inbox = tower_webhook::inbox::PostgresInbox::connect(&common::database_url())
        .await
        .unwrap()
        .with_queue(&queue);
    let counts = inbox.counts().await.unwrap();
    for receiver in receivers.lock().unwrap().iter_mut() {
        if let Some(receiver) = receiver.take() {
            receiver.kill();
        }
    }
    let twice = rows.values().filter(|n| **n >= 2).count();
    println!(
        "soak (postgres): {SOAK_DELIVERIES} deliveries in {sent_in:.1?}, {} acknowledged, {} \
         lost, {} rows in demo_effects, {twice} ids with two or more, {} send attempts; \
         the queue: {counts:?}; 2 SIGKILLs, 2 PostgreSQL stops (-m immediate)",
        acknowledged.len(),
        lost.len(),
        rows.values().sum::<i64>(),
        attempts.load(std::sync::atomic::Ordering::Relaxed),
    );
    remove_rows(inbox.pool(), &queue, &prefix).await;
    assert_eq!(acknowledged.len(), SOAK_DELIVERIES);
    assert!(
        lost.is_empty(),
        "{} lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert_eq!(twice, 0, "done twice");
    assert_eq!(rows.len(), SOAK_DELIVERIES, "a row for every delivery");
    assert_eq!(counts.dead, 0, "dead-lettered by the chaos: {counts:?}");
}

/// Deletes the jobs of `queue` and the `demo_effects` rows of ids starting with `prefix`.
async fn remove_rows(
    pool: &tower_webhook::store::postgres::sqlx::PgPool,
    queue: &str,
    prefix: &str,
) {
    use tower_webhook::store::postgres::sqlx;
    let _ = sqlx::query("DELETE FROM webhook_inbox_jobs WHERE queue = $1")
        .bind(queue)
        .execute(pool)
        .await;
    let _ = sqlx::query("DELETE FROM demo_effects WHERE position($1 in event_id) = 1")
        .bind(prefix)
        .execute(pool)
        .await;
}

/// Deliveries of the soak.
const SOAK_DELIVERIES: usize = 3_000;

/// Stops the local PostgreSQL cluster at once (`-m immediate`: no checkpoint, every
/// connection cut) and starts it again.
async fn restart_postgres_immediately() {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("a Debian PostgreSQL cluster")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .next()
        .expect("a PostgreSQL version");
    let ctl = |args: &[&str]| {
        let status = Command::new("pg_ctlcluster")
            .arg("--skip-systemctl-redirect")
            .arg(&version)
            .arg("main")
            .args(args)
            .status()
            .expect("pg_ctlcluster runs");
        assert!(status.success(), "pg_ctlcluster {args:?}: {status}");
    };
    ctl(&["stop", "-m", "immediate"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    ctl(&["start"]);
    println!("soak: PostgreSQL stopped (-m immediate) and started again");
}

fn main() -> std::process::ExitCode {
    let reachable = tokio::runtime::Runtime::new().unwrap().block_on(async {
        tower_webhook::inbox::PostgresInbox::connect(&common::database_url())
            .await
            .map(drop)
            .map_err(|err| err.to_string())
    });
    let mut trials = vec![
        common::trial("sqlite_survives_sigkill", sqlite_survives_sigkill),
        common::trial("sqlite_poison_job_is_dead_lettered", || {
            sqlite_poison_job_is_dead_lettered(Death::Killed)
        }),
        common::trial(
            "sqlite_a_job_that_aborts_its_process_is_dead_lettered",
            || sqlite_poison_job_is_dead_lettered(Death::Aborts),
        ),
        common::trial("sqlite_inline_tx_effects_exactly_once", || {
            sqlite_tx_effects_exactly_once(false)
        }),
        common::trial("sqlite_inbox_tx_effects_exactly_once", || {
            sqlite_tx_effects_exactly_once(true)
        }),
    ];
    trials.extend(common::needing(
        "PostgreSQL",
        "DATABASE_URL",
        &common::database_url(),
        reachable,
        vec![
            common::trial("postgres_survives_sigkill", postgres_survives_sigkill),
            common::trial("postgres_poison_job_is_dead_lettered", || {
                postgres_poison_job_is_dead_lettered(Death::Killed)
            }),
            common::trial(
                "postgres_a_job_that_aborts_its_process_is_dead_lettered",
                || postgres_poison_job_is_dead_lettered(Death::Aborts),
            ),
            common::trial(
                "postgres_dead_workers_jobs_come_back_within_three_heartbeats",
                postgres_dead_workers_jobs_come_back_within_three_heartbeats,
            ),
            common::trial("postgres_inline_tx_effects_exactly_once", || {
                postgres_tx_effects_exactly_once(false)
            }),
            common::trial("postgres_inbox_tx_effects_exactly_once", || {
                postgres_tx_effects_exactly_once(true)
            }),
            // It stops the shared server: run alone, with `-- --ignored soak`.
            common::trial(
                "postgres_soak_through_kills_and_a_database_restart",
                postgres_soak_through_kills_and_a_database_restart,
            )
            .with_ignored_flag(true),
        ],
    ));
    common::run(trials)
}
