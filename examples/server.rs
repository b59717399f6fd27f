//! A webhook receiver for a real sender.
//!
//!     WEBHOOK_SECRET=whsec_... cargo run --example server
//!
//! `WEBHOOK_SCHEME` names the sender: `standard` (Svix and every Standard Webhooks sender, the
//! default), `stripe`, `github`, `shopify`, `slack`, `paddle`, `zoom`, `meta`, `lemon-squeezy`,
//! `woocommerce`, `typeform`, `calendly`, `pagerduty`, `dropbox`, `intercom`, `vercel`,
//! `twitch`, `linear`, `coinbase-commerce`, `mailgun`, `microsoft-graph` (its client state),
//! `gitlab` (its secret token),
//! `twilio`, `square`, `hubspot` (these
//! three with `WEBHOOK_PUBLIC_URL`, the endpoint's URL as entered at the sender) or
//! `discord` (its public key; built with `--features ed25519`) or `sendgrid` (its
//! verification key; `--features sendgrid`). With `meta`, `META_VERIFY_TOKEN` answers Meta's `GET` subscription
//! check. The layer answers every sender's handshake itself. `WEBHOOK_SECRET` is that
//! sender's signing secret, as its dashboard shows it. `BIND` is the address to listen on
//! (default `127.0.0.1:3000`). Deliveries go to `POST /webhooks`. Each time the
//! handler runs it prints `handled event <id>`; every rejection and duplicate prints a line
//! too.
//!
//! The store comes from the environment: `WEBHOOK_STORE=sqlite:<path>`, an SQLite file
//! (`--features sqlite`); else `REDIS_URL` set, Redis (build with `--features redis`); else
//! `DATABASE_URL` set, PostgreSQL, its table created at start (`--features postgres`);
//! none, in memory. With `HANDLER_EFFECT=tx` (below), `DATABASE_URL` wins over `REDIS_URL`.
//!
//! `WEBHOOK_INBOX` chooses how deliveries are handled. Unset, inline, as above: the handler
//! runs before the answer. `sqlite:<path>` (`--features inbox-sqlite`) or `postgres` (the
//! database at `DATABASE_URL`, `--features inbox-postgres`): the delivery is stored and
//! answered 202, and workers in this process run the handler, with retries and a
//! dead-letter. `WORKER_CONCURRENCY` (default 16) bounds the handlers running at once;
//! `WEBHOOK_INBOX_QUEUE` names the queue (default `tower-webhook`); `WEBHOOK_INBOX_ATTEMPTS`,
//! `WEBHOOK_INBOX_BACKOFF_MS` (the first retry's delay, growing six times each attempt) and
//! `WEBHOOK_INBOX_HEARTBEAT_SECS` change the retries and the heartbeat from their defaults.
//!
//! Demo knobs, to watch retries and slow handlers: `HANDLER_DELAY_MS` makes the handler
//! sleep that long before it answers; `HANDLER_FAIL_RATE` (0.0 to 1.0) is the share of
//! deliveries whose first attempt fails with an error (later attempts succeed);
//! `HANDLER_ABORT_TYPE` makes the handler abort the whole process as it starts on events of
//! that type, as a poison job does.
//!
//! `HANDLER_EFFECT=tx` gives the handler the delivery's transaction (`Tx`, on the SQLite or
//! PostgreSQL store inline, or the inbox's database): it first inserts one row `(event_id)`
//! into the table `demo_effects` (created at start, with no uniqueness constraint), then
//! works as above; the row commits if and only if the delivery is recorded as done. Inline,
//! it needs `WEBHOOK_STORE=sqlite:<path>` or `DATABASE_URL`.
//!
//! With an inbox, built with `--features console` and `CONSOLE_TOKEN` set (at least 16
//! characters), the inbox's console is at `/inbox` (and `/inbox/`): sign in with that token.
//!
//! `GET /health` answers `ok`, outside the webhook layer. Built with `--features metrics`,
//! `GET /metrics` serves the layer's metrics in the Prometheus text format.

