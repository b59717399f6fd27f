//! The inbox: acknowledge a delivery once it is stored, and handle it in durable workers.
//!
//! Senders give a delivery a few seconds (Svix 15) and retry a slow answer. A handler that
//! takes longer than that is cancelled on every attempt and never finishes; one that hands
//! the work to `tokio::spawn` and answers 2xx loses it when the process dies. The inbox is
//! the third way, the one the senders recommend: **acknowledge fast, work durably**.
//!
//! With [`VerifyWebhookLayer::with_inbox`](crate::VerifyWebhookLayer::with_inbox) the layer
//! verifies and identifies each delivery as always, then writes it, with its dedup mark, to a
//! job queue in one transaction, and answers:
//!
//! | answer | when | the sender |
//! | --- | --- | --- |
//! | `202 Accepted` | the delivery is committed to the queue | stops |
//! | `200 OK` + `webhook-duplicate: true` | a copy of a delivery queued within the dedup window | stops |
//! | `429` + `Retry-After` | the queue holds [`with_max_queued`](SqliteInbox::with_max_queued) jobs already | slows down, retries |
//! | `503` + `Retry-After` | the write failed or took longer than the store timeout | retries |
//! | `400`, `413` | as without an inbox: forged or malformed | drops it |
//!
//! The inner service is not called: the layer answers every delivery itself. Workers
//! ([`SqliteInbox::worker`], [`PostgresInbox::worker`]) take the jobs and run your handler
//! with the same [`Event`](crate::Event) a handler sees inline, and a [`Job`] (the attempt number, the
//! stored headers). `Ok` finishes the job; an error or a panic retries it after a
//! [backoff](RetryPolicy); after the last attempt the job is dead-lettered, kept until you
//! [replay](SqliteInbox::replay) it. A body that does not deserialize into the handler's `T`
//! is dead-lettered at once: no retry can fix it. The worker does not check the timestamp
//! again: the delivery was verified at the door, and a retry may run hours later.
//!
//! A worker killed mid-job (SIGKILL, a lost machine) loses nothing: its jobs are taken again
//! once its heartbeat lapses (twice the [heartbeat](SqliteInbox::with_heartbeat), 5 s by
//! default), a running one as a failed attempt retried after its backoff, so a handler may
//! run more than once for one delivery, as at-least-once delivery allows. A job whose
//! worker died during its last attempt is dead-lettered ("its worker died during the last
//! attempt"), not run again. Each attempt has a deadline
//! ([`Worker::attempt_timeout`], 5 minutes by default).
//!
//! The queue is [apalis](https://docs.rs/apalis-core)'s, on SQLite ([`SqliteInbox`], feature
//! `inbox-sqlite`: one file, no service) or PostgreSQL ([`PostgresInbox`], feature
//! `inbox-postgres`: any number of receivers and workers on any number of machines).
//!
//! ```no_run
//! use axum::{routing::post, Router};
//! use tower_webhook::inbox::{Job, SqliteInbox};
//! use tower_webhook::{scheme::StandardWebhooks, Event, VerifyWebhookLayer};
//!
//! #[derive(serde::Deserialize)]
//! struct UserCreated {
//!     r#type: String,
//! }
//!
//! async fn handle(event: Event<UserCreated>, job: Job) -> Result<(), std::io::Error> {
//!     println!("{} ({}), attempt {}", event.id(), event.payload().r#type, job.attempt());
//!     Ok(())
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let inbox = SqliteInbox::open("webhooks.db").await?;
//! let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?)
//!     .with_inbox(inbox.clone());
//! let app: Router = Router::new()
//!     .route("/webhooks", post(tower_webhook::inbox::accepted))
//!     .layer(layer);
//! tokio::spawn(inbox.worker(handle).concurrency(8).run());
//! # Ok(())
//! # }
//! ```

mod job;
#[macro_use]
mod shared;
mod worker;

#[cfg(feature = "inbox-postgres")]
mod postgres;
#[cfg(feature = "inbox-sqlite")]
mod sqlite;

