//! What [`SqliteInbox`](super::SqliteInbox) and [`PostgresInbox`](super::PostgresInbox)
//! share, written once: their settings, operations and trait impls differ only in the SQL
//! and the apalis storage, which each backend's module names.
//!
//! Both macros expect, in the module that invokes them: the statements `COUNTS`, `DEAD`,
//! `REPLAY` and `BUMP_DEPTH`, a `store_error` for sqlx's errors, and the inherent methods
//! `enqueue(Stored, Duration)`, `defer_job(String, Duration)`, `start_job(String, &str)`,
//! `sweep_jobs(String, Duration)` and `unfetch_jobs(String)`.

use std::time::Duration;

use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::Task;

use super::job::{Counts, Stored};
use super::Settings;
use crate::door::Enqueued;
use crate::store::{Marked, StoreError, StoreErrorKind};

/// The job that carries `stored`, with the attempts of `settings`' retry policy.
pub(crate) fn task(stored: &Stored, settings: &Settings) -> Result<Task<Vec<u8>>, StoreError> {
    let job =
        serde_json::to_vec(stored).map_err(|err| StoreError::new(StoreErrorKind::Backend, err))?;
    let attempts = usize::try_from(settings.retry.attempts()).unwrap_or(usize::MAX);
    Ok(TaskBuilder::new(job).max_attempts(attempts).build())
}

impl From<Marked> for Enqueued {
    /// A delivery whose key was marked already: a duplicate, or in flight where an inline
    /// layer sharing the table holds a claim on it.
    fn from(marked: Marked) -> Self {
        match marked {
            Marked::Fresh => Self::Accepted,
            Marked::Duplicate => Self::Duplicate,
            Marked::InFlight => Self::InFlight,
        }
    }
}

/// What becomes of a job held by a worker whose heartbeat lapsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Orphan {
    /// Fetched but never started: back to the queue as it was.
    Unfetch,
    /// Running on its last attempt: dead-lettered, with the reason.
    Dead(String),
    /// Running with attempts left: a failed attempt, run again after its backoff.
    Retry { reason: String, delay: Duration },
}

impl Orphan {
    /// The fate of a job in `status` that ran `attempts` times before (of `max`).
    pub(crate) fn of(status: &str, attempts: i64, max: i64, retry: super::RetryPolicy) -> Self {
        if status != "Running" {
            return Self::Unfetch;
        }
        let attempt = attempts.saturating_add(1);
        if attempt >= max {
            return Self::Dead(result(super::worker::WORKER_DIED));
        }
        Self::Retry {
            reason: result(&format!("its worker died during attempt {attempt}")),
            delay: retry.delay_after(u32::try_from(attempt).unwrap_or(u32::MAX)),
        }
    }
}

/// `text` as apalis stores a failed attempt's result.
fn result(text: &str) -> String {
    serde_json::json!({ "Err": text }).to_string()
}

/// What apalis writes on a job fetched but not started when its worker stops, with one
/// attempt added: the sweep takes the attempt back.
pub(crate) const ABANDONED: &str = r#"{"Err": "Re-enqueued due to worker shutdown"}"#;

/// `Counts` from the five counts of `COUNTS`.
pub(crate) fn counts((queued, running, failed, dead, done): (i64, i64, i64, i64, i64)) -> Counts {
    let n = |count: i64| u64::try_from(count).unwrap_or(0);
    Counts {
        queued: n(queued),
        running: n(running),
        failed: n(failed),
        dead: n(dead),
        done: n(done),
    }
}

/// A heartbeat of at least a second: the queues count in whole seconds.
pub(crate) fn heartbeat(every: Duration) -> Duration {
    every.max(Duration::from_secs(1))
}

