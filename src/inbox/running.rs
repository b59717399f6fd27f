//! The attempts this process's workers are running, by job: what lets a worker tell a job
//! it holds and runs from one it holds and lost.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

/// The jobs of an inbox whose attempts run in this process, from before their start is
/// written until their end is (or the attempt is given up). Shared by the inbox's clones.
#[derive(Debug, Default)]
pub(crate) struct Running(Mutex<HashSet<String>>);

impl Running {
    /// Counts the job `task_id` as running here until the returned guard is dropped.
    pub(crate) fn enter(self: &Arc<Self>, task_id: &str) -> Held {
        self.lock().insert(task_id.to_owned());
        Held {
            running: Arc::clone(self),
            task_id: task_id.to_owned(),
        }
    }

    /// Whether an attempt of the job `task_id` runs here.
    pub(crate) fn contains(&self, task_id: &str) -> bool {
        self.lock().contains(task_id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // Nothing panics under this lock: a poisoned one still holds a whole set.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
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
        let held = running.enter("job-1");
        assert!(running.contains("job-1"));
        assert!(!running.contains("job-2"));
        drop(held);
        assert!(!running.contains("job-1"));
    }
}
