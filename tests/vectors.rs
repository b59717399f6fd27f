//! Signatures made by the official Standard Webhooks and Svix libraries (see
//! `tests/fixtures/gen_standard_webhooks.py` for how), verified by this crate, and this
//! crate's own signer checked against them.

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use http::{HeaderMap, HeaderValue};
use serde::Deserialize;
use tower_webhook::scheme::{Scheme, StandardWebhooks, VerifyErrorKind};

#[derive(Deserialize)]
struct Vector {
    source: String,
    secret: String,
    id: String,
    timestamp: i64,
    body_base64: String,
    signature: String,
}

fn vectors() -> Vec<Vector> {
    let text = include_str!("fixtures/standard_webhooks.json");
    serde_json::from_str(text).unwrap()
}

fn headers(v: &Vector, signature: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("webhook-id", HeaderValue::from_str(&v.id).unwrap());
    headers.insert("webhook-timestamp", HeaderValue::from(v.timestamp));
    headers.insert(
        "webhook-signature",
        HeaderValue::from_str(signature).unwrap(),
    );
    headers
}

#[test]
fn the_spec_example_is_among_the_vectors() {
    let vectors = vectors();
    let spec = vectors.iter().find(|v| v.source == "spec example").unwrap();
    assert_eq!(
        spec.signature,
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
    assert!(vectors.len() >= 9);
}

#[test]
fn every_vector_verifies_and_signs_the_same() {
    for v in vectors() {
        let body = base64::engine::general_purpose::STANDARD
            .decode(&v.body_base64)
            .unwrap();
        let scheme = StandardWebhooks::new(&v.secret).unwrap();
        let at = UNIX_EPOCH + Duration::from_secs(v.timestamp.unsigned_abs());
        let verified = scheme
            .verify(&headers(&v, &v.signature), &body, at)
            .unwrap_or_else(|err| panic!("{} ({}): {err}", v.source, v.id));
        assert_eq!(verified.id.as_deref(), Some(v.id.as_str()));
        assert_eq!(
            scheme.signature(&v.id, v.timestamp, &body).unwrap(),
            v.signature,
            "{}",
            v.source
        );

        // One flipped bit of the body, and it no longer verifies.
        let mut tampered = body.clone();
        if tampered.is_empty() {
            tampered.push(b' ');
        } else {
            tampered[0] ^= 1;
        }
        let err = scheme
            .verify(&headers(&v, &v.signature), &tampered, at)
            .unwrap_err();
        assert_eq!(
            err.kind(),
            VerifyErrorKind::NoMatchingSignature,
            "{}",
            v.source
        );
    }
}