/// The builder and operations of an inbox on the pool type `$pool`, inside its `impl`.
macro_rules! inbox_methods {
    ($pool:ty) => {
        /// Writes to and works on the queue `name` (default
        /// [`DEFAULT_QUEUE`](super::DEFAULT_QUEUE)): one database can hold an inbox per
        /// sender, each with its own workers.
        #[must_use]
        pub fn with_queue(mut self, name: &str) -> Self {
            self.settings.queue = ::std::sync::Arc::from(name);
            self
        }

        /// Answers 429 with `Retry-After` while the queue holds `jobs` waiting or running
        /// already (default [`DEFAULT_MAX_QUEUED`](super::DEFAULT_MAX_QUEUED)): it never holds
        /// more, however many deliveries arrive at once, from this process or from others on
        /// the same database (the check is part of each delivery's transaction).
        #[must_use]
        pub fn with_max_queued(mut self, jobs: u64) -> Self {
            self.settings.max_queued = jobs;
            self
        }

        /// How failed jobs are retried. The number of attempts is written with each job as
        /// it is queued.
        #[must_use]
        pub fn with_retry(mut self, policy: $crate::inbox::RetryPolicy) -> Self {
            self.settings.retry = policy;
            self
        }

        /// How often workers tell the queue they are alive (default
        /// [`DEFAULT_HEARTBEAT`](super::DEFAULT_HEARTBEAT), at least a second). A worker
        /// silent for twice that is taken for dead, and its jobs run again.
        #[must_use]
        pub fn with_heartbeat(mut self, every: ::std::time::Duration) -> Self {
            self.settings.heartbeat = super::shared::heartbeat(every);
            self
        }

        /// The pool the inbox runs on.
        pub fn pool(&self) -> &$pool {
            &self.pool
        }

        /// A worker that runs `handler` on this inbox's jobs. See
        /// [`Worker`](super::Worker).
        pub fn worker<H, A>(&self, handler: H) -> super::Worker<Self, H, A>
        where
            H: super::Handler<A>,
            A: 'static,
        {
            super::Worker::new(self.clone(), handler)
        }

        /// How many jobs the queue holds, by state.
        pub async fn counts(&self) -> Result<super::Counts, $crate::store::StoreError> {
            let counts = sqlx::query_as(COUNTS)
                .bind(&*self.settings.queue)
                .fetch_one(&self.pool)
                .await
                .map_err(store_error)?;
            Ok(super::shared::counts(counts))
        }

        /// The dead-lettered jobs, the most recent first, at most `limit`.
        pub async fn dead_letters(
            &self,
            limit: u32,
        ) -> Result<Vec<super::DeadLetter>, $crate::store::StoreError> {
            let rows: Vec<(String, Vec<u8>, i64, Option<String>)> = sqlx::query_as(DEAD)
                .bind(&*self.settings.queue)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(store_error)?;
            Ok(rows
                .into_iter()
                .map(|(id, job, attempts, last)| {
                    super::DeadLetter::from_row(id, &job, attempts, last)
                })
                .collect())
        }

        /// Queues the dead-lettered job `task_id` again, with all its attempts; whether
        /// there was such a job.
        pub async fn replay(&self, task_id: &str) -> Result<bool, $crate::store::StoreError> {
            Ok(self.replay_where(Some(task_id)).await? == 1)
        }

        /// Queues every dead-lettered job again; how many.
        pub async fn replay_all(&self) -> Result<u64, $crate::store::StoreError> {
            self.replay_where(None).await
        }

        async fn replay_where(
            &self,
            task_id: Option<&str>,
        ) -> Result<u64, $crate::store::StoreError> {
            let done = sqlx::query(REPLAY)
                .bind(&*self.settings.queue)
                .bind(task_id)
                .execute(&self.pool)
                .await
                .map_err(store_error)?
                .rows_affected();
            // The replayed jobs count against the bound as new ones do.
            sqlx::query(BUMP_DEPTH)
                .bind(&*self.settings.queue)
                .bind(i64::try_from(done).unwrap_or(i64::MAX))
                .execute(&self.pool)
                .await
                .map_err(store_error)?;
            Ok(done)
        }
    };
}

