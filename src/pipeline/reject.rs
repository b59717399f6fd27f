//! Why the layer answered a delivery itself, and how each reason becomes a response.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};

use crate::scheme::{VerifyError, VerifyErrorKind};

/// Why the layer answered a delivery without running the inner service.
///
/// Every answer the layer makes on its own carries its `Rejection` in the response's
/// extensions, so an outer layer can see why:
///
/// ```
/// # use http::Response;
/// # use tower_webhook::Rejection;
/// # fn inspect<B>(response: &Response<B>) {
/// if let Some(rejection) = response.extensions().get::<Rejection>() {
///     eprintln!("webhook answered {}: {rejection}", rejection.status());
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Rejection {
    kind: RejectionKind,
}

/// The kind of a [`Rejection`], which decides its status code.
///
/// ```
/// use http::StatusCode;
/// use tower_webhook::{Rejection, RejectionKind};
///
/// fn describe(rejection: &Rejection) -> &'static str {
///     match rejection.kind() {
///         RejectionKind::Verification(_) => "forged, stale or malformed",
///         RejectionKind::InFlight | RejectionKind::StoreUnavailable | RejectionKind::InboxFull => {
///             "try again later"
///         }
///         _ => "refused",
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectionKind {
    /// The body is larger than the layer's limit: `413 Payload Too Large`.
    PayloadTooLarge,
    /// The body stream failed before its end: `408 Request Timeout`, which senders retry. The
    /// delivery was never seen whole, so it cannot be called forged.
    BodyUnreadable,
    /// The signature or timestamp did not verify: `400 Bad Request`, so the sender drops it.
    Verification(VerifyError),
    /// The delivery verified but carries no id where the layer takes one: `400 Bad Request`.
    MissingId,
    /// The delivery verified, but its id is read from the body, and the body is not a JSON
    /// object: `400 Bad Request`.
    BodyNotJson,
    /// Another copy of the delivery is being handled right now: `429 Too Many Requests` with
    /// `Retry-After`. Not 409: a sender that drops every other 4xx would lose the event if the
    /// copy in flight then failed.
    InFlight,
    /// The idempotency store could not answer: `503 Service Unavailable` with `Retry-After`.
    /// Never a 4xx, which would drop the event. With an [inbox](crate::inbox), the write of
    /// the delivery failed or took longer than the store timeout.
    StoreUnavailable,
    /// The [inbox](crate::inbox) holds more jobs than its bound: `429 Too Many Requests`
    /// with `Retry-After`, which tells the sender to slow down and retry.
    InboxFull,
    /// The handler answered 2xx, but its [`Tx`](crate::Tx) did not commit with the
    /// delivery's completion (the commit failed, or the claim's lease ran out and another
    /// copy took it): `503 Service Unavailable` with `Retry-After`. Nothing was committed;
    /// the sender's retry does the work.
    NotCommitted,
    /// The handler answered 2xx, but ended its [`Tx`](crate::Tx) itself (a `COMMIT` or
    /// `ROLLBACK` run through it), so its writes escaped the delivery's completion: `500
    /// Internal Server Error`, naming the misuse. The claim is released and the sender's retry
    /// runs the handler again; the writes it committed by hand stay. A bug in the handler:
    /// write through the `Tx` and let the layer commit it.
    TxEndedByHandler,
}

impl Rejection {
    pub(crate) fn new(kind: RejectionKind) -> Self {
        Self { kind }
    }

    /// Why the delivery was answered this way.
    pub fn kind(&self) -> &RejectionKind {
        &self.kind
    }

