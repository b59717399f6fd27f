//! [`Tx`] as an axum extractor.

use std::fmt;
use std::sync::Arc;

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::request::Parts;
use http::StatusCode;
use sqlx::Database;

use super::{LendError, Slot, Tx};

/// Why a [`Tx`] could not be extracted.
///
/// - No store on the route's database (`500 Internal Server Error`, naming what is missing):
///   the route has no [`VerifyWebhookLayer`](crate::VerifyWebhookLayer), its layer has no
///   store or one on another database, or the delivery was not claimed (it has no id).
/// - A second `Tx` for one delivery (`500`).
/// - The database did not begin the transaction (`503 Service Unavailable` with
///   `Retry-After`): nothing happened, and the sender's retry does the work.
#[derive(Debug)]
pub struct TxRejection {
    status: StatusCode,
    message: String,
}

impl TxRejection {
    /// The status code of the rejection.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    fn missing<DB: Database>() -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!(
                "tower_webhook::Tx needs a {name} store behind VerifyWebhookLayer on this route \
                 (PostgresStore for Tx<Postgres>, SqliteStore for Tx<Sqlite>), and a delivery \
                 the layer claimed in it; none is there",
                name = DB::NAME
            ),
        }
    }
}

impl From<LendError> for TxRejection {
    fn from(err: LendError) -> Self {
        match err {
            LendError::Taken => Self {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: "a delivery has one tower_webhook::Tx: this handler takes it twice"
                    .to_owned(),
            },
            LendError::Closed => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: "the database takes no more transactions, retry later".to_owned(),
            },
            LendError::Begin(err) => {
                tracing::error!(error = %err, "the database did not begin the handler's transaction");
                Self {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    message: "the database did not begin the transaction, retry later".to_owned(),
                }
            }
        }
    }
}

impl fmt::Display for TxRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TxRejection {}

impl IntoResponse for TxRejection {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.message).into_response();
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl<DB: Database, S: Send + Sync> FromRequestParts<S> for Tx<DB> {
    type Rejection = TxRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, TxRejection> {
        let slot = parts
            .extensions
            .get::<Arc<Slot<DB>>>()
            .cloned()
            .ok_or_else(TxRejection::missing::<DB>)?;
        Ok(slot.lend().await?)
    }
}