use std::net::SocketAddr;
use tracing_subscriber::EnvFilter;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use tower_webhook::scheme::{
    HmacScheme, HubSpot, Mailgun, MicrosoftGraph, Scheme, SharedToken, Square, StandardWebhooks,
    Twilio,
};
use tower_webhook::store::MemoryStore;
use tower_webhook::{Duplicate, Event, IdSource, Rejection, VerifyWebhookLayer};

#[tokio::main]
async fn main() {
    // The layer's and the workers' logs (a failed attempt is a warning); RUST_LOG=debug for more.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    if let Err(err) = run().await {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::var("WEBHOOK_SECRET")
        .map_err(|_| "set WEBHOOK_SECRET to the signing secret from your sender's dashboard")?;
    let name = std::env::var("WEBHOOK_SCHEME").unwrap_or_else(|_| "standard".to_owned());
    let scheme = scheme(&name, &secret)?;
    let bind: SocketAddr = std::env::var("BIND")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()
        .map_err(|err| format!("BIND: {err}"))?;

    println!("scheme: {name}");
    let layer = VerifyWebhookLayer::new(scheme).with_id_source(IdSource::scheme());
    let effect = std::env::var("HANDLER_EFFECT").ok();
    let tx = match effect.as_deref() {
        None | Some("") => false,
        Some("tx") => true,
        Some(other) => return Err(format!("HANDLER_EFFECT {other:?}: use tx").into()),
    };
    let no_tx = || -> Result<(), Box<dyn std::error::Error>> {
        if tx {
            return Err(
                "HANDLER_EFFECT=tx inline needs WEBHOOK_STORE=sqlite:<path> or DATABASE_URL".into(),
            );
        }
        Ok(())
    };
    let mut console = None;
    let (layer, route) = if let Ok(inbox) = std::env::var("WEBHOOK_INBOX") {
        let (layer, inbox_console) = with_inbox(layer, &inbox, tx).await?;
        console = inbox_console;
        (layer, post(handle))
    } else if let Ok(store) = std::env::var("WEBHOOK_STORE") {
        with_sqlite(layer, &store, tx).await?
    } else if let Some(url) = redis_url(tx) {
        no_tx()?;
        (with_redis(layer, &url).await?, post(handle))
    } else if let Ok(url) = std::env::var("DATABASE_URL") {
        with_postgres(layer, &url, tx).await?
    } else {
        no_tx()?;
        println!("store: in memory");
        (layer.with_store(MemoryStore::new()), post(handle))
    };
    // route_layer: the routes added after it (health, metrics) are not webhook routes.
    let app = Router::new()
        .route("/webhooks", route)
        .route_layer(layer)
        .route("/health", get(|| async { "ok" }));
    let app = with_metrics(app)?.layer(middleware::from_fn(report));
    // The console is outside `report`'s log of webhook answers.
    let has_console = console.is_some();
    let app = match console {
        // axum's `nest` routes `/inbox` and what is under it, not `/inbox/`: that one is
        // sent to the overview.
        Some(console) => app.nest("/inbox", console).route(
            "/inbox/",
            get(|| async { axum::response::Redirect::permanent("/inbox") }),
        ),
        None => app,
    };

    let listener = tokio::net::TcpListener::bind(bind).await?;
    println!("listening on http://{}/webhooks", listener.local_addr()?);
    if has_console {
        println!("console on http://{}/inbox", listener.local_addr()?);
    }
    // With the connections' addresses, each delivery's log lines name the sender's (`peer`).
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

/// The demo knobs: how long the handler takes, and the share of deliveries whose first
/// attempt fails.
struct Knobs {
    delay: std::time::Duration,
    fail_rate: f64,
    abort_type: Option<String>,
}

impl Knobs {
    fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok();
        Self {
            delay: std::time::Duration::from_millis(
                var("HANDLER_DELAY_MS")
                    .and_then(|ms| ms.parse().ok())
                    .unwrap_or(0),
            ),
            fail_rate: var("HANDLER_FAIL_RATE")
                .and_then(|rate| rate.parse::<f64>().ok())
                .unwrap_or(0.0)
                .clamp(0.0, 1.0),
            abort_type: var("HANDLER_ABORT_TYPE"),
        }
    }

    /// Whether the first attempt at delivery `id` fails: the same answer for every copy and
    /// every process, so a retry after a restart still succeeds.
    fn first_attempt_fails(&self, id: &str) -> bool {
        // FNV-1a: stable across processes, unlike the standard library's random hasher.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in id.bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        f64::from(u16::try_from(hash % 10_000).unwrap_or(0)) / 10_000.0 < self.fail_rate
    }
}

