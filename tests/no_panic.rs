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

/// Every built-in scheme, with the headers it reads.
fn every_scheme() -> Vec<(HmacOrStandard, &'static [&'static str])> {
    use tower_webhook::scheme::HmacScheme;
    #[cfg_attr(not(feature = "ed25519"), allow(unused_mut))]
    let mut all = vec![
        (
            HmacOrStandard::Standard(scheme()),
            &["webhook-id", "webhook-timestamp", "webhook-signature"][..],
        ),
        (
            HmacOrStandard::Hmac(HmacScheme::stripe("whsec_s").unwrap()),
            &["stripe-signature"][..],
        ),
        (
            HmacOrStandard::Hmac(HmacScheme::github("g").unwrap()),
            &["x-hub-signature-256", "x-github-delivery", "x-github-event"][..],
        ),
        (
            HmacOrStandard::Hmac(HmacScheme::shopify("s").unwrap()),
            &[
                "x-shopify-hmac-sha256",
                "x-shopify-webhook-id",
                "x-shopify-topic",
            ][..],
        ),
        (
            HmacOrStandard::Hmac(HmacScheme::slack("s").unwrap()),
            &["x-slack-signature", "x-slack-request-timestamp"][..],
        ),
        (
            HmacOrStandard::Hmac(HmacScheme::paddle("p").unwrap()),
            &["paddle-signature"][..],
        ),
    ];
    #[cfg(feature = "ed25519")]
    all.push((
        HmacOrStandard::Standard(
            tower_webhook::scheme::StandardWebhooks::from_signing_key(
                "whsk_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwAAAAAAAAAAA=",
            )
            .unwrap(),
        ),
        &["webhook-id", "webhook-timestamp", "webhook-signature"][..],
    ));
    all
}

#[derive(Clone)]
enum HmacOrStandard {
    Hmac(tower_webhook::scheme::HmacScheme),
    Standard(tower_webhook::scheme::StandardWebhooks),
}

impl HmacOrStandard {
    fn scheme(&self) -> &dyn Scheme {
        match self {
            Self::Hmac(s) => s,
            Self::Standard(s) => s,
        }
    }

    fn sign(&self, id: &str, ts: i64, body: &[u8]) -> HeaderMap {
        match self {
            Self::Hmac(s) => s.sign(id, ts, body),
            Self::Standard(s) => s.sign(id, ts, body),
        }
        .unwrap()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_scheme_signs_then_verifies_and_breaks_on_any_change(
        which in any::<prop::sample::Index>(),
        id in "[a-zA-Z0-9_-]{1,40}",
        age in -290i64..290,
        body in prop::collection::vec(any::<u8>(), 1..400),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let schemes = every_scheme();
        let (scheme, read) = &schemes[which.index(schemes.len())];
        let ts = now_unix() - age;
        let now = std::time::SystemTime::now();
        let headers = scheme.sign(&id, ts, &body);
        prop_assert!(scheme.scheme().verify(&headers, &body, now).is_ok(), "{}", scheme.scheme().name());

        let mut changed = body.clone();
        changed[flip.index(body.len())] ^= 1 << bit;
        prop_assert!(scheme.scheme().verify(&headers, &changed, now).is_err());

        // One character of the signature itself, changed to another of its alphabet.
        let name = read.iter().find(|h| h.contains("sig") || h.contains("hmac")).unwrap();
        let value = headers[*name].to_str().unwrap().to_owned();
        let end = value.trim_end_matches('=').len();
        let start = value[..end].rfind(['=', ',']).map_or(0, |at| at + 1);
        let at = start + flip.index(end - start);
        let mut bytes = value.into_bytes();
        bytes[at] = if bytes[at] == b'a' { b'b' } else { b'a' };
        let mut forged = headers.clone();
        forged.insert(*name, HeaderValue::from_bytes(&bytes).unwrap());
        prop_assert!(scheme.scheme().verify(&forged, &body, now).is_err());
    }

    #[test]
    fn no_header_makes_any_scheme_panic(
        which in any::<prop::sample::Index>(),
        values in prop::collection::vec(proptest::option::of(header_value()), 3),
        body in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let schemes = every_scheme();
        let (scheme, read) = &schemes[which.index(schemes.len())];
        let mut headers = HeaderMap::new();
        for (name, value) in read.iter().zip(values) {
            if let Some(value) = value {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        let layer = VerifyWebhookLayer::new(scheme.clone_scheme()).with_store(MemoryStore::new());
        let service = layer.layer(counting(Calls::default(), StatusCode::OK));
        let response = runtime().block_on(service.oneshot(request(headers, body))).unwrap();
        prop_assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
}

impl HmacOrStandard {
    fn clone_scheme(&self) -> Box<dyn Scheme> {
        match self {
            Self::Hmac(s) => Box::new(s.clone()),
            Self::Standard(s) => Box::new(s.clone()),
        }
    }
}
