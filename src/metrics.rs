//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`).
//!
//! The layer emits; the application installs the recorder it wants (Prometheus,
//! `OpenTelemetry`, `StatsD`, ...), as with `log` or `tracing`. Without a recorder nothing is
//! recorded and nothing is spent beyond a check.
//!
//! | name | kind | labels | what |
//! | --- | --- | --- | --- |
//! | `webhook_deliveries_total` | counter | `layer`, `scheme`, `outcome` | every delivery, by what became of it: `handled`, `handler_failed`, `handler_error`, `handler_panicked`, `duplicate`, `in_flight`, `store_unavailable`, `rejected`, `abandoned`, `queued`, `inbox_full` |
//! | `webhook_rejections_total` | counter | `layer`, `reason` | deliveries refused before the handler, by [reason](crate::Rejection::reason): `signature`, `timestamp`, `malformed`, `too_large`, `unreadable`, `missing_id`, `not_json` |
//! | `webhook_store_call_duration_seconds` | histogram | `layer`, `call` | each store call (`claim`, `complete`, `release`, or `enqueue` for an inbox), until it answered or timed out |
//! | `webhook_store_errors_total` | counter | `layer`, `call` | store calls that failed or timed out |
//! | `webhook_handler_duration_seconds` | histogram | `layer` | the inner service, from call to answer |
//! | `webhook_job_attempts_total` | counter | `layer`, `outcome` | each attempt an [inbox](crate::inbox) worker makes, by what became of it: `done`, `failed` (it will run again), `timed_out` (past its deadline; it will run again), `dead_lettered` (its last attempt, or one no retry can help), `lost` (taken back from a worker that seemed dead) |
//! | `webhook_job_attempt_duration_seconds` | histogram | `layer` | each attempt, from its start to its end |
//! | `webhook_job_start_delay_seconds` | histogram | `layer` | from a delivery's acceptance (its 202) to the start of its first attempt |
//! | `webhook_inbox_jobs` | gauge | `queue`, `state` | the jobs of an inbox's queue by state (`queued`, `running`, `retrying`, `dead`, `done`), read by each running worker every heartbeat |
//!
//! `layer` is the layer's [name](crate::VerifyWebhookLayer::with_name). Every label takes a
//! bounded set of values: never an id, a body or anything a sender chooses. Alert on
//! `webhook_rejections_total{reason="signature"}` (a wrong secret drops every event) and on
//! `outcome="store_unavailable"` (5xx answers the senders will retry).
//!
//! ```
//! # #[cfg(feature = "metrics")] {
//! // After installing the recorder, name and describe the metrics for it:
//! tower_webhook::metrics::describe();
//! # }
//! ```

/// Every delivery, by layer, scheme and outcome.
pub const DELIVERIES_TOTAL: &str = "webhook_deliveries_total";
/// Deliveries refused before the handler, by layer and reason.
pub const REJECTIONS_TOTAL: &str = "webhook_rejections_total";
/// How long each store call took, in seconds, by layer and call.
pub const STORE_CALL_DURATION_SECONDS: &str = "webhook_store_call_duration_seconds";
/// Store calls that failed or timed out, by layer and call.
pub const STORE_ERRORS_TOTAL: &str = "webhook_store_errors_total";
/// How long the inner service took, in seconds, by layer.
pub const HANDLER_DURATION_SECONDS: &str = "webhook_handler_duration_seconds";
/// Each attempt of an inbox's worker, by layer and outcome.
pub const JOB_ATTEMPTS_TOTAL: &str = "webhook_job_attempts_total";
/// How long each attempt of an inbox's worker took, in seconds, by layer.
pub const JOB_ATTEMPT_DURATION_SECONDS: &str = "webhook_job_attempt_duration_seconds";
/// From a delivery's acceptance to its first attempt's start, in seconds, by layer.
pub const JOB_START_DELAY_SECONDS: &str = "webhook_job_start_delay_seconds";
/// The jobs of an inbox's queue, by queue and state.
pub const INBOX_JOBS: &str = "webhook_inbox_jobs";