#[cfg(feature = "inbox-postgres")]
pub use self::postgres::PostgresInbox;
#[cfg(feature = "inbox-sqlite")]
pub use self::sqlite::SqliteInbox;
pub use job::{Counts, DeadLetter, Job, Payload};
pub use worker::{BoxError, Handler, InboxError, Worker, DEFAULT_ATTEMPT_TIMEOUT};

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

/// A handler for the route an inbox layer wraps: `202 Accepted`. The layer answers every
/// delivery before it, so it runs only where a request reaches the route without the layer.
///
/// ```
/// use axum::{routing::post, Router};
///
/// let app: Router = Router::new().route("/webhooks", post(tower_webhook::inbox::accepted));
/// ```
#[allow(clippy::unused_async)] // an axum handler is an async fn
pub async fn accepted() -> StatusCode {
    StatusCode::ACCEPTED
}

/// When a failed job runs again, and how many times it runs in all.
///
/// The delay before attempt `n + 1` is `first × factor^(n-1)`, capped at `cap`. The default,
/// close to the schedule Svix retries on, is 8 attempts: at once, then after 5 s, 30 s, 3 min,
/// 18 min, 1.8 h, 10 h and 10 h (about a day in all).
///
/// ```
/// use std::time::Duration;
/// use tower_webhook::inbox::RetryPolicy;
///
/// let policy = RetryPolicy::default().with_attempts(5);
/// assert_eq!(policy.delay_after(1), Duration::from_secs(5));
/// assert_eq!(policy.delay_after(2), Duration::from_secs(30));
/// let quick = RetryPolicy::exponential(Duration::from_secs(1), 2, Duration::from_secs(8));
/// assert_eq!(quick.delay_after(10), Duration::from_secs(8));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    attempts: u32,
    first: Duration,
    factor: u32,
    cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 8,
            first: Duration::from_secs(5),
            factor: 6,
            cap: Duration::from_secs(10 * 60 * 60),
        }
    }
}

impl RetryPolicy {
    /// Delays that start at `first` and grow `factor` times each attempt, up to `cap`; 8
    /// attempts.
    pub fn exponential(first: Duration, factor: u32, cap: Duration) -> Self {
        Self {
            first,
            factor: factor.max(1),
            cap,
            ..Self::default()
        }
    }

    /// Runs a job at most `attempts` times (at least once) before it is dead-lettered.
    #[must_use]
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// How many times a job runs before it is dead-lettered.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// How long a job waits after its attempt `attempt` (from 1) failed.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let grown = self
            .factor
            .checked_pow(attempt.saturating_sub(1))
            .and_then(|factor| self.first.checked_mul(factor));
        grown.map_or(self.cap, |delay| delay.min(self.cap))
    }
}

/// The settings every inbox shares: its queue, bound, retries and heartbeat.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) queue: Arc<str>,
    pub(crate) max_queued: u64,
    pub(crate) retry: RetryPolicy,
    pub(crate) heartbeat: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            queue: Arc::from(DEFAULT_QUEUE),
            max_queued: DEFAULT_MAX_QUEUED,
            retry: RetryPolicy::default(),
            heartbeat: DEFAULT_HEARTBEAT,
        }
    }
}

/// The queue an inbox writes to unless told otherwise.
pub const DEFAULT_QUEUE: &str = "tower-webhook";
/// How many jobs waiting or running an inbox holds before it answers 429.
pub const DEFAULT_MAX_QUEUED: u64 = 100_000;
/// How often a worker tells the queue it is alive; one silent for twice that is taken for
/// dead and its jobs run again.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

/// Where the layer hands verified deliveries: [`SqliteInbox`] or [`PostgresInbox`].
///
/// Sealed: the layer relies on the write being durable and atomic with its dedup mark.
pub trait Inbox: sealed::Sealed + Clone + Send + Sync + 'static {}

pub(crate) mod sealed {
    use std::sync::Arc;

    pub trait Sealed {
        fn door(&self) -> Arc<dyn crate::door::Door>;
    }
}
