//! Counters of what the layer did with each delivery, for a service's own alerts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Live counters of delivery outcomes, shared by every service a layer makes: one set per
/// layer.
///
/// Take it from [`VerifyWebhookLayer::stats`](crate::VerifyWebhookLayer::stats) and export a
/// [`snapshot`](Self::snapshot) to your metrics system, so you can alert on your own
/// signature-failure and 5xx rates, as the senders advise. With the `metrics` feature the
/// layer also emits the same counts through the `metrics` facade (see [`crate::metrics`]).
///
/// ```
/// use tower_webhook::{scheme::StandardWebhooks, VerifyWebhookLayer};
///
/// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?);
/// let stats = layer.stats();
/// // ... later, from a health or metrics route:
/// for (name, count) in stats.snapshot().iter() {
///     println!("webhooks {name} {count}");
/// }
/// assert_eq!(stats.snapshot().rejected_signature, 0);
/// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Stats {
    counters: Arc<[AtomicU64; COUNTERS]>,
}

/// The counters of [`Stats`] at one moment.
///
/// ```
/// use tower_webhook::{scheme::StandardWebhooks, VerifyWebhookLayer};
///
/// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?);
/// let snapshot = layer.stats().snapshot();
/// // The share of deliveries refused for a bad signature: alert when it jumps.
/// let seen = snapshot.handled + snapshot.rejected + snapshot.duplicates;
/// let forged = snapshot.rejected_signature as f64 / seen.max(1) as f64;
/// assert_eq!(forged, 0.0);
/// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Deliveries the handler answered with a 2xx.
    pub handled: u64,
    /// Deliveries whose handler answered non-2xx, returned an error or panicked.
    pub handler_failures: u64,
    /// Copies of a completed delivery, answered 200 without running the handler.
    pub duplicates: u64,
    /// Copies that arrived while another copy was being handled, answered 429.
    pub in_flight: u64,
    /// Deliveries answered 503 because the store could not claim them (an error, or no
    /// answer within the store timeout).
    pub store_errors: u64,
    /// Handled deliveries whose completion could not be recorded (the store failed, or the
    /// lease ran out first): a later copy of each may run the handler again.
    pub completion_failures: u64,
    /// Answers abandoned while the handler ran (the sender hung up); their claims were
    /// released.
    pub abandoned: u64,
    /// Deliveries written to an [inbox](crate::inbox) and answered `202 Accepted`.
    pub queued: u64,
    /// Deliveries answered `429` because the [inbox](crate::inbox) held more jobs than its
    /// bound.
    pub inbox_full: u64,
    /// Deliveries refused before the handler, for any of the reasons below.
    pub rejected: u64,
    /// Refused: no signature matched (`400`). A forgery, or a wrong or rotated secret.
    pub rejected_signature: u64,
    /// Refused: the signed timestamp is outside the tolerance (`400`). A replay, or a clock
    /// off.
    pub rejected_timestamp: u64,
    /// Refused: a header the scheme needs is missing or malformed (`400`).
    pub rejected_malformed: u64,
    /// Refused: the body is over the limit (`413`).
    pub rejected_too_large: u64,
    /// Refused: the body stream failed before its end (`408`).
    pub rejected_unreadable: u64,
    /// Refused: verified, but without an id (`400`).
    pub rejected_missing_id: u64,
    /// Refused: verified, but the id is read from a body that is not a JSON object (`400`).
    pub rejected_not_json: u64,
}

