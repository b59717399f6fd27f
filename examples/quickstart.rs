//! The README's quick start, as a program: `WEBHOOK_SECRET=whsec_... cargo run --example quickstart`.

use axum::{http::StatusCode, routing::post, Router};
use serde::Deserialize;
use tower_webhook::{scheme::StandardWebhooks, store::MemoryStore, Event, VerifyWebhookLayer};
use tracing_subscriber::EnvFilter;

#[derive(Deserialize)]
struct Payload {
    r#type: String,
}

async fn handle(event: Event<Payload>) -> StatusCode {
    println!("handled event {} ({})", event.id(), event.payload().r#type);
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The layer's logs (a rejected delivery says why); RUST_LOG=debug for more.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    // The endpoint's signing secret, `whsec_...`, from the sender's dashboard.
    let secret = std::env::var("WEBHOOK_SECRET")?;
    let layer =
        VerifyWebhookLayer::new(StandardWebhooks::new(&secret)?).with_store(MemoryStore::new());
    let app = Router::new()
        .route("/webhooks", post(handle))
        .route_layer(layer);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, app).await?;
    Ok(())
}
