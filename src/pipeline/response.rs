//! The answers the layer makes itself (a refusal, `202 Accepted` from the inbox, `200` to a
//! duplicate), and the answer that goes out in the end: one of those, the inner service's,
//! or its panic, carried on.

use std::any::Any;
use std::panic::resume_unwind;
use std::task::Poll;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{HeaderName, Response, StatusCode};
use tracing::Span;

use crate::pipeline::body::ResponseBody;
use crate::pipeline::config::Config;
use crate::pipeline::reject::Rejection;
use crate::pipeline::report;
use crate::scheme::{DeliveryId, Handshake};

/// The header that marks the answer to a copy of a delivery that was handled already.
///
/// Its value is `true`. The answer is `200 OK`, so the sender stops retrying, and the inner
/// service did not run.
pub const DUPLICATE_HEADER: HeaderName = HeaderName::from_static("webhook-duplicate");

/// In the extensions of the answer to a copy of a delivery that was handled already, so that
/// an outer layer can log or count it.
///
/// ```
/// use axum::{extract::Request, middleware::Next, response::Response};
/// use tower_webhook::Duplicate;
///
/// // An outer middleware that counts duplicates.
/// async fn count_duplicates(request: Request, next: Next) -> Response {
///     let response = next.run(request).await;
///     if let Some(duplicate) = response.extensions().get::<Duplicate>() {
///         println!("duplicate of {}", duplicate.id());
///     }
///     response
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Duplicate {
    id: DeliveryId,
}

impl Duplicate {
    /// The id of the delivery.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The answer that goes out once the delivery is done with.
pub(crate) enum Then<R, E> {
    /// The inner service's answer.
    Answer(Result<R, E>),
    /// An answer the layer made itself.
    Own(Response<Bytes>),
    /// The inner service panicked: the panic goes on once its claim is settled.
    Unwind(Box<dyn Any + Send>),
}

impl<R, E> Then<Response<R>, E> {
    /// Hands the answer out, or lets the panic go on.
    pub(crate) fn go_on(self) -> Poll<Result<Response<ResponseBody<R>>, E>> {
        match self {
            Then::Answer(result) => Poll::Ready(result.map(|r| r.map(ResponseBody::inner))),
            Then::Own(response) => Poll::Ready(Ok(response.map(ResponseBody::own))),
            Then::Unwind(payload) => resume_unwind(payload),
        }
    }
}

/// The answer to a delivery the layer refuses, counted and logged.
pub(crate) fn rejection(config: &Config, span: &Span, rejection: Rejection) -> Response<Bytes> {
    report::rejected(config, span, &rejection);
    rejection.into_response(config.retry_after)
}

/// The answer to a delivery committed to the inbox: `202 Accepted`.
pub(crate) fn accepted(config: &Config, span: &Span, id: &str) -> Response<Bytes> {
    report::queued(config, span, id);
    let mut response = text(b"accepted");
    *response.status_mut() = StatusCode::ACCEPTED;
    response
}

/// The answer to a copy of a delivery that was handled already: `200 OK`, marked.
pub(crate) fn duplicate(config: &Config, span: &Span, id: DeliveryId) -> Response<Bytes> {
    report::duplicate(config, span, &id);
    let mut response = text(b"duplicate delivery");
    response
        .headers_mut()
        .insert(DUPLICATE_HEADER, HeaderValue::from_static("true"));
    response.extensions_mut().insert(Duplicate { id });
    response
}

/// The layer's answer to one of the sender's handshakes, logged; never counted as a
/// delivery. Never sniffed or cached: the body echoes what the sender sent.
pub(crate) fn handshake(config: &Config, span: &Span, answer: Handshake) -> Response<Bytes> {
    span.record("outcome", "handshake");
    tracing::info!(
        layer = &*config.name,
        scheme = config.scheme.name(),
        outcome = "handshake",
        "sender's handshake answered"
    );
    let (status, content_type, body) = answer.into_parts();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    response
}

/// A `200 OK` in plain text.
fn text(body: &'static [u8]) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(body));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
