//! A webhook receiver for a real sender.
//!
//!     WEBHOOK_SECRET=whsec_... cargo run --example server
//!
//! `WEBHOOK_SCHEME` names the sender: `standard` (Svix and every Standard Webhooks sender, the
//! default), `stripe`, `github`, `shopify`, `slack` or `paddle`. `WEBHOOK_SECRET` is that
//! sender's signing secret, as its dashboard shows it. `BIND` is the address to listen on
//! (default `127.0.0.1:3000`). Deliveries go to `POST /webhooks`. Each time the
//! handler runs it prints `handled event <id>`; every rejection and duplicate prints a line
//! too.
//!
//! The store comes from the environment: `REDIS_URL` set, Redis (build with
//! `--features redis`); else `DATABASE_URL` set, PostgreSQL, its table created at start
//! (`--features postgres`); neither, in memory.
//!
//! `GET /health` answers `ok`, outside the webhook layer. Built with `--features metrics`,
//! `GET /metrics` serves the layer's metrics in the Prometheus text format.

use std::net::SocketAddr;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tower_webhook::scheme::{HmacScheme, Scheme, StandardWebhooks};
use tower_webhook::store::MemoryStore;
use tower_webhook::{Duplicate, Event, IdSource, Rejection, VerifyWebhookLayer};

#[tokio::main]
async fn main() {
    if let Err(err) = run().await {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::var("WEBHOOK_SECRET")
        .map_err(|_| "set WEBHOOK_SECRET to the signing secret from your sender's dashboard")?;
    let name = std::env::var("WEBHOOK_SCHEME").unwrap_or_else(|_| "standard".to_owned());
    let (scheme, id_source) = scheme(&name, &secret)?;
    let bind: SocketAddr = std::env::var("BIND")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()
        .map_err(|err| format!("BIND: {err}"))?;

    println!("scheme: {name}");
    let layer = VerifyWebhookLayer::new(scheme).with_id_source(id_source);
    let layer = if let Ok(url) = std::env::var("REDIS_URL") {
        with_redis(layer, &url).await?
    } else if let Ok(url) = std::env::var("DATABASE_URL") {
        with_postgres(layer, &url).await?
    } else {
        println!("store: in memory");
        layer.with_store(MemoryStore::new())
    };
    // route_layer: the routes added after it (health, metrics) are not webhook routes.
    let app = Router::new()
        .route("/webhooks", post(handle))
        .route_layer(layer)
        .route("/health", get(|| async { "ok" }));
    let app = with_metrics(app)?.layer(middleware::from_fn(report));

    let listener = tokio::net::TcpListener::bind(bind).await?;
    println!("listening on http://{}/webhooks", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// The scheme `name`, and where its deliveries' ids come from.
fn scheme(
    name: &str,
    secret: &str,
) -> Result<(Box<dyn Scheme>, IdSource), Box<dyn std::error::Error>> {
    let invalid = |err: tower_webhook::scheme::InvalidSecret| format!("WEBHOOK_SECRET: {err}");
    Ok(match name {
        "standard" => (
            Box::new(StandardWebhooks::new(secret).map_err(invalid)?),
            IdSource::scheme(),
        ),
        "stripe" => (
            Box::new(HmacScheme::stripe(secret).map_err(invalid)?),
            IdSource::scheme(),
        ),
        "slack" => (
            Box::new(HmacScheme::slack(secret).map_err(invalid)?),
            IdSource::scheme(),
        ),
        "paddle" => (
            Box::new(HmacScheme::paddle(secret).map_err(invalid)?),
            IdSource::scheme(),
        ),
        // GitHub and Shopify do not sign their id header: the layer keys those deliveries on
        // the id and the body together by default.
        "github" => (
            Box::new(HmacScheme::github(secret).map_err(invalid)?),
            IdSource::scheme(),
        ),
        "shopify" => (
            Box::new(HmacScheme::shopify(secret).map_err(invalid)?),
            IdSource::scheme(),
        ),
        other => {
            return Err(format!(
                "WEBHOOK_SCHEME {other:?}: use standard, stripe, github, shopify, slack or paddle"
            )
            .into())
        }
    })
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
    use tower_webhook::store::PostgresStore;

    // Its own pool, on which PostgreSQL cancels a statement stalled behind a lock.
    let store = PostgresStore::connect(url)
        .await
        .map_err(|err| format!("DATABASE_URL: {err}"))?;
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

/// `GET /metrics` in the Prometheus text format: the recorder is the application's choice,
/// the layer only emits.
#[cfg(feature = "metrics")]
fn with_metrics(app: Router) -> Result<Router, Box<dyn std::error::Error>> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    tower_webhook::metrics::describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    println!("metrics: GET /metrics");
    Ok(app.route("/metrics", get(move || async move { handle.render() })))
}

#[cfg(not(feature = "metrics"))]
#[allow(clippy::unnecessary_wraps)] // the same signature as with the feature
fn with_metrics(app: Router) -> Result<Router, Box<dyn std::error::Error>> {
    Ok(app)
}

async fn handle(event: Event) -> StatusCode {
    let kind = event
        .event_type()
        .map(str::to_owned)
        .or_else(|| {
            let payload = event.json::<serde_json::Value>().ok()?;
            ["type", "event_type"]
                .iter()
                .find_map(|field| payload.get(field)?.as_str().map(str::to_owned))
        })
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
    let response = next.run(request).await;
    if let Some(rejection) = response.extensions().get::<Rejection>() {
        println!("rejected: {} {rejection}", response.status().as_u16());
    } else if let Some(duplicate) = response.extensions().get::<Duplicate>() {
        println!(
            "duplicate {}: acknowledged without running the handler",
            duplicate.id()
        );
    }
    response
}
