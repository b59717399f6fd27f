//! Looking at what an inbox holds: its jobs newest first, by state, layer, event type or
//! event id; one job with its stored delivery and every attempt; the activity of the last
//! hours; replaying the dead letters a filter matches and purging done jobs. What the
//! [console](crate::console) and the `webhook-inbox` command line show.
//!
//! Paging is by key (the job's id, a ULID, so by time of arrival): a page costs the same
//! whatever its depth in a table of millions.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Waiting for a worker, never tried.
    Queued,
    /// Taken by a worker.
    Running,
    /// Failed, and waiting for another attempt after its backoff.
    Retrying,
    /// Dead-lettered: out of attempts, or a body its handler's type does not fit. Kept
    /// until replayed.
    Dead,
    /// Handled.
    Done,
}

impl JobState {
    /// Every state, in the order of a job's life.
    pub const ALL: [Self; 5] = [
        Self::Queued,
        Self::Running,
        Self::Retrying,
        Self::Dead,
        Self::Done,
    ];

    /// Its name: `queued`, `running`, `retrying`, `dead`, `done`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Dead => "dead",
            Self::Done => "done",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of [`JobState::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownState(pub String);

impl fmt::Display for UnknownState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown job state {:?}: one of queued, running, retrying, dead, done",
            self.0
        )
    }
}

impl std::error::Error for UnknownState {}

impl FromStr for JobState {
    type Err = UnknownState;

    fn from_str(name: &str) -> Result<Self, UnknownState> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| UnknownState(name.to_owned()))
    }
}

/// Which jobs to list or replay: every condition set must hold. The default matches every
/// job.
///
/// ```
/// use tower_webhook::inbox::{JobFilter, JobState};
///
/// let failing_stripe = JobFilter::default()
///     .state(JobState::Dead)
///     .layer("stripe")
///     .event_type("invoice.paid");
/// # let _ = failing_stripe;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobFilter {
    /// The jobs in this state.
    pub state: Option<JobState>,
    /// The jobs of the layer of this name ([`VerifyWebhookLayer::with_name`](crate::VerifyWebhookLayer::with_name)).
    pub layer: Option<String>,
    /// The deliveries of this event type.
    pub event_type: Option<String>,
    /// The job of the delivery with this id (the one a sender's dashboard and a customer
    /// quote), or the job with this id: found by an index, however many jobs there are.
    pub event_id: Option<String>,
}

impl JobFilter {
    /// Only the jobs in `state`.
    #[must_use]
    pub fn state(mut self, state: JobState) -> Self {
        self.state = Some(state);
        self
    }

    /// Only the jobs of the layer named `layer`.
    #[must_use]
    pub fn layer(mut self, layer: impl Into<String>) -> Self {
        self.layer = Some(layer.into());
        self
    }

    /// Only the deliveries of `event_type`.
    #[must_use]
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }

    /// Only the delivery with the id `id` (or the job with that id).
    #[must_use]
    pub fn event_id(mut self, id: impl Into<String>) -> Self {
        self.event_id = Some(id.into());
        self
    }

    /// Empty texts are no condition: what a form left blank.
    pub(super) fn normalized(&self) -> Self {
        let set = |text: &Option<String>| {
            text.as_deref()
                .map(str::trim)
                .filter(|text| !text.is_empty())
                .map(str::to_owned)
        };
        Self {
            state: self.state,
            layer: set(&self.layer),
            event_type: set(&self.event_type),
            event_id: set(&self.event_id),
        }
    }
}

/// One job of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobSummary {
    /// The queue's id of the job: what [`Inbox::job`](super::Inbox::job) and [`Inbox::replay`](super::Inbox::replay) take.
    pub task_id: String,
    /// The delivery's id.
    pub event_id: String,
    /// The name of the layer that received it.
    pub layer: String,
    /// Its event type, where the sender says it.
    pub event_type: Option<String>,
    /// Its tenant, for a per-tenant layer.
    pub tenant: Option<String>,
    /// Where it is.
    pub state: JobState,
    /// How many times it ran (a run cut short by a crash counts).
    pub attempts: u32,
    /// How many attempts it gets.
    pub max_attempts: u32,
    /// When the layer received it.
    pub received_at: SystemTime,
    /// The last error its handler returned, as text.
    pub last_error: Option<String>,
}

/// A page of jobs, newest first, and where the next begins.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobPage {
    /// At most the limit asked for.
    pub jobs: Vec<JobSummary>,
    /// The cursor of the next (older) page: `None` on the last.
    pub next: Option<String>,
}

/// One job, whole: its delivery as stored and every attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobDetail {
    /// What a listing shows of it.
    pub summary: JobSummary,
    /// The scheme that verified it (`standard-webhooks`, `stripe`, ...).
    pub scheme: String,
    /// The delivery's headers as they arrived, but for those that carry a credential
    /// (`Authorization`, `Cookie`, a scheme's own token such as GitLab's), which are never
    /// stored.
    pub headers: Vec<(String, String)>,
    /// The body, as verified: byte for byte what the handler gets, so it still holds any
    /// secret the sender puts in it (see [`secret_fields`](Self::secret_fields)).
    pub body: Bytes,
    /// The fields of the body that hold the sender's secret (Microsoft Graph's
    /// `clientState`): the console and the command line show them as `[redacted]`.
    pub secret_fields: Vec<String>,
    /// Every attempt, the first first (a replay starts its count again at 1).
    pub attempts: Vec<AttemptRecord>,
}

/// What became of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    /// Still running (or its worker died and the job has not been taken back yet).
    Running,
    /// The handler finished it.
    Done,
    /// It failed; the job runs again.
    Failed,
    /// It failed, and the job was dead-lettered.
    Dead,
}

impl AttemptOutcome {
    /// Its name: `running`, `done`, `failed`, `dead`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }

    pub(super) fn of(name: &str) -> Self {
        match name {
            "done" => Self::Done,
            "failed" => Self::Failed,
            "dead" => Self::Dead,
            _ => Self::Running,
        }
    }
}

impl fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One attempt of a job, as the queue recorded it when the job started and ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttemptRecord {
    /// Its number, from 1.
    pub attempt: u32,
    /// The worker that ran it.
    pub worker: Option<String>,
    /// When it started.
    pub started_at: SystemTime,
    /// How long it ran: `None` while it runs.
    pub duration: Option<Duration>,
    /// What became of it.
    pub outcome: AttemptOutcome,
    /// The error it ended with.
    pub error: Option<String>,
}

/// What an inbox did over a span of time, in equal buckets, the oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Activity {
    /// The start of the first bucket.
    pub since: SystemTime,
    /// The length of each bucket.
    pub bucket: Duration,
    /// Deliveries accepted (jobs still in the table: purged ones are not counted).
    pub accepted: Vec<u64>,
    /// Attempts that finished their job.
    pub handled: Vec<u64>,
    /// Attempts that failed, the job to run again.
    pub failed: Vec<u64>,
    /// Attempts after which the job was dead-lettered.
    pub dead_lettered: Vec<u64>,
}

/// The largest page [`Inbox::jobs`](super::Inbox::jobs) returns.
pub const MAX_PAGE: u32 = 500;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_back_from_their_names() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>(), Ok(state));
        }
        assert!("finished".parse::<JobState>().is_err());
    }
}
