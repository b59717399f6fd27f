//! The usual service: several senders, each on its own route with its own secret, one shared
//! store, and a health route outside the webhook layers.
//!
//! ```sh
//! CLERK_SECRET=whsec_... STRIPE_SECRET=whsec_... GITHUB_SECRET=... SELF_SECRET=whsec_... \
//!     cargo run --example multi_sender
//! ```
//!
//! Where the layer goes decides what else it answers:
//!
//! - `Router::route_layer` (Clerk, Stripe, Self here): the layer runs only for that sender's
//!   routes. `GET /health` never meets a webhook layer and a path that matches no route
//!   answers 404. A GET to a webhook route does meet the layer (it wraps the route's "method
//!   not allowed" answer too) and answers `400 missing ...-signature`.
//! - A layer on the method handler, `post(handler.layer(..))` (GitHub here): only the POST
//!   meets the layer, and a GET to the route answers 405.
//! - `.layer(..)` on the whole app: every request, the health check and unknown paths
//!   included, must carry a valid signature, and gets 400 without one. Keep it for an app that
//!   serves nothing but one sender's webhooks.
//!
//! The store needs no per-sender configuration: each layer's keys carry its name (the scheme's
//! by default), so a GitHub delivery id equal to a Stripe event id is never taken for a
//! duplicate. The two Standard Webhooks senders (Clerk and Self) are named apart.
//!
//! `cargo test --all-features` runs this file's tests: the whole app, end to end, with
//! deliveries signed by the test kit.

use axum::handler::Handler;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use tower_webhook::scheme::{HmacScheme, InvalidSecret, StandardWebhooks};
use tower_webhook::store::MemoryStore;
use tower_webhook::{Event, IdSource, VerifyWebhookLayer};
use tracing_subscriber::EnvFilter;

/// The signing secrets, one per sender, as their dashboards show them.
struct Secrets {
    clerk: String,
    stripe: String,
    github: String,
    self_: String,
}

#[derive(Deserialize)]
struct ClerkEvent {
    r#type: String,
}

#[derive(Deserialize)]
struct StripeEvent {
    r#type: String,
}

