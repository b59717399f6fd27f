//! What the layer hands verified deliveries to, and the route behind an inbox layer.

use http::StatusCode;

/// A handler for the route an inbox layer wraps: `202 Accepted`. The layer answers every
/// delivery before it, so it runs only where a request reaches the route without the layer.
///
/// ```
/// use axum::{routing::post, Router};
///
/// let app: Router = Router::new().route("/webhooks", post(tower_webhook::inbox::accepted));
/// ```
#[allow(clippy::unused_async)] // an axum handler is an async fn
pub async fn accepted() -> StatusCode {
    StatusCode::ACCEPTED
}

/// Where the layer hands verified deliveries: [`SqliteInbox`](super::SqliteInbox) or
/// [`PostgresInbox`](super::PostgresInbox).
///
/// Sealed: the layer relies on the write being durable and atomic with its dedup mark.
pub trait Inbox: sealed::Sealed + Clone + Send + Sync + 'static {}

pub(crate) mod sealed {
    use std::sync::Arc;

    pub trait Sealed {
        fn door(&self) -> Arc<dyn crate::door::Door>;
    }
}
