//! The layer over a bare tower service: every row of the bad-input table, the size limit,
//! dedup, and settling of claims.

mod common;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::{body_text, counting, now_unix, request, scheme, signed, Calls, OTHER_SECRET, SECRET};
use http::header::{CONTENT_LENGTH, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};
use tower_webhook::clock::ManualClock;
use tower_webhook::scheme::StandardWebhooks;
use tower_webhook::store::{
    Claim, ClaimToken, IdempotencyStore, MemoryStore, StoreError, StoreErrorKind,
};
use tower_webhook::{
    Duplicate, Event, IdSource, Rejection, RejectionKind, VerifyWebhookLayer, DUPLICATE_HEADER,
};

const BODY: &str = r#"{"type":"user.created","data":{"id":"user_1"}}"#;

fn layer() -> VerifyWebhookLayer {
    VerifyWebhookLayer::new(scheme()).with_store(MemoryStore::new())
}

/// Sends one request through `layer` around a counting handler answering 200.
async fn send<B>(
    layer: &VerifyWebhookLayer,
    calls: &Calls,
    request: Request<B>,
) -> (StatusCode, HeaderMap, String)
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let service = layer.layer(counting(calls.clone(), StatusCode::OK));
    let response = service.oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, body_text(response).await)
}

/// Headers of a valid delivery of [`BODY`] with one header replaced (or removed, for `None`).
fn with_header(name: &str, value: Option<HeaderValue>) -> HeaderMap {
    let mut headers = scheme().sign("msg_1", now_unix(), BODY.as_bytes()).unwrap();
    let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
    match value {
        Some(value) => headers.insert(name, value),
        None => headers.remove(name),
    };
    headers
}

async fn expect_rejected(
    headers: HeaderMap,
    body: impl Into<Bytes>,
    status: StatusCode,
    reason: &str,
) {
    let calls = Calls::default();
    let (got, _, text) = send(&layer(), &calls, request(headers, body)).await;
    assert_eq!((got, text.as_str()), (status, reason));
    assert_eq!(calls.get(), 0, "the handler must not run for {reason:?}");
}

#[tokio::test]
async fn a_valid_delivery_reaches_the_handler_with_its_event() {
    let seen: Arc<std::sync::Mutex<Option<(Event, Bytes)>>> = Arc::default();
    let service = {
        let seen = Arc::clone(&seen);
        tower::service_fn(move |request: Request<Full<Bytes>>| {
            let seen = Arc::clone(&seen);
            async move {
                let event = request.extensions().get::<Event>().cloned().unwrap();
                let body = http_body_util::BodyExt::collect(request.into_body())
                    .await
                    .unwrap()
                    .to_bytes();
                *seen.lock().unwrap() = Some((event, body));
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
            }
        })
    };
    let ts = now_unix();
    let headers = scheme().sign("msg_valid", ts, BODY.as_bytes()).unwrap();
    let response = layer()
        .layer(service)
        .oneshot(request(headers, BODY))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get(DUPLICATE_HEADER).is_none());

    let (event, body) = seen.lock().unwrap().take().unwrap();
    assert_eq!(event.id(), "msg_valid");
    assert_eq!(event.unix_timestamp(), Some(ts));
    assert_eq!(event.scheme(), "standard-webhooks");
    assert_eq!(event.body(), BODY);
    // The inner service gets the very same bytes back, not a copy.
    assert_eq!(body, BODY);
    assert_eq!(body.as_ptr(), event.body().as_ptr());
    let value: serde_json::Value = event.json().unwrap();
    assert_eq!(value["data"]["id"], "user_1");
}

#[tokio::test]
async fn missing_headers() {
    for (name, reason) in [
        ("webhook-id", "missing webhook-id"),
        ("webhook-timestamp", "missing webhook-timestamp"),
        ("webhook-signature", "missing webhook-signature"),
    ] {
        expect_rejected(
            with_header(name, None),
            BODY,
            StatusCode::BAD_REQUEST,
            reason,
        )
        .await;
        // An empty value is as good as none.
        let empty = with_header(name, Some(HeaderValue::from_static("")));
        expect_rejected(empty, BODY, StatusCode::BAD_REQUEST, reason).await;
    }
    expect_rejected(
        HeaderMap::new(),
        BODY,
        StatusCode::BAD_REQUEST,
        "missing webhook-id",
    )
    .await;
}

