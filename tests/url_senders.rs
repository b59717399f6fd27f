//! The senders that sign the URL they called (Twilio, Square, HubSpot), against vectors made
//! or checked by their own SDKs (`tests/fixtures/gen_senders_url.py`,
//! `tests/fixtures/gen_senders_hubspot.mjs`), through the layer as a request arrives: the
//! path a proxy passed on, the public URL configured.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use common::{counting, Calls};
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use tower::{Layer, ServiceExt};
use tower_webhook::clock::ManualClock;
use tower_webhook::scheme::{HubSpot, InvalidSchemeKind, Scheme, Square, Twilio, VerifyErrorKind};
use tower_webhook::store::MemoryStore;
use tower_webhook::{VerifyWebhookLayer, DUPLICATE_HEADER};

#[derive(Deserialize)]
struct Vector {
    scheme: String,
    source: String,
    secret: String,
    public_url: String,
    path: String,
    signed_url: String,
    #[serde(default)]
    timestamp: i64,
    body_base64: String,
    headers: BTreeMap<String, String>,
    id: Option<String>,
}

fn vectors() -> Vec<Vector> {
    let mut all: Vec<Vector> =
        serde_json::from_str(include_str!("fixtures/senders_url.json")).unwrap();
    all.extend(
        serde_json::from_str::<Vec<Vector>>(include_str!("fixtures/senders_hubspot.json")).unwrap(),
    );
    all
}

fn scheme_of(v: &Vector) -> Box<dyn Scheme> {
    match v.scheme.as_str() {
        "twilio" => Box::new(Twilio::new(&v.secret, &v.public_url).unwrap()),
        "square" => Box::new(Square::new(&v.secret, &v.public_url).unwrap()),
        "hubspot" => Box::new(HubSpot::new(&v.secret, &v.public_url).unwrap()),
        other => panic!("no scheme {other}"),
    }
}

fn headers_of(v: &Vector) -> HeaderMap {
    v.headers
        .iter()
        .map(|(name, value)| {
            (
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            )
        })
        .collect()
}

fn body_of(v: &Vector) -> Bytes {
    base64::engine::general_purpose::STANDARD
        .decode(&v.body_base64)
        .unwrap()
        .into()
}

/// `v` sent through a layer with `scheme`, at the vector's time, as the proxy passed it on:
/// the status, and whether it was a duplicate.
async fn through(
    scheme: Box<dyn Scheme>,
    v: &Vector,
    times: usize,
    change: impl Fn(&mut Request<Full<Bytes>>),
) -> Vec<(StatusCode, bool)> {
    let clock = ManualClock::at_unix(v.timestamp);
    let layer = VerifyWebhookLayer::new(scheme)
        .with_store(MemoryStore::new())
        .with_clock(clock);
    let calls = Calls::default();
    let mut answers = Vec::new();
    for _ in 0..times {
        let mut request = Request::post(v.path.as_str())
            .body(Full::new(body_of(v)))
            .unwrap();
        *request.headers_mut() = headers_of(v);
        change(&mut request);
        let service = layer.layer(counting(calls.clone(), StatusCode::OK));
        let response = service.oneshot(request).await.unwrap();
        answers.push((
            response.status(),
            response.headers().contains_key(DUPLICATE_HEADER),
        ));
    }
    answers
}

#[tokio::test]
async fn the_senders_vectors_verify_once_then_are_duplicates() {
    let mut seen = std::collections::BTreeSet::new();
    for v in &vectors() {
        assert_eq!(
            through(scheme_of(v), v, 2, |_| {}).await,
            [(StatusCode::OK, false), (StatusCode::OK, true)],
            "{} ({}) to {}",
            v.scheme,
            v.source,
            v.signed_url
        );
        if let Some(id) = &v.id {
            let scheme = scheme_of(v);
            let mut request = Request::post(v.path.as_str()).body(()).unwrap();
            *request.headers_mut() = headers_of(v);
            let (parts, ()) = request.into_parts();
            let now = UNIX_EPOCH + Duration::from_secs(v.timestamp.unsigned_abs());
            let verified = scheme.verify_request(&parts, &body_of(v), now).unwrap();
            let found = scheme.identify(&parts.headers, &body_of(v), &verified);
            assert_eq!(found.as_deref(), Some(id.as_str()), "{}", v.source);
        }
        seen.insert(v.scheme.clone());
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["hubspot", "square", "twilio"]
    );
}

