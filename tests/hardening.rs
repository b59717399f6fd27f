//! The defects an outside review found, each as a test over the public API: namespaced and
//! bounded keys, bounded store calls, claims that are not leaked, secrets that are not shown or
//! accepted blank, and the bounds on what an unverified request can cost.

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{counting, request, signed, Calls, PerId};
use http::header::RETRY_AFTER;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use tokio::sync::Notify;
use tower::{Layer, Service, ServiceExt};
use tower_webhook::clock::ManualClock;
use tower_webhook::scheme::{HmacScheme, InvalidSchemeKind, StandardWebhooks};
use tower_webhook::store::{Claim, ClaimToken, IdempotencyStore, MemoryStore, StoreError};
use tower_webhook::{IdSource, VerifyWebhookLayer, DUPLICATE_HEADER};

/// Status and whether the answer was marked a duplicate.
async fn status_of<S, B>(service: S, request: Request<Full<Bytes>>) -> (StatusCode, bool)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let response = service.oneshot(request).await.unwrap();
    (
        response.status(),
        response.headers().contains_key(DUPLICATE_HEADER),
    )
}

// 1. Keys are namespaced (every backend: the conformance suite's `layers_sharing_a_store_keep_apart`)

#[tokio::test]
async fn named_layers_of_one_scheme_keep_apart_and_a_name_is_its_namespace() {
    let store = MemoryStore::new();
    let layer = |name: &str| {
        VerifyWebhookLayer::new(common::scheme())
            .with_name(name)
            .with_store(store.clone())
    };
    let runs = PerId::default();
    let clerk = layer("clerk").layer(runs.service(Duration::ZERO));
    let resend = layer("resend").layer(runs.service(Duration::ZERO));
    let clerk_again = layer("clerk").layer(runs.service(Duration::ZERO));

    assert_eq!(
        status_of(clerk, signed("msg_1", "{}")).await,
        (StatusCode::OK, false)
    );
    assert_eq!(
        status_of(resend, signed("msg_1", "{}")).await,
        (StatusCode::OK, false)
    );
    assert_eq!(runs.runs("msg_1"), 2);
    // A second layer of the same name is the same sender: its copy is a duplicate.
    assert_eq!(
        status_of(clerk_again, signed("msg_1", "{}")).await,
        (StatusCode::OK, true)
    );
}

// 3. Joined fields are keyed injectively ---------------------------------------------------

#[tokio::test]
async fn joined_json_fields_that_read_alike_are_different_deliveries() {
    let runs = PerId::default();
    let service = VerifyWebhookLayer::new(common::scheme())
        .with_store(MemoryStore::new())
        .with_id_source(IdSource::json_fields(["verification_id", "type"], "-"))
        .layer(runs.service(Duration::ZERO));
    for (n, body) in [
        r#"{"verification_id":"v-1","type":"done"}"#,
        r#"{"verification_id":"v","type":"1-done"}"#,
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(
            status_of(service.clone(), signed(&format!("msg_{n}"), body)).await,
            (StatusCode::OK, false),
            "{body}"
        );
    }
    // The id a handler sees is the joined text, as asked: both ran under it.
    assert_eq!(runs.runs("v-1-done"), 2);

    let numbers = VerifyWebhookLayer::new(common::scheme())
        .with_store(MemoryStore::new())
        .with_id_source(IdSource::json_field("id"))
        .layer(runs.service(Duration::ZERO));
    for body in [r#"{"id":1}"#, r#"{"id":"1"}"#] {
        assert_eq!(
            status_of(numbers.clone(), signed("msg_n", body)).await,
            (StatusCode::OK, false),
            "{body}"
        );
    }
    assert_eq!(runs.runs("1"), 2);
}

// 4. Keys are bounded in size --------------------------------------------------------------

#[tokio::test]
async fn huge_unsigned_ids_do_not_grow_the_store() {
    let github = HmacScheme::github("gh secret").unwrap();
    let store = MemoryStore::new();
    let service = VerifyWebhookLayer::new(github.clone())
        .with_store(store.clone())
        .layer(counting(Calls::default(), StatusCode::OK));
    let body = br#"{"action":"opened"}"#;
    for n in 0..20 {
        let id = format!("{n}{}", "x".repeat(292 * 1024));
        let headers = github.sign(&id, 0, body).unwrap();
        assert_eq!(
            status_of(service.clone(), request(headers, &body[..])).await,
            (StatusCode::OK, false)
        );
    }
    assert_eq!(store.len(), 20);
    // Each key is a bounded hash, not the 292 KiB id.
    assert!(store.bytes() < 20 * 1024, "{} bytes", store.bytes());
}

