//! The senders' handshakes, over real HTTP through an axum app: each answered exactly as its
//! sender requires, by the layer, before any store or handler; never deduplicated; a forged
//! one refused as a forged delivery is; a `GET` that is no handshake never reaches the
//! handler.

mod common;

use std::net::SocketAddr;

use axum::routing::post;
use bytes::Bytes;
use common::{now_unix, Calls};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::Full;
use sha2::Sha256;
use tower_webhook::scheme::{HmacScheme, Scheme};
use tower_webhook::store::MemoryStore;
use tower_webhook::VerifyWebhookLayer;

/// An app with `scheme` in front of a handler that counts its calls, served on a free port.
async fn serve(scheme: impl Scheme) -> (SocketAddr, Calls) {
    let calls = Calls::default();
    let counted = calls.clone();
    let app = axum::Router::new()
        .route(
            "/webhooks",
            post(move || {
                let calls = counted.clone();
                async move {
                    calls.hit();
                    StatusCode::OK
                }
            }),
        )
        .layer(VerifyWebhookLayer::new(scheme).with_store(MemoryStore::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, calls)
}

/// What came back: the status, the content type and the body.
type Answer = (StatusCode, String, String);

async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: HeaderMap,
    body: impl Into<Bytes>,
) -> Answer {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("host", addr.to_string())
        .body(Full::new(body.into()))
        .unwrap();
    request.headers_mut().extend(headers);
    let (status, headers, body) = common::http(addr, request).await.unwrap();
    let content_type = headers
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    if status == StatusCode::OK && !content_type.is_empty() {
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }
    (
        status,
        content_type,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

const TEXT: &str = "text/plain; charset=utf-8";

#[tokio::test]
async fn slack_url_verification() {
    let slack = HmacScheme::slack("slack signing secret").unwrap();
    let (addr, calls) = serve(slack.clone()).await;
    let body = r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let signed = slack.sign("", now_unix(), body.as_bytes()).unwrap();
    let expected = (
        StatusCode::OK,
        TEXT.to_owned(),
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P".to_owned(),
    );
    // Answered every time: never a duplicate.
    for _ in 0..2 {
        assert_eq!(
            send(addr, Method::POST, "/webhooks", signed.clone(), body).await,
            expected
        );
    }
    // Forged: refused as any forged delivery.
    let forged = HmacScheme::slack("not the secret")
        .unwrap()
        .sign("", now_unix(), body.as_bytes())
        .unwrap();
    let answer = send(addr, Method::POST, "/webhooks", forged, body).await;
    assert_eq!(answer.0, StatusCode::BAD_REQUEST);
    // An event is still an event.
    let event = r#"{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention"}}"#;
    let signed = slack.sign("", now_unix(), event.as_bytes()).unwrap();
    assert_eq!(
        send(addr, Method::POST, "/webhooks", signed, event).await.0,
        StatusCode::OK
    );
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn zoom_endpoint_url_validation() {
    let secret = "zoom secret token";
    let zoom = HmacScheme::zoom(secret).unwrap();
    let (addr, calls) = serve(zoom.clone()).await;
    let body = r#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
    let signed = zoom.sign("", now_unix(), body.as_bytes()).unwrap();
    let (status, content_type, answer) = send(addr, Method::POST, "/webhooks", signed, body).await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, "application/json")
    );
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    // Zoom's rule, computed here apart from the crate.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(b"qgg8vlvZRS6UYooatFL8Aw");
    assert_eq!(
        answer,
        serde_json::json!({
            "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
            "encryptedToken": hex::encode(mac.finalize().into_bytes()),
        })
    );
    let forged = HmacScheme::zoom("another")
        .unwrap()
        .sign("", now_unix(), body.as_bytes())
        .unwrap();
    let answer = send(addr, Method::POST, "/webhooks", forged, body).await;
    assert_eq!(answer.0, StatusCode::BAD_REQUEST);
    assert_eq!(calls.get(), 0);
}

#[tokio::test]
async fn twitch_webhook_callback_verification() {
    let twitch = HmacScheme::twitch("twitch secret").unwrap();
    let (addr, calls) = serve(twitch.clone()).await;
    let body = r#"{"challenge":"pogchamp-kappa-360noscope-vohiyo","subscription":{"id":"f1c2a387-161a-49f9-a165-0f21d7a4e1c4","status":"webhook_callback_verification_pending","type":"channel.follow","version":"2"}}"#;
    let mut signed = twitch
        .sign(
            "e76c6bd4-55c9-4987-8304-da1588d8988b",
            now_unix(),
            body.as_bytes(),
        )
        .unwrap();
    signed.insert(
        "twitch-eventsub-message-type",
        HeaderValue::from_static("webhook_callback_verification"),
    );
    let answer = send(addr, Method::POST, "/webhooks", signed.clone(), body).await;
    assert_eq!(
        answer,
        (
            StatusCode::OK,
            TEXT.to_owned(),
            "pogchamp-kappa-360noscope-vohiyo".to_owned()
        )
    );
    // The same body as a notification is a delivery.
    signed.insert(
        "twitch-eventsub-message-type",
        HeaderValue::from_static("notification"),
    );
    assert_eq!(
        send(addr, Method::POST, "/webhooks", signed, body).await.0,
        StatusCode::OK
    );
    assert_eq!(calls.get(), 1);
    // Forged.
    let mut forged = HmacScheme::twitch("another")
        .unwrap()
        .sign("e76c6bd4-0000", now_unix(), body.as_bytes())
        .unwrap();
    forged.insert(
        "twitch-eventsub-message-type",
        HeaderValue::from_static("webhook_callback_verification"),
    );
    let answer = send(addr, Method::POST, "/webhooks", forged, body).await;
    assert_eq!(answer.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn meta_subscription_check() {
    let meta = HmacScheme::meta("app secret")
        .unwrap()
        .with_verify_token("the verify token")
        .unwrap();
    let (addr, calls) = serve(meta.clone()).await;
    let get = |query: &'static str| send(addr, Method::GET, query, HeaderMap::new(), "");
    assert_eq!(
        get("/webhooks?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=the%20verify%20token").await,
        (StatusCode::OK, TEXT.to_owned(), "1158201444".to_owned())
    );
    for wrong in [
        "/webhooks?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=the%20verify%20tokem",
        "/webhooks?hub.mode=subscribe&hub.challenge=1158201444",
        "/webhooks?hub.mode=unsubscribe&hub.challenge=1158201444&hub.verify_token=the%20verify%20token",
        "/webhooks?hub.mode=subscribe&hub.challenge=1&hub.challenge=2&hub.verify_token=the%20verify%20token",
        "/webhooks",
    ] {
        assert_eq!(get(wrong).await.0, StatusCode::BAD_REQUEST, "{wrong}");
    }
    // A POST with the same query is a delivery, verified.
    let answer = send(
        addr,
        Method::POST,
        "/webhooks?hub.mode=subscribe&hub.challenge=1&hub.verify_token=the%20verify%20token",
        HeaderMap::new(),
        "{}",
    )
    .await;
    assert_eq!(answer.0, StatusCode::BAD_REQUEST);
    let body = r#"{"object":"instagram","entry":[]}"#;
    let signed = meta.sign("", 0, body.as_bytes()).unwrap();
    assert_eq!(
        send(addr, Method::POST, "/webhooks", signed, body).await.0,
        StatusCode::OK
    );
    assert_eq!(calls.get(), 1);

    // Without a verify token, no GET is answered.
    let (addr, _) = serve(HmacScheme::meta("app secret").unwrap()).await;
    let answer = send(
        addr,
        Method::GET,
        "/webhooks?hub.mode=subscribe&hub.challenge=1&hub.verify_token=x",
        HeaderMap::new(),
        "",
    )
    .await;
    assert_eq!(answer.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn dropbox_challenge() {
    let (addr, calls) = serve(HmacScheme::dropbox("app secret").unwrap()).await;
    assert_eq!(
        send(
            addr,
            Method::GET,
            "/webhooks?challenge=zWM4AxcRHL6GaqX2vlQ",
            HeaderMap::new(),
            ""
        )
        .await,
        (
            StatusCode::OK,
            TEXT.to_owned(),
            "zWM4AxcRHL6GaqX2vlQ".to_owned()
        )
    );
    for wrong in [
        "/webhooks",
        "/webhooks?challenge=",
        "/webhooks?challenge=a%0Ab",
    ] {
        let answer = send(addr, Method::GET, wrong, HeaderMap::new(), "").await;
        assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{wrong}");
    }
    // A POST with a challenge is no handshake.
    let answer = send(
        addr,
        Method::POST,
        "/webhooks?challenge=x",
        HeaderMap::new(),
        "{}",
    )
    .await;
    assert_eq!(answer.0, StatusCode::BAD_REQUEST);
    assert_eq!(calls.get(), 0);
}

#[tokio::test]
async fn senders_without_a_handshake_answer_none() {
    // Stripe has none: a url_verification body is a delivery like any other.
    let stripe = HmacScheme::stripe("whsec_x").unwrap();
    let (addr, calls) = serve(stripe.clone()).await;
    let body = r#"{"id":"evt_1","type":"url_verification","challenge":"c"}"#;
    let signed = stripe.sign("", now_unix(), body.as_bytes()).unwrap();
    let answer = send(addr, Method::POST, "/webhooks", signed, body).await;
    assert_eq!((answer.0, answer.2.as_str()), (StatusCode::OK, ""));
    assert_eq!(calls.get(), 1);
    let answer = send(
        addr,
        Method::GET,
        "/webhooks?challenge=c",
        HeaderMap::new(),
        "",
    )
    .await;
    assert_eq!(answer.0, StatusCode::BAD_REQUEST);
}

#[cfg(feature = "ed25519")]
#[tokio::test]
async fn discord_ping() {
    use tower_webhook::scheme::Discord;
    let discord = Discord::from_signing_key(&"07".repeat(32)).unwrap();
    let (addr, calls) = serve(discord.clone()).await;
    let ping = r#"{"application_id":"1","id":"9","token":"t","type":1,"version":1}"#;
    let signed = discord.sign(now_unix(), ping.as_bytes()).unwrap();
    for _ in 0..2 {
        assert_eq!(
            send(addr, Method::POST, "/webhooks", signed.clone(), ping).await,
            (
                StatusCode::OK,
                "application/json".to_owned(),
                r#"{"type":1}"#.to_owned()
            )
        );
    }
    // Discord sends a PING with a bad signature to check that it is refused.
    let mut forged = signed.clone();
    forged.insert(
        "x-signature-ed25519",
        HeaderValue::from_str(&"0".repeat(128)).unwrap(),
    );
    let answer = send(addr, Method::POST, "/webhooks", forged, ping).await;
    assert_eq!(answer.0, StatusCode::BAD_REQUEST);
    let command = r#"{"application_id":"1","id":"10","token":"t","type":2,"version":1}"#;
    let signed = discord.sign(now_unix(), command.as_bytes()).unwrap();
    assert_eq!(
        send(addr, Method::POST, "/webhooks", signed, command)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn microsoft_graph_validation_token() {
    use tower_webhook::scheme::MicrosoftGraph;
    let (addr, calls) = serve(MicrosoftGraph::new("client state secret").unwrap()).await;
    // Graph's token is text with spaces and colons, encoded in the query.
    let path = "/webhooks?validationToken=Validation%3a+Testing+client+application+reachability+for+subscription+Request-Id%3a+b2a2d3a4-0000";
    assert_eq!(
        send(addr, Method::POST, path, HeaderMap::new(), "").await,
        (
            StatusCode::OK,
            TEXT.to_owned(),
            "Validation: Testing client application reachability for subscription Request-Id: b2a2d3a4-0000".to_owned()
        )
    );
    // A notification: every one must carry the client state.
    let good = r#"{"value":[{"subscriptionId":"s1","clientState":"client state secret","changeType":"created","resource":"Users/1/Messages/2"}]}"#;
    assert_eq!(
        send(addr, Method::POST, "/webhooks", HeaderMap::new(), good)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(calls.get(), 1);
    let mixed = r#"{"value":[{"clientState":"client state secret"},{"clientState":"guess"}]}"#;
    for body in [
        mixed,
        r#"{"value":[]}"#,
        r#"{"value":[{"changeType":"created"}]}"#,
        "{}",
    ] {
        let answer = send(addr, Method::POST, "/webhooks", HeaderMap::new(), body).await;
        assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{body}");
    }
    // A GET with a token is no validation.
    let answer = send(
        addr,
        Method::GET,
        "/webhooks?validationToken=x",
        HeaderMap::new(),
        "",
    )
    .await;
    assert_eq!(answer.0, StatusCode::BAD_REQUEST);
    assert_eq!(calls.get(), 1);
}
