//! The layer in an axum app, and `Event` as an extractor.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use common::{body_text, signed, Calls};
use serde::Deserialize;
use tower::ServiceExt;
use tower_webhook::store::MemoryStore;
use tower_webhook::{Event, VerifyWebhookLayer, DUPLICATE_HEADER};

const BODY: &str = r#"{"type":"user.created","data":{"id":"user_1"}}"#;

#[derive(Deserialize)]
struct Payload {
    r#type: String,
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    id: String,
}

fn layer() -> VerifyWebhookLayer {
    VerifyWebhookLayer::new(common::scheme()).with_store(MemoryStore::new())
}

fn typed_app(calls: Calls) -> Router {
    Router::new().route(
        "/webhooks",
        post(move |event: Event<Payload>| async move {
            calls.hit();
            let payload = event.payload();
            format!("{} {} {}", event.id(), payload.r#type, payload.data.id)
        }),
    )
}

async fn call(
    app: Router,
    request: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> (StatusCode, String) {
    let response = app
        .oneshot(request.map(axum::body::Body::new))
        .await
        .unwrap();
    let status = response.status();
    (status, body_text(response).await)
}

#[tokio::test]
async fn router_layer_with_a_typed_event() {
    let calls = Calls::default();
    let app = typed_app(calls.clone()).layer(layer());
    let (status, text) = call(app.clone(), signed("msg_axum", BODY)).await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::OK, "msg_axum user.created user_1")
    );
    let response = app
        .oneshot(signed("msg_axum", BODY).map(axum::body::Body::new))
        .await
        .unwrap();
    assert_eq!(response.headers()[DUPLICATE_HEADER], "true");
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn route_layer_guards_only_its_routes() {
    let calls = Calls::default();
    let app = typed_app(calls.clone())
        .route_layer(layer())
        .route("/health", axum::routing::get(|| async { "ok" }));
    let (status, _) = call(app.clone(), signed("msg_route", BODY)).await;
    assert_eq!(status, StatusCode::OK);
    let forged = common::request(http::HeaderMap::new(), BODY);
    let (status, text) = call(app.clone(), forged).await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::BAD_REQUEST, "missing webhook-id")
    );
    let health = http::Request::get("/health")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(app.oneshot(health).await.unwrap().status(), StatusCode::OK);
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn a_layer_on_a_single_method_route() {
    let calls = Calls::default();
    let counted = calls.clone();
    let route = post(move |event: Event| async move {
        counted.hit();
        event.id().to_owned()
    })
    .layer(layer());
    let app = Router::new().route("/webhooks", route);
    let (status, text) = call(app.clone(), signed("msg_method", BODY)).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "msg_method"));
    let (status, _) = call(app, common::request(http::HeaderMap::new(), BODY)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn the_raw_event_and_json_on_demand() {
    let app = Router::new()
        .route(
            "/webhooks",
            post(|event: Event| async move {
                let payload: serde_json::Value = event.json().unwrap();
                format!(
                    "{} {} {}",
                    event.scheme(),
                    event.body().len(),
                    payload["type"]
                )
            }),
        )
        .layer(layer());
    let (status, text) = call(app, signed("msg_raw", BODY)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        text,
        format!("standard-webhooks {} \"user.created\"", BODY.len())
    );
}

#[tokio::test]
async fn a_payload_that_does_not_match_is_a_clear_rejection_and_releases_the_claim() {
    let calls = Calls::default();
    let app = typed_app(calls.clone()).layer(layer());
    let other = r#"{"type":"user.deleted"}"#;
    // Signed by the sender, so the mismatch is the receiver's bug: 500, which every sender
    // retries (a 4xx would make Self and others drop the event for good).
    let (status, text) = call(app.clone(), signed("msg_shape", other)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        text.starts_with("webhook payload does not match the expected type: missing field `data`"),
        "{text}"
    );
    assert_eq!(calls.get(), 0);
    // Not answered 2xx, so the claim was released: a retry is handled, not a duplicate.
    let (status, _) = call(app, signed("msg_shape", other)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn without_the_layer_the_extractor_fails_loudly() {
    let app = typed_app(Calls::default());
    let (status, text) = call(app, signed("msg_nolayer", BODY)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        text,
        "Missing webhook event. Is `VerifyWebhookLayer` enabled on this route?"
    );
}

#[tokio::test]
async fn an_optional_event_is_none_without_the_layer() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handler = {
        let seen = Arc::clone(&seen);
        move |event: Option<Event<Payload>>| async move {
            seen.lock().unwrap().push(event.map(|e| e.id().to_owned()));
            StatusCode::NO_CONTENT
        }
    };
    let bare = Router::new().route("/webhooks", post(handler.clone()));
    let guarded = Router::new()
        .route("/webhooks", post(handler))
        .layer(layer());
    assert_eq!(
        call(bare, signed("msg_opt", BODY)).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(guarded, signed("msg_opt", BODY)).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        *seen.lock().unwrap(),
        vec![None, Some("msg_opt".to_owned())]
    );
}

/// The raw HTTP/1.1 text of `request`, as a sender would write it on the wire.
fn wire(request: &http::Request<http_body_util::Full<bytes::Bytes>>, body: &str) -> String {
    use std::fmt::Write as _;
    let mut text = format!(
        "POST /webhooks HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in request.headers() {
        let _ = write!(text, "{name}: {}\r\n", value.to_str().unwrap());
    }
    text.push_str("\r\n");
    text.push_str(body);
    text
}

/// A sender that hangs up while the handler runs, under `axum::serve`: the connection's
/// future is dropped mid-handler, and its claim must not hold the retry off for the lease.
#[tokio::test]
async fn a_sender_that_hangs_up_under_axum_serve_does_not_block_its_retry() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let started = Arc::new(tokio::sync::Notify::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (started, runs) = (Arc::clone(&started), Arc::clone(&runs));
        move |_event: Event| async move {
            if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                started.notify_one();
                std::future::pending::<()>().await;
            }
            StatusCode::NO_CONTENT
        }
    };
    let app = Router::new()
        .route("/webhooks", post(handler))
        .layer(layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let send = |text: String| async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(text.as_bytes()).await.unwrap();
        stream
    };
    let text = wire(&signed("msg_hung_up", BODY), BODY);
    let first = send(text.clone()).await;
    started.notified().await;
    drop(first); // the sender gives up

    // The lease is 60 s; these retries take well under that, so only a release lets one in.
    let mut status_line = String::new();
    for _ in 0..50 {
        let mut stream = send(text.clone()).await;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        status_line = String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        if !status_line.contains(" 429 ") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status_line, "HTTP/1.1 204 No Content");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}
