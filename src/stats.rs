//! Counters of what the layer did with each delivery, for a service's own alerts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Live counters of delivery outcomes, shared by every service a layer makes.
///
/// Take it from [`VerifyWebhookLayer::stats`](crate::VerifyWebhookLayer::stats) and export a
/// [`snapshot`](Self::snapshot) to your metrics system, so you can alert on the rejection and
/// store-error rates.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    rejected: AtomicU64,
    duplicates: AtomicU64,
    in_flight: AtomicU64,
    store_errors: AtomicU64,
    handled: AtomicU64,
    handler_failures: AtomicU64,
    completion_failures: AtomicU64,
}

/// The counters of [`Stats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Deliveries refused before the handler: too large, unreadable, failed verification,
    /// or without an id.
    pub rejected: u64,
    /// Copies of a completed delivery, answered 200 without running the handler.
    pub duplicates: u64,
    /// Copies that arrived while another copy was being handled, answered 429.
    pub in_flight: u64,
    /// Deliveries answered 503 because the store could not claim them.
    pub store_errors: u64,
    /// Deliveries the handler answered with a 2xx.
    pub handled: u64,
    /// Deliveries whose handler answered non-2xx, returned an error or panicked.
    pub handler_failures: u64,
    /// Handled deliveries whose completion could not be recorded (the store failed, or the
    /// lease ran out first): a later copy of each may run the handler again.
    pub completion_failures: u64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Rejected,
    Duplicate,
    InFlight,
    StoreError,
    Handled,
    HandlerFailed,
    CompletionFailed,
}

impl Stats {
    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let c = &self.counters;
        StatsSnapshot {
            rejected: c.rejected.load(Ordering::Relaxed),
            duplicates: c.duplicates.load(Ordering::Relaxed),
            in_flight: c.in_flight.load(Ordering::Relaxed),
            store_errors: c.store_errors.load(Ordering::Relaxed),
            handled: c.handled.load(Ordering::Relaxed),
            handler_failures: c.handler_failures.load(Ordering::Relaxed),
            completion_failures: c.completion_failures.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn count(&self, outcome: Outcome) {
        let c = &self.counters;
        let counter = match outcome {
            Outcome::Rejected => &c.rejected,
            Outcome::Duplicate => &c.duplicates,
            Outcome::InFlight => &c.in_flight,
            Outcome::StoreError => &c.store_errors,
            Outcome::Handled => &c.handled,
            Outcome::HandlerFailed => &c.handler_failures,
            Outcome::CompletionFailed => &c.completion_failures,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