/// Describes the metrics (unit and help text) to the installed recorder. Call it once, after
/// installing the recorder; the layer emits with or without it.
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        DELIVERIES_TOTAL,
        Unit::Count,
        "Webhook deliveries, by layer, scheme and outcome."
    );
    describe_counter!(
        REJECTIONS_TOTAL,
        Unit::Count,
        "Webhook deliveries refused before the handler, by layer and reason."
    );
    describe_histogram!(
        STORE_CALL_DURATION_SECONDS,
        Unit::Seconds,
        "Idempotency store calls (claim, complete, release), by layer and call."
    );
    describe_counter!(
        STORE_ERRORS_TOTAL,
        Unit::Count,
        "Idempotency store calls that failed or timed out, by layer and call."
    );
    describe_histogram!(
        HANDLER_DURATION_SECONDS,
        Unit::Seconds,
        "Time the webhook handler took, by layer."
    );
    describe_counter!(
        JOB_ATTEMPTS_TOTAL,
        Unit::Count,
        "Attempts of inbox workers, by layer and outcome."
    );
    describe_histogram!(
        JOB_ATTEMPT_DURATION_SECONDS,
        Unit::Seconds,
        "Time each attempt of an inbox worker took, by layer."
    );
    describe_histogram!(
        JOB_START_DELAY_SECONDS,
        Unit::Seconds,
        "Time from a delivery's acceptance to its first attempt, by layer."
    );
    describe_gauge!(
        INBOX_JOBS,
        Unit::Count,
        "Jobs of an inbox queue, by queue and state."
    );
}

/// When something the layer measures began; nothing at all without the feature.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timer {
    #[cfg(feature = "metrics")]
    started: std::time::Instant,
}

impl Timer {
    pub(crate) fn start() -> Self {
        Self {
            #[cfg(feature = "metrics")]
            started: std::time::Instant::now(),
        }
    }
}

/// The values of each label, for the keys made once per layer: building a key allocates its
/// labels, which a delivery must not pay for (and, without a recorder, not at all).
#[cfg(feature = "metrics")]
pub(crate) const OUTCOMES: [&str; Outcome::DELIVERIES.len()] = {
    let mut names = [""; Outcome::DELIVERIES.len()];
    let mut at = 0;
    while at < names.len() {
        names[at] = Outcome::DELIVERIES[at].name();
        at += 1;
    }
    names
};
#[cfg(feature = "metrics")]
use crate::stats::{Outcome, REASONS};
#[cfg(feature = "metrics")]
const CALLS: [&str; 4] = ["claim", "complete", "release", "enqueue"];

