//! The inbox in four scenes, on an SQLite file in a temporary directory (no service needed):
//!
//!     cargo run --example inbox --features inbox-sqlite,test-util
//!
//! 1. Deliveries are answered in milliseconds while the handler takes seconds.
//! 2. A handler that fails once is retried, and succeeds.
//! 3. A handler that always fails is dead-lettered; the dead letter is replayed to a fixed
//!    handler.
//! 4. A worker stopped mid-job (as a killed process) leaves its job to a new worker.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing_subscriber::EnvFilter;

use axum::routing::post;
use axum::Router;
use tower::ServiceExt;
use tower_webhook::inbox::{accepted, Job, RetryPolicy, SqliteInbox};
use tower_webhook::scheme::StandardWebhooks;
use tower_webhook::testkit::Delivery;
use tower_webhook::{Event, VerifyWebhookLayer};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Warnings only beside the scenes (a failed attempt, a dead letter); RUST_LOG=info shows
    // a line for every answer and attempt.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let dir = std::env::temp_dir().join(format!("tower-webhook-inbox-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("webhooks.db");
    // Quick retries for the demo: 1 s, then 2 s; 3 attempts.
    let retry = RetryPolicy::exponential(Duration::from_secs(1), 2, Duration::from_secs(2))
        .with_attempts(3);
    let inbox = SqliteInbox::open(&path)
        .await?
        .with_retry(retry)
        .with_heartbeat(Duration::from_secs(1));
    println!("inbox: {}\n", path.display());

    fast_answers(&inbox.clone().with_queue("slow")).await?;
    retried(&inbox.clone().with_queue("flaky")).await?;
    dead_lettered_and_replayed(&inbox.clone().with_queue("broken")).await?;
    worker_stopped_mid_job(&inbox.clone().with_queue("orphan")).await?;

    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// The app a sender talks to: verify, store, answer 202.
fn app(inbox: &SqliteInbox) -> Result<Router, Box<dyn std::error::Error>> {
    let layer = VerifyWebhookLayer::new(StandardWebhooks::new(SECRET)?).with_inbox(inbox.clone());
    Ok(Router::new()
        .route("/webhooks", post(accepted))
        .route_layer(layer))
}

