//! How a delivery's end is told: one [`Outcome`], counted in the layer's stats and metrics,
//! named in its span, and logged at the level a service alerts on.

use http::StatusCode;
use tracing::Span;

use crate::pipeline::config::Config;
use crate::pipeline::reject::Rejection;
use crate::stats::Outcome;
use crate::store::StoreError;

/// Counts a delivery's `outcome`, by its name in its span and the metrics.
pub(crate) fn finish(config: &Config, span: &Span, outcome: Outcome) {
    config.stats.count(outcome);
    config.meter.delivery(outcome.name());
    span.record("outcome", outcome.name());
}

/// Counts and logs a delivery the layer refuses.
pub(crate) fn rejected(config: &Config, span: &Span, rejection: &Rejection) {
    let status = rejection.status().as_u16();
    let outcome = Outcome::of(rejection);
    finish(config, span, outcome);
    match outcome {
        Outcome::InFlight => tracing::info!(
            status,
            "another copy of this delivery is in flight; asked to retry"
        ),
        Outcome::StoreUnavailable => {
            tracing::error!(status, "idempotency store unavailable; asked to retry");
        }
        Outcome::InboxFull => {
            tracing::warn!(status, "the inbox is full; asked the sender to retry later");
        }
        _ => {
            config.meter.rejection(rejection.reason());
            tracing::warn!(status, reason = %rejection, "webhook rejected");
        }
    }
}

/// Counts and logs a delivery committed to the inbox.
pub(crate) fn queued(config: &Config, span: &Span, id: &str) {
    finish(config, span, Outcome::Queued);
    tracing::info!(
        id,
        layer = &*config.name,
        outcome = "queued",
        "webhook queued"
    );
}

/// Counts and logs a copy of a delivery handled (or queued) already.
pub(crate) fn duplicate(config: &Config, span: &Span, id: &str) {
    finish(config, span, Outcome::Duplicate);
    tracing::info!(
        id,
        "duplicate delivery answered without running the handler"
    );
}

/// Counts and logs what the inner service did with the delivery `id` (its status, or why it
/// gave none); whether it succeeded, so that its claim is completed rather than released.
pub(crate) fn handled(
    config: &Config,
    span: &Span,
    id: &str,
    outcome: Result<StatusCode, Outcome>,
) -> bool {
    let layer = &*config.name;
    let failure = match outcome {
        Ok(status) if status.is_success() => {
            finish(config, span, Outcome::Handled);
            tracing::info!(
                id,
                layer,
                outcome = "handled",
                status = status.as_u16(),
                "webhook handled"
            );
            return true;
        }
        Ok(status) => {
            finish(config, span, Outcome::HandlerFailed);
            // What senders do with the answer: a 4xx other than 408 and 429 is final.
            let retried = status.is_server_error()
                || status == StatusCode::REQUEST_TIMEOUT
                || status == StatusCode::TOO_MANY_REQUESTS;
            let status = status.as_u16();
            let outcome = Outcome::HandlerFailed.name();
            if retried {
                tracing::warn!(
                    id,
                    layer,
                    outcome,
                    status,
                    "handler answered non-2xx; the sender will retry"
                );
            } else {
                tracing::warn!(
                    id,
                    layer,
                    outcome,
                    status,
                    "handler answered a final 4xx; the sender will not retry"
                );
            }
            return false;
        }
        Err(failure) => failure,
    };
    finish(config, span, failure);
    let outcome = failure.name();
    if failure == Outcome::HandlerPanicked {
        tracing::error!(
            id,
            layer,
            outcome,
            "handler panicked; the sender will retry"
        );
    } else {
        tracing::warn!(
            id,
            layer,
            outcome,
            "handler returned an error; the sender will retry"
        );
    }
    false
}

/// Logs how settling a claim went, and counts completions that were not recorded.
pub(crate) fn settled(config: &Config, result: &Result<bool, StoreError>, completing: bool) {
    if completing && !matches!(result, Ok(true)) {
        config.stats.count(Outcome::CompletionFailed);
    }
    match (result, completing) {
        (Ok(true), _) => {}
        (Ok(false), true) => tracing::warn!(
            "the claim's lease ran out before the handler finished; completion not recorded"
        ),
        (Ok(false), false) => tracing::debug!("the claim's lease had run out before its release"),
        (Err(err), true) => tracing::error!(
            error = %err,
            "failed to record the completed delivery; a later copy may run the handler again"
        ),
        (Err(err), false) => tracing::warn!(
            error = %err,
            "failed to release the claim; a retry waits for its lease to run out"
        ),
    }
}

/// A duration in whole milliseconds, for a log field.
pub(crate) fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