/// The work on one delivery, inline or in a worker: `attempt` is the worker's, or (inline)
/// 1 for the first copy this process sees and 2 after.
async fn work(event: &Event, attempt: u32, knobs: &Knobs) -> Result<(), String> {
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
    if knobs.abort_type.as_deref() == Some(kind.as_str()) {
        println!("working on event {} (attempt {attempt})", event.id());
        std::process::abort();
    }
    if !knobs.delay.is_zero() {
        println!("working on event {} (attempt {attempt})", event.id());
        tokio::time::sleep(knobs.delay).await;
    }
    if attempt == 1 && knobs.first_attempt_fails(event.id()) {
        println!("failed event {} (attempt 1, a demo failure)", event.id());
        return Err("a demo failure (HANDLER_FAIL_RATE)".to_owned());
    }
    println!(
        "handled event {} (type {kind}, {} bytes, attempt {attempt})",
        event.id(),
        event.body().len()
    );
    Ok(())
}

/// The inbox `spec` names, with its workers running in this process until Ctrl-C.
#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
async fn with_inbox(
    layer: VerifyWebhookLayer,
    spec: &str,
    tx: bool,
) -> Result<Served, Box<dyn std::error::Error>> {
    let concurrency = std::env::var("WORKER_CONCURRENCY")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(16);
    let knobs = std::sync::Arc::new(Knobs::from_env());
    let handler = {
        let knobs = std::sync::Arc::clone(&knobs);
        move |event: Event, job: tower_webhook::inbox::Job| {
            let knobs = std::sync::Arc::clone(&knobs);
            async move { work(&event, job.attempt(), &knobs).await }
        }
    };
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let number = |name: &str| std::env::var(name).ok().and_then(|n| n.parse::<u64>().ok());
    let mut retry = tower_webhook::inbox::RetryPolicy::default();
    if let Some(ms) = number("WEBHOOK_INBOX_BACKOFF_MS") {
        retry = tower_webhook::inbox::RetryPolicy::exponential(
            std::time::Duration::from_millis(ms),
            6,
            std::time::Duration::from_secs(10 * 60 * 60),
        );
    }
    if let Some(attempts) = number("WEBHOOK_INBOX_ATTEMPTS") {
        retry = retry.with_attempts(u32::try_from(attempts).unwrap_or(u32::MAX));
    }
    let heartbeat = number("WEBHOOK_INBOX_HEARTBEAT_SECS").map_or(
        tower_webhook::inbox::DEFAULT_HEARTBEAT,
        std::time::Duration::from_secs,
    );
    let settings = Settings {
        retry,
        heartbeat,
        queue: std::env::var("WEBHOOK_INBOX_QUEUE").ok(),
        concurrency,
    };
    if let Some(path) = spec.strip_prefix("sqlite:") {
        #[cfg(feature = "inbox-sqlite")]
        {
            let inbox = tower_webhook::inbox::SqliteInbox::open(path)
                .await
                .map_err(|err| format!("WEBHOOK_INBOX {spec}: {err}"))?;
            println!("inbox: SQLite file {path}, {concurrency} workers");
            if tx {
                effects::create_sqlite(inbox.pool()).await?;
                let handler = move |event: Event, job: tower_webhook::inbox::Job, mut tx| {
                    let knobs = std::sync::Arc::clone(&knobs);
                    async move {
                        effects::record_sqlite(&event, &mut tx).await?;
                        work(&event, job.attempt(), &knobs).await
                    }
                };
                return Ok(serve_inbox(layer, inbox, &settings, handler, stop));
            }
            return Ok(serve_inbox(layer, inbox, &settings, handler, stop));
        }
        #[cfg(not(feature = "inbox-sqlite"))]
        return Err(format!("WEBHOOK_INBOX {spec}: build with --features inbox-sqlite").into());
    }
    if spec == "postgres" {
        #[cfg(feature = "inbox-postgres")]
        {
            let url = std::env::var("DATABASE_URL")
                .map_err(|_| "WEBHOOK_INBOX=postgres needs DATABASE_URL")?;
            let inbox = tower_webhook::inbox::PostgresInbox::connect(&url)
                .await
                .map_err(|err| format!("DATABASE_URL: {err}"))?;
            println!("inbox: PostgreSQL, {concurrency} workers");
            if tx {
                effects::create_postgres(inbox.pool()).await?;
                let handler = move |event: Event, job: tower_webhook::inbox::Job, mut tx| {
                    let knobs = std::sync::Arc::clone(&knobs);
                    async move {
                        effects::record_postgres(&event, &mut tx).await?;
                        work(&event, job.attempt(), &knobs).await
                    }
                };
                return Ok(serve_inbox(layer, inbox, &settings, handler, stop));
            }
            return Ok(serve_inbox(layer, inbox, &settings, handler, stop));
        }
        #[cfg(not(feature = "inbox-postgres"))]
        return Err("WEBHOOK_INBOX=postgres: build with --features inbox-postgres".into());
    }
    Err(format!("WEBHOOK_INBOX {spec:?}: use sqlite:<path> or postgres").into())
}