/// Sends one signed delivery; prints and returns how long the answer took.
async fn send(app: &Router, id: &str) -> Result<Duration, Box<dyn std::error::Error>> {
    let request = Delivery::new(format!(r#"{{"type":"demo","id":"{id}"}}"#))
        .id(id)
        .uri("/webhooks")
        .request::<axum::body::Body>(&StandardWebhooks::new(SECRET)?)?;
    let started = Instant::now();
    let response = app.clone().oneshot(request).await?;
    let took = started.elapsed();
    println!("  sent {id}: answered {} in {took:.1?}", response.status());
    Ok(took)
}

async fn wait_until(mut done: impl FnMut() -> bool) {
    while !done() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn fast_answers(inbox: &SqliteInbox) -> Result<(), Box<dyn std::error::Error>> {
    println!("1. the handler takes 2 s; the sender hears back at once");
    let handled = Arc::new(AtomicU32::new(0));
    let worker = {
        let handled = Arc::clone(&handled);
        inbox.worker(move |event: Event| {
            let handled = Arc::clone(&handled);
            async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                println!("  handled event {} after 2 s of work", event.id());
                handled.fetch_add(1, Ordering::Relaxed);
                Ok::<_, String>(())
            }
        })
    };
    let running = tokio::spawn(worker.concurrency(3).run());
    let app = app(inbox)?;
    for n in 1..=3 {
        send(&app, &format!("msg_slow_{n}")).await?;
    }
    wait_until(|| handled.load(Ordering::Relaxed) == 3).await;
    running.abort();
    println!();
    Ok(())
}

async fn retried(inbox: &SqliteInbox) -> Result<(), Box<dyn std::error::Error>> {
    println!("2. the first attempt fails; the job runs again after its backoff");
    let handled = Arc::new(AtomicU32::new(0));
    let worker = {
        let handled = Arc::clone(&handled);
        inbox.worker(move |event: Event, job: Job| {
            let handled = Arc::clone(&handled);
            async move {
                if job.attempt() == 1 {
                    println!(
                        "  attempt 1 at {}: failing (the database is down, say)",
                        event.id()
                    );
                    return Err("database unavailable".to_owned());
                }
                println!(
                    "  attempt {} at {}: handled event {}",
                    job.attempt(),
                    event.id(),
                    event.id()
                );
                handled.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        })
    };
    let running = tokio::spawn(worker.run());
    send(&app(inbox)?, "msg_flaky").await?;
    wait_until(|| handled.load(Ordering::Relaxed) == 1).await;
    running.abort();
    println!();
    Ok(())
}

async fn dead_lettered_and_replayed(inbox: &SqliteInbox) -> Result<(), Box<dyn std::error::Error>> {
    println!("3. a handler that always fails: dead-lettered after 3 attempts, then replayed");
    let broken = inbox.worker(|event: Event, job: Job| async move {
        println!("  attempt {} at {}: failing", job.attempt(), event.id());
        Err::<(), _>("a bug in the handler")
    });
    let running = tokio::spawn(broken.run());
    send(&app(inbox)?, "msg_broken").await?;
    let dead = loop {
        let dead = inbox.dead_letters(10).await?;
        if !dead.is_empty() {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    running.abort();
    for letter in &dead {
        println!(
            "  dead letter: {} after {} attempts, last error {:?}",
            letter.id,
            letter.attempts,
            letter.last_error.as_deref().unwrap_or("-")
        );
    }
    println!("  counts: {:?}", inbox.counts().await?);
    println!(
        "  the bug is fixed; replaying {} dead letter(s)",
        inbox.replay_all().await?
    );
    let handled = Arc::new(AtomicU32::new(0));
    let fixed = {
        let handled = Arc::clone(&handled);
        inbox.worker(move |event: Event| {
            let handled = Arc::clone(&handled);
            async move {
                println!("  handled event {} (replayed)", event.id());
                handled.fetch_add(1, Ordering::Relaxed);
                Ok::<_, String>(())
            }
        })
    };
    let running = tokio::spawn(fixed.run());
    wait_until(|| handled.load(Ordering::Relaxed) == 1).await;
    running.abort();
    println!();
    Ok(())
}

async fn worker_stopped_mid_job(inbox: &SqliteInbox) -> Result<(), Box<dyn std::error::Error>> {
    println!("4. a worker dies mid-job; once the job's lease lapses, a new worker runs it");
    let started = Arc::new(AtomicU32::new(0));
    let stuck = {
        let started = Arc::clone(&started);
        inbox.worker(move |event: Event| {
            println!("  worker A took {} and hangs", event.id());
            started.fetch_add(1, Ordering::Relaxed);
            std::future::pending::<Result<(), String>>()
        })
    };
    let a = tokio::spawn(stuck.name("worker-a").run());
    send(&app(inbox)?, "msg_orphan").await?;
    wait_until(|| started.load(Ordering::Relaxed) == 1).await;
    a.abort();
    let stopped = Instant::now();
    println!("  worker A is gone (no shutdown; its lease is no longer renewed)");
    let handled = Arc::new(AtomicU32::new(0));
    let b = {
        let handled = Arc::clone(&handled);
        inbox.worker(move |event: Event, job: Job| {
            let handled = Arc::clone(&handled);
            async move {
                println!(
                    "  worker B: handled event {} (attempt {})",
                    event.id(),
                    job.attempt()
                );
                handled.fetch_add(1, Ordering::Relaxed);
                Ok::<_, String>(())
            }
        })
    };
    let b = tokio::spawn(b.name("worker-b").run());
    wait_until(|| handled.load(Ordering::Relaxed) == 1).await;
    println!(
        "  recovered {:.1?} after worker A stopped",
        stopped.elapsed()
    );
    b.abort();
    Ok(())
}
