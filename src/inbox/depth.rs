//! The queue's depth as the door sees it: counted now and then, not on every delivery.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a count stands before the door counts again.
const FRESH_FOR: Duration = Duration::from_millis(250);

/// The last count of jobs waiting or running, plus those this process queued since.
#[derive(Debug, Default)]
pub(crate) struct Depth {
    jobs: AtomicU64,
    counted_at: Mutex<Option<Instant>>,
}

impl Depth {
    /// Whether the queue may be at or over `max`: the known depth says so, or it is stale.
    /// Either way the caller counts again before it refuses.
    pub(crate) fn over(&self, max: u64) -> bool {
        let stale = self
            .counted_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map_or(true, |at| at.elapsed() >= FRESH_FOR);
        stale || self.jobs.load(Ordering::Relaxed) >= max
    }

    /// Records a fresh count; returns it.
    pub(crate) fn recount(&self, jobs: u64) -> u64 {
        self.jobs.store(jobs, Ordering::Relaxed);
        *self
            .counted_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        jobs
    }

    /// One more job queued since the last count.
    pub(crate) fn added(&self) {
        self.jobs.fetch_add(1, Ordering::Relaxed);
    }
}
