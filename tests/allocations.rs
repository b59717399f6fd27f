//! Heap allocations per delivery, counted by a global allocator: a budget, not a timing, so
//! it is the same on any machine. The perf bar (`../shared/perfbar`, part 1d) measures the
//! same thing; this keeps a regression from landing unnoticed.

use std::alloc::System;
use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tower::{Layer, ServiceExt};
use tower_webhook::scheme::Scheme;
use tower_webhook::store::{Claim, IdempotencyStore, MemoryStore};
use tower_webhook::VerifyWebhookLayer;

mod common;

use common::{now_unix, request, scheme};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// How many allocations (reallocations included) `f` makes. The process has one thread.
fn allocations(f: impl FnOnce()) -> usize {
    let region = Region::new(ALLOCATOR);
    f();
    let change = region.change();
    change.allocations + change.reallocations
}

struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

/// A waker that does nothing, made once, before any count.
fn waker() -> &'static Waker {
    static WAKER: OnceLock<Waker> = OnceLock::new();
    WAKER.get_or_init(|| Waker::from(Arc::new(Noop)))
}

/// Polls a future that needs no runtime to completion (every store here answers at once).
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(waker())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the future waited"),
    }
}

const ROUNDS: usize = 200;

fn body() -> Bytes {
    body_with(br#"{"data":{"pad":""#)
}

/// A body of about 1 KB that names its event type where Standard Webhooks puts it.
fn typed_body() -> Bytes {
    body_with(br#"{"type":"invoice.paid","data":{"pad":""#)
}

fn body_with(start: &[u8]) -> Bytes {
    let mut body = start.to_vec();
    body.resize(1000, b'x');
    body.extend_from_slice(br#""}}"#);
    Bytes::from(body)
}

/// Requests as a server hands them over: the header values share their buffers, as hyper's
/// do (a clone of the signed headers promotes each value to shared bytes).
fn requests(ids: impl Iterator<Item = String>, body: &Bytes) -> Vec<Request<Full<Bytes>>> {
    let scheme = scheme();
    ids.map(|id| {
        let signed = scheme.sign(&id, now_unix(), body).unwrap();
        request(signed.clone(), body.clone())
    })
    .collect()
}

fn inner(
) -> impl tower::Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible>
       + Clone {
    tower::service_fn(|_request: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    })
}

/// The allocations per delivery, averaged over `ROUNDS` after one round that may set up
/// what is made once (lazily built statics).
fn per_delivery(mut run: impl FnMut()) -> f64 {
    run();
    let total: usize = (0..ROUNDS).map(|_| allocations(&mut run)).sum();
    #[allow(clippy::cast_precision_loss)]
    let mean = total as f64 / ROUNDS as f64;
    mean
}

fn verification_alone() {
    let scheme = scheme();
    let body = body();
    let headers = scheme
        .sign("msg_p5jXN8AQM9LWM0D4loKWxJek", now_unix(), &body)
        .unwrap();
    let mean = per_delivery(|| {
        scheme.verify(&headers, &body, SystemTime::now()).unwrap();
    });
    check("Scheme::verify", mean, 0.0);
}

/// The allocations per delivery through `layer`, each delivery with its own id.
fn through(layer: &VerifyWebhookLayer) -> f64 {
    through_with(layer, &body())
}

fn through_with(layer: &VerifyWebhookLayer, body: &Bytes) -> f64 {
    let service = layer.layer(inner());
    let mut requests = requests((0..=ROUNDS).map(|i| format!("msg_{i}")), body).into_iter();
    per_delivery(|| {
        let request = requests.next().unwrap();
        let response = ready(service.clone().oneshot(request)).unwrap();
        assert_eq!(response.status(), 200);
    })
}

fn the_layer_without_a_store() {
    let mean = through(&VerifyWebhookLayer::new(scheme()));
    check("the layer without a store", mean, 3.0);
}

/// Reading the event type from the body costs its `String`, and the error `serde_json` makes
/// to stop the read at the value (five small allocations) rather than read the rest of the
/// body.
fn the_layer_reading_the_event_type_from_the_body() {
    let mean = through_with(&VerifyWebhookLayer::new(scheme()), &typed_body());
    check("the layer reading the event type from the body", mean, 9.0);
}

fn the_layer_with_a_memory_store() {
    let mean = through(&VerifyWebhookLayer::new(scheme()).with_store(MemoryStore::new()));
    check("the layer with a MemoryStore", mean, 5.0);
}

fn a_memory_store_claim_and_completion() {
    let store = MemoryStore::new();
    let keys: Vec<String> = (0..=ROUNDS).map(|i| format!("key_{i}")).collect();
    let mut keys = keys.iter();
    let mean = per_delivery(|| {
        let key = keys.next().unwrap();
        let Claim::Acquired(token) = ready(store.claim(key, Duration::from_secs(60))).unwrap()
        else {
            panic!("a fresh key");
        };
        assert!(ready(store.complete(key, &token, Duration::from_secs(600))).unwrap());
    });
    check("a MemoryStore claim and completion", mean, 2.0);
}

/// Fails the run where `mean` is over `budget`, and says so either way.
fn check(what: &str, mean: f64, budget: f64) {
    println!("{what}: {mean:.2} allocations per delivery (budget {budget})");
    assert!(
        mean <= budget,
        "{what}: {mean} allocations, over the budget of {budget}"
    );
}

fn main() {
    waker();
    verification_alone();
    the_layer_without_a_store();
    the_layer_reading_the_event_type_from_the_body();
    the_layer_with_a_memory_store();
    a_memory_store_claim_and_completion();
}
