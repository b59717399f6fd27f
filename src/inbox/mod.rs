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
//! Deliveries that arrive while a write is in flight share the next transaction (group
//! commit: one commit, one wait for the disk), each answered as if written alone; an idle
//! inbox writes a lone delivery at once. An idle worker is woken as soon as a job commits
//! (in its process; on PostgreSQL, in any), and otherwise looks every
//! [poll interval](Inbox::with_poll_interval).
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
//! What the inbox holds is there to be looked at: [`Inbox::jobs`] lists the jobs newest first
//! by state, layer, event type or event id (a page by key, as fast deep in a million jobs
//! as at the top), [`Inbox::job`] shows one with its stored headers, body and every attempt
//! (each recorded by the database as it starts and ends), [`Inbox::replay_matching`] and
//! [`Inbox::purge_done_before`] fix it. The [`console`](mod@console) (feature `console`) is
//! the page for them, and [`cli`](mod@cli) (feature `cli`) the `webhook-inbox` command line.
//!
//! One type serves both databases: [`SqliteInbox`] is [`Inbox`]`<`[`Sqlite`]`>` and
//! [`PostgresInbox`] is `Inbox<`[`Postgres`]`>`, so an app generic over the [`Dialect`] is
//! written once whichever database it runs on. Every operation reports an [`InboxError`].
//!
//! A worker killed mid-job (SIGKILL, a lost machine) loses nothing: each job a worker runs
//! is leased to it for twice the [heartbeat](SqliteInbox::with_heartbeat) (10 s by
//! default) and renewed while its attempt runs; a lease that lapses is taken back by any worker, the
//! cut-short run counted as a failed attempt and retried after its backoff, so a handler may
//! run more than once for one delivery, as at-least-once delivery allows. A job whose
//! worker died during its last attempt is dead-lettered ("its worker died during the last
//! attempt"), not run again. Each attempt has a deadline
//! ([`Worker::attempt_timeout`], 5 minutes by default).
//!
//! The queue is the inbox's own: its tables, migrated by version, and one lease state
//! machine written once over each database's statements, on SQLite ([`SqliteInbox`],
//! feature `inbox-sqlite`: one file, no service) or PostgreSQL ([`PostgresInbox`], feature
//! `inbox-postgres`: any number of receivers and workers on any number of machines, each
//! worker taking jobs with `FOR UPDATE SKIP LOCKED`).
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
//!     .route_layer(layer);
//! tokio::spawn(inbox.worker(handle).concurrency(8).run());
//! # Ok(())
//! # }
//! ```

mod accepted;
mod activity;
mod attempt;
mod browse;
#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod cli;
#[cfg(feature = "console")]
#[cfg_attr(docsrs, doc(cfg(feature = "console")))]
pub mod console;
mod dialect;
mod door;
mod ends;
mod error;
mod handler;
mod job;
mod lease;
mod meter;
mod queue;
mod read;
mod rows;
mod running;
mod schema;
mod settings;
mod sql;
#[cfg(any(feature = "cli", feature = "console"))]
mod text;
mod worker;

#[cfg(feature = "inbox-postgres")]
mod postgres;
#[cfg(feature = "inbox-sqlite")]
mod sqlite;

pub use accepted::accepted;
pub use attempt::DEFAULT_ATTEMPT_TIMEOUT;
pub use browse::{
    Activity, AttemptOutcome, AttemptRecord, JobDetail, JobFilter, JobPage, JobState, JobSummary,
    UnknownState, MAX_PAGE,
};
pub use dialect::Dialect;
pub use error::{InboxError, InboxErrorKind};
pub use handler::{BoxError, Handler};
pub use job::{Counts, DeadLetter, Job, Payload};
#[cfg(feature = "inbox-postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "inbox-postgres")))]
pub use postgres::{Postgres, PostgresInbox};
pub use queue::Inbox;
pub(crate) use settings::Settings;
pub use settings::{
    RetryPolicy, DEFAULT_HEARTBEAT, DEFAULT_MAX_QUEUED, DEFAULT_POLL_INTERVAL, DEFAULT_QUEUE,
};
#[cfg(feature = "inbox-sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "inbox-sqlite")))]
pub use sqlite::{Sqlite, SqliteInbox};
pub use worker::Worker;
