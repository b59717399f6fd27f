//! The `VerifyWebhook` service.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower_service::Service;

use crate::pipeline::body::ResponseBody;
use crate::pipeline::config::Config;
use crate::pipeline::future::ResponseFuture;

/// Verifies and deduplicates webhook deliveries before calling the inner service. Made by
/// [`VerifyWebhookLayer`](crate::VerifyWebhookLayer).
///
/// The inner service receives the verified request with its body buffered (the same bytes,
/// as a [`Full`] body) and an [`Event`](crate::Event) in its extensions. Every answer the
/// layer makes itself is a response, never an error: the service's error type is the inner
/// one.
///
/// # The inner service
///
/// It must be a `Service<Request<Full<Bytes>>>` whose response is an `http::Response`: the
/// layer has read the body to verify it, and hands the same bytes on. An axum `Router` or
/// route already is one. A service of your own that takes another body type does not fit,
/// and the compiler says `the method call exists ... but its trait bounds were not
/// satisfied`, naming `Service<Request<Full<Bytes>>>`:
///
/// ```compile_fail
/// use std::convert::Infallible;
/// use tower::{Layer, Service};
/// use tower_webhook::{scheme::StandardWebhooks, VerifyWebhookLayer};
///
/// // Takes `Request<String>`: not what the layer hands on.
/// let inner = tower::service_fn(|_request: http::Request<String>| async {
///     Ok::<_, Infallible>(http::Response::new(String::new()))
/// });
/// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap());
/// let _ = layer.layer(inner).call(http::Request::new(String::new()));
/// ```
///
/// Take `Request<Full<Bytes>>` (from `http-body-util`) instead, as below.
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use http_body_util::Full;
/// use tower::{Layer, ServiceExt};
/// use tower_webhook::{scheme::StandardWebhooks, VerifyWebhookLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Any tower service that takes the buffered body, not only axum.
/// let inner = tower::service_fn(|request: Request<Full<Bytes>>| async move {
///     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("handled"))))
/// });
/// let service = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?)
///     .layer(inner);
/// // A request without a signature never reaches it.
/// let response = service.oneshot(Request::new(Full::new(Bytes::from("{}")))).await?;
/// assert_eq!(response.status(), 400);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct VerifyWebhook<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> VerifyWebhook<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }

    /// The inner service.
    ///
    /// ```
    /// use tower::Layer;
    /// use tower_webhook::{scheme::StandardWebhooks, VerifyWebhookLayer};
    ///
    /// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?);
    /// let mut service = layer.layer(String::from("inner"));
    /// assert_eq!(service.get_ref(), "inner");
    /// service.get_mut().push_str(", changed");
    /// assert_eq!(service.into_inner(), "inner, changed");
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, dropping the layer.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for VerifyWebhook<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone,
    ReqBody: Body,
    ReqBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The inner service is called later, from the future, so the one that was polled
        // ready goes with it and a fresh clone stays behind.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::new(request, inner, Arc::clone(&self.config))
    }
}
