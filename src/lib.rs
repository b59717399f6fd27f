//! Tower middleware that receives webhooks safely.
//!
//! Webhook senders (Svix and the senders built on it, Stripe, GitHub, ...) deliver each event
//! **at least once**, sign it with an HMAC over the raw body, retry on any non-2xx answer, and
//! expect the receiver to be idempotent. [`VerifyWebhookLayer`] does those checks once, in
//! front of any Tower service, in this order:
//!
//! 1. **Size.** A `Content-Length` over the limit (1 MiB by default) is refused with `413`
//!    before a byte is read; a body without one is counted as it streams.
//! 2. **Buffer once.** The body becomes one [`Bytes`](bytes::Bytes); the inner service and
//!    the [`Event`] share it, nothing copies it.
//! 3. **Verify.** The [`Scheme`](scheme::Scheme) checks signature and timestamp against the
//!    raw bytes, in constant time, with every configured secret. Failure: `400` with a short
//!    reason, so the sender drops the forgery. Svix and Standard Webhooks, Stripe, GitHub,
//!    Shopify, Slack and Paddle are built in; see [`scheme`].
//! 4. **Identify.** The delivery's id comes from an [`IdSource`]: the signed id header by
//!    default, or fields of the JSON body, or a closure.
//! 5. **Claim.** With a [store](store::IdempotencyStore), the delivery is claimed for a lease,
//!    under a key namespaced by the layer's [name](VerifyWebhookLayer::with_name) and bounded
//!    in length (see [`IdSource`]). A copy of a delivery already handled answers `200` at
//!    once, marked with [`DUPLICATE_HEADER`]; a copy arriving while another is handled
//!    answers `429` with `Retry-After`; a store that cannot answer, or not within the
//!    [store timeout](VerifyWebhookLayer::with_store_timeout), gives `503` with
//!    `Retry-After`, never a 4xx.
//! 6. **Handle.** The inner service runs with the verified [`Event`] in the request
//!    extensions.
//! 7. **Settle.** A 2xx completes the claim and keeps the id for the dedup window (7 days by
//!    default); anything else, an error, or a panic releases it so the sender's retry runs
//!    the handler again. An answer abandoned mid-way (the sender hung up) releases its claim
//!    too, on the Tokio runtime.
//!
//! # Status codes
//!
//! Senders read a 2xx as delivered, 408, 429 and 5xx as "retry later", and any other 4xx as
//! "drop it"; each answer is chosen for what the sender does next.
//!
//! | situation | status |
//! | --- | --- |
//! | the handler answered 2xx | the handler's; the delivery is remembered for the dedup window |
//! | a copy of a delivery already handled | `200` with [`DUPLICATE_HEADER`]; the handler does not run |
//! | bad or missing signature, timestamp outside the tolerance, malformed header | `400` with a short reason |
//! | verified, but no id (or not JSON where the id is read from the body) | `400` |
//! | body over the limit | `413` |
//! | body stream failed before its end | `408` |
//! | another copy is being handled right now | `429` with `Retry-After` |
//! | the store failed or did not answer within the store timeout | `503` with `Retry-After`, never a 4xx |
//! | the handler answered non-2xx, failed or panicked | the handler's (a panic goes on); the claim is released for the retry |
//!
//! Each answer the layer makes itself carries a [`Rejection`] in its extensions.
//!
//! # Choosing a store
//!
//! | store | feature | for |
//! | --- | --- | --- |
//! | none | | one replica whose handler is idempotent on its own: every verified copy runs it |
//! | [`MemoryStore`](store::MemoryStore) | | one process; bounded in entries and bytes; forgotten on restart |
//! | `SqliteStore` | `sqlite` | one machine; a file, kept across restarts |
//! | [`RedisStore`](store::RedisStore) | `redis` | replicas sharing a Redis (7.0 or later) |
//! | [`PostgresStore`](store::PostgresStore) | `postgres` | replicas sharing a PostgreSQL |
//!
//! One store serves every layer of an application: each layer's keys carry its
//! [name](VerifyWebhookLayer::with_name). A store of your own implements
//! [`IdempotencyStore`](store::IdempotencyStore).
//!
//! # Acknowledge fast: the inbox
//!
//! A handler slower than the sender's timeout never finishes inline. With the `inbox`
//! module (`inbox-sqlite`, `inbox-postgres`), the layer stores each verified delivery
//! durably, answers `202` once it is committed, and workers run the handler with retries,
//! backoff and a dead-letter.
//!
//! # The work done once
//!
//! A dedup store makes the handler *run* once per recorded completion, but the record and
//! the handler's effect are two commits: a crash between them repeats the effect. For
//! effects in the database the store (inline) or the inbox (in a worker) lives in, a handler
//! that takes a `Tx` (`sqlite` or `postgres` feature) writes them in a transaction that
//! commits together with the delivery's completion, fenced so that a copy that lost its
//! claim, or a worker whose job was taken back, commits nothing. The effect is committed if
//! and only if the delivery is recorded as done: exactly once, wherever a crash lands.
//!
//! ```no_run
//! # #[cfg(all(feature = "axum", feature = "postgres"))]
//! # mod inline {
//! use axum::http::StatusCode;
//! // sqlx as the crate re-exports it (or your own sqlx 0.9): the same `Postgres` either way.
//! use tower_webhook::store::postgres::sqlx::{self, Postgres};
//! use tower_webhook::{Event, Tx};
//!
//! async fn paid(event: Event, mut tx: Tx<Postgres>) -> StatusCode {
//!     let done = sqlx::query("UPDATE invoices SET paid = true WHERE event_id = $1")
//!         .bind(event.id())
//!         .execute(&mut *tx)
//!         .await;
//!     // 2xx: committed with the mark before the answer goes out. Anything else: rolled back.
//!     if done.is_ok() { StatusCode::NO_CONTENT } else { StatusCode::SERVICE_UNAVAILABLE }
//! }
//! # }
//! ```
//!
//! Effects outside the database (an email, a call to another API) stay at least once: pass
//! the delivery's id downstream as the idempotency key. See `docs/transactions.md`.
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "axum")]
//! # async fn doc() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{http::StatusCode, routing::post, Router};
//! use serde::Deserialize;
//! use tower_webhook::{scheme::StandardWebhooks, store::MemoryStore, Event, VerifyWebhookLayer};
//!
//! #[derive(Deserialize)]
//! struct Payload {
//!     r#type: String,
//! }
//!
//! async fn handle(event: Event<Payload>) -> StatusCode {
//!     println!("handled event {} ({})", event.id(), event.payload().r#type);
//!     StatusCode::NO_CONTENT
//! }
//!
//! let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"; // from the sender's dashboard
//! // `route_layer`: the layer runs for this router's routes only, so a health check or an
//! // unknown path (404) merged beside them never needs a signature.
//! let app: Router = Router::new()
//!     .route("/webhooks", post(handle))
//!     .route_layer(VerifyWebhookLayer::new(StandardWebhooks::new(secret)?).with_store(MemoryStore::new()));
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! A customised layer: a rotation of two secrets, the Self-style id of two body fields, a
//! smaller body limit and a shorter window.
//!
//! ```
//! use std::time::Duration;
//! use tower_webhook::{scheme::StandardWebhooks, store::MemoryStore, IdSource, VerifyWebhookLayer};
//!
//! let scheme = StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?
//!     .with_secret("whsec_dGhlIG9sZCBzZWNyZXQ=")?;
//! let layer = VerifyWebhookLayer::new(scheme)
//!     .with_store(MemoryStore::new().with_max_entries(50_000))
//!     .with_id_source(IdSource::json_fields(["verification_id", "type"], "-"))
//!     .with_body_limit(64 * 1024)
//!     .with_dedup_window(Duration::from_secs(3 * 24 * 3600));
//! let stats = layer.stats(); // counters of each outcome, for alerts
//! # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
//! ```
//!
//! # Testing your handlers
//!
//! With the `test-util` feature, `testkit::Delivery` signs a delivery as each sender does,
//! with its whole header set, and gives the headers or a whole request. Without it, every
//! scheme's `sign` gives the signature headers for an id, a timestamp and a body
//! ([`StandardWebhooks::sign`](scheme::StandardWebhooks::sign)).
//!
//! # Features
//!
//! - `axum` (default): [`Event`] as an axum extractor, and the sender's address from axum's
//!   `ConnectInfo` in each delivery's span.
//! - `redis`: [`store::RedisStore`].
//! - `postgres`: [`store::PostgresStore`], and `Tx<Postgres>` on it.
//! - `sqlite`: `store::SqliteStore`, and `Tx<Sqlite>` on it.
//! - `inbox-sqlite`, `inbox-postgres`: the `inbox` module, on the inbox's own tables.
//! - `console`: `inbox::console`, the inbox's operator page, an axum `Router` to nest.
//! - `cli`: `inbox::cli` and the `webhook-inbox` binary, the same operations from a terminal.
//! - `ed25519`: Standard Webhooks `v1a` signatures
//!   ([`StandardWebhooks::from_public_key`](scheme::StandardWebhooks::from_public_key)).
//! - `sendgrid`: SendGrid's Event Webhook, ECDSA P-256 signatures.
//! - `metrics`: counters and histograms through the `metrics` facade (see [`metrics`]).
//! - `test-util`: `testkit`, signed deliveries for your tests.
#![cfg_attr(docsrs, feature(doc_cfg))]

// Group commit: the PostgreSQL store's statements, and the inbox's door.
#[cfg(any(feature = "postgres", feature = "inbox-sqlite"))]
mod batch;
pub mod clock;
mod event;
mod id;
#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres")))
)]
pub mod inbox;
mod json;
pub mod metrics;
mod pipeline;
pub mod scheme;
mod stats;
pub mod store;
mod tenant;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testkit;
mod tx;

pub use event::{Event, EventTypeSource, Unparsed};
#[cfg(feature = "axum")]
pub use event::{EventRejection, EventRejectionKind};
pub use id::IdSource;
pub use pipeline::{
    Duplicate, Rejection, RejectionKind, ResponseBody, ResponseFuture, VerifyWebhook,
    VerifyWebhookLayer, DUPLICATE_HEADER,
};
pub use stats::{Stats, StatsSnapshot};
pub use tenant::{Tenant, TenantError, TenantFrom, Tenants};
#[cfg(all(feature = "axum", any(feature = "sqlite", feature = "postgres")))]
#[cfg_attr(
    docsrs,
    doc(cfg(all(feature = "axum", any(feature = "sqlite", feature = "postgres"))))
)]
pub use tx::TxRejection;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub use tx::{SqlKind, SqlRow, SqlValue, Tx};
