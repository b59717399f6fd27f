//! The whole layer, with the in-memory store, on any headers and body, each sent twice: it never
//! panics, answers 2xx only to what an independent check verifies, marks the second copy of a
//! handled delivery as a duplicate, and never answers 429 or 503 without `Retry-After`.
#![no_main]

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use tower_layer::Layer;
use tower_service::Service;
use tower_webhook::clock::ManualClock;
use tower_webhook::store::MemoryStore;
use tower_webhook::{VerifyWebhookLayer, DUPLICATE_HEADER};
use tower_webhook_fuzz::{block_on, standard, standard_verifies, Delivery};

/// A handler that answers 204 at once.
#[derive(Clone)]
struct Handler;

impl Service<Request<Full<Bytes>>> for Handler {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<Full<Bytes>>) -> Self::Future {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::NO_CONTENT;
        std::future::ready(Ok(response))
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(delivery) = Delivery::parse(data) else {
        return;
    };
    let verified = standard_verifies(&delivery);
    let clock = ManualClock::at_unix(delivery.now);
    let mut service = VerifyWebhookLayer::new(standard())
        .with_store(MemoryStore::new().with_clock(clock.clone()))
        .with_clock(clock)
        .with_body_limit(64 * 1024)
        .layer(Handler);
    let mut handled = false;
    for copy in 0..2 {
        let mut request = Request::post("/webhooks")
            .body(Full::new(Bytes::from(delivery.body.clone())))
            .unwrap();
        *request.headers_mut() = delivery.headers.clone();
        let response = block_on(service.call(request)).unwrap();
        let status = response.status();
        if status.is_success() {
            assert!(
                verified,
                "{status} to a delivery an independent check refuses"
            );
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(
                response.headers().contains_key(RETRY_AFTER),
                "{status} without Retry-After"
            );
        }
        let duplicate = response.headers().contains_key(DUPLICATE_HEADER);
        if copy == 0 {
            handled = status == StatusCode::NO_CONTENT;
            assert!(!duplicate, "a first copy answered as a duplicate");
        } else if handled {
            assert!(
                status == StatusCode::OK && duplicate,
                "the second copy of a handled delivery answered {status}"
            );
        }
    }
});
