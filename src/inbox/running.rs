//! The attempts this process's workers are running, by job and worker: the leases each
//! worker renews, so that a job it holds and no longer runs lapses and is taken back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The jobs of an inbox whose attempts run in this process, with the worker that runs each,
/// from their start until their end is written (or the attempt is given up). Shared by the
/// inbox's clones.
#[derive(Debug, Default)]
pub(crate) struct Running {
    jobs: Mutex<HashMap<String, Arc<str>>>,
    /// The workers of this process, and when each last renewed its leases.
    alive: Mutex<HashMap<Arc<str>, Instant>>,
}

impl Running {
    /// Counts the job `task_id` as run here by the worker `me` until the returned guard is
    /// dropped.
    pub(crate) fn enter(self: &Arc<Self>, task_id: &str, me: &Arc<str>) -> Held {
        self.lock().insert(task_id.to_owned(), Arc::clone(me));
        Held {
            running: Arc::clone(self),
            task_id: task_id.to_owned(),
        }
    }

    /// Whether the worker `holder` runs an attempt of the job `task_id` here.
    pub(crate) fn runs(&self, task_id: &str, holder: &str) -> bool {
        self.lock()
            .get(task_id)
            .is_some_and(|worker| &**worker == holder)
    }

    /// The jobs whose attempts the worker `me` runs here.
    pub(crate) fn ids_of(&self, me: &str) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, worker)| &***worker == me)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The worker `me` is at work: its watch ticks every heartbeat.
    pub(crate) fn tick(&self, me: &Arc<str>) {
        let mut alive = self.alive.lock().unwrap_or_else(PoisonError::into_inner);
        alive.insert(Arc::clone(me), Instant::now());
    }

    /// Whether the worker `holder` of this process runs an attempt of the job `task_id` and
    /// its watch ticked within `lease`: then its renewal failed (the database was busy), not
    /// the worker, and the job is its own. A worker whose future was dropped stops ticking,
    /// and its jobs are taken back like a dead process's.
    pub(crate) fn runs_alive(&self, task_id: &str, holder: &str, lease: Duration) -> bool {
        if !self.runs(task_id, holder) {
            return false;
        }
        let alive = self.alive.lock().unwrap_or_else(PoisonError::into_inner);
        alive
            .get(holder)
            .is_some_and(|ticked| ticked.elapsed() < lease)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<str>>> {
        // Nothing panics under this lock: a poisoned one still holds a whole map.
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A job counted as running here, until dropped.
#[derive(Debug)]
pub(crate) struct Held {
    running: Arc<Running>,
    task_id: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.running.lock().remove(&self.task_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_runs_here_while_held() {
        let running = Arc::new(Running::default());
        let me: Arc<str> = Arc::from("worker-1");
        let held = running.enter("job-1", &me);
        assert!(running.runs("job-1", "worker-1"));
        assert!(!running.runs("job-1", "worker-2"));
        assert!(!running.runs("job-2", "worker-1"));
        assert_eq!(running.ids_of("worker-1"), ["job-1"]);
        assert!(running.ids_of("worker-2").is_empty());
        let lease = Duration::from_secs(10);
        assert!(
            !running.runs_alive("job-1", "worker-1", lease),
            "never ticked"
        );
        running.tick(&me);
        assert!(running.runs_alive("job-1", "worker-1", lease));
        assert!(
            !running.runs_alive("job-1", "worker-1", Duration::ZERO),
            "ticked too long ago"
        );
        drop(held);
        assert!(!running.runs("job-1", "worker-1"));
    }
}