async fn clerk(event: Event<ClerkEvent>) -> StatusCode {
    println!("clerk {} {}", event.id(), event.payload().r#type);
    StatusCode::NO_CONTENT
}

async fn stripe(event: Event<StripeEvent>) -> StatusCode {
    println!("stripe {} {}", event.id(), event.payload().r#type);
    StatusCode::NO_CONTENT
}

async fn github(event: Event) -> StatusCode {
    let kind = event.event_type().unwrap_or("unknown");
    println!("github {} {kind}", event.id());
    StatusCode::NO_CONTENT
}

async fn self_verification(event: Event) -> StatusCode {
    println!("self {}", event.id());
    StatusCode::NO_CONTENT
}

/// The whole app: one store for every sender, each sender's layer on its own routes only.
fn app(secrets: &Secrets, store: &MemoryStore) -> Result<Router, InvalidSecret> {
    let clerk = Router::new()
        .route("/webhooks/clerk", post(clerk))
        .route_layer(
            VerifyWebhookLayer::new(StandardWebhooks::new(&secrets.clerk)?)
                .with_name("clerk")
                .with_store(store.clone()),
        );
    let stripe = Router::new()
        .route("/webhooks/stripe", post(stripe))
        .route_layer(
            VerifyWebhookLayer::new(HmacScheme::stripe(&secrets.stripe)?).with_store(store.clone()),
        );
    // The layer on the POST handler alone: a GET to the route answers 405.
    let github_layer =
        VerifyWebhookLayer::new(HmacScheme::github(&secrets.github)?).with_store(store.clone());
    let github = Router::new().route("/webhooks/github", post(github.layer(github_layer)));
    let self_ = Router::new()
        .route("/webhooks/self", post(self_verification))
        .route_layer(
            VerifyWebhookLayer::new(StandardWebhooks::new(&secrets.self_)?)
                .with_name("self")
                // Self's key, "{verification_id}-{type}", or its signed id for test events.
                .with_id_source(
                    IdSource::json_fields(["verification_id", "type"], "-").or(IdSource::scheme()),
                )
                .with_store(store.clone()),
        );
    Ok(Router::new()
        .route("/health", get(|| async { "ok" }))
        .merge(clerk)
        .merge(stripe)
        .merge(github)
        .merge(self_))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Warnings only beside the scenes (a rejected delivery, and why); RUST_LOG=info shows a
    // line for every answer.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let secret = |name: &str| {
        std::env::var(name).map_err(|_| format!("set {name} to that sender's signing secret"))
    };
    let secrets = Secrets {
        clerk: secret("CLERK_SECRET")?,
        stripe: secret("STRIPE_SECRET")?,
        github: secret("GITHUB_SECRET")?,
        self_: secret("SELF_SECRET")?,
    };
    let app = app(&secrets, &MemoryStore::new())?;
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!(
        "listening on http://{bind}: POST /webhooks/{{clerk,stripe,github,self}}, GET /health"
    );
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;
    use tower_webhook::testkit::{Delivery, HeaderFamily};
    use tower_webhook::DUPLICATE_HEADER;

    fn secrets() -> Secrets {
        Secrets {
            clerk: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
            stripe: "whsec_test_stripe".to_owned(),
            github: "It's a Secret to Everybody".to_owned(),
            self_: "whsec_dGhlIHNlbGYgc2VjcmV0IG9mIHRoZSB0ZXN0cw==".to_owned(),
        }
    }

    /// Status, and whether the answer was marked a duplicate.
    async fn send(app: &Router, request: Request<Body>) -> (StatusCode, bool) {
        let response = app.clone().oneshot(request).await.unwrap();
        let duplicate = response.headers().contains_key(DUPLICATE_HEADER);
        (response.status(), duplicate)
    }

    #[tokio::test]
    async fn every_sender_on_its_own_route_with_one_store() {
        let s = secrets();
        let app = app(&s, &MemoryStore::new()).unwrap();
        let clerk = StandardWebhooks::new(&s.clerk).unwrap();
        let stripe = HmacScheme::stripe(&s.stripe).unwrap();
        let github = HmacScheme::github(&s.github).unwrap();
        let self_ = StandardWebhooks::new(&s.self_).unwrap();

        let deliveries = [
            Delivery::new(r#"{"type":"user.created"}"#)
                .id("evt_123")
                .header_family(HeaderFamily::Svix)
                .uri("/webhooks/clerk")
                .request(&clerk)
                .unwrap(),
            // The same id from another sender sharing the store: not a duplicate.
            Delivery::new(r#"{"id":"evt_123","type":"invoice.paid"}"#)
                .uri("/webhooks/stripe")
                .request(&stripe)
                .unwrap(),
            Delivery::new(r#"{"action":"opened"}"#)
                .id("evt_123")
                .event_type("pull_request")
                .uri("/webhooks/github")
                .request(&github)
                .unwrap(),
            Delivery::new(r#"{"verification_id":"ver_1","type":"verification.completed"}"#)
                .uri("/webhooks/self")
                .request(&self_)
                .unwrap(),
            Delivery::new(r#"{"type":"ping"}"#)
                .id("evt_123")
                .uri("/webhooks/self")
                .request(&self_)
                .unwrap(),
        ];
        for request in deliveries {
            let uri = request.uri().clone();
            assert_eq!(
                send(&app, request).await,
                (StatusCode::NO_CONTENT, false),
                "{uri}"
            );
        }
        // Stripe retries its event: now it is a duplicate.
        let retry = Delivery::new(r#"{"id":"evt_123","type":"invoice.paid"}"#)
            .uri("/webhooks/stripe")
            .request(&stripe)
            .unwrap();
        assert_eq!(send(&app, retry).await, (StatusCode::OK, true));
    }

    #[tokio::test]
    async fn health_other_paths_and_other_methods() {
        let app = app(&secrets(), &MemoryStore::new()).unwrap();
        let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
        assert_eq!(send(&app, get("/health")).await.0, StatusCode::OK);
        assert_eq!(send(&app, get("/nowhere")).await.0, StatusCode::NOT_FOUND);
        // route_layer: the route's "method not allowed" answer meets the layer too.
        assert_eq!(
            send(&app, get("/webhooks/stripe")).await.0,
            StatusCode::BAD_REQUEST
        );
        // The layer on the POST handler: a GET never meets it.
        assert_eq!(
            send(&app, get("/webhooks/github")).await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        // A POST without a signature meets the layer: 400, dropped by the sender.
        let unsigned = Request::post("/webhooks/github")
            .body(Body::from("{}"))
            .unwrap();
        assert_eq!(send(&app, unsigned).await.0, StatusCode::BAD_REQUEST);
        // A delivery signed for one sender, sent to another's route, does not verify.
        let clerk = StandardWebhooks::new(&secrets().clerk).unwrap();
        let misrouted = Delivery::new("{}")
            .uri("/webhooks/self")
            .request(&clerk)
            .unwrap();
        assert_eq!(send(&app, misrouted).await.0, StatusCode::BAD_REQUEST);
    }
}
