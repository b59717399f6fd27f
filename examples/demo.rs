//! The newcomer's first run: a webhook server in this process, and a sender that sends it a
//! valid, a forged, a stale and a duplicate delivery.
//!
//!     cargo run --example demo
//!
//! No setup and no services: the layer uses the in-memory store.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing_subscriber::EnvFilter;

use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tower_webhook::scheme::StandardWebhooks;
use tower_webhook::store::MemoryStore;
use tower_webhook::{Event, VerifyWebhookLayer, DUPLICATE_HEADER};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ATTACKER_SECRET: &str = "whsec_bm90IHRoZSBzZW5kZXIncyBzZWNyZXQgYXQgYWxs";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The layer's logs, off so that the scenes read plainly: RUST_LOG=info shows its line for
    // each answer.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "off".into()))
        .init();
    let handled = Arc::new(AtomicUsize::new(0));
    let app = {
        let handled = Arc::clone(&handled);
        Router::new()
            .route(
                "/webhooks",
                post(move |event: Event| async move {
                    handled.fetch_add(1, Ordering::SeqCst);
                    println!("    handler: handled event {}", event.id());
                    StatusCode::NO_CONTENT
                }),
            )
            .layer(
                VerifyWebhookLayer::new(StandardWebhooks::new(SECRET)?)
                    .with_store(MemoryStore::new()),
            )
    };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("Webhook server on http://{addr}/webhooks (Standard Webhooks, in-memory store)\n");

    let sender = StandardWebhooks::new(SECRET)?;
    let attacker = StandardWebhooks::new(ATTACKER_SECRET)?;
    let body = r#"{"type":"invoice.paid","data":{"invoice":"in_42","amount":1200}}"#;
    let now = unix_now();

    let deliveries = [
        (
            "a valid delivery",
            sender.sign("msg_1", now, body.as_bytes())?,
        ),
        (
            "a forged delivery (signed with the wrong secret)",
            attacker.sign("msg_2", now, body.as_bytes())?,
        ),
        (
            "a stale delivery (signed an hour ago, replayed)",
            sender.sign("msg_3", now - 3600, body.as_bytes())?,
        ),
        (
            "the valid delivery again (the sender retried)",
            sender.sign("msg_1", now, body.as_bytes())?,
        ),
    ];
    for (what, headers) in deliveries {
        println!("-> {what}");
        let (status, response_headers, text) = send(addr, headers, body).await?;
        let verdict = if response_headers.contains_key(DUPLICATE_HEADER) {
            "duplicate, acknowledged without running the handler"
        } else if status.is_success() {
            "accepted"
        } else {
            "refused"
        };
        let reason = if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        };
        println!("   {status}{reason}  [{verdict}]\n");
    }
    println!(
        "The handler ran {} time(s) for 4 deliveries.",
        handled.load(Ordering::SeqCst)
    );
    Ok(())
}

/// Posts one delivery over a fresh HTTP/1.1 connection, as a sender would.
async fn send(
    addr: SocketAddr,
    headers: HeaderMap,
    body: &'static str,
) -> Result<(StatusCode, HeaderMap, String), Box<dyn std::error::Error>> {
    let stream = TcpStream::connect(addr).await?;
    let (mut client, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut request = Request::post("/webhooks")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))?;
    request.headers_mut().extend(headers);
    let response = client.send_request(request).await?;
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.into_body().collect().await?.to_bytes();
    Ok((status, headers, String::from_utf8_lossy(&text).into_owned()))
}

fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs).unwrap_or(i64::MAX)
}