/// The traits of the inbox `$inbox`, whose apalis storage is `$storage` with `$config`.
macro_rules! inbox_impls {
    ($inbox:ident, $storage:ident, $config:ty) => {
        impl ::std::fmt::Debug for $inbox {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($inbox))
                    .field("queue", &self.settings.queue)
                    .field("max_queued", &self.settings.max_queued)
                    .finish_non_exhaustive()
            }
        }

        impl super::Inbox for $inbox {}

        impl super::sealed::Sealed for $inbox {
            fn door(&self) -> ::std::sync::Arc<dyn $crate::door::Door> {
                ::std::sync::Arc::new(self.clone())
            }
        }

        impl $crate::door::Door for $inbox {
            fn enqueue(
                &self,
                event: &$crate::Event,
                key: &str,
                layer: &str,
                headers: &::http::HeaderMap,
                window: ::std::time::Duration,
            ) -> $crate::store::BoxFuture<Result<$crate::door::Enqueued, $crate::store::StoreError>>
            {
                let stored = super::job::Stored::new(event, key, layer, headers);
                let inbox = self.clone();
                Box::pin(async move { inbox.enqueue(stored, window).await })
            }
        }

        impl super::worker::Queue for $inbox {
            fn defer(
                &self,
                task_id: String,
                delay: ::std::time::Duration,
            ) -> $crate::store::BoxFuture<Result<(), $crate::store::StoreError>> {
                let inbox = self.clone();
                Box::pin(async move { inbox.defer_job(task_id, delay).await })
            }

            fn start(
                &self,
                task_id: String,
                me: ::std::sync::Arc<str>,
            ) -> $crate::store::BoxFuture<Result<bool, $crate::store::StoreError>> {
                let inbox = self.clone();
                Box::pin(async move { inbox.start_job(task_id, &me).await })
            }

            fn retry(&self) -> super::RetryPolicy {
                self.settings.retry
            }

            fn heartbeat(&self) -> ::std::time::Duration {
                self.settings.heartbeat
            }

            fn sweep(
                &self,
                me: String,
                dead_after: ::std::time::Duration,
            ) -> $crate::store::BoxFuture<Result<u64, $crate::store::StoreError>> {
                let inbox = self.clone();
                Box::pin(async move { inbox.sweep_jobs(me, dead_after).await })
            }

            fn unfetch(
                &self,
                me: String,
            ) -> $crate::store::BoxFuture<Result<u64, $crate::store::StoreError>> {
                let inbox = self.clone();
                Box::pin(async move { inbox.unfetch_jobs(me).await })
            }

            fn run<H, A>(
                &self,
                name: String,
                batch: usize,
                service: super::worker::Adapter<H, A, Self>,
                signal: $crate::store::BoxFuture<()>,
            ) -> $crate::store::BoxFuture<Result<(), super::InboxError>>
            where
                H: super::Handler<A>,
                A: 'static,
            {
                let config = <$config as Default>::default()
                    .queue(&*self.settings.queue)
                    .batch_size(batch)
                    .heartbeat_interval(self.settings.heartbeat)
                    // The worker's own sweep takes a silent worker's jobs back after two
                    // heartbeats, with their attempt counted and their backoff; apalis's,
                    // which re-runs them at once whatever their attempts, only after three.
                    .missed_heartbeats(3);
                let backend = $storage::<super::job::Stored>::new(&self.pool).with_config(config);
                let worker = ::apalis_core::worker::builder::WorkerBuilder::new(name)
                    .backend(backend)
                    .build(service);
                Box::pin(async move {
                    worker
                        .run_until(async move {
                            signal.await;
                            Ok::<(), ::apalis_core::error::WorkerError>(())
                        })
                        .await
                        .map_err(super::InboxError::new)
                })
            }
        }
    };
}