#[tokio::test]
async fn the_memory_store_holds_its_bound_in_bytes() {
    let lease = Duration::from_secs(60);
    let store = MemoryStore::new().with_max_bytes(64 * 1024);
    for n in 0..1000 {
        let key = format!("{n}:{}", "k".repeat(400));
        let Claim::Acquired(token) = store.claim(&key, lease).await.unwrap() else {
            panic!("fresh key {n}");
        };
        assert!(store
            .complete(&key, &token, Duration::from_secs(3600))
            .await
            .unwrap());
        assert!(store.bytes() <= 64 * 1024, "{} bytes", store.bytes());
    }
    assert!(
        store.len() < 1000,
        "completed entries were forgotten to stay in bound"
    );
    // A key far over the bound is kept as a hash, not refused.
    let huge = "h".repeat(1024 * 1024);
    assert!(matches!(
        store.claim(&huge, lease).await.unwrap(),
        Claim::Acquired(_)
    ));
    assert!(store.bytes() <= 64 * 1024);
}

// 5. Store calls are bounded ---------------------------------------------------------------

/// A store of a user's own without timeouts: every claim waits until `go` is notified, then
/// takes the key. Records the releases it is asked for.
#[derive(Debug, Clone, Default)]
struct Hanging {
    go: Arc<Notify>,
    inner: MemoryStore,
    releases: Arc<AtomicUsize>,
}

impl IdempotencyStore for Hanging {
    async fn claim(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        self.go.notified().await;
        self.inner.claim(key, lease).await
    }

    async fn complete(
        &self,
        key: &str,
        token: &ClaimToken,
        keep_for: Duration,
    ) -> Result<bool, StoreError> {
        self.inner.complete(key, token, keep_for).await
    }