/// The layer on an inbox, and the inbox's console where there is one.
#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
type Served = (VerifyWebhookLayer, Option<Router>);

/// How the inbox and its workers are set up, from the environment.
#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
struct Settings {
    retry: tower_webhook::inbox::RetryPolicy,
    heartbeat: std::time::Duration,
    queue: Option<String>,
    concurrency: usize,
}

/// The layer on `inbox` and its workers, written once for every database: whichever one
/// the configuration picks, the app is the same.
#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
fn serve_inbox<D, H, A>(
    layer: VerifyWebhookLayer,
    inbox: tower_webhook::inbox::Inbox<D>,
    settings: &Settings,
    handler: H,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Served
where
    D: tower_webhook::inbox::Dialect,
    H: tower_webhook::inbox::Handler<A, D::Db>,
    A: 'static,
{
    let mut inbox = inbox
        .with_retry(settings.retry)
        .with_heartbeat(settings.heartbeat);
    if let Some(queue) = &settings.queue {
        inbox = inbox.with_queue(queue);
    }
    let worker = inbox.worker(handler).concurrency(settings.concurrency);
    tokio::spawn(worker.run_until(stop));
    let layer = layer.with_inbox(inbox.clone());
    let console = console(&inbox, &layer);
    (layer, console)
}

/// The inbox's console, with `CONSOLE_TOKEN` set (at least 16 characters): mounted at
/// `/inbox`, signed into with that token.
#[cfg(feature = "console")]
fn console<D: tower_webhook::inbox::Dialect>(
    inbox: &tower_webhook::inbox::Inbox<D>,
    layer: &VerifyWebhookLayer,
) -> Option<Router> {
    use tower_webhook::inbox::console::ConsoleAuth;
    let token = std::env::var("CONSOLE_TOKEN").ok()?;
    match ConsoleAuth::token(&token) {
        Ok(auth) => Some(
            inbox
                .console(auth)
                .with_stats("webhooks", layer.stats())
                .router(),
        ),
        Err(err) => {
            eprintln!("CONSOLE_TOKEN: {err}; the console is off");
            None
        }
    }
}

#[cfg(all(
    not(feature = "console"),
    any(feature = "inbox-sqlite", feature = "inbox-postgres")
))]
fn console<D: tower_webhook::inbox::Dialect>(
    _: &tower_webhook::inbox::Inbox<D>,
    _: &VerifyWebhookLayer,
) -> Option<Router> {
    if std::env::var_os("CONSOLE_TOKEN").is_some() {
        eprintln!(
            "CONSOLE_TOKEN is set, but this build has no console: run with --features console"
        );
    }
    None
}

