//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`).
//!
//! The layer emits; the application installs the recorder it wants (Prometheus,
//! `OpenTelemetry`, `StatsD`, ...), as with `log` or `tracing`. Without a recorder nothing is
//! recorded and nothing is spent beyond a check.
//!
//! | name | kind | labels | what |
//! | --- | --- | --- | --- |
//! | `webhook_deliveries_total` | counter | `layer`, `scheme`, `outcome` | every delivery, by what became of it: `handled`, `handler_failed`, `handler_error`, `handler_panicked`, `duplicate`, `in_flight`, `store_error`, `rejected`, `abandoned`, `queued`, `inbox_full` |
//! | `webhook_rejections_total` | counter | `layer`, `reason` | deliveries refused before the handler, by [reason](crate::Rejection::reason): `signature`, `timestamp`, `malformed`, `too_large`, `unreadable`, `missing_id`, `not_json` |
//! | `webhook_store_call_duration_seconds` | histogram | `layer`, `call` | each store call (`claim`, `complete`, `release`, or `enqueue` for an inbox), until it answered or timed out |
//! | `webhook_store_errors_total` | counter | `layer`, `call` | store calls that failed or timed out |
//! | `webhook_handler_duration_seconds` | histogram | `layer` | the inner service, from call to answer |
//!
//! `layer` is the layer's [name](crate::VerifyWebhookLayer::with_name). Every label takes a
//! bounded set of values: never an id, a body or anything a sender chooses. Alert on
//! `webhook_rejections_total{reason="signature"}` (a wrong secret drops every event) and on
//! `outcome="store_error"` (5xx answers the senders will retry).
//!
//! ```
//! # #[cfg(feature = "metrics")] {
//! // After installing the recorder, name and describe the metrics for it:
//! tower_webhook::metrics::describe();
//! # }
//! ```

use crate::config::Config;

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

/// Describes the metrics (unit and help text) to the installed recorder. Call it once, after
/// installing the recorder; the layer emits with or without it.
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub fn describe() {
    use ::metrics::{describe_counter, describe_histogram, Unit};
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

#[cfg(feature = "metrics")]
fn layer(config: &Config) -> ::metrics::SharedString {
    ::metrics::SharedString::from(std::sync::Arc::clone(&config.name))
}

/// A delivery ended with `outcome`.
pub(crate) fn delivery(config: &Config, outcome: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(
        DELIVERIES_TOTAL,
        "layer" => layer(config),
        "scheme" => config.scheme.name(),
        "outcome" => outcome,
    )
    .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (config, outcome);
}

/// A delivery was refused for `reason`.
pub(crate) fn rejection(config: &Config, reason: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(REJECTIONS_TOTAL, "layer" => layer(config), "reason" => reason)
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (config, reason);
}

/// A store call (`claim`, `complete`, `release`, `enqueue`) begun at `timer` answered, or `failed`.
pub(crate) fn store_call(config: &Config, call: &'static str, timer: Timer, failed: bool) {
    #[cfg(feature = "metrics")]
    {
        ::metrics::histogram!(STORE_CALL_DURATION_SECONDS, "layer" => layer(config), "call" => call)
            .record(timer.started.elapsed().as_secs_f64());
        if failed {
            ::metrics::counter!(STORE_ERRORS_TOTAL, "layer" => layer(config), "call" => call)
                .increment(1);
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (config, call, timer, failed);
}

/// The inner service, called at `timer`, answered (or panicked).
pub(crate) fn handler(config: &Config, timer: Timer) {
    #[cfg(feature = "metrics")]
    ::metrics::histogram!(HANDLER_DURATION_SECONDS, "layer" => layer(config))
        .record(timer.started.elapsed().as_secs_f64());
    #[cfg(not(feature = "metrics"))]
    let _ = (config, timer);
}
