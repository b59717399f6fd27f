//! What the layer logs: the id and outcome of each delivery, at levels a service alerts on,
//! and never a secret, a signature or a body.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{counting, now_unix, request, scheme, Calls, SECRET};
use http::{HeaderValue, StatusCode};
use tower::{Layer, ServiceExt};
use tower_webhook::store::MemoryStore;
use tower_webhook::VerifyWebhookLayer;

const BODY: &str = r#"{"type":"card.charged","card_number":"4242424242424242"}"#;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_name_the_delivery_and_never_its_secrets() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let layer = VerifyWebhookLayer::new(scheme()).with_store(MemoryStore::new());
    let service = layer.layer(counting(Calls::default(), StatusCode::OK));
    let ts = now_unix();
    let headers = scheme().sign("msg_logged", ts, BODY.as_bytes()).unwrap();
    let signature = headers["webhook-signature"].to_str().unwrap().to_owned();

    for _ in 0..2 {
        let response = service
            .clone()
            .oneshot(request(headers.clone(), BODY))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let mut forged = headers.clone();
    forged.insert("webhook-id", HeaderValue::from_static("msg_forged"));
    let response = service.oneshot(request(forged, BODY)).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = logs.lines().collect();
    let line = |outcome: &str| {
        let field = format!("outcome=\"{outcome}\"");
        *lines
            .iter()
            .find(|line| line.contains(&field))
            .unwrap_or_else(|| panic!("no {outcome} line in:\n{logs}"))
    };
    let handled = line("handled");
    assert!(
        handled.contains(" INFO ")
            && handled.contains("id=\"msg_logged\"")
            && handled.contains("layer=\"standard-webhooks\""),
        "every handled delivery is logged at info with its id and layer: {logs}"
    );
    assert!(line("duplicate").contains(" INFO "), "{logs}");
    let rejected = line("rejected");
    assert!(
        rejected.contains(" WARN ") && rejected.contains("reason=no matching signature"),
        "{logs}"
    );
    // The id the forged delivery claimed, unverified, to match it with a sender's dashboard.
    assert!(rejected.contains("claimed_id=\"msg_forged\""), "{logs}");
    let secret_key = SECRET.strip_prefix("whsec_").unwrap();
    let tag = signature.strip_prefix("v1,").unwrap();
    for secret in [secret_key, tag, "4242424242424242"] {
        assert!(!logs.contains(secret), "logs leak {secret:?}:\n{logs}");
    }
    // Of the body, only the event type the sender names in it, on the delivery's span.
    assert!(handled.contains("event_type=\"card.charged\""), "{logs}");
}

/// Captures what the layer logs on this thread (the test's runtime has one thread).
fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

impl Captured {
    /// The line of the first rejection logged.
    fn rejection(&self) -> String {
        let logs = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        logs.lines()
            .find(|line| line.contains("outcome=\"rejected\""))
            .unwrap_or_else(|| panic!("no rejection in:\n{logs}"))
            .to_owned()
    }
}

/// A forged delivery to an axum app served with its connections' addresses: the rejection's
/// log line names the peer it came from.
#[cfg(feature = "axum")]
#[tokio::test]
async fn a_rejection_names_the_peer_it_came_from() {
    use axum::routing::post;
    let (captured, _guard) = capture();
    let app = axum::Router::new()
        .route("/webhooks", post(|| async { StatusCode::OK }))
        .layer(VerifyWebhookLayer::new(scheme()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let mut headers = scheme()
        .sign("msg_peer", now_unix(), BODY.as_bytes())
        .unwrap();
    headers.insert("webhook-signature", HeaderValue::from_static("v1,Zm9yZ2Vk"));
    let mut forged = request(headers, BODY);
    *forged.uri_mut() = format!("http://{addr}/webhooks").parse().unwrap();
    let (status, _, _) = common::http(addr, forged).await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let line = captured.rejection();
    assert!(line.contains("peer=127.0.0.1"), "{line}");
    assert!(line.contains("claimed_id=\"msg_peer\""), "{line}");
}

/// Behind a proxy, the layer's own lookup finds the sender's address in the proxy's header;
/// without a lookup or a connection's address, the line has no peer.
#[tokio::test]
async fn the_peer_can_come_from_a_proxys_header() {
    let (captured, _guard) = capture();
    let layer = VerifyWebhookLayer::new(scheme()).with_peer(|request| {
        let forwarded = request.headers.get("x-forwarded-for")?.to_str().ok()?;
        forwarded.rsplit(',').next()?.trim().parse().ok()
    });
    let service = layer.layer(counting(Calls::default(), StatusCode::OK));
    let mut headers = scheme()
        .sign("msg_proxied", now_unix(), BODY.as_bytes())
        .unwrap();
    headers.insert("webhook-signature", HeaderValue::from_static("v1,Zm9yZ2Vk"));
    headers.insert(
        "x-forwarded-for",
        HeaderValue::from_static("10.0.0.1, 2001:db8::7"),
    );
    let response = service.oneshot(request(headers, BODY)).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let line = captured.rejection();
    assert!(line.contains("peer=2001:db8::7"), "{line}");

    let (captured, _guard) = capture();
    let service =
        VerifyWebhookLayer::new(scheme()).layer(counting(Calls::default(), StatusCode::OK));
    let mut headers = scheme()
        .sign("msg_direct", now_unix(), BODY.as_bytes())
        .unwrap();
    headers.insert("webhook-signature", HeaderValue::from_static("v1,Zm9yZ2Vk"));
    let response = service.oneshot(request(headers, BODY)).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(!captured.rejection().contains("peer="));
}