#[cfg(not(any(feature = "inbox-sqlite", feature = "inbox-postgres")))]
#[allow(clippy::unused_async)] // the same signature as with the features
async fn with_inbox(
    _: VerifyWebhookLayer,
    spec: &str,
    _: bool,
) -> Result<(VerifyWebhookLayer, Option<Router>), Box<dyn std::error::Error>> {
    Err(format!(
        "WEBHOOK_INBOX={spec}, but this build has no inbox: run with --features inbox-sqlite or inbox-postgres"
    )
    .into())
}

/// A built-in HMAC sender's constructor.
type Preset = fn(&str) -> Result<HmacScheme, tower_webhook::scheme::InvalidSecret>;

/// The scheme `name`. Every one keys its deliveries as it says (`IdSource::scheme`): GitHub,
/// Shopify and the others whose id is not signed on the id and the body together.
fn scheme(name: &str, secret: &str) -> Result<Box<dyn Scheme>, Box<dyn std::error::Error>> {
    let invalid = |err: tower_webhook::scheme::InvalidSecret| format!("WEBHOOK_SECRET: {err}");
    let invalid_url = |err: tower_webhook::scheme::InvalidScheme| format!("WEBHOOK_SCHEME: {err}");
    // WEBHOOK_PUBLIC_URL: the endpoint's URL as entered at the sender, which it signs.
    let public_url = || {
        std::env::var("WEBHOOK_PUBLIC_URL")
            .map_err(|_| format!("WEBHOOK_SCHEME {name}: set WEBHOOK_PUBLIC_URL, the URL it calls"))
    };
    let preset: Option<Preset> = match name {
        "stripe" => Some(HmacScheme::stripe),
        "github" => Some(HmacScheme::github),
        "shopify" => Some(HmacScheme::shopify),
        "slack" => Some(HmacScheme::slack),
        "paddle" => Some(HmacScheme::paddle),
        "zoom" => Some(HmacScheme::zoom),
        "lemon-squeezy" => Some(HmacScheme::lemon_squeezy),
        "woocommerce" => Some(HmacScheme::woocommerce),
        "typeform" => Some(HmacScheme::typeform),
        "calendly" => Some(HmacScheme::calendly),
        "pagerduty" => Some(HmacScheme::pagerduty),
        "dropbox" => Some(HmacScheme::dropbox),
        "intercom" => Some(HmacScheme::intercom),
        "vercel" => Some(HmacScheme::vercel),
        "twitch" => Some(HmacScheme::twitch),
        "linear" => Some(HmacScheme::linear),
        "coinbase-commerce" => Some(HmacScheme::coinbase_commerce),
        _ => None,
    };
    if let Some(preset) = preset {
        return Ok(Box::new(preset(secret).map_err(invalid)?));
    }
    Ok(match name {
        "standard" => Box::new(StandardWebhooks::new(secret).map_err(invalid)?),
        // META_VERIFY_TOKEN, where set, answers Meta's GET subscription check.
        "meta" => {
            let meta = HmacScheme::meta(secret).map_err(invalid)?;
            Box::new(match std::env::var("META_VERIFY_TOKEN") {
                Ok(token) => meta
                    .with_verify_token(&token)
                    .map_err(|err| format!("META_VERIFY_TOKEN: {err}"))?,
                Err(_) => meta,
            })
        }
        "gitlab" => Box::new(SharedToken::gitlab(secret).map_err(invalid)?),
        "mailgun" => Box::new(Mailgun::new(secret).map_err(invalid)?),
        "microsoft-graph" => Box::new(MicrosoftGraph::new(secret).map_err(invalid)?),
        "twilio" => Box::new(Twilio::new(secret, &public_url()?).map_err(invalid_url)?),
        "square" => Box::new(Square::new(secret, &public_url()?).map_err(invalid_url)?),
        "hubspot" => Box::new(HubSpot::new(secret, &public_url()?).map_err(invalid_url)?),
        // WEBHOOK_SECRET is SendGrid's verification key.
        #[cfg(feature = "sendgrid")]
        "sendgrid" => Box::new(tower_webhook::scheme::SendGrid::new(secret).map_err(invalid)?),
        // WEBHOOK_SECRET is the application's public key, in hex.
        #[cfg(feature = "ed25519")]
        "discord" => Box::new(tower_webhook::scheme::Discord::new(secret).map_err(invalid)?),
        other => {
            return Err(format!(
                "WEBHOOK_SCHEME {other:?}: use standard, stripe, github, shopify, slack, paddle, \
                 zoom, meta, lemon-squeezy, woocommerce, typeform, calendly, pagerduty, dropbox, \
                 intercom, vercel, twitch, linear, coinbase-commerce, gitlab, mailgun, \
                 microsoft-graph, twilio, \
                 square, hubspot, discord (with --features ed25519) or sendgrid (with \
                 --features sendgrid)"
            )
            .into())
        }
    })
}