impl StatsSnapshot {
    /// Every counter with a stable name: `handled`, `handler_failed`, `duplicate`,
    /// `in_flight`, `store_unavailable`, `completion_failed`, `abandoned`, `queued`, `inbox_full`,
    /// `rejected`, and
    /// `rejected.<reason>` for each [reason](crate::Rejection::reason) a delivery is refused
    /// for.
    ///
    /// ```
    /// use tower_webhook::{scheme::StandardWebhooks, VerifyWebhookLayer};
    ///
    /// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?)
    ///     .with_name("clerk");
    /// // Prometheus text, by hand, for an app without a metrics recorder.
    /// let text: String = layer
    ///     .stats()
    ///     .snapshot()
    ///     .iter()
    ///     .map(|(name, count)| format!("clerk_webhooks{{counter=\"{name}\"}} {count}\n"))
    ///     .collect();
    /// assert!(text.contains("clerk_webhooks{counter=\"rejected.signature\"} 0"));
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("handled", self.handled),
            ("handler_failed", self.handler_failures),
            ("duplicate", self.duplicates),
            ("in_flight", self.in_flight),
            (Outcome::StoreUnavailable.name(), self.store_errors),
            ("completion_failed", self.completion_failures),
            ("abandoned", self.abandoned),
            ("queued", self.queued),
            ("inbox_full", self.inbox_full),
            ("rejected", self.rejected),
            ("rejected.signature", self.rejected_signature),
            ("rejected.timestamp", self.rejected_timestamp),
            ("rejected.malformed", self.rejected_malformed),
            ("rejected.too_large", self.rejected_too_large),
            ("rejected.unreadable", self.rejected_unreadable),
            ("rejected.missing_id", self.rejected_missing_id),
            ("rejected.not_json", self.rejected_not_json),
        ]
        .into_iter()
    }
}

/// How a delivery ended: the one list of outcome names, used as the metric label, the log
/// field, the [`StatsSnapshot::iter`] name and, for the refusals it shares, the
/// [rejection's reason](crate::Rejection::reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Handled,
    /// The handler answered non-2xx.
    HandlerFailed,
    /// The inner service returned an error.
    HandlerError,
    HandlerPanicked,
    Duplicate,
    InFlight,
    StoreUnavailable,
    /// Not a delivery's end: a handled delivery whose completion was not recorded.
    CompletionFailed,
    Abandoned,
    Queued,
    InboxFull,
    /// Refused for the [reason](crate::Rejection::reason) named.
    Rejected(&'static str),
}

impl Outcome {
    /// Every way a delivery ends, each once (every refusal counted as `rejected`).
    #[cfg(any(feature = "metrics", test))]
    pub(crate) const DELIVERIES: [Self; 11] = [
        Self::Handled,
        Self::HandlerFailed,
        Self::HandlerError,
        Self::HandlerPanicked,
        Self::Duplicate,
        Self::InFlight,
        Self::StoreUnavailable,
        Self::Rejected(""),
        Self::Abandoned,
        Self::Queued,
        Self::InboxFull,
    ];

    /// The outcome's one name.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Handled => "handled",
            Self::HandlerFailed => "handler_failed",
            Self::HandlerError => "handler_error",
            Self::HandlerPanicked => "handler_panicked",
            Self::Duplicate => "duplicate",
            Self::InFlight => "in_flight",
            Self::StoreUnavailable => "store_unavailable",
            Self::CompletionFailed => "completion_failed",
            Self::Abandoned => "abandoned",
            Self::Queued => "queued",
            Self::InboxFull => "inbox_full",
            Self::Rejected(_) => "rejected",
        }
    }

    /// The outcome of a delivery refused with `rejection`.
    pub(crate) fn of(rejection: &crate::Rejection) -> Self {
        use crate::RejectionKind;
        match rejection.kind() {
            RejectionKind::InFlight => Self::InFlight,
            RejectionKind::StoreUnavailable => Self::StoreUnavailable,
            RejectionKind::InboxFull => Self::InboxFull,
            _ => Self::Rejected(rejection.reason()),
        }
    }
}

const COUNTERS: usize = 17;
const REJECTED: usize = 9;
/// The rejection reasons counted apart, in the order of [`StatsSnapshot`]'s fields.
pub(crate) const REASONS: [&str; 7] = [
    "signature",
    "timestamp",
    "malformed",
    "too_large",
    "unreadable",
    "missing_id",
    "not_json",
];