#[tokio::test]
async fn malformed_signatures() {
    let good = scheme()
        .signature("msg_1", now_unix(), BODY.as_bytes())
        .unwrap();
    let good_tag = good.strip_prefix("v1,").unwrap();
    for (value, reason) in [
        ("garbage".to_owned(), "no supported signature"),
        ("v1,".to_owned(), "no supported signature"),
        ("v1,!!!not-base64!!!".to_owned(), "no supported signature"),
        ("v1,aGVsbG8=".to_owned(), "no supported signature"),
        (format!("v2,{good_tag}"), "no supported signature"),
        (format!("v1a,{good_tag}"), "no supported signature"),
        (format!("v1 {good_tag}"), "no supported signature"),
        (",,, v1 , ,v1".to_owned(), "no supported signature"),
        (
            StandardWebhooks::new(OTHER_SECRET)
                .unwrap()
                .signature("msg_1", now_unix(), BODY.as_bytes())
                .unwrap(),
            "no matching signature",
        ),
    ] {
        let headers = with_header(
            "webhook-signature",
            Some(HeaderValue::from_str(&value).unwrap()),
        );
        expect_rejected(headers, BODY, StatusCode::BAD_REQUEST, reason).await;
    }
}

#[tokio::test]
async fn one_good_signature_among_several_verifies() {
    let ts = now_unix();
    let good = scheme().signature("msg_many", ts, BODY.as_bytes()).unwrap();
    let other = StandardWebhooks::new(OTHER_SECRET)
        .unwrap()
        .signature("msg_many", ts, BODY.as_bytes())
        .unwrap();
    let value = format!("v2,unknown {other} v1,!!! v1, {good} v1a,AAAA");
    let mut headers = scheme().sign("msg_many", ts, BODY.as_bytes()).unwrap();
    headers.insert("webhook-signature", HeaderValue::from_str(&value).unwrap());
    let calls = Calls::default();
    let (status, _, _) = send(&layer(), &calls, request(headers, BODY)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn a_secret_from_the_rotation_list_verifies() {
    let rotating = StandardWebhooks::new(OTHER_SECRET)
        .unwrap()
        .with_secret(SECRET)
        .unwrap();
    let layer = VerifyWebhookLayer::new(rotating).with_store(MemoryStore::new());
    let calls = Calls::default();
    // Signed with the old secret, the second in the list.
    let (status, _, _) = send(&layer, &calls, signed("msg_rotated", BODY)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn bad_timestamps() {
    let now = now_unix();
    for (value, reason) in [
        ("soon".to_owned(), "invalid webhook-timestamp"),
        ("1.5e9".to_owned(), "invalid webhook-timestamp"),
        (
            "99999999999999999999999".to_owned(),
            "invalid webhook-timestamp",
        ),
        ("-1".to_owned(), "timestamp too old"),
        ((now - 301).to_string(), "timestamp too old"),
        ((now + 301).to_string(), "timestamp too far in the future"),
        (i64::MAX.to_string(), "timestamp too far in the future"),
        (i64::MIN.to_string(), "timestamp too old"),
    ] {
        // Signed over the bad timestamp, so only the timestamp rule can refuse it.
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", HeaderValue::from_static("msg_ts"));
        headers.insert("webhook-timestamp", HeaderValue::from_str(&value).unwrap());
        let signature = signature_over("msg_ts", &value, BODY.as_bytes());
        headers.insert(
            "webhook-signature",
            HeaderValue::from_str(&signature).unwrap(),
        );
        expect_rejected(headers, BODY, StatusCode::BAD_REQUEST, reason).await;
    }
}

/// A Standard Webhooks signature over an arbitrary timestamp text, made by hand.
fn signature_over(id: &str, timestamp: &str, body: &[u8]) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

#[tokio::test]
async fn timestamps_at_the_edge_of_a_configured_tolerance() {
    let clock = ManualClock::at_unix(1_700_000_000);
    let layer = VerifyWebhookLayer::new(scheme().with_tolerance(Duration::from_secs(10)))
        .with_clock(clock.clone());
    let calls = Calls::default();
    let headers = scheme()
        .sign("msg_edge", 1_700_000_000, BODY.as_bytes())
        .unwrap();
    clock.advance(Duration::from_secs(10));
    let (status, _, _) = send(&layer, &calls, request(headers.clone(), BODY)).await;
    assert_eq!(status, StatusCode::OK);
    clock.advance(Duration::from_secs(1));
    let (status, _, text) = send(&layer, &calls, request(headers, BODY)).await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::BAD_REQUEST, "timestamp too old")
    );
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn a_tampered_body_is_refused() {
    let headers = scheme().sign("msg_1", now_unix(), BODY.as_bytes()).unwrap();
    let tampered = BODY.replace("user_1", "user_2");
    expect_rejected(
        headers.clone(),
        tampered,
        StatusCode::BAD_REQUEST,
        "no matching signature",
    )
    .await;
    expect_rejected(
        headers.clone(),
        "",
        StatusCode::BAD_REQUEST,
        "no matching signature",
    )
    .await;
    expect_rejected(
        headers,
        format!("{BODY} "),
        StatusCode::BAD_REQUEST,
        "no matching signature",
    )
    .await;
}

#[tokio::test]
async fn a_tampered_id_or_timestamp_is_refused() {
    let ts = now_unix();
    let mut headers = scheme().sign("msg_1", ts, BODY.as_bytes()).unwrap();
    headers.insert("webhook-id", HeaderValue::from_static("msg_2"));
    expect_rejected(
        headers,
        BODY,
        StatusCode::BAD_REQUEST,
        "no matching signature",
    )
    .await;
    let mut headers = scheme().sign("msg_1", ts, BODY.as_bytes()).unwrap();
    headers.insert("webhook-timestamp", HeaderValue::from(ts - 1));
    expect_rejected(
        headers,
        BODY,
        StatusCode::BAD_REQUEST,
        "no matching signature",
    )
    .await;
}

#[tokio::test]
async fn a_body_that_is_not_utf8_verifies_like_any_other() {
    let body: &[u8] = &[0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28];
    let headers = scheme().sign("msg_binary", now_unix(), body).unwrap();
    let calls = Calls::default();
    let (status, _, _) = send(&layer(), &calls, request(headers, Bytes::from_static(body))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn non_ascii_header_bytes_are_refused_not_panicked_on() {
    let latin1 = HeaderValue::from_bytes(b"caf\xe9").unwrap();
    let utf8 = HeaderValue::from_bytes("v1,ünï".as_bytes()).unwrap();
    for (name, value, reason) in [
        ("webhook-id", latin1.clone(), "invalid webhook-id"),
        (
            "webhook-timestamp",
            latin1.clone(),
            "invalid webhook-timestamp",
        ),
        (
            "webhook-timestamp",
            HeaderValue::from_bytes("１７".as_bytes()).unwrap(),
            "invalid webhook-timestamp",
        ),
        ("webhook-signature", latin1, "invalid webhook-signature"),
        ("webhook-signature", utf8, "invalid webhook-signature"),
    ] {
        expect_rejected(
            with_header(name, Some(value)),
            BODY,
            StatusCode::BAD_REQUEST,
            reason,
        )
        .await;
    }
}

#[tokio::test]
async fn a_utf8_id_is_accepted() {
    let id = "msg_ünïcødé";
    let ts = now_unix();
    let mut headers = HeaderMap::new();
    headers.insert(
        "webhook-id",
        HeaderValue::from_bytes(id.as_bytes()).unwrap(),
    );
    headers.insert("webhook-timestamp", HeaderValue::from(ts));
    let signature = signature_over(id, &ts.to_string(), BODY.as_bytes());
    headers.insert(
        "webhook-signature",
        HeaderValue::from_str(&signature).unwrap(),
    );
    let calls = Calls::default();
    let (status, _, _) = send(&layer(), &calls, request(headers, BODY)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn svix_headers_verify() {
    let ts = now_unix();
    let mut headers = HeaderMap::new();
    let signed = scheme().sign("msg_svix", ts, BODY.as_bytes()).unwrap();
    for (name, value) in &signed {
        let svix = name.as_str().replace("webhook-", "svix-");
        headers.insert(
            HeaderName::from_bytes(svix.as_bytes()).unwrap(),
            value.clone(),
        );
    }
    let calls = Calls::default();
    let (status, _, _) = send(&layer(), &calls, request(headers, BODY)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(calls.get(), 1);
}

/// A body that yields `chunks`, then fails if `fail` is set, and records whether it was read.
struct Chunks {
    queue: Vec<Bytes>,
    fail: bool,
    polled: Arc<AtomicBool>,
    hint: SizeHint,
}

impl Chunks {
    fn new(chunks: Vec<Bytes>, fail: bool) -> (Self, Arc<AtomicBool>) {
        let polled = Arc::new(AtomicBool::new(false));
        let body = Self {
            queue: chunks,
            fail,
            polled: Arc::clone(&polled),
            hint: SizeHint::default(),
        };
        (body, polled)
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.polled.store(true, Ordering::SeqCst);
        if !self.queue.is_empty() {
            let chunk = self.queue.remove(0);
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if self.fail {
            self.fail = false;
            return Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "reset",
            ))));
        }
        Poll::Ready(None)
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

fn chunked(body: &'static str, pieces: usize) -> Vec<Bytes> {
    let bytes = Bytes::from_static(body.as_bytes());
    let size = bytes.len().div_ceil(pieces);
    (0..bytes.len())
        .step_by(size)
        .map(|at| bytes.slice(at..(at + size).min(bytes.len())))
        .collect()
}

fn streamed(headers: HeaderMap, body: Chunks) -> Request<Chunks> {
    let mut request = Request::post("/webhooks").body(body).unwrap();
    *request.headers_mut() = headers;
    request
}

#[tokio::test]
async fn a_body_in_many_chunks_verifies() {
    let headers = scheme()
        .sign("msg_chunks", now_unix(), BODY.as_bytes())
        .unwrap();
    let (body, _) = Chunks::new(chunked(BODY, 7), false);
    let calls = Calls::default();
    let (status, _, _) = send(&layer(), &calls, streamed(headers, body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn content_length_over_the_limit_is_refused_before_reading() {
    let layer = layer().with_body_limit(16);
    let mut headers = scheme()
        .sign("msg_big", now_unix(), BODY.as_bytes())
        .unwrap();
    headers.insert(CONTENT_LENGTH, HeaderValue::from(BODY.len()));
    let (body, polled) = Chunks::new(chunked(BODY, 1), false);
    let calls = Calls::default();
    let (status, _, text) = send(&layer, &calls, streamed(headers, body)).await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload too large")
    );
    assert!(!polled.load(Ordering::SeqCst), "not a byte may be read");
    assert_eq!(calls.get(), 0);
}

#[tokio::test]
async fn a_size_hint_over_the_limit_is_refused_before_reading() {
    let layer = layer().with_body_limit(16);
    let headers = scheme()
        .sign("msg_big", now_unix(), BODY.as_bytes())
        .unwrap();
    let (mut body, polled) = Chunks::new(chunked(BODY, 1), false);
    body.hint = SizeHint::with_exact(BODY.len() as u64);
    let calls = Calls::default();
    let (status, _, _) = send(&layer, &calls, streamed(headers, body)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(!polled.load(Ordering::SeqCst));
}

#[tokio::test]
async fn a_streamed_body_over_the_limit_is_refused_as_it_passes_it() {
    let layer = layer().with_body_limit(BODY.len() - 1);
    let headers = scheme()
        .sign("msg_big", now_unix(), BODY.as_bytes())
        .unwrap();
    let (body, polled) = Chunks::new(chunked(BODY, 5), false);
    let calls = Calls::default();
    let (status, _, text) = send(&layer, &calls, streamed(headers, body)).await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload too large")
    );
    assert!(polled.load(Ordering::SeqCst));
    assert_eq!(calls.get(), 0);

    // Exactly at the limit is fine.
    let layer = layer.with_body_limit(BODY.len());
    let headers = scheme()
        .sign("msg_fits", now_unix(), BODY.as_bytes())
        .unwrap();
    let (body, _) = Chunks::new(chunked(BODY, 5), false);
    let (status, _, _) = send(&layer, &calls, streamed(headers, body)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_body_stream_that_fails_midway_is_retryable() {
    let headers = scheme()
        .sign("msg_cut", now_unix(), BODY.as_bytes())
        .unwrap();
    let (body, _) = Chunks::new(chunked(BODY, 3)[..1].to_vec(), true);
    let calls = Calls::default();
    let (status, headers, text) = send(&layer(), &calls, streamed(headers, body)).await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::REQUEST_TIMEOUT, "failed to read request body")
    );
    assert!(headers.get(RETRY_AFTER).is_none());
    assert_eq!(calls.get(), 0);
}

#[tokio::test]
async fn a_duplicate_is_answered_without_the_handler() {
    let layer = layer();
    let calls = Calls::default();
    let (first, headers, _) = send(&layer, &calls, signed("msg_dup", BODY)).await;
    assert_eq!(first, StatusCode::OK);
    assert!(headers.get(DUPLICATE_HEADER).is_none());
    for _ in 0..3 {
        let (again, headers, text) = send(&layer, &calls, signed("msg_dup", BODY)).await;
        assert_eq!(
            (again, text.as_str()),
            (StatusCode::OK, "duplicate delivery")
        );
        assert_eq!(headers[DUPLICATE_HEADER], "true");
    }
    assert_eq!(calls.get(), 1);
    let stats = layer.stats().snapshot();
    assert_eq!((stats.handled, stats.duplicates), (1, 3));
    // Outer layers see which delivery it was.
    let service = layer.layer(counting(calls.clone(), StatusCode::OK));
    let response = service.oneshot(signed("msg_dup", BODY)).await.unwrap();
    assert_eq!(
        response.extensions().get::<Duplicate>().map(Duplicate::id),
        Some("msg_dup")
    );
}

#[tokio::test]
async fn without_a_store_every_copy_runs() {
    let layer = VerifyWebhookLayer::new(scheme());
    let calls = Calls::default();
    for _ in 0..3 {
        let (status, headers, _) = send(&layer, &calls, signed("msg_nostore", BODY)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers.get(DUPLICATE_HEADER).is_none());
    }
    assert_eq!(calls.get(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_copies_run_the_handler_once() {
    let calls = Calls::default();
    let handler = {
        let calls = calls.clone();
        tower::service_fn(move |_request: Request<Full<Bytes>>| {
            let calls = calls.clone();
            async move {
                calls.hit();
                // Hold the claim long enough for the other copies to find it in flight.
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
            }
        })
    };
    let service = layer().layer(handler);
    let headers = scheme()
        .sign("msg_race", now_unix(), BODY.as_bytes())
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let service = service.clone();
        let request = request(headers.clone(), BODY);
        tasks.spawn(async move { service.oneshot(request).await.unwrap() });
    }
    let (mut ok, mut busy) = (0, 0);
    while let Some(response) = tasks.join_next().await {
        let response = response.unwrap();
        match response.status() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(response.headers().contains_key(RETRY_AFTER));
                busy += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(calls.get(), 1);
    assert_eq!(ok + busy, 100);
    assert!(
        busy > 0,
        "the copies overlapped, so some found the delivery in flight"
    );
}

/// A handler that answers 500 the first `failures` times, then 200.
fn flaky(
    calls: Calls,
    failures: usize,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(move |_request: Request<Full<Bytes>>| {
        let calls = calls.clone();
        async move {
            let n = calls.hit();
            let mut response = Response::new(Full::new(Bytes::new()));
            if n <= failures {
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            }
            Ok::<_, Infallible>(response)
        }
    })
}

#[tokio::test]
async fn a_failed_handler_runs_again_on_the_retry() {
    let layer = layer();
    let calls = Calls::default();
    let service = layer.layer(flaky(calls.clone(), 1));
    let first = service
        .clone()
        .oneshot(signed("msg_flaky", BODY))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let retry = service
        .clone()
        .oneshot(signed("msg_flaky", BODY))
        .await
        .unwrap();
    assert_eq!(retry.status(), StatusCode::OK);
    let duplicate = service.oneshot(signed("msg_flaky", BODY)).await.unwrap();
    assert_eq!(duplicate.headers()[DUPLICATE_HEADER], "true");
    assert_eq!(calls.get(), 2);
    let stats = layer.stats().snapshot();
    assert_eq!(
        (stats.handler_failures, stats.handled, stats.duplicates),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn a_handler_error_releases_the_claim() {
    let calls = Calls::default();
    let failing = {
        let calls = calls.clone();
        tower::service_fn(move |_request: Request<Full<Bytes>>| {
            let n = calls.hit();
            async move {
                if n == 1 {
                    Err(std::io::Error::other("handler broke"))
                } else {
                    Ok(Response::new(Full::new(Bytes::new())))
                }
            }
        })
    };
    let service = layer().layer(failing);
    let err = service
        .clone()
        .oneshot(signed("msg_err", BODY))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "handler broke");
    let retry = service.oneshot(signed("msg_err", BODY)).await.unwrap();
    assert_eq!(retry.status(), StatusCode::OK);
    assert_eq!(calls.get(), 2);
}

#[tokio::test]
async fn a_handler_panic_releases_the_claim_and_goes_on_panicking() {
    let calls = Calls::default();
    let panicky = {
        let calls = calls.clone();
        tower::service_fn(move |_request: Request<Full<Bytes>>| {
            let n = calls.hit();
            async move {
                assert!(n != 1, "first run panics");
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
            }
        })
    };
    let layer = layer();
    let service = layer.layer(panicky);
    let first = tokio::spawn(service.clone().oneshot(signed("msg_panic", BODY))).await;
    assert!(first.unwrap_err().is_panic());
    let retry = service.oneshot(signed("msg_panic", BODY)).await.unwrap();
    assert_eq!(retry.status(), StatusCode::OK);
    assert_eq!(calls.get(), 2);
    assert_eq!(layer.stats().snapshot().handler_failures, 1);
}

/// A future dropped mid-handler (the client went away) releases its claim as it is dropped:
/// with a store that answers at once, before the next copy arrives, and never as late as the
/// lease.
#[tokio::test]
async fn a_claim_left_by_a_dropped_future_is_released() {
    let clock = ManualClock::starting_now();
    let store = MemoryStore::new().with_clock(clock.clone());
    let layer = VerifyWebhookLayer::new(scheme())
        .with_store(store)
        .with_lease(Duration::from_secs(30));
    let calls = Calls::default();
    let hanging = tower::service_fn(|_request: Request<Full<Bytes>>| {
        std::future::pending::<Result<Response<Full<Bytes>>, Infallible>>()
    });
    let abandoned = layer.layer(hanging).oneshot(signed("msg_gone", BODY));
    // The client goes away mid-way: the future is polled once, then dropped.
    assert!(tokio::time::timeout(Duration::from_millis(10), abandoned)
        .await
        .is_err());

    // The clock has not moved: only the release lets this copy in.
    let (status, _, _) = send(&layer, &calls, signed("msg_gone", BODY)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(calls.get(), 1);
    assert_eq!(layer.stats().snapshot().abandoned, 1);
}

#[tokio::test]
async fn the_dedup_window_is_configurable() {
    let clock = ManualClock::starting_now();
    let store = MemoryStore::new().with_clock(clock.clone());
    let layer = VerifyWebhookLayer::new(scheme())
        .with_store(store)
        .with_dedup_window(Duration::from_secs(3600));
    let calls = Calls::default();
    send(&layer, &calls, signed("msg_window", BODY)).await;
    clock.advance(Duration::from_secs(3599));
    let (_, headers, _) = send(&layer, &calls, signed("msg_window", BODY)).await;
    assert_eq!(headers[DUPLICATE_HEADER], "true");
    clock.advance(Duration::from_secs(2));
    send(&layer, &calls, signed("msg_window", BODY)).await;
    assert_eq!(calls.get(), 2);
}

/// A store whose every call fails, as one that cannot be reached.
#[derive(Debug, Clone)]
struct DownStore;

fn down() -> StoreError {
    StoreError::new(
        StoreErrorKind::Unavailable,
        std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
    )
}

impl IdempotencyStore for DownStore {
    async fn claim(&self, _key: &str, _lease: Duration) -> Result<Claim, StoreError> {
        Err(down())
    }
    async fn complete(
        &self,
        _key: &str,
        _token: &ClaimToken,
        _keep_for: Duration,
    ) -> Result<bool, StoreError> {
        Err(down())
    }
    async fn release(&self, _key: &str, _token: &ClaimToken) -> Result<bool, StoreError> {
        Err(down())
    }
}

#[tokio::test]
async fn a_store_error_is_503_with_retry_after_and_the_handler_does_not_run() {
    let layer = VerifyWebhookLayer::new(scheme())
        .with_store(DownStore)
        .with_retry_after(Duration::from_millis(2500));
    let calls = Calls::default();
    let service = layer.layer(counting(calls.clone(), StatusCode::OK));
    let response = service.oneshot(signed("msg_down", BODY)).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[RETRY_AFTER], "3");
    let rejection = response.extensions().get::<Rejection>().unwrap();
    assert_eq!(rejection.kind(), &RejectionKind::StoreUnavailable);
    assert_eq!(
        body_text(response).await,
        "idempotency store unavailable, retry later"
    );
    assert_eq!(calls.get(), 0);
    assert_eq!(layer.stats().snapshot().store_errors, 1);
}

/// Claims work, but completing fails: the handler's answer still goes out.
#[derive(Debug, Clone, Default)]
struct CannotComplete(MemoryStore);

impl IdempotencyStore for CannotComplete {
    async fn claim(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        self.0.claim(key, lease).await
    }
    async fn complete(
        &self,
        _key: &str,
        _token: &ClaimToken,
        _keep_for: Duration,
    ) -> Result<bool, StoreError> {
        Err(down())
    }
    async fn release(&self, key: &str, token: &ClaimToken) -> Result<bool, StoreError> {
        self.0.release(key, token).await
    }
}

#[tokio::test]
async fn a_failed_completion_still_answers_with_the_handler() {
    let layer = VerifyWebhookLayer::new(scheme()).with_store(CannotComplete::default());
    let calls = Calls::default();
    let (status, _, text) = send(&layer, &calls, signed("msg_done", BODY)).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "handled"));
    assert_eq!(calls.get(), 1);
    let counted = layer.stats().snapshot();
    assert_eq!((counted.handled, counted.completion_failures), (1, 1));
}

#[tokio::test]
async fn ids_from_the_json_body() {
    let layer = layer().with_id_source(IdSource::json_fields(["verification_id", "type"], "-"));
    let calls = Calls::default();
    let body = r#"{"verification_id":"ver_1","type":"verification.completed"}"#;
    let seen = Arc::new(std::sync::Mutex::new(String::new()));
    let service = {
        let (seen, calls) = (Arc::clone(&seen), calls.clone());
        layer.layer(tower::service_fn(move |request: Request<Full<Bytes>>| {
            calls.hit();
            seen.lock()
                .unwrap()
                .clone_from(&request.extensions().get::<Event>().unwrap().id().to_owned());
            async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
        }))
    };
    // Two deliveries with different header ids but the same body fields are one event.
    for id in ["msg_a", "msg_b"] {
        let headers = scheme().sign(id, now_unix(), body.as_bytes()).unwrap();
        service
            .clone()
            .oneshot(request(headers, body))
            .await
            .unwrap();
    }
    assert_eq!(*seen.lock().unwrap(), "ver_1-verification.completed");
    assert_eq!(calls.get(), 1);

    let headers = scheme().sign("msg_c", now_unix(), BODY.as_bytes()).unwrap();
    let (status, _, text) = send(&layer, &calls, request(headers, BODY)).await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::BAD_REQUEST, "missing event id")
    );
}

#[tokio::test]
async fn rejections_carry_their_reason_for_outer_layers() {
    let service = layer().layer(counting(Calls::default(), StatusCode::OK));
    let response = service
        .oneshot(request(with_header("webhook-signature", None), BODY))
        .await
        .unwrap();
    let rejection = response.extensions().get::<Rejection>().unwrap();
    let RejectionKind::Verification(err) = rejection.kind() else {
        panic!("{rejection:?}");
    };
    assert_eq!(
        err.header().map(HeaderName::as_str),
        Some("webhook-signature")
    );
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
}

#[tokio::test]
async fn stats_split_rejections_by_reason_and_iterate() {
    let layer = layer()
        .with_body_limit(64)
        .with_id_source(IdSource::json_field("id"));
    let calls = Calls::default();
    let mut forged = signed("msg_s1", r#"{"id":"a"}"#);
    forged
        .headers_mut()
        .insert("webhook-signature", HeaderValue::from_static("v1,AAAA"));
    let mut stale = signed("msg_s2", r#"{"id":"b"}"#);
    stale
        .headers_mut()
        .insert("webhook-timestamp", HeaderValue::from_static("1"));
    let mut malformed = signed("msg_s3", r#"{"id":"c"}"#);
    malformed.headers_mut().remove("webhook-id");
    let large = signed(
        "msg_s4",
        r#"{"id":"ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"}"#,
    );
    let no_id = signed("msg_s5", r#"{"other":1}"#);
    let not_json = signed("msg_s6", "id=1");
    for (request, status, reason) in [
        (forged, 400, "no supported signature"),
        (stale, 400, "timestamp too old"),
        (malformed, 400, "missing webhook-id"),
        (large, 413, "payload too large"),
        (no_id, 400, "missing event id"),
        (
            not_json,
            400,
            "body is not a JSON object, so it carries no event id",
        ),
    ] {
        let (got, _, text) = send(&layer, &calls, request).await;
        assert_eq!((got.as_u16(), text.as_str()), (status, reason));
    }
    let (ok, _, _) = send(&layer, &calls, signed("msg_s7", r#"{"id":"e"}"#)).await;
    assert_eq!(ok, StatusCode::OK);
    assert_eq!(calls.get(), 1);

    let counted = layer.stats().snapshot();
    let named: std::collections::HashMap<&str, u64> = counted.iter().collect();
    for (name, count) in [
        ("handled", 1),
        ("rejected", 6),
        ("rejected.signature", 1),
        ("rejected.timestamp", 1),
        ("rejected.malformed", 1),
        ("rejected.too_large", 1),
        ("rejected.missing_id", 1),
        ("rejected.not_json", 1),
        ("rejected.unreadable", 0),
    ] {
        assert_eq!(named[name], count, "{name}");
    }
}

/// Self drops every 4xx: its test events carry no `verification_id`, and must reach the
/// handler under the signed `webhook-id` rather than be answered `400 missing event id`.
#[tokio::test]
async fn a_self_ping_falls_back_to_the_signed_id() {
    let layer = layer().with_id_source(
        IdSource::json_fields(["verification_id", "type"], "-").or(IdSource::scheme()),
    );
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let service = {
        let seen = Arc::clone(&seen);
        layer.layer(tower::service_fn(move |request: Request<Full<Bytes>>| {
            let id = request.extensions().get::<Event>().unwrap().id().to_owned();
            seen.lock().unwrap().push(id);
            async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
        }))
    };
    for (id, body) in [
        ("msg_ping", r#"{"type":"ping"}"#),
        (
            "msg_done",
            r#"{"verification_id":"ver_1","type":"verification.completed"}"#,
        ),
        (
            "msg_done_again",
            r#"{"verification_id":"ver_1","type":"verification.completed"}"#,
        ),
    ] {
        let response = service.clone().oneshot(signed(id, body)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{id}");
    }
    // The third is Self's retry of the second under a new webhook-id: a duplicate.
    assert_eq!(
        *seen.lock().unwrap(),
        ["msg_ping", "ver_1-verification.completed"]
    );
}
