//! What a worker tells the `metrics` facade (feature `metrics`): each attempt's outcome and
//! time, the delay before a delivery's first attempt, and the queue's depth by state. Without
//! the feature, nothing.

use std::time::Duration;

use super::job::Counts;

/// An attempt of a job received by the layer `layer` ended as `outcome`, after `took`.
pub(crate) fn attempt(layer: &str, outcome: &'static str, took: Duration) {
    #[cfg(feature = "metrics")]
    {
        use crate::metrics::{JOB_ATTEMPTS_TOTAL, JOB_ATTEMPT_DURATION_SECONDS};
        ::metrics::counter!(JOB_ATTEMPTS_TOTAL, "layer" => layer.to_owned(), "outcome" => outcome)
            .increment(1);
        ::metrics::histogram!(JOB_ATTEMPT_DURATION_SECONDS, "layer" => layer.to_owned())
            .record(took);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (layer, outcome, took);
}

/// A delivery of the layer `layer` began its first attempt `delay` after its acceptance.
pub(crate) fn start_delay(layer: &str, delay: Duration) {
    #[cfg(feature = "metrics")]
    ::metrics::histogram!(crate::metrics::JOB_START_DELAY_SECONDS, "layer" => layer.to_owned())
        .record(delay);
    #[cfg(not(feature = "metrics"))]
    let _ = (layer, delay);
}

/// The jobs of `queue`, by state.
pub(crate) fn depth(queue: &str, counts: &Counts) {
    #[cfg(feature = "metrics")]
    for (state, jobs) in [
        ("queued", counts.queued),
        ("running", counts.running),
        ("retrying", counts.failed),
        ("dead", counts.dead),
        ("done", counts.done),
    ] {
        #[allow(clippy::cast_precision_loss)] // a count of jobs, far below 2^52
        ::metrics::gauge!(crate::metrics::INBOX_JOBS, "queue" => queue.to_owned(), "state" => state)
            .set(jobs as f64);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (queue, counts);
}

/// Whether the metrics are recorded at all: the queue's depth costs a query.
pub(crate) const ON: bool = cfg!(feature = "metrics");
