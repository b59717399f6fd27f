//! The test kit against every scheme: each signed delivery verifies through the layer, with the
//! id and event type a handler should see, its copy is a duplicate, and a stale one is refused.
#![cfg(feature = "test-util")]

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, ServiceExt};
use tower_webhook::scheme::{HmacScheme, StandardWebhooks};
use tower_webhook::store::MemoryStore;
use tower_webhook::testkit::{Delivery, HeaderFamily, Sign};
use tower_webhook::{Event, VerifyWebhookLayer, DUPLICATE_HEADER};

/// The id and event type the handler saw.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A scheme, a delivery, and the id and event type the handler must see.
type Case = (Box<dyn Sign>, Delivery, &'static str, Option<&'static str>);

async fn send(
    layer: &VerifyWebhookLayer,
    seen: &Seen,
    request: Request<Full<Bytes>>,
) -> (StatusCode, bool) {
    let seen = Arc::clone(seen);
    let service = layer.layer(tower::service_fn(move |request: Request<Full<Bytes>>| {
        let event = request.extensions().get::<Event>().unwrap();
        seen.lock()
            .unwrap()
            .push((event.id().to_owned(), event.event_type().map(str::to_owned)));
        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
    }));
    let response = service.oneshot(request).await.unwrap();
    (
        response.status(),
        response.headers().contains_key(DUPLICATE_HEADER),
    )
}

#[tokio::test]
async fn every_scheme_signs_a_delivery_the_layer_verifies() {
    let body_with_ids = r#"{"id":"evt_1","event_id":"evt_1","type":"x"}"#;
    let standard = || Box::new(StandardWebhooks::new(common::SECRET).unwrap());
    let cases: Vec<Case> = vec![
        (standard(), Delivery::new("{}").id("msg_w"), "msg_w", None),
        (
            standard(),
            Delivery::new("{}")
                .id("msg_s")
                .header_family(HeaderFamily::Svix),
            "msg_s",
            None,
        ),
        (
            Box::new(HmacScheme::stripe("whsec_stripe").unwrap()),
            Delivery::new(body_with_ids),
            "evt_1",
            // Stripe names the event in the body's `type`.
            Some("x"),
        ),
        (
            Box::new(HmacScheme::github("gh").unwrap()),
            Delivery::new("{}").id("gh-1").event_type("push"),
            "gh-1",
            Some("push"),
        ),
        (
            Box::new(HmacScheme::shopify("shop").unwrap()),
            Delivery::new("{}").id("sh-1"),
            "sh-1",
            Some("orders/create"),
        ),
        (
            Box::new(HmacScheme::slack("slack").unwrap()),
            Delivery::new(body_with_ids),
            "evt_1",
            None,
        ),
        (
            Box::new(HmacScheme::paddle("paddle").unwrap()),
            Delivery::new(body_with_ids),
            "evt_1",
            None,
        ),
    ];
    for (scheme, delivery, id, event_type) in cases {
        let name = scheme.name();
        let request = delivery.request(&*scheme).unwrap();
        assert!(
            request.headers().contains_key("content-type"),
            "{name}: {:?}",
            request.headers()
        );
        let copy = delivery.request(&*scheme).unwrap();
        let layer = VerifyWebhookLayer::new(scheme).with_store(MemoryStore::new());
        let seen = Seen::default();
        assert_eq!(
            send(&layer, &seen, request).await,
            (StatusCode::OK, false),
            "{name}"
        );
        assert_eq!(
            send(&layer, &seen, copy).await,
            (StatusCode::OK, true),
            "{name}"
        );
        let seen = seen.lock().unwrap();
        assert_eq!(
            *seen,
            [(id.to_owned(), event_type.map(str::to_owned))],
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_stale_delivery_is_refused_where_the_sender_signs_a_time() {
    let schemes: Vec<Box<dyn Sign>> = vec![
        Box::new(StandardWebhooks::new(common::SECRET).unwrap()),
        Box::new(HmacScheme::stripe("whsec_stripe").unwrap()),
        Box::new(HmacScheme::slack("slack").unwrap()),
        Box::new(HmacScheme::paddle("paddle").unwrap()),
    ];
    for scheme in schemes {
        let name = scheme.name();
        let stale = Delivery::new(r#"{"id":"evt_2","event_id":"evt_2"}"#)
            .timestamp(common::now_unix() - 3600)
            .request(&*scheme)
            .unwrap();
        let layer = VerifyWebhookLayer::new(scheme);
        let (status, _) = send(&layer, &Seen::default(), stale).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}");
    }
}

#[test]
fn github_and_shopify_get_their_whole_header_set() {
    let github = Delivery::new("{}")
        .id("d-1")
        .headers(&HmacScheme::github("gh").unwrap())
        .unwrap();
    for name in [
        "x-hub-signature-256",
        "x-github-delivery",
        "x-github-event",
        "x-github-hook-id",
        "user-agent",
    ] {
        assert!(github.contains_key(name), "{name}: {github:?}");
    }
    assert_eq!(github["x-github-event"], "ping");
    let shopify = Delivery::new("{}")
        .event_type("orders/paid")
        .headers(&HmacScheme::shopify("shop").unwrap())
        .unwrap();
    assert_eq!(shopify["x-shopify-topic"], "orders/paid");
    assert!(shopify.contains_key("x-shopify-webhook-id"));
    assert!(shopify.contains_key("x-shopify-shop-domain"));
}
