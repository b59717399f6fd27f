//! Property tests: no header or body makes the layer panic, and signatures hold for any
//! input and break on any change.

mod common;

use bytes::Bytes;
use common::{counting, now_unix, request, scheme, Calls};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use proptest::prelude::*;
use tower::{Layer, ServiceExt};
use tower_webhook::scheme::Scheme;
use tower_webhook::store::MemoryStore;
use tower_webhook::VerifyWebhookLayer;

/// Bytes a header value may hold: anything but control characters (tab allowed).
fn header_value() -> impl Strategy<Value = HeaderValue> {
    prop::collection::vec(prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff], 0..80)
        .prop_map(|bytes| HeaderValue::from_bytes(&bytes).unwrap())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_headers_and_bodies_are_answered_not_panicked_on(
        id in proptest::option::of(header_value()),
        timestamp in proptest::option::of(prop_oneof![
            header_value(),
            any::<i64>().prop_map(HeaderValue::from),
        ]),
        signature in proptest::option::of(header_value()),
        body in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut headers = HeaderMap::new();
        for (name, value) in [("webhook-id", id), ("webhook-timestamp", timestamp), ("svix-signature", signature)] {
            if let Some(value) = value {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        let service = VerifyWebhookLayer::new(scheme())
            .with_store(MemoryStore::new())
            .layer(counting(Calls::default(), StatusCode::OK));
        let response = runtime().block_on(service.oneshot(request(headers, body))).unwrap();
        prop_assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn sign_then_verify_holds_and_any_changed_byte_breaks_it(
        id in "[a-zA-Z0-9_]{1,40}",
        age in -290i64..290,
        body in prop::collection::vec(any::<u8>(), 0..500),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let ts = now_unix() - age;
        let scheme = scheme();
        let headers = scheme.sign(&id, ts, &body).unwrap();
        let now = std::time::SystemTime::now();
        prop_assert!(scheme.verify(&headers, &body, now).is_ok());

        if !body.is_empty() {
            let mut changed = body.clone();
            changed[flip.index(body.len())] ^= 1 << bit;
            prop_assert!(scheme.verify(&headers, &changed, now).is_err());
        }

        let signature = headers["webhook-signature"].to_str().unwrap().to_owned();
        let mut changed = signature.into_bytes();
        // Change one character of the base64 tag (after "v1,") to another base64 character.
        let at = 3 + flip.index(changed.len() - 4);
        changed[at] = if changed[at] == b'A' { b'B' } else { b'A' };
        let mut forged = headers.clone();
        forged.insert("webhook-signature", HeaderValue::from_bytes(&changed).unwrap());
        prop_assert!(scheme.verify(&forged, &body, now).is_err());
    }
}

#[test]
fn a_huge_signature_header_is_refused() {
    let mut headers = scheme().sign("msg_1", now_unix(), b"{}").unwrap();
    let huge = "v1,AAAA ".repeat(10_000);
    headers.insert("webhook-signature", HeaderValue::from_str(&huge).unwrap());
    let service =
        VerifyWebhookLayer::new(scheme()).layer(counting(Calls::default(), StatusCode::OK));
    let response = runtime()
        .block_on(service.oneshot(request(headers, Bytes::from_static(b"{}"))))
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}
