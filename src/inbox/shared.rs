//! What the dialects share of the queue's contents: the job a delivery becomes, what a
//! dead worker's job becomes, the markers apalis writes, and the counts.

use std::time::Duration;

use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::metadata::MetadataStore;
use apalis_core::task::Task;

use super::error::{InboxError, InboxErrorKind};
use super::job::{Counts, StoredDelivery};
use super::Settings;
use crate::door::Enqueued;
use crate::store::Marked;

/// The job that carries `stored`, with the attempts of `settings`' retry policy.
pub(crate) fn task(
    stored: &StoredDelivery,
    settings: &Settings,
) -> Result<Task<Vec<u8>>, InboxError> {
    let job =
        serde_json::to_vec(stored).map_err(|err| InboxError::new(InboxErrorKind::Database, err))?;
    let attempts = usize::try_from(settings.retry.attempts()).unwrap_or(usize::MAX);
    Ok(TaskBuilder::new(job)
        .max_attempts(attempts)
        .with_metadata(metadata(stored)?)
        .build())
}

/// What a listing of the inbox shows of a delivery, beside its job in apalis's metadata
/// (`webhook.<field>`): read and indexed there without parsing the job, whose body may be
/// large (and which PostgreSQL would otherwise parse at every change of the job's state,
/// for an index on it).
fn metadata(stored: &StoredDelivery) -> Result<MetadataStore, InboxError> {
    let received_at = stored.received_at.to_string();
    let fields = [
        ("id", Some(stored.id.as_str())),
        ("layer", Some(stored.layer.as_str())),
        ("event_type", stored.event_type.as_deref()),
        ("tenant", stored.tenant.as_deref()),
        ("received_at", Some(received_at.as_str())),
    ];
    let mut metadata = MetadataStore::default();
    for (field, value) in fields {
        if let Some(value) = value {
            metadata
                .insert(format!("{METADATA_PREFIX}{field}"), value)
                .map_err(|err| InboxError::new(InboxErrorKind::Database, err))?;
        }
    }
    Ok(metadata)
}

/// What the keys of a delivery's fields in its job's metadata start with.
pub(crate) const METADATA_PREFIX: &str = "webhook.";

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

/// A dead letter's row: id, job, attempts, last result.
pub(crate) type DeadRow = (String, Vec<u8>, i64, Option<String>);

/// A job held by a worker whose heartbeat lapsed.
#[derive(Debug, Clone)]
pub(crate) struct OrphanRow {
    pub(crate) id: String,
    pub(crate) status: String,
    pub(crate) attempts: i64,
    pub(crate) max_attempts: i64,
    /// The dead worker.
    pub(crate) holder: String,
}

/// A row of the dialects' `orphans` statement: id, status, attempts, max attempts, holder.
pub(crate) type OrphanTuple = (String, String, i64, i64, String);

impl From<OrphanTuple> for OrphanRow {
    fn from((id, status, attempts, max_attempts, holder): OrphanTuple) -> Self {
        Self {
            id,
            status,
            attempts,
            max_attempts,
            holder,
        }
    }
}

/// After how many silent heartbeats apalis takes a worker's jobs back itself. The worker's
/// own sweep takes them back after two, with their attempt counted and their backoff;
/// apalis's, which re-runs them at once whatever their attempts, stays as a backstop.
pub(crate) const MISSED_HEARTBEATS: usize = 3;

/// A worker's failure, as apalis reports it.
pub(crate) fn worker_error(err: apalis_core::error::WorkerError) -> InboxError {
    InboxError::new(InboxErrorKind::Worker, err)
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
        Self::ended(
            attempts,
            max,
            retry,
            super::attempt::WORKER_DIED,
            "its worker died during attempt",
        )
    }

    /// The fate of a running job whose attempt its live worker lost (it runs no attempt of
    /// it), after `attempts` attempts before (of `max`).
    pub(crate) fn lost(attempts: i64, max: i64, retry: super::RetryPolicy) -> Self {
        Self::ended(
            attempts,
            max,
            retry,
            "its worker lost its last attempt (its start or end was not written)",
            "its worker lost attempt",
        )
    }

    /// An attempt that ended without its end written: dead past the last (`last` says why),
    /// else a failure (`during` and its number say why) run again after its backoff.
    fn ended(attempts: i64, max: i64, retry: super::RetryPolicy, last: &str, during: &str) -> Self {
        let attempt = attempts.saturating_add(1);
        if attempt >= max {
            return Self::Dead(result(last));
        }
        Self::Retry {
            reason: result(&format!("{during} {attempt}")),
            delay: retry.delay_after(u32::try_from(attempt).unwrap_or(u32::MAX)),
        }
    }
}

/// `text` as apalis stores a failed attempt's result.
pub(crate) fn result(text: &str) -> String {
    serde_json::json!({ "Err": text }).to_string()
}

/// What apalis writes on a job fetched but not started when its worker stops, with one
/// attempt added: the sweep takes the attempt back.
pub(crate) const ABANDONED: &str = r#"{"Err": "Re-enqueued due to worker shutdown"}"#;

/// `Counts` from the five counts of a dialect's `counts` statement.
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

/// When a worker of `settings` fetches: as soon as `wakeups` changes (this process's door
/// committed jobs), and every poll interval.
pub(crate) fn strategy(
    settings: &super::Settings,
    wakeups: tokio::sync::watch::Receiver<u64>,
) -> apalis_core::backend::ext::poll_strategy::Strategy {
    let committed = futures_util::stream::unfold(wakeups, |mut wakeups| async move {
        wakeups.changed().await.ok()?;
        Some(((), wakeups))
    });
    apalis_core::backend::ext::poll_strategy::Strategy::new()
        .stream(Box::pin(committed))
        .interval(settings.poll_interval)
}