    async fn release(&self, key: &str, token: &ClaimToken) -> Result<bool, StoreError> {
        self.releases.fetch_add(1, Ordering::SeqCst);
        self.inner.release(key, token).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_store_that_hangs_answers_503_in_time_and_its_late_claim_is_released() {
    let store = Hanging::default();
    let calls = Calls::default();
    let service = VerifyWebhookLayer::new(common::scheme())
        .with_store(store.clone())
        .with_store_timeout(Duration::from_millis(500))
        .layer(counting(calls.clone(), StatusCode::OK));

    let started = tokio::time::Instant::now();
    let response = service
        .clone()
        .oneshot(signed("msg_hang", "{}"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key(RETRY_AFTER));
    assert_eq!(started.elapsed(), Duration::from_millis(500));
    assert_eq!(calls.get(), 0);

    // The store answers at last: the claim it takes is nobody's, and is released at once.
    store.go.notify_one();
    for _ in 0..100 {
        if store.releases.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(store.releases.load(Ordering::SeqCst), 1);
    let retry = store.inner.claim("probe", Duration::from_secs(1)).await;
    assert!(matches!(retry, Ok(Claim::Acquired(_))));
    assert!(
        store.inner.len() == 1,
        "only the probe is left: the late claim was released"
    );
}

// 6. A dropped answer releases its claim ---------------------------------------------------

#[tokio::test]
async fn a_sender_that_hangs_up_mid_handler_does_not_block_its_retry() {
    let clock = ManualClock::starting_now();
    let store = MemoryStore::new().with_clock(clock.clone());
    let started = Arc::new(Notify::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (started, runs) = (Arc::clone(&started), Arc::clone(&runs));
        tower::service_fn(move |_request: Request<Full<Bytes>>| {
            let (started, runs) = (Arc::clone(&started), Arc::clone(&runs));
            async move {
                // The first run is slower than the sender waits.
                if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                    started.notify_one();
                    std::future::pending::<()>().await;
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
            }
        })
    };
    let service = VerifyWebhookLayer::new(common::scheme())
        .with_store(store.clone())
        .layer(handler);

    let first = tokio::spawn(service.clone().oneshot(signed("msg_gone", "{}")));
    started.notified().await;
    first.abort(); // the sender hung up: the response future is dropped mid-handler
    assert!(first.await.unwrap_err().is_cancelled());

    // The lease (60 s of a clock that does not move) has not run out: only a release lets
    // the retry through.
    let mut status = StatusCode::TOO_MANY_REQUESTS;
    for _ in 0..100 {
        status = status_of(service.clone(), signed("msg_gone", "{}")).await.0;
        if status != StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(status, StatusCode::OK);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

// 7. A panic in `call` releases the claim --------------------------------------------------

/// A service whose `call` itself panics the first time.
#[derive(Clone, Default)]
struct PanicsInCall(Arc<AtomicUsize>);

impl Service<Request<Full<Bytes>>> for PanicsInCall {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<Full<Bytes>>) -> Self::Future {
        assert!(
            self.0.fetch_add(1, Ordering::SeqCst) > 0,
            "the first call panics"
        );
        std::future::ready(Ok(Response::new(Full::new(Bytes::new()))))
    }
}

#[tokio::test]
async fn a_panic_in_the_inner_call_releases_the_claim() {
    let calls = PanicsInCall::default();
    let service = VerifyWebhookLayer::new(common::scheme())
        .with_store(MemoryStore::new().with_clock(ManualClock::starting_now()))
        .layer(calls.clone());
    let first = tokio::spawn(service.clone().oneshot(signed("msg_panic", "{}")));
    assert!(first.await.unwrap_err().is_panic(), "the panic goes on");
    assert_eq!(
        status_of(service, signed("msg_panic", "{}")).await,
        (StatusCode::OK, false),
        "the retry runs at once, not after the lease"
    );
    assert_eq!(calls.0.load(Ordering::SeqCst), 2);
}

// 8. No `Debug` shows a secret -------------------------------------------------------------

#[test]
fn no_debug_shows_a_secret() {
    const TEXT: &str = "s3cr3t-Text-Of-A-Sender";
    const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let leaks = |shown: &str, secret: &str| {
        let bytes = secret.as_bytes();
        let decimal = format!("{}, {}, {}", bytes[0], bytes[1], bytes[2]);
        shown.contains(secret) || shown.contains(&decimal) || shown.contains(&hex::encode(bytes))
    };
    let mut shown: Vec<(String, &str)> = vec![
        (
            format!("{:?}", StandardWebhooks::new(WHSEC).unwrap()),
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ),
        (
            format!(
                "{:?}",
                VerifyWebhookLayer::new(StandardWebhooks::new(WHSEC).unwrap())
            ),
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ),
        (
            format!(
                "{:?}",
                VerifyWebhookLayer::new(HmacScheme::github(TEXT).unwrap()).layer(())
            ),
            TEXT,
        ),
        (
            format!(
                "{:?}",
                HmacScheme::builder("acme")
                    .signature_header("x-acme-signature")
                    .secret(TEXT)
            ),
            TEXT,
        ),
    ];
    for scheme in [
        HmacScheme::stripe(TEXT),
        HmacScheme::github(TEXT),
        HmacScheme::shopify(TEXT),
        HmacScheme::slack(TEXT),
        HmacScheme::paddle(TEXT),
    ] {
        shown.push((format!("{:?}", scheme.unwrap()), TEXT));
    }
    #[cfg(feature = "ed25519")]
    {
        use base64::Engine as _;
        let seed = [42u8; 32];
        let signing = base64::engine::general_purpose::STANDARD.encode(seed);
        let scheme = StandardWebhooks::from_signing_key(&format!("whsk_{signing}")).unwrap();
        let text = format!("{scheme:?}");
        assert!(
            !text.contains(&signing) && !text.contains("42, 42, 42"),
            "{text}"
        );
    }
    for (text, secret) in &shown {
        assert!(!leaks(text, secret), "a Debug shows the secret: {text}");
    }
}

// 10. A timestamp the signature does not cover is refused (9, blank secrets: tests/senders.rs)

#[test]
fn a_timestamp_header_the_template_does_not_sign_is_refused() {
    let built = HmacScheme::builder("acme")
        .signature_header("x-acme-signature")
        .signs("{body}")
        .timestamp_header("x-acme-timestamp")
        .secret("acme secret")
        .build();
    assert_eq!(
        built.unwrap_err().kind(),
        InvalidSchemeKind::UnsignedTimestamp
    );
    let signed = HmacScheme::builder("acme")
        .signature_header("x-acme-signature")
        .signs("{timestamp}.{body}")
        .timestamp_header("x-acme-timestamp")
        .secret("acme secret")
        .build();
    assert!(signed.is_ok());
}

// 13. The body buffer grows with what arrives ----------------------------------------------

/// A body that sends two one-byte chunks of the megabyte it announces, then stalls.
struct Trickle(u8);

impl http_body::Body for Trickle {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        if self.0 < 2 {
            self.0 += 1;
            std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(b"x")))))
        } else {
            std::task::Poll::Pending
        }
    }
}

#[cfg(target_os = "linux")]
#[test]
fn announced_lengths_reserve_nothing() {
    fn vm_size_kib() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
    let service =
        VerifyWebhookLayer::new(common::scheme()).layer(counting(Calls::default(), StatusCode::OK));
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let before = vm_size_kib();
    let mut pending = Vec::new();
    for _ in 0..300 {
        let mut request = Request::post("/webhooks").body(Trickle(0)).unwrap();
        request
            .headers_mut()
            .insert("content-length", HeaderValue::from(1024 * 1024));
        let mut future = Box::pin(service.clone().call(request));
        assert!(future.as_mut().poll(&mut cx).is_pending());
        pending.push(future);
    }
    let grown_mib = (vm_size_kib() - before) / 1024;
    // Reserving what each announced would take 300 MiB.
    assert!(grown_mib < 64, "{grown_mib} MiB for 300 two-byte bodies");
}