    /// The status code of the answer.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            RejectionKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RejectionKind::BodyUnreadable => StatusCode::REQUEST_TIMEOUT,
            RejectionKind::Verification(_)
            | RejectionKind::MissingId
            | RejectionKind::BodyNotJson => StatusCode::BAD_REQUEST,
            RejectionKind::InFlight | RejectionKind::InboxFull => StatusCode::TOO_MANY_REQUESTS,
            RejectionKind::StoreUnavailable | RejectionKind::NotCommitted => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            RejectionKind::TxEndedByHandler => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short, stable name for why: `signature`, `timestamp`, `malformed`, `too_large`,
    /// `unreadable`, `missing_id`, `not_json`, `in_flight`, `store_unavailable`, `inbox_full`,
    /// `not_committed` or `tx_ended_by_handler`. A bounded set, fit for a metric label;
    /// [`Stats`](crate::Stats) counts by it.
    ///
    /// ```
    /// # use http::Response;
    /// # use tower_webhook::Rejection;
    /// # fn count<B>(response: &Response<B>) {
    /// if let Some(rejection) = response.extensions().get::<Rejection>() {
    ///     let reason: &'static str = rejection.reason(); // "signature", "timestamp", ...
    /// #   let _ = reason;
    /// }
    /// # }
    /// ```
    pub fn reason(&self) -> &'static str {
        match &self.kind {
            RejectionKind::PayloadTooLarge => "too_large",
            RejectionKind::BodyUnreadable => "unreadable",
            RejectionKind::Verification(err) => match err.kind() {
                VerifyErrorKind::NoMatchingSignature | VerifyErrorKind::NoSupportedSignature => {
                    "signature"
                }
                VerifyErrorKind::TimestampTooOld | VerifyErrorKind::TimestampTooNew => "timestamp",
                VerifyErrorKind::MissingHeader | VerifyErrorKind::InvalidHeader => "malformed",
            },
            RejectionKind::MissingId => "missing_id",
            RejectionKind::BodyNotJson => "not_json",
            RejectionKind::InFlight => "in_flight",
            RejectionKind::StoreUnavailable => "store_unavailable",
            RejectionKind::InboxFull => "inbox_full",
            RejectionKind::NotCommitted => "not_committed",
            RejectionKind::TxEndedByHandler => "tx_ended_by_handler",
        }
    }

    /// Whether the sender should retry: the answer then carries `Retry-After`.
    ///
    /// ```
    /// # use tower_webhook::Rejection;
    /// fn retried_by_the_sender(rejection: &Rejection) -> bool {
    ///     // 429 and 503 carry Retry-After; the 400s and 413 are dropped by the sender.
    ///     rejection.is_transient()
    /// }
    /// ```
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            RejectionKind::InFlight
                | RejectionKind::StoreUnavailable
                | RejectionKind::InboxFull
                | RejectionKind::NotCommitted
        )
    }

    /// The answer: the status, the reason as plain text, `Retry-After` when transient, and
    /// this rejection in the extensions.
    pub(crate) fn into_response(self, retry_after: Duration) -> Response<Bytes> {
        let mut response = Response::new(Bytes::from(self.to_string()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if self.is_transient() {
            headers.insert(RETRY_AFTER, retry_after_value(retry_after));
        }
        response.extensions_mut().insert(self);
        response
    }
}

/// Whole seconds, rounded up and at least one: `Retry-After: 0` invites a tight retry loop.
fn retry_after_value(after: Duration) -> HeaderValue {
    let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    HeaderValue::from(secs.max(1))
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RejectionKind::PayloadTooLarge => f.write_str("payload too large"),
            RejectionKind::BodyUnreadable => f.write_str("failed to read request body"),
            RejectionKind::Verification(err) => err.fmt(f),
            RejectionKind::MissingId => f.write_str("missing event id"),
            RejectionKind::BodyNotJson => {
                f.write_str("body is not a JSON object, so it carries no event id")
            }
            RejectionKind::InFlight => f.write_str("delivery in flight, retry later"),
            RejectionKind::InboxFull => f.write_str("the inbox is full, retry later"),
            RejectionKind::StoreUnavailable => {
                f.write_str("idempotency store unavailable, retry later")
            }
            RejectionKind::NotCommitted => {
                f.write_str("the handler's transaction did not commit, retry later")
            }
            RejectionKind::TxEndedByHandler => f.write_str(
                "the handler ended its Tx itself (a COMMIT or ROLLBACK through it), so its \
                 writes escaped the delivery's completion: write through the Tx and let the \
                 layer commit it",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_value(Duration::ZERO), "1");
        assert_eq!(retry_after_value(Duration::from_millis(1500)), "2");
        assert_eq!(retry_after_value(Duration::from_secs(5)), "5");
    }

    #[test]
    fn only_transient_answers_carry_retry_after() {
        let busy = Rejection::new(RejectionKind::InFlight).into_response(Duration::from_secs(3));
        assert_eq!(busy.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(busy.headers()[RETRY_AFTER], "3");
        let forged = Rejection::new(RejectionKind::MissingId).into_response(Duration::from_secs(3));
        assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
        assert!(forged.headers().get(RETRY_AFTER).is_none());
        assert_eq!(forged.body().as_ref(), b"missing event id");
    }
}