/// One layer's metric keys, made on its first delivery and kept.
#[cfg(feature = "metrics")]
#[derive(Debug, Clone)]
struct Keys {
    deliveries: Vec<(&'static str, ::metrics::Key)>,
    rejections: Vec<(&'static str, ::metrics::Key)>,
    durations: Vec<(&'static str, ::metrics::Key)>,
    errors: Vec<(&'static str, ::metrics::Key)>,
    handler: ::metrics::Key,
}

/// One layer's metrics: its labels, and the keys made from them on first use. Without the
/// feature it is empty, and every call is a no-op.
#[derive(Debug, Clone)]
pub(crate) struct Meter {
    #[cfg(feature = "metrics")]
    layer: std::sync::Arc<str>,
    #[cfg(feature = "metrics")]
    scheme: &'static str,
    #[cfg(feature = "metrics")]
    keys: std::sync::OnceLock<Keys>,
}

#[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self))]
impl Meter {
    /// The metrics of the layer named `layer` on the scheme named `scheme`.
    pub(crate) fn new(layer: &std::sync::Arc<str>, scheme: &'static str) -> Self {
        #[cfg(not(feature = "metrics"))]
        let _ = (layer, scheme);
        Self {
            #[cfg(feature = "metrics")]
            layer: std::sync::Arc::clone(layer),
            #[cfg(feature = "metrics")]
            scheme,
            #[cfg(feature = "metrics")]
            keys: std::sync::OnceLock::new(),
        }
    }

    /// A delivery ended with `outcome`.
    pub(crate) fn delivery(&self, outcome: &'static str) {
        #[cfg(feature = "metrics")]
        increment(&find(&self.keys().deliveries, outcome, |outcome| {
            self.delivery_key(outcome)
        }));
        #[cfg(not(feature = "metrics"))]
        let _ = outcome;
    }

    /// A delivery was refused for `reason`.
    pub(crate) fn rejection(&self, reason: &'static str) {
        #[cfg(feature = "metrics")]
        increment(&find(&self.keys().rejections, reason, |reason| {
            self.rejection_key(reason)
        }));
        #[cfg(not(feature = "metrics"))]
        let _ = reason;
    }

    /// A store call (`claim`, `complete`, `release`, `enqueue`) begun at `timer` answered,
    /// or `failed` (an error, or no answer in time).
    pub(crate) fn store_call(&self, call: &'static str, timer: Timer, failed: bool) {
        #[cfg(feature = "metrics")]
        {
            let keys = self.keys();
            record(
                &find(&keys.durations, call, |call| {
                    self.call_key(STORE_CALL_DURATION_SECONDS, call)
                }),
                timer,
            );
            if failed {
                increment(&find(&keys.errors, call, |call| {
                    self.call_key(STORE_ERRORS_TOTAL, call)
                }));
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (call, timer, failed);
    }

    /// The inner service, called at `timer`, answered (or panicked).
    pub(crate) fn handler(&self, timer: Timer) {
        #[cfg(feature = "metrics")]
        record(&self.keys().handler, timer);
        #[cfg(not(feature = "metrics"))]
        let _ = timer;
    }
}

#[cfg(feature = "metrics")]
impl Meter {
    fn keys(&self) -> &Keys {
        self.keys.get_or_init(|| {
            let each = |values: &[&'static str], make: &dyn Fn(&'static str) -> ::metrics::Key| {
                values.iter().map(|value| (*value, make(value))).collect()
            };
            Keys {
                deliveries: each(&OUTCOMES, &|outcome| self.delivery_key(outcome)),
                rejections: each(&REASONS, &|reason| self.rejection_key(reason)),
                durations: each(&CALLS, &|call| {
                    self.call_key(STORE_CALL_DURATION_SECONDS, call)
                }),
                errors: each(&CALLS, &|call| self.call_key(STORE_ERRORS_TOTAL, call)),
                handler: ::metrics::Key::from_parts(HANDLER_DURATION_SECONDS, vec![self.layer()]),
            }
        })
    }

    fn layer(&self) -> ::metrics::Label {
        ::metrics::Label::new("layer", std::sync::Arc::clone(&self.layer))
    }

    fn delivery_key(&self, outcome: &'static str) -> ::metrics::Key {
        let labels = vec![
            self.layer(),
            ::metrics::Label::new("scheme", self.scheme),
            ::metrics::Label::new("outcome", outcome),
        ];
        ::metrics::Key::from_parts(DELIVERIES_TOTAL, labels)
    }

    fn rejection_key(&self, reason: &'static str) -> ::metrics::Key {
        let labels = vec![self.layer(), ::metrics::Label::new("reason", reason)];
        ::metrics::Key::from_parts(REJECTIONS_TOTAL, labels)
    }

    fn call_key(&self, name: &'static str, call: &'static str) -> ::metrics::Key {
        let labels = vec![self.layer(), ::metrics::Label::new("call", call)];
        ::metrics::Key::from_parts(name, labels)
    }
}

#[cfg(feature = "metrics")]
static METADATA: ::metrics::Metadata<'static> =
    ::metrics::Metadata::new(module_path!(), ::metrics::Level::INFO, Some(module_path!()));

/// The kept key of `value`, or, for a value missing from the lists above, one made now.
#[cfg(feature = "metrics")]
fn find<'k>(
    keys: &'k [(&'static str, ::metrics::Key)],
    value: &'static str,
    make: impl FnOnce(&'static str) -> ::metrics::Key,
) -> std::borrow::Cow<'k, ::metrics::Key> {
    match keys.iter().find(|(kept, _)| *kept == value) {
        Some((_, key)) => std::borrow::Cow::Borrowed(key),
        None => std::borrow::Cow::Owned(make(value)),
    }
}

#[cfg(feature = "metrics")]
fn increment(key: &::metrics::Key) {
    ::metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA)).increment(1);
}

#[cfg(feature = "metrics")]
fn record(key: &::metrics::Key, timer: Timer) {
    ::metrics::with_recorder(|recorder| recorder.register_histogram(key, &METADATA))
        .record(timer.started.elapsed().as_secs_f64());
}