/// `REDIS_URL`, unless the handler's `Tx` needs the SQL store that `DATABASE_URL` names:
/// with `HANDLER_EFFECT=tx`, PostgreSQL wins over Redis.
fn redis_url(tx: bool) -> Option<String> {
    let url = std::env::var("REDIS_URL").ok()?;
    if tx && std::env::var("DATABASE_URL").is_ok() {
        println!("REDIS_URL ignored: HANDLER_EFFECT=tx needs the PostgreSQL store");
        return None;
    }
    Some(url)
}

/// The SQLite store `spec` (`sqlite:<path>`) names, and the route's handler.
#[cfg(feature = "sqlite")]
async fn with_sqlite(
    layer: VerifyWebhookLayer,
    spec: &str,
    tx: bool,
) -> Result<(VerifyWebhookLayer, MethodRouter), Box<dyn std::error::Error>> {
    let path = spec
        .strip_prefix("sqlite:")
        .ok_or_else(|| format!("WEBHOOK_STORE {spec:?}: use sqlite:<path>"))?;
    let store = tower_webhook::store::SqliteStore::open(path)
        .await
        .map_err(|err| format!("WEBHOOK_STORE {spec}: {err}"))?;
    println!("store: SQLite file {path}");
    let route = if tx {
        effects::create_sqlite(store.pool()).await?;
        post(effects::handle_sqlite)
    } else {
        post(handle)
    };
    Ok((layer.with_store(store), route))
}

#[cfg(not(feature = "sqlite"))]
#[allow(clippy::unused_async)] // the same signature as with the feature
async fn with_sqlite(
    _: VerifyWebhookLayer,
    _: &str,
    _: bool,
) -> Result<(VerifyWebhookLayer, MethodRouter), Box<dyn std::error::Error>> {
    Err(
        "WEBHOOK_STORE is set, but this build has no SQLite store: run with --features sqlite"
            .into(),
    )
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
    tx: bool,
) -> Result<(VerifyWebhookLayer, MethodRouter), Box<dyn std::error::Error>> {
    use tower_webhook::store::PostgresStore;

    // Its own pool, on which PostgreSQL cancels a statement stalled behind a lock.
    let store = PostgresStore::connect(url)
        .await
        .map_err(|err| format!("DATABASE_URL: {err}"))?;
    store.create_table().await?;
    store.spawn_cleanup(std::time::Duration::from_secs(3600));
    println!("store: PostgreSQL, table {}", PostgresStore::DEFAULT_TABLE);
    let route = if tx {
        effects::create_postgres(store.pool()).await?;
        post(effects::handle_postgres)
    } else {
        post(handle)
    };
    Ok((layer.with_store(store), route))
}

