//! A webhook receiver for a real sender.
//!
//!     WEBHOOK_SECRET=whsec_... cargo run --example server
//!
//! `WEBHOOK_SECRET` is the signing secret the sender's dashboard shows; `BIND` is the address
//! to listen on (default `127.0.0.1:3000`). Deliveries go to `POST /webhooks`. Each time the
//! handler runs it prints `handled event <id>`; every rejection and duplicate prints a line
//! too.
//!
//! The store comes from the environment: `REDIS_URL` set, Redis (build with
//! `--features redis`); else `DATABASE_URL` set, PostgreSQL, its table created at start
//! (`--features postgres`); neither, in memory.

use std::net::SocketAddr;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use tower_webhook::scheme::StandardWebhooks;
use tower_webhook::store::MemoryStore;
use tower_webhook::{Event, Rejection, VerifyWebhookLayer, DUPLICATE_HEADER};

#[tokio::main]
async fn main() {
    if let Err(err) = run().await {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::var("WEBHOOK_SECRET").map_err(|_| {
        "set WEBHOOK_SECRET to the signing secret from your sender's dashboard (whsec_...)"
    })?;
    let scheme = StandardWebhooks::new(&secret).map_err(|err| format!("WEBHOOK_SECRET: {err}"))?;
    let bind: SocketAddr = std::env::var("BIND")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()
        .map_err(|err| format!("BIND: {err}"))?;

    let layer = VerifyWebhookLayer::new(scheme);
    let layer = if let Ok(url) = std::env::var("REDIS_URL") {
        with_redis(layer, &url).await?
    } else if let Ok(url) = std::env::var("DATABASE_URL") {
        with_postgres(layer, &url).await?
    } else {
        println!("store: in memory");
        layer.with_store(MemoryStore::new())
    };
    let app = Router::new()
        .route("/webhooks", post(handle))
        .layer(layer)
        .layer(middleware::from_fn(report));

    let listener = tokio::net::TcpListener::bind(bind).await?;
    println!("listening on http://{}/webhooks", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

#[cfg(feature = "redis")]
async fn with_redis(
    layer: VerifyWebhookLayer,
    url: &str,
) -> Result<VerifyWebhookLayer, Box<dyn std::error::Error>> {
    let store = tower_webhook::store::RedisStore::connect(url)
        .await
        .map_err(|err| format!("REDIS_URL: {err}"))?;
    println!(
        "store: Redis, keys prefixed {:?}",
        tower_webhook::store::RedisStore::<()>::DEFAULT_PREFIX
    );
    Ok(layer.with_store(store))
}

#[cfg(not(feature = "redis"))]
#[allow(clippy::unused_async)] // the same signature as with the feature
async fn with_redis(
    _: VerifyWebhookLayer,
    _: &str,
) -> Result<VerifyWebhookLayer, Box<dyn std::error::Error>> {
    Err("REDIS_URL is set, but this build has no Redis store: run with --features redis".into())
}

#[cfg(feature = "postgres")]
async fn with_postgres(
    layer: VerifyWebhookLayer,
    url: &str,
) -> Result<VerifyWebhookLayer, Box<dyn std::error::Error>> {
    use tower_webhook::store::postgres::sqlx::postgres::PgPoolOptions;
    use tower_webhook::store::PostgresStore;

    let pool = PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_secs(3))
        .connect(url)
        .await
        .map_err(|err| format!("DATABASE_URL: {err}"))?;
    let store = PostgresStore::new(pool);
    store.create_table().await?;
    store.spawn_cleanup(std::time::Duration::from_secs(3600));
    println!("store: PostgreSQL, table {}", PostgresStore::DEFAULT_TABLE);
    Ok(layer.with_store(store))
}

#[cfg(not(feature = "postgres"))]
#[allow(clippy::unused_async)] // the same signature as with the feature
async fn with_postgres(
    _: VerifyWebhookLayer,
    _: &str,
) -> Result<VerifyWebhookLayer, Box<dyn std::error::Error>> {
    Err(
        "DATABASE_URL is set, but this build has no PostgreSQL store: run with --features postgres"
            .into(),
    )
}

async fn handle(event: Event) -> StatusCode {
    let kind = event
        .json::<serde_json::Value>()
        .ok()
        .and_then(|payload| payload.get("type")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "-".to_owned());
    println!(
        "handled event {} (type {kind}, {} bytes)",
        event.id(),
        event.body().len()
    );
    StatusCode::NO_CONTENT
}

/// Prints a line for every delivery the layer answered itself.
async fn report(request: Request, next: Next) -> Response {
    let id = ["webhook-id", "svix-id"]
        .iter()
        .find_map(|name| request.headers().get(*name)?.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let response = next.run(request).await;
    if let Some(rejection) = response.extensions().get::<Rejection>() {
        println!("rejected {id}: {} {rejection}", response.status().as_u16());
    } else if response.headers().contains_key(DUPLICATE_HEADER) {
        println!("duplicate {id}: acknowledged without running the handler");
    }
    response
}