#[tokio::test]
async fn tampered_forged_or_elsewhere_is_refused() {
    for v in &vectors() {
        let refused = [(StatusCode::BAD_REQUEST, false)];
        // One byte of the body changed.
        let tampered = through(scheme_of(v), v, 1, |request| {
            let mut body = body_of(v).to_vec();
            body[1] ^= 1;
            *request.body_mut() = Full::new(body.into());
        });
        assert_eq!(tampered.await, refused, "{} tampered", v.scheme);
        // Another secret.
        let other = match v.scheme.as_str() {
            "twilio" => Box::new(Twilio::new("another", &v.public_url).unwrap()) as Box<dyn Scheme>,
            "square" => Box::new(Square::new("another", &v.public_url).unwrap()),
            _ => Box::new(HubSpot::new("another", &v.public_url).unwrap()),
        };
        assert_eq!(
            through(other, v, 1, |_| {}).await,
            refused,
            "{} secret",
            v.scheme
        );
        // The sender called another URL: the public URL configured is not the one signed.
        let elsewhere: Box<dyn Scheme> = match v.scheme.as_str() {
            "twilio" => Box::new(Twilio::new(&v.secret, "https://example.org/twilio/sms").unwrap()),
            "square" => {
                Box::new(Square::new(&v.secret, "https://example.com/square/other").unwrap())
            }
            _ => Box::new(HubSpot::new(&v.secret, "http://example.com/hubspot").unwrap()),
        };
        assert_eq!(
            through(elsewhere, v, 1, |_| {}).await,
            refused,
            "{} url",
            v.scheme
        );
        // No signature.
        let unsigned = through(scheme_of(v), v, 1, |request| {
            let name = v
                .headers
                .keys()
                .find(|name| name.contains("signature-v3") || name.ends_with("-signature"))
                .unwrap();
            request.headers_mut().remove(name.as_str());
        });
        assert_eq!(unsigned.await, refused, "{} unsigned", v.scheme);
    }
}