impl Stats {
    /// The counters now.
    ///
    /// ```
    /// use tower_webhook::{scheme::StandardWebhooks, VerifyWebhookLayer};
    ///
    /// let stats = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?).stats();
    /// let now = stats.snapshot();
    /// assert_eq!((now.handled, now.rejected), (0, 0));
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn snapshot(&self) -> StatsSnapshot {
        let c = |i: usize| self.counters[i].load(Ordering::Relaxed);
        StatsSnapshot {
            handled: c(0),
            handler_failures: c(1),
            duplicates: c(2),
            in_flight: c(3),
            store_errors: c(4),
            completion_failures: c(5),
            abandoned: c(6),
            queued: c(7),
            inbox_full: c(8),
            rejected: c(REJECTED),
            rejected_signature: c(REJECTED + 1),
            rejected_timestamp: c(REJECTED + 2),
            rejected_malformed: c(REJECTED + 3),
            rejected_too_large: c(REJECTED + 4),
            rejected_unreadable: c(REJECTED + 5),
            rejected_missing_id: c(REJECTED + 6),
            rejected_not_json: c(REJECTED + 7),
        }
    }

    pub(crate) fn count(&self, outcome: Outcome) {
        let index = match outcome {
            Outcome::Handled => 0,
            Outcome::HandlerFailed | Outcome::HandlerError | Outcome::HandlerPanicked => 1,
            Outcome::Duplicate => 2,
            Outcome::InFlight => 3,
            Outcome::StoreUnavailable => 4,
            Outcome::CompletionFailed => 5,
            Outcome::Abandoned => 6,
            Outcome::Queued => 7,
            Outcome::InboxFull => 8,
            Outcome::Rejected(reason) => {
                self.counters[REJECTED].fetch_add(1, Ordering::Relaxed);
                match REASONS.iter().position(|known| *known == reason) {
                    Some(at) => REJECTED + 1 + at,
                    None => return,
                }
            }
        };
        self.counters[index].fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One name per outcome, the same in every place that names it: the Stats counter it
    /// adds to, the metric label and log field (`Outcome::name`), and the reason of the
    /// rejection it answers with.
    #[test]
    fn every_outcome_has_one_name_everywhere() {
        use crate::pipeline::reject::{Rejection, RejectionKind};
        let names: Vec<&str> = Outcome::DELIVERIES.iter().map(|o| o.name()).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        for outcome in Outcome::DELIVERIES {
            let stats = Stats::default();
            stats.count(outcome);
            let counted: Vec<(&str, u64)> = stats.snapshot().iter().filter(|c| c.1 > 0).collect();
            // The handler's three failures share one counter; every other outcome has its own,
            // under its own name.
            let expected = match outcome {
                Outcome::HandlerError | Outcome::HandlerPanicked => Outcome::HandlerFailed.name(),
                other => other.name(),
            };
            assert_eq!(counted, [(expected, 1)], "{outcome:?}");
        }
        for kind in [
            RejectionKind::InFlight,
            RejectionKind::StoreUnavailable,
            RejectionKind::InboxFull,
        ] {
            let rejection = Rejection::new(kind);
            let outcome = Outcome::of(&rejection);
            assert_eq!(outcome.name(), rejection.reason());
            assert!(names.contains(&outcome.name()));
        }
        let refused = Rejection::new(RejectionKind::MissingId);
        assert_eq!(Outcome::of(&refused), Outcome::Rejected("missing_id"));
        #[cfg(feature = "metrics")]
        assert_eq!(crate::metrics::OUTCOMES.as_slice(), names.as_slice());
    }

    #[test]
    fn every_counter_is_named_once_and_reasons_add_up() {
        let stats = Stats::default();
        for reason in REASONS {
            stats.count(Outcome::Rejected(reason));
        }
        stats.count(Outcome::Handled);
        let snapshot = stats.snapshot();
        let named: Vec<(&str, u64)> = snapshot.iter().collect();
        assert_eq!(named.len(), COUNTERS);
        assert_eq!(snapshot.rejected, 7);
        assert_eq!(snapshot.handled, 1);
        for reason in REASONS {
            let name = format!("rejected.{reason}");
            assert_eq!(named.iter().find(|(n, _)| *n == name).unwrap().1, 1);
        }
    }
}
