//! `Event` as an axum extractor.

use std::fmt;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;
use serde::de::DeserializeOwned;

use super::{Event, Unparsed};

/// Why an [`Event`] could not be extracted.
///
/// ```
/// use axum::response::{IntoResponse, Response};
/// use tower_webhook::{Event, EventRejection, EventRejectionKind};
///
/// // A handler that answers a payload it cannot read in its own way.
/// async fn handle(event: Result<Event<serde_json::Value>, EventRejection>) -> Response {
///     match event {
///         Ok(event) => format!("got {}", event.id()).into_response(),
///         Err(rejection) => match rejection.kind() {
///             EventRejectionKind::InvalidPayload(err) => {
///                 (rejection.status(), format!("unreadable: {err}")).into_response()
///             }
///             _ => (rejection.status(), rejection.body_text()).into_response(),
///         },
///     }
/// }
/// ```
#[derive(Debug)]
pub struct EventRejection {
    kind: EventRejectionKind,
    /// The delivery's id, where there was a verified delivery.
    id: Option<String>,
}

/// The kind of an [`EventRejection`].
#[derive(Debug)]
#[non_exhaustive]
pub enum EventRejectionKind {
    /// No verified event in the request: `VerifyWebhookLayer` is not on this route. A bug in
    /// the app, answered `500 Internal Server Error` so it is noticed at once.
    MissingLayer,
    /// The body was signed by the sender but does not deserialize into the handler's type:
    /// the receiver's bug (a new event type, a renamed field), answered `500 Internal Server
    /// Error` so that the sender retries and the backlog drains once the handler is fixed. A
    /// 4xx would tell senders to drop the event for good.
    InvalidPayload(serde_json::Error),
}

impl EventRejection {
    /// Why the extraction failed.
    pub fn kind(&self) -> &EventRejectionKind {
        &self.kind
    }

    /// The status code of the rejection.
    pub fn status(&self) -> StatusCode {
        // Both are the receiver's own bug: a 500, which every sender retries.
        StatusCode::INTERNAL_SERVER_ERROR
    }

    /// The id of the delivery whose payload did not fit, if there was one.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The plain-text body of the rejection.
    pub fn body_text(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for EventRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            EventRejectionKind::MissingLayer => {
                f.write_str("Missing webhook event. Is `VerifyWebhookLayer` enabled on this route?")
            }
            EventRejectionKind::InvalidPayload(err) => {
                write!(f, "webhook payload does not match the expected type: {err}")
            }
        }
    }
}

impl std::error::Error for EventRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            EventRejectionKind::MissingLayer => None,
            EventRejectionKind::InvalidPayload(err) => Some(err),
        }
    }
}

impl IntoResponse for EventRejection {
    fn into_response(self) -> Response {
        match &self.kind {
            EventRejectionKind::MissingLayer => tracing::error!("{self}"),
            EventRejectionKind::InvalidPayload(err) => tracing::error!(
                id = self.id.as_deref().unwrap_or(""),
                error = %err,
                "the verified payload does not fit the handler's type; answered 500, the sender will retry"
            ),
        }
        (self.status(), self.body_text()).into_response()
    }
}

fn missing_layer() -> EventRejection {
    EventRejection {
        kind: EventRejectionKind::MissingLayer,
        id: None,
    }
}

/// `event`'s payload as a `T`, or the rejection that names the delivery.
fn parse<T: DeserializeOwned>(event: &Event) -> Result<Event<T>, EventRejection> {
    event.clone().parse().map_err(|err| EventRejection {
        kind: EventRejectionKind::InvalidPayload(err),
        id: Some(event.id().to_owned()),
    })
}

impl<S> FromRequestParts<S> for Event<Unparsed>
where
    S: Send + Sync,
{
    type Rejection = EventRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Event>()
            .cloned()
            .ok_or_else(missing_layer)
    }
}

impl<S, T> FromRequestParts<S> for Event<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = EventRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse(parts.extensions.get::<Event>().ok_or_else(missing_layer)?)
    }
}

/// `Option<Event>`: `None` where no layer verified the request, for handlers shared between
/// webhook and other routes.
impl<S> OptionalFromRequestParts<S> for Event<Unparsed>
where
    S: Send + Sync,
{
    type Rejection = EventRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Event>().cloned())
    }
}

/// `Option<Event<T>>`: `None` where no layer verified the request; a payload that does not
/// deserialize into `T` is still a rejection.
impl<S, T> OptionalFromRequestParts<S> for Event<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = EventRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        parts.extensions.get::<Event>().map(parse).transpose()
    }
}