#[cfg(not(feature = "postgres"))]
#[allow(clippy::unused_async)] // the same signature as with the feature
async fn with_postgres(
    _: VerifyWebhookLayer,
    _: &str,
    _: bool,
) -> Result<(VerifyWebhookLayer, MethodRouter), Box<dyn std::error::Error>> {
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

/// Inline: the handler runs before the answer, which is 500 when it fails (the sender
/// retries).
async fn handle(event: Event) -> StatusCode {
    let (knobs, attempt) = inline_attempt(&event);
    match work(&event, attempt, knobs).await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The knobs, and which attempt this is inline: 1 for the first copy of a delivery this
/// process sees, 2 after one failed.
fn inline_attempt(event: &Event) -> (&'static Knobs, u32) {
    static KNOBS: std::sync::OnceLock<Knobs> = std::sync::OnceLock::new();
    static FAILED_ONCE: std::sync::Mutex<std::collections::BTreeSet<String>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let knobs = KNOBS.get_or_init(Knobs::from_env);
    let mut failed = FAILED_ONCE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if failed.contains(event.id()) {
        return (knobs, 2);
    }
    if knobs.first_attempt_fails(event.id()) {
        failed.insert(event.id().to_owned());
    }
    (knobs, 1)
}

/// `HANDLER_EFFECT=tx`: one row per handled delivery in `demo_effects`, written in the
/// delivery's transaction.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod effects {
    use axum::http::StatusCode;
    use tower_webhook::{Event, Tx};

    #[cfg(all(feature = "postgres", not(feature = "sqlite")))]
    use tower_webhook::store::postgres::sqlx;
    #[cfg(feature = "sqlite")]
    use tower_webhook::store::sqlite::sqlx;

    // No uniqueness constraint: a delivery done twice would show as two rows.
    const CREATE: &str = "CREATE TABLE IF NOT EXISTS demo_effects (event_id TEXT NOT NULL)";
    const INSERT: &str = "INSERT INTO demo_effects (event_id) VALUES ($1)";

    #[cfg(feature = "sqlite")]
    pub(crate) async fn create_sqlite(pool: &sqlx::SqlitePool) -> Result<(), sqlx::Error> {
        sqlx::query(CREATE).execute(pool).await.map(drop)
    }

    #[cfg(feature = "postgres")]
    pub(crate) async fn create_postgres(pool: &sqlx::PgPool) -> Result<(), sqlx::Error> {
        sqlx::query(CREATE).execute(pool).await.map(drop)
    }

    #[cfg(feature = "sqlite")]
    pub(crate) async fn record_sqlite(
        event: &Event,
        tx: &mut Tx<sqlx::Sqlite>,
    ) -> Result<(), String> {
        let insert = sqlx::query(INSERT).bind(event.id()).execute(&mut **tx);
        insert
            .await
            .map(drop)
            .map_err(|err| format!("demo_effects: {err}"))
    }

    #[cfg(feature = "postgres")]
    pub(crate) async fn record_postgres(
        event: &Event,
        tx: &mut Tx<sqlx::Postgres>,
    ) -> Result<(), String> {
        let insert = sqlx::query(INSERT).bind(event.id()).execute(&mut **tx);
        insert
            .await
            .map(drop)
            .map_err(|err| format!("demo_effects: {err}"))
    }

    /// Inline on the SQLite store: the row, then the work, all in the delivery's
    /// transaction, committed with its completion on a 2xx answer.
    #[cfg(feature = "sqlite")]
    pub(crate) async fn handle_sqlite(event: Event, mut tx: Tx<sqlx::Sqlite>) -> StatusCode {
        let recorded = record_sqlite(&event, &mut tx).await;
        answer(&event, recorded).await
    }

    /// Inline on the PostgreSQL store, as [`handle_sqlite`].
    #[cfg(feature = "postgres")]
    pub(crate) async fn handle_postgres(event: Event, mut tx: Tx<sqlx::Postgres>) -> StatusCode {
        let recorded = record_postgres(&event, &mut tx).await;
        answer(&event, recorded).await
    }

    async fn answer(event: &Event, recorded: Result<(), String>) -> StatusCode {
        if let Err(err) = recorded {
            eprintln!("event {}: {err}", event.id());
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        let (knobs, attempt) = super::inline_attempt(event);
        match super::work(event, attempt, knobs).await {
            Ok(()) => StatusCode::NO_CONTENT,
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
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
