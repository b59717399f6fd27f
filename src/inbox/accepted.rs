//! The route behind an inbox layer.

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
