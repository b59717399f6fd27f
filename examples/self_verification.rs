//! Self's identity verifications, end to end, with nothing to run but this:
//!
//! ```sh
//! cargo run --example self_verification
//! ```
//!
//! Self delivers through Standard Webhooks, asks receivers to dedupe on
//! `"{verification_id}-{type}"` of the payload, and drops every 4xx. So the layer keys on those
//! two fields, falls back to the signed `webhook-id` for events that carry neither (a
//! `{"type":"ping"}` test event), and the handler takes a typed payload that accepts statuses
//! and event types it does not know (a 422 for an unknown one would be dropped, too).
//!
//! The field names follow what Self documents for `verification.completed`: `verification_id`,
//! `type` and `status` (`valid`, `invalid`, `error` or `expired`).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use tower::ServiceExt;
use tower_webhook::scheme::StandardWebhooks;
use tower_webhook::store::MemoryStore;
use tower_webhook::{Event, IdSource, VerifyWebhookLayer, DUPLICATE_HEADER};
use tracing_subscriber::EnvFilter;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// What Self sends, by its `type`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
enum SelfEvent {
    #[serde(rename = "verification.completed")]
    VerificationCompleted(Verification),
    /// A test event, or a type this service does not handle: acknowledged all the same.
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct Verification {
    verification_id: String,
    status: Status,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Valid,
    Invalid,
    Error,
    Expired,
    /// A status Self adds later: kept, not refused.
    #[serde(other)]
    Unknown,
}

async fn handle(event: Event<SelfEvent>) -> StatusCode {
    let id = event.id().to_owned();
    match event.into_payload() {
        SelfEvent::VerificationCompleted(Verification {
            verification_id,
            status,
        }) => {
            let action = match status {
                Status::Valid => "grant access",
                Status::Invalid => "refuse, and tell the user why",
                Status::Error => "ask the user to try again",
                Status::Expired => "start a new verification",
                Status::Unknown => "keep for review",
            };
            println!("    handler: {verification_id} is {status:?}: {action} (key {id})");
        }
        SelfEvent::Other => println!("    handler: acknowledged a test event (key {id})"),
    }
    StatusCode::NO_CONTENT
}

fn app() -> Result<Router, Box<dyn std::error::Error>> {
    let layer = VerifyWebhookLayer::new(StandardWebhooks::new(SECRET)?)
        .with_name("self")
        .with_id_source(
            IdSource::json_fields(["verification_id", "type"], "-").or(IdSource::scheme()),
        )
        .with_store(MemoryStore::new());
    Ok(Router::new()
        .route("/webhooks/self", post(handle))
        .route_layer(layer))
}

/// Signs `body` as Self would, sends it, and prints what came back.
async fn deliver(
    app: &Router,
    what: &str,
    id: &str,
    body: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let headers = StandardWebhooks::new(SECRET)?.sign(id, i64::try_from(now)?, body.as_bytes())?;
    let mut request = Request::post("/webhooks/self").body(Body::from(body.to_owned()))?;
    request.headers_mut().extend(headers);
    println!("{what}");
    let response = app.clone().oneshot(request).await?;
    let duplicate = if response.headers().contains_key(DUPLICATE_HEADER) {
        " (duplicate: the handler did not run)"
    } else {
        ""
    };
    let status = response.status();
    let text = axum::body::to_bytes(response.into_body(), 1024).await?;
    let text = String::from_utf8_lossy(&text);
    println!("    answer: {status}{duplicate} {text}");
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Warnings only beside the scenes (a rejected delivery, and why); RUST_LOG=info shows a
    // line for every answer.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let app = app()?;
    let completed = |id: &str, status: &str| {
        format!(
            r#"{{"type":"verification.completed","verification_id":"{id}","status":"{status}"}}"#
        )
    };
    for (n, status) in ["valid", "invalid", "error", "expired"]
        .into_iter()
        .enumerate()
    {
        let id = format!("msg_{n}");
        let what = format!("verification.completed, status {status}:");
        deliver(&app, &what, &id, &completed(&format!("ver_{n}"), status)).await?;
    }
    deliver(
        &app,
        "Self retries the first one under a new webhook-id:",
        "msg_retry",
        &completed("ver_0", "valid"),
    )
    .await?;
    deliver(
        &app,
        "a test event with no verification_id (keyed on webhook-id):",
        "msg_ping",
        r#"{"type":"ping"}"#,
    )
    .await?;
    deliver(
        &app,
        "a status this service does not know yet:",
        "msg_new",
        &completed("ver_9", "pending_review"),
    )
    .await?;
    Ok(())
}
