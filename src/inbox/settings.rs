//! What every inbox is set with: its queue, bound, retries and heartbeat.

use std::sync::Arc;
use std::time::Duration;

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

/// The settings every inbox shares: its queue, bound, retries, heartbeat and polling.
#[derive(Debug, Clone)]
#[allow(unreachable_pub)] // named by the sealed dialect trait
pub struct Settings {
    pub(crate) queue: Arc<str>,
    pub(crate) max_queued: u64,
    pub(crate) retry: RetryPolicy,
    pub(crate) heartbeat: Duration,
    pub(crate) poll_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            queue: Arc::from(DEFAULT_QUEUE),
            max_queued: DEFAULT_MAX_QUEUED,
            retry: RetryPolicy::default(),
            heartbeat: DEFAULT_HEARTBEAT,
            poll_interval: DEFAULT_POLL_INTERVAL,
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
/// How often an idle worker looks for jobs when nothing wakes it: jobs written by the door
/// of its own process, and on PostgreSQL by any process, wake it at once; jobs whose
/// backoff ends are found by this look.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
