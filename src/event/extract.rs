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
}

/// The kind of an [`EventRejection`].
#[derive(Debug)]
#[non_exhaustive]
pub enum EventRejectionKind {
    /// No verified event in the request: `VerifyWebhookLayer` is not on this route. A bug in
    /// the app, answered `500 Internal Server Error` so it is noticed at once.
    MissingLayer,
    /// The body is valid for the sender but does not deserialize into the handler's type:
    /// `422 Unprocessable Entity`.
    InvalidPayload(serde_json::Error),
}

impl EventRejection {
    /// Why the extraction failed.
    pub fn kind(&self) -> &EventRejectionKind {
        &self.kind
    }

    /// The status code of the rejection.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            EventRejectionKind::MissingLayer => StatusCode::INTERNAL_SERVER_ERROR,
            EventRejectionKind::InvalidPayload(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
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
        match self.kind {
            EventRejectionKind::MissingLayer => tracing::error!("{self}"),
            EventRejectionKind::InvalidPayload(_) => tracing::warn!("{self}"),
        }
        (self.status(), self.body_text()).into_response()
    }
}

fn missing_layer() -> EventRejection {
    EventRejection {
        kind: EventRejectionKind::MissingLayer,
    }
}

fn invalid_payload(err: serde_json::Error) -> EventRejection {
    EventRejection {
        kind: EventRejectionKind::InvalidPayload(err),
    }
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
        let event = parts.extensions.get::<Event>().ok_or_else(missing_layer)?;
        event.clone().parse().map_err(invalid_payload)
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
        parts
            .extensions
            .get::<Event>()
            .map(|event| event.clone().parse().map_err(invalid_payload))
            .transpose()
    }
}
