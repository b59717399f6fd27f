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
    let (status, text) = call(app.clone(), signed("msg_shape", other)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        text.starts_with("webhook payload does not match the expected type: missing field `data`"),
        "{text}"
    );
    assert_eq!(calls.get(), 0);
    // Not answered 2xx, so the claim was released: a retry is handled, not a duplicate.
    let (status, _) = call(app, signed("msg_shape", other)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
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