#[tokio::test]
async fn twilio_query_and_body_hash() {
    let all = vectors();
    // A query the sender signed: another value is another URL.
    let query = all.iter().find(|v| v.path.contains("tenant")).unwrap();
    let changed = through(scheme_of(query), query, 1, |request| {
        *request.uri_mut() = "/sms?tenant=evil&x=%C3%A9".parse().unwrap();
    });
    assert_eq!(changed.await, [(StatusCode::BAD_REQUEST, false)]);
    // A JSON body whose hash is not the one in the signed URL.
    let json = all.iter().find(|v| v.path.contains("bodySHA256")).unwrap();
    let other_body = through(scheme_of(json), json, 1, |request| {
        *request.body_mut() = Full::new(Bytes::from_static(br#"{"event":"call.failed"}"#));
    });
    assert_eq!(other_body.await, [(StatusCode::BAD_REQUEST, false)]);
    // An algorithm Twilio does not have.
    let form = &all[0];
    let unknown = through(scheme_of(form), form, 1, |request| {
        request.headers_mut().insert(
            "x-twilio-webhooks-signature-settings",
            HeaderValue::from_static("key=k,algorithm=HMAC_MD5"),
        );
    });
    assert_eq!(unknown.await, [(StatusCode::BAD_REQUEST, false)]);
}

#[tokio::test]
async fn behind_a_proxy_that_forwards() {
    let v = &vectors()[0];
    let scheme = Box::new(
        Twilio::new(&v.secret, "https://unused.example/x")
            .unwrap()
            .with_forwarded_url(),
    );
    let forwarded = through(scheme, v, 1, |request| {
        let headers = request.headers_mut();
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        headers.insert("x-forwarded-host", HeaderValue::from_static("example.com"));
        *request.uri_mut() = "/twilio/sms".parse().unwrap();
    });
    assert_eq!(forwarded.await, [(StatusCode::OK, false)]);
    // Without the headers the URL cannot be known: refused, never guessed.
    let scheme = Box::new(
        Twilio::new(&v.secret, "https://unused.example/x")
            .unwrap()
            .with_forwarded_url(),
    );
    let bare = through(scheme, v, 1, |request| {
        *request.uri_mut() = "/twilio/sms".parse().unwrap();
    });
    assert_eq!(bare.await, [(StatusCode::BAD_REQUEST, false)]);
}

#[tokio::test]
async fn hubspot_times_and_ids() {
    let v = vectors()
        .into_iter()
        .find(|v| v.scheme == "hubspot")
        .unwrap();
    let scheme = HubSpot::new(&v.secret, &v.public_url).unwrap();
    let mut request = Request::post(v.path.as_str()).body(()).unwrap();
    *request.headers_mut() = headers_of(&v);
    let (parts, ()) = request.into_parts();
    let at = |secs: i64| UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs());
    let verified = scheme
        .verify_request(&parts, &body_of(&v), at(v.timestamp))
        .unwrap();
    assert_eq!(verified.timestamp, Some(v.timestamp - 1));
    assert_eq!(
        scheme
            .verify_request(&parts, &body_of(&v), at(v.timestamp + 301))
            .unwrap_err()
            .kind(),
        VerifyErrorKind::TimestampTooOld
    );
    let id = scheme
        .identify(&parts.headers, &body_of(&v), &verified)
        .unwrap();
    assert!(id.as_str().starts_with("sha256:"));
    assert!(scheme.signs_id());
}

#[test]
fn secrets_and_urls_are_checked_when_built() {
    assert_eq!(
        Twilio::new(" ", "https://e.com/x").unwrap_err().kind(),
        InvalidSchemeKind::EmptySecret
    );
    for url in [
        "e.com/x",
        "ftp://e.com/x",
        "https://e.com/x#frag",
        "/relative",
    ] {
        assert_eq!(
            Square::new("k", url).unwrap_err().kind(),
            InvalidSchemeKind::InvalidUrl,
            "{url}"
        );
    }
    let twilio = Twilio::new("secret token", "https://e.com/x").unwrap();
    assert!(!format!("{twilio:?}").contains("secret"));
}

#[tokio::test]
async fn the_signers_match_the_sdks() {
    for v in &vectors() {
        let body = body_of(v);
        let made = match v.scheme.as_str() {
            "twilio"
                if !v
                    .headers
                    .contains_key("x-twilio-webhooks-signature-settings") =>
            {
                Twilio::new(&v.secret, &v.public_url)
                    .unwrap()
                    .signature(&v.signed_url, &body)
            }
            "square" => Square::new(&v.secret, &v.public_url)
                .unwrap()
                .signature(&v.signed_url, &body),
            "hubspot" => {
                let ms: i64 = v.headers["x-hubspot-request-timestamp"].parse().unwrap();
                HubSpot::new(&v.secret, &v.public_url).unwrap().signature(
                    &http::Method::POST,
                    &v.signed_url,
                    &body,
                    ms,
                )
            }
            _ => continue,
        };
        let header = v
            .headers
            .iter()
            .find(|(name, _)| name.contains("signature") && !name.contains("settings"))
            .unwrap()
            .1;
        assert_eq!(&made, header, "{} {}", v.scheme, v.signed_url);
    }
}
