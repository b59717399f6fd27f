//! Every sender's scheme against vectors made by that sender's own library (see
//! `tests/fixtures/gen_senders.*` for how), and against the bad-input table.

mod common;

use common::hmac_scheme;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use tower_webhook::scheme::{
    HmacScheme, InvalidSchemeKind, InvalidSecretKind, Scheme, StandardWebhooks, VerifyErrorKind,
};

#[derive(Deserialize)]
struct Vector {
    scheme: String,
    source: String,
    secret: String,
    #[cfg_attr(not(feature = "ed25519"), allow(dead_code))]
    public_key: Option<String>,
    timestamp: i64,
    body_base64: String,
    headers: std::collections::BTreeMap<String, String>,
    id: String,
    event_type: Option<String>,
}

fn vectors() -> Vec<Vector> {
    let mut all: Vec<Vector> =
        serde_json::from_str(include_str!("fixtures/senders_node.json")).unwrap();
    all.extend(
        serde_json::from_str::<Vec<Vector>>(include_str!("fixtures/senders_python.json")).unwrap(),
    );
    all.extend(
        serde_json::from_str::<Vec<Vector>>(include_str!("fixtures/senders_hmac.json")).unwrap(),
    );
    all.extend(
        serde_json::from_str::<Vec<Vector>>(include_str!("fixtures/senders_linear.json")).unwrap(),
    );
    all.extend(
        serde_json::from_str::<Vec<Vector>>(include_str!("fixtures/senders_coinbase.json"))
            .unwrap(),
    );
    all
}

fn at(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
}

fn headers_of(v: &Vector) -> HeaderMap {
    v.headers
        .iter()
        .map(|(name, value)| {
            (
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            )
        })
        .collect()
}

/// Where each sender names the event in its JSON body, read here with `serde_json` on its
/// own library's vectors: Stripe's `type`, Slack's `event.type`, ...
fn body_event_type(scheme: &str, body: &[u8]) -> Option<String> {
    let pointer = match scheme {
        "stripe" | "vercel" | "standard-webhooks" | "standard-webhooks-v1a" | "discord" => "/type",
        "paddle" | "typeform" => "/event_type",
        "slack" | "coinbase-commerce" => "/event/type",
        "zoom" | "calendly" => "/event",
        "meta" => "/object",
        "pagerduty" => "/event/event_type",
        "intercom" => "/topic",
        _ => return None,
    };
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    match value.pointer(pointer)? {
        serde_json::Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

/// Verifies `v`, checks its id and event type, and that one changed byte of the body fails.
fn check(scheme: &dyn Scheme, v: &Vector) {
    let body = base64::engine::general_purpose::STANDARD
        .decode(&v.body_base64)
        .unwrap();
    let headers = headers_of(v);
    let verified = scheme
        .verify(&headers, &body, at(v.timestamp))
        .unwrap_or_else(|err| panic!("{} ({}): {err}", v.scheme, v.source));
    assert_eq!(
        scheme.identify(&headers, &body, &verified).as_deref(),
        Some(v.id.as_str()),
        "{}",
        v.source
    );
    assert_eq!(verified.event_type, v.event_type, "{}", v.source);
    assert_eq!(
        scheme.event_type(&headers, &body, &verified),
        v.event_type
            .clone()
            .or_else(|| body_event_type(&v.scheme, &body)),
        "the event type, where {} puts it ({})",
        v.scheme,
        v.source
    );
    let mut tampered = body.clone();
    tampered[0] ^= 1;
    let err = scheme
        .verify(&headers, &tampered, at(v.timestamp))
        .unwrap_err();
    assert_eq!(
        err.kind(),
        VerifyErrorKind::NoMatchingSignature,
        "{}",
        v.source
    );
}

#[test]
fn hmac_vectors_from_the_senders_libraries() {
    let mut seen = std::collections::BTreeSet::new();
    for v in vectors()
        .iter()
        .filter(|v| !v.scheme.starts_with("standard"))
    {
        let scheme = hmac_scheme(&v.scheme, &v.secret);
        check(&scheme, v);
        // The signer makes the very header the sender's library made.
        let (name, value) = v
            .headers
            .iter()
            .find(|(name, _)| name.contains("sig") || name.contains("hmac"))
            .unwrap();
        // A list of several signatures, or a time written with a fraction (Twitch's
        // nanoseconds), is not what the signer writes: verified above, not remade.
        let fraction = v
            .headers
            .iter()
            .any(|(name, value)| name.contains("timestamp") && value.contains('.'));
        if !fraction && (!value.contains(",v1=") || value.matches("v1=").count() == 1) {
            let body = base64::engine::general_purpose::STANDARD
                .decode(&v.body_base64)
                .unwrap();
            let signed = scheme.sign(&v.id, v.timestamp, &body).unwrap();
            assert_eq!(signed[name.as_str()], value.as_str(), "{}", v.source);
        }
        seen.insert(v.scheme.clone());
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [
            "calendly",
            "coinbase-commerce",
            "dropbox",
            "github",
            "intercom",
            "lemon-squeezy",
            "linear",
            "meta",
            "paddle",
            "pagerduty",
            "shopify",
            "slack",
            "stripe",
            "twitch",
            "typeform",
            "vercel",
            "woocommerce",
            "zoom"
        ]
    );
}

#[test]
fn the_documented_examples_are_among_the_vectors() {
    let all = vectors();
    let github = all
        .iter()
        .find(|v| v.secret == "It's a Secret to Everybody")
        .unwrap();
    assert_eq!(
        github.headers["x-hub-signature-256"],
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
    let slack = all.iter().find(|v| v.timestamp == 1_531_420_618).unwrap();
    assert_eq!(
        slack.headers["x-slack-signature"],
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    );
}

#[test]
fn stripe_keys_are_the_secrets_bytes_not_base64() {
    // A Stripe secret is also valid base64 after its whsec_ prefix. A signature made with the
    // decoded bytes, as Svix's scheme would use them, must not verify.
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&secret[6..])
        .unwrap();
    let body = br#"{"id":"evt_trap"}"#;
    let tag = {
        use hmac::Mac as _;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&decoded).unwrap();
        mac.update(b"1700000000.");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        "stripe-signature",
        HeaderValue::from_str(&format!("t=1700000000,v1={tag}")).unwrap(),
    );
    let stripe = HmacScheme::stripe(secret).unwrap();
    let err = stripe
        .verify(&headers, body, at(1_700_000_000))
        .unwrap_err();
    assert_eq!(err.kind(), VerifyErrorKind::NoMatchingSignature);
    let good = stripe.sign("", 1_700_000_000, body).unwrap();
    assert!(stripe.verify(&good, body, at(1_700_000_000)).is_ok());
}

// ---------------------------------------------------------------------------------------
// The bad-input table, for every HMAC scheme.

const NOW: i64 = 1_700_000_000;
const BODY: &[u8] = br#"{"id":"evt_1","event_id":"evt_1","type":"t"}"#;

struct Signed {
    scheme: HmacScheme,
    headers: HeaderMap,
    signature: HeaderName,
}

fn signed(name: &str) -> Signed {
    let scheme = hmac_scheme(name, "the right secret");
    let headers = scheme.sign("delivery-1", NOW, BODY).unwrap();
    let signature = headers
        .keys()
        .find(|h| h.as_str().contains("sig") || h.as_str().contains("hmac"))
        .unwrap()
        .clone();
    Signed {
        scheme,
        headers,
        signature,
    }
}

impl Signed {
    fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<(), (VerifyErrorKind, String)> {
        self.scheme
            .verify(headers, body, at(now))
            .map(|_| ())
            .map_err(|err| (err.kind(), err.to_string()))
    }

    fn with(&self, name: &str, value: Option<&str>) -> HeaderMap {
        let mut headers = self.headers.clone();
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        match value {
            Some(value) => headers.insert(name, HeaderValue::from_bytes(value.as_bytes()).unwrap()),
            None => headers.remove(name),
        };
        headers
    }

    fn signature_value(&self) -> String {
        self.headers[&self.signature].to_str().unwrap().to_owned()
    }

    fn expect(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
        kind: VerifyErrorKind,
        reason: &str,
    ) {
        assert_eq!(
            self.verify(headers, body, now),
            Err((kind, reason.to_owned())),
            "{}",
            self.scheme.name()
        );
    }
}

const SCHEMES: [&str; 16] = [
    "stripe",
    "github",
    "shopify",
    "slack",
    "paddle",
    "zoom",
    "meta",
    "lemon-squeezy",
    "woocommerce",
    "typeform",
    "calendly",
    "pagerduty",
    "dropbox",
    "intercom",
    "vercel",
    "twitch",
];

#[test]
fn every_scheme_signs_and_verifies() {
    for name in SCHEMES {
        let s = signed(name);
        assert_eq!(s.verify(&s.headers, BODY, NOW), Ok(()), "{name}");
    }
}

#[test]
fn missing_empty_duplicated_and_non_ascii_signature_headers() {
    for name in SCHEMES {
        let s = signed(name);
        let header = s.signature.as_str();
        s.expect(
            &s.with(header, None),
            BODY,
            NOW,
            VerifyErrorKind::MissingHeader,
            &format!("missing {header}"),
        );
        s.expect(
            &s.with(header, Some("")),
            BODY,
            NOW,
            VerifyErrorKind::MissingHeader,
            &format!("missing {header}"),
        );
        let mut twice = s.headers.clone();
        twice.append(
            s.signature.clone(),
            HeaderValue::from_str(&s.signature_value()).unwrap(),
        );
        s.expect(
            &twice,
            BODY,
            NOW,
            VerifyErrorKind::InvalidHeader,
            &format!("invalid {header}: sent more than once"),
        );
        let non_ascii = format!("{}é", s.signature_value());
        s.expect(
            &s.with(header, Some(&non_ascii)),
            BODY,
            NOW,
            VerifyErrorKind::InvalidHeader,
            &format!("invalid {header}"),
        );
        let latin1 = HeaderValue::from_bytes(b"\xe9\xff").unwrap();
        let mut bytes = s.headers.clone();
        bytes.insert(s.signature.clone(), latin1);
        s.expect(
            &bytes,
            BODY,
            NOW,
            VerifyErrorKind::InvalidHeader,
            &format!("invalid {header}"),
        );
    }
}

/// Forty more headers than a sender sends: the headers are then looked up in the map, not
/// found in one walk over the request's few, and must read the same.
fn crowded(headers: &HeaderMap) -> HeaderMap {
    let mut crowded = headers.clone();
    for n in 0..40 {
        crowded.insert(
            HeaderName::try_from(format!("x-other-{n}")).unwrap(),
            HeaderValue::from_static("1"),
        );
    }
    crowded
}

#[test]
fn crowded_requests_read_as_short_ones() {
    for name in SCHEMES {
        let s = signed(name);
        let header = s.signature.as_str();
        let mut twice = s.headers.clone();
        twice.append(
            s.signature.clone(),
            HeaderValue::from_str(&s.signature_value()).unwrap(),
        );
        let cases = [
            (s.headers.clone(), Ok(())),
            (
                twice,
                Err((
                    VerifyErrorKind::InvalidHeader,
                    format!("invalid {header}: sent more than once"),
                )),
            ),
            // Blank, in the one whitespace that is not ASCII.
            (
                s.with(header, Some("\u{3000}")),
                Err((VerifyErrorKind::MissingHeader, format!("missing {header}"))),
            ),
        ];
        for (headers, expected) in cases {
            assert_eq!(s.verify(&headers, BODY, NOW), expected, "{name}");
            assert_eq!(
                s.verify(&crowded(&headers), BODY, NOW),
                expected,
                "{name}, crowded"
            );
        }
        let short = s.scheme.verify(&s.headers, BODY, at(NOW)).unwrap();
        let crowd = s
            .scheme
            .verify(&crowded(&s.headers), BODY, at(NOW))
            .unwrap();
        assert_eq!(
            (short.id, short.event_type),
            (crowd.id, crowd.event_type),
            "{name}"
        );
    }

    // Standard Webhooks reads six names: three, and the Svix-branded three where those are
    // absent.
    let scheme = StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let unbranded = scheme.sign("msg_1", NOW, BODY).unwrap();
    let mut branded = HeaderMap::new();
    for (name, value) in &unbranded {
        let name = name.as_str().replacen("webhook-", "svix-", 1);
        branded.insert(HeaderName::try_from(name).unwrap(), value.clone());
    }
    let mut both = branded.clone();
    both.extend(unbranded.clone());
    for headers in [unbranded, branded, both] {
        for headers in [crowded(&headers), headers] {
            let verified = scheme.verify(&headers, BODY, at(NOW)).unwrap();
            assert_eq!(verified.id.as_deref(), Some("msg_1"));
            assert_eq!(verified.timestamp, Some(NOW));
        }
    }
}

#[test]
fn malformed_signatures() {
    for name in SCHEMES {
        let s = signed(name);
        let value = s.signature_value();
        let header = s.signature.as_str();
        // The signature itself, broken: cut short, not the encoding, doubled.
        // Base64 ends in `=` padding: its schemes' prefixes are cut by length.
        let (head, tag) = match name {
            "shopify" | "woocommerce" => ("", value.as_str()),
            "typeform" => value.split_at("sha256=".len()),
            _ => value
                .rsplit_once(['=', ',', ';'])
                .map_or(("", value.as_str()), |(h, t)| (&value[..=h.len()], t)),
        };
        for broken in [
            format!("{head}{}", &tag[..tag.len() - 2]),
            format!("{head}{}zz", &tag[..tag.len() - 2]),
            format!("{head}{tag}{tag}"),
            format!("{head}!!!!"),
        ] {
            let got = s
                .verify(&s.with(header, Some(&broken)), BODY, NOW)
                .unwrap_err();
            assert_eq!(
                got.0,
                VerifyErrorKind::NoSupportedSignature,
                "{name}: {broken:?} gave {got:?}"
            );
        }
        // A signature of another secret.
        let other = hmac_scheme(name, "another secret")
            .sign("delivery-1", NOW, BODY)
            .unwrap();
        s.expect(
            &other,
            BODY,
            NOW,
            VerifyErrorKind::NoMatchingSignature,
            "no matching signature",
        );
        // A tampered body.
        s.expect(
            &s.headers,
            b"{}",
            NOW,
            VerifyErrorKind::NoMatchingSignature,
            "no matching signature",
        );
    }
}

#[test]
fn upper_case_hex_verifies() {
    for name in ["stripe", "github", "slack", "paddle"] {
        let s = signed(name);
        let value = s.signature_value();
        let (head, tag) = value.rsplit_once('=').unwrap();
        let upper = format!("{head}={}", tag.to_ascii_uppercase());
        assert_eq!(
            s.verify(&s.with(s.signature.as_str(), Some(&upper)), BODY, NOW),
            Ok(()),
            "{name}"
        );
    }
}

#[test]
fn over_long_signature_headers_are_refused() {
    for name in SCHEMES {
        let s = signed(name);
        let long = format!("{}{}", s.signature_value(), "A".repeat(16 * 1024));
        assert!(
            s.verify(&s.with(s.signature.as_str(), Some(&long)), BODY, NOW)
                .is_err(),
            "{name}"
        );
    }
    for (name, entry) in [("stripe", ",v1=00"), ("paddle", ";h1=00")] {
        let s = signed(name);
        let many = format!("{}{}", s.signature_value(), entry.repeat(40));
        let header = s.signature.as_str();
        s.expect(
            &s.with(header, Some(&many)),
            BODY,
            NOW,
            VerifyErrorKind::InvalidHeader,
            &format!("invalid {header}: too many entries"),
        );
    }
}

#[test]
fn calendly_allows_three_minutes() {
    let calendly = signed("calendly");
    calendly.expect(
        &calendly.headers,
        BODY,
        NOW + 181,
        VerifyErrorKind::TimestampTooOld,
        "timestamp too old",
    );
    assert_eq!(calendly.verify(&calendly.headers, BODY, NOW + 180), Ok(()));
    assert_eq!(calendly.verify(&calendly.headers, BODY, NOW - 180), Ok(()));
}

#[test]
fn twitch_times_are_rfc_3339_within_ten_minutes() {
    let twitch = signed("twitch");
    let ts = "twitch-eventsub-message-timestamp";
    assert_eq!(twitch.headers[ts], "2023-11-14T22:13:20Z");
    assert_eq!(twitch.verify(&twitch.headers, BODY, NOW + 600), Ok(()));
    twitch.expect(
        &twitch.headers,
        BODY,
        NOW + 601,
        VerifyErrorKind::TimestampTooOld,
        "timestamp too old",
    );
    for bad in [
        "1700000000",
        "2023-11-14T22:13:20",
        "2023-02-30T00:00:00Z",
        "soon",
    ] {
        twitch.expect(
            &twitch.with(ts, Some(bad)),
            BODY,
            NOW,
            VerifyErrorKind::InvalidHeader,
            &format!("invalid {ts}"),
        );
    }
    // The same instant written otherwise is other signed text.
    twitch.expect(
        &twitch.with(ts, Some("2023-11-14T22:13:20.000Z")),
        BODY,
        NOW,
        VerifyErrorKind::NoMatchingSignature,
        "no matching signature",
    );
    // The id is signed: another id fails.
    twitch.expect(
        &twitch.with("twitch-eventsub-message-id", Some("another")),
        BODY,
        NOW,
        VerifyErrorKind::NoMatchingSignature,
        "no matching signature",
    );
    assert!(twitch.scheme.signs_id());
}

#[test]
fn linear_checks_the_signed_time_in_its_body() {
    let linear = HmacScheme::linear("lin secret").unwrap();
    let now_ms = NOW * 1000 + 250;
    let body = format!(r#"{{"action":"create","type":"Issue","webhookTimestamp":{now_ms}}}"#);
    let headers = linear.sign("delivery-1", 0, body.as_bytes()).unwrap();
    let verify = |body: &str, now: i64| {
        linear
            .verify(&headers_signed(&linear, body), body.as_bytes(), at(now))
            .map(|verified| verified.timestamp)
            .map_err(|err| (err.kind(), err.to_string()))
    };
    assert_eq!(
        linear
            .verify(&headers, body.as_bytes(), at(NOW))
            .unwrap()
            .timestamp,
        Some(NOW)
    );
    assert_eq!(verify(&body, NOW + 60), Ok(Some(NOW)));
    assert_eq!(verify(&body, NOW - 60), Ok(Some(NOW)));
    assert_eq!(
        verify(&body, NOW + 61).unwrap_err().0,
        VerifyErrorKind::TimestampTooOld
    );
    assert_eq!(
        verify(&body, NOW - 61).unwrap_err().0,
        VerifyErrorKind::TimestampTooNew
    );
    for body in [
        r#"{"action":"create"}"#.to_owned(),
        r#"{"webhookTimestamp":"soon"}"#.to_owned(),
        r#"{"webhookTimestamp":null}"#.to_owned(),
        r#"{"webhookTimestamp":1.5e400}"#.to_owned(),
        "not json".to_owned(),
    ] {
        assert_eq!(
            verify(&body, NOW),
            Err((
                VerifyErrorKind::InvalidHeader,
                "invalid linear-signature: no time in the body".to_owned()
            )),
            "{body}"
        );
    }
    // A forged body is refused for its signature before its time is read.
    assert_eq!(
        linear
            .verify(&headers, br#"{"webhookTimestamp":1}"#, at(NOW))
            .unwrap_err()
            .kind(),
        VerifyErrorKind::NoMatchingSignature
    );
}

/// `body` signed by `scheme`, as its sender would.
fn headers_signed(scheme: &HmacScheme, body: &str) -> HeaderMap {
    scheme.sign("delivery-1", 0, body.as_bytes()).unwrap()
}

#[test]
fn stale_future_and_malformed_timestamps() {
    for name in ["stripe", "slack", "paddle", "zoom"] {
        let s = signed(name);
        s.expect(
            &s.headers,
            BODY,
            NOW + 301,
            VerifyErrorKind::TimestampTooOld,
            "timestamp too old",
        );
        s.expect(
            &s.headers,
            BODY,
            NOW - 301,
            VerifyErrorKind::TimestampTooNew,
            "timestamp too far in the future",
        );
        assert_eq!(s.verify(&s.headers, BODY, NOW + 300), Ok(()), "{name}");
        let tolerant = Signed {
            scheme: s.scheme.clone().with_tolerance(Duration::from_secs(3600)),
            ..signed(name)
        };
        assert_eq!(
            tolerant.verify(&tolerant.headers, BODY, NOW + 3000),
            Ok(()),
            "{name}"
        );
    }
    // Slack's timestamp is a header of its own.
    let slack = signed("slack");
    let ts = "x-slack-request-timestamp";
    slack.expect(
        &slack.with(ts, None),
        BODY,
        NOW,
        VerifyErrorKind::MissingHeader,
        "missing x-slack-request-timestamp",
    );
    slack.expect(
        &slack.with(ts, Some("soon")),
        BODY,
        NOW,
        VerifyErrorKind::InvalidHeader,
        "invalid x-slack-request-timestamp",
    );
    slack.expect(
        &slack.with(ts, Some("99999999999999999999")),
        BODY,
        NOW,
        VerifyErrorKind::InvalidHeader,
        "invalid x-slack-request-timestamp",
    );
    slack.expect(
        &slack.with(ts, Some(&(NOW - 1).to_string())),
        BODY,
        NOW,
        VerifyErrorKind::NoMatchingSignature,
        "no matching signature",
    );
    // Stripe's and Paddle's sit in the signature header.
    for (name, ts_key, sig_key, sep) in [("stripe", "t", "v1", ","), ("paddle", "ts", "h1", ";")] {
        let s = signed(name);
        let value = s.signature_value();
        let sig = value
            .split(sep)
            .find(|entry| entry.starts_with(sig_key))
            .unwrap();
        let header = s.signature.as_str();
        s.expect(
            &s.with(header, Some(sig)),
            BODY,
            NOW,
            VerifyErrorKind::InvalidHeader,
            &format!("invalid {header}: no timestamp"),
        );
        let twice = format!("{ts_key}={NOW}{sep}{ts_key}={}{sep}{sig}", NOW + 1);
        s.expect(
            &s.with(header, Some(&twice)),
            BODY,
            NOW,
            VerifyErrorKind::InvalidHeader,
            &format!("invalid {header}: more than one timestamp"),
        );
        for bad in ["soon", "-", "1e9", "+1700000000"] {
            let value = format!("{ts_key}={bad}{sep}{sig}");
            s.expect(
                &s.with(header, Some(&value)),
                BODY,
                NOW,
                VerifyErrorKind::InvalidHeader,
                &format!("invalid {header}"),
            );
        }
        let moved = format!("{ts_key}={}{sep}{sig}", NOW - 1);
        s.expect(
            &s.with(header, Some(&moved)),
            BODY,
            NOW,
            VerifyErrorKind::NoMatchingSignature,
            "no matching signature",
        );
    }
}

#[test]
fn one_good_signature_among_several() {
    for (name, sig_key, sep) in [("stripe", "v1", ","), ("paddle", "h1", ";")] {
        let s = signed(name);
        let value = s.signature_value();
        let other = hmac_scheme(name, "old secret").sign("", NOW, BODY).unwrap();
        let other_sig = other[&s.signature]
            .to_str()
            .unwrap()
            .split(sep)
            .find(|e| e.starts_with(sig_key))
            .unwrap()
            .to_owned();
        // The good one last, first, and among unknown versions and junk.
        let (ts, good) = value.split_once(sep).unwrap();
        for mixed in [
            format!("{ts}{sep}{other_sig}{sep}{good}"),
            format!("{ts}{sep}{good}{sep}{other_sig}"),
            format!("{ts}{sep}v0=abc{sep}{sig_key}=zz{sep}junk{sep}{good}"),
        ] {
            assert_eq!(
                s.verify(&s.with(s.signature.as_str(), Some(&mixed)), BODY, NOW),
                Ok(()),
                "{name}: {mixed}"
            );
        }
        // And a rotation: the scheme holds both secrets, the sender signed with the old one.
        let rotating = hmac_scheme(name, "the right secret")
            .with_secret("old secret")
            .unwrap();
        assert!(rotating.verify(&other, BODY, at(NOW)).is_ok(), "{name}");
    }
    for name in ["github", "shopify", "slack"] {
        let rotating = hmac_scheme(name, "new secret")
            .with_secret("the right secret")
            .unwrap();
        let s = signed(name);
        assert!(rotating.verify(&s.headers, BODY, at(NOW)).is_ok(), "{name}");
    }
}

#[test]
fn github_refuses_the_legacy_sha1_header_alone() {
    let s = signed("github");
    let mut legacy = s.with("x-hub-signature-256", None);
    legacy.insert(
        "x-hub-signature",
        HeaderValue::from_static("sha1=7d38cdd689735b008b3c702edd92eea23791c5f6"),
    );
    s.expect(
        &legacy,
        BODY,
        NOW,
        VerifyErrorKind::MissingHeader,
        "missing x-hub-signature-256",
    );
    let sha1_in_new_header = s.with(
        "x-hub-signature-256",
        Some("sha1=7d38cdd689735b008b3c702edd92eea23791c5f6"),
    );
    s.expect(
        &sha1_in_new_header,
        BODY,
        NOW,
        VerifyErrorKind::NoSupportedSignature,
        "no supported signature",
    );
}

#[test]
fn ids_and_event_types() {
    let github = signed("github");
    let mut headers = github.with("x-github-event", Some("push"));
    let verified = github.scheme.verify(&headers, BODY, at(NOW)).unwrap();
    assert_eq!(verified.event_type.as_deref(), Some("push"));
    assert_eq!(
        github.scheme.identify(&headers, BODY, &verified).as_deref(),
        Some("delivery-1")
    );
    headers.append("x-github-delivery", HeaderValue::from_static("delivery-2"));
    github.expect(
        &headers,
        BODY,
        NOW,
        VerifyErrorKind::InvalidHeader,
        "invalid x-github-delivery: sent more than once",
    );
    let no_id = github.with("x-github-delivery", None);
    let verified = github.scheme.verify(&no_id, BODY, at(NOW)).unwrap();
    assert_eq!(github.scheme.identify(&no_id, BODY, &verified), None);

    for (name, id) in [
        ("stripe", "evt_1"),
        ("paddle", "evt_1"),
        ("slack", "evt_1"),
        ("shopify", "delivery-1"),
    ] {
        let s = signed(name);
        let verified = s.scheme.verify(&s.headers, BODY, at(NOW)).unwrap();
        assert_eq!(
            s.scheme.identify(&s.headers, BODY, &verified).as_deref(),
            Some(id),
            "{name}"
        );
    }
    // Stripe and Paddle bodies without their id field have none.
    let stripe = HmacScheme::stripe("k").unwrap();
    let headers = stripe.sign("", NOW, b"{}").unwrap();
    let verified = stripe.verify(&headers, b"{}", at(NOW)).unwrap();
    assert_eq!(stripe.identify(&headers, b"{}", &verified), None);
    // A Slack slash command is form-encoded: its id is a hash of the body.
    let slack = HmacScheme::slack("k").unwrap();
    let form = b"token=x&command=%2Fdeploy&text=prod";
    let headers = slack.sign("", NOW, form).unwrap();
    let verified = slack.verify(&headers, form, at(NOW)).unwrap();
    let id = slack.identify(&headers, form, &verified).unwrap();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
}

#[test]
fn generic_builder() {
    use tower_webhook::scheme::{Encoding, InvalidSchemeKind};
    let acme = HmacScheme::builder("acme")
        .signature_header("x-acme-signature")
        .prefix("sha256=")
        .encoding(Encoding::Base64)
        .signs("{id}:{timestamp}:{body}")
        .timestamp_header("x-acme-timestamp")
        .tolerance(Duration::from_secs(60))
        .id_header("x-acme-delivery")
        .event_type_header("x-acme-event")
        .secret("acme secret")
        .secret("older acme secret")
        .build()
        .unwrap();
    assert_eq!(acme.name(), "acme");
    let mut headers = acme.sign("d-1", NOW, BODY).unwrap();
    headers.insert("x-acme-event", HeaderValue::from_static("thing.done"));
    let value = headers["x-acme-signature"].to_str().unwrap().to_owned();
    assert!(
        value.starts_with("sha256=") && value.ends_with('='),
        "{value}"
    );
    let verified = acme.verify(&headers, BODY, at(NOW + 60)).unwrap();
    assert_eq!(verified.id.as_deref(), Some("d-1"));
    assert_eq!(verified.event_type.as_deref(), Some("thing.done"));
    assert_eq!(
        acme.verify(&headers, BODY, at(NOW + 61))
            .unwrap_err()
            .kind(),
        VerifyErrorKind::TimestampTooOld
    );
    // The id is signed: changing it breaks the signature.
    headers.insert("x-acme-delivery", HeaderValue::from_static("d-2"));
    assert_eq!(
        acme.verify(&headers, BODY, at(NOW)).unwrap_err().kind(),
        VerifyErrorKind::NoMatchingSignature
    );

    let kind = |b: tower_webhook::scheme::HmacSchemeBuilder| b.build().unwrap_err().kind();
    let base = || {
        HmacScheme::builder("x")
            .signature_header("x-sig")
            .secret("s")
    };
    assert_eq!(
        kind(HmacScheme::builder("x").secret("s")),
        InvalidSchemeKind::NoSignatureHeader
    );
    assert_eq!(
        kind(base().signature_header("bad header")),
        InvalidSchemeKind::HeaderName
    );
    assert_eq!(
        kind(base().signs("{timestamp}.{body}")),
        InvalidSchemeKind::Template
    );
    assert_eq!(
        kind(base().signs("{id}.{body}")),
        InvalidSchemeKind::Template
    );
    assert_eq!(
        kind(base().signs("{body}.{nonce}")),
        InvalidSchemeKind::Template
    );
    assert_eq!(kind(base().signs("no body")), InvalidSchemeKind::Template);
    assert_eq!(
        kind(HmacScheme::builder("x").signature_header("x-sig")),
        InvalidSchemeKind::NoSecret
    );
    assert_eq!(kind(base().secret("")), InvalidSchemeKind::EmptySecret);
    let err = base().signs("{timestamp}.{body}").build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid template of the signed content: {timestamp} needs a timestamp header"
    );
}

#[test]
fn empty_and_blank_secrets_are_refused_when_built() {
    for blank in ["", " ", "\n", "\t \r\n"] {
        for name in SCHEMES {
            let err = match name {
                "stripe" => HmacScheme::stripe(blank),
                "github" => HmacScheme::github(blank),
                "shopify" => HmacScheme::shopify(blank),
                "slack" => HmacScheme::slack(blank),
                _ => HmacScheme::paddle(blank),
            }
            .unwrap_err();
            assert_eq!(err.kind(), InvalidSecretKind::Empty, "{name} {blank:?}");
            assert_eq!(err.to_string(), "webhook secret is empty or blank");
        }
        assert_eq!(
            StandardWebhooks::new(blank).unwrap_err().kind(),
            InvalidSecretKind::Empty,
            "{blank:?}"
        );
        let built = HmacScheme::builder("acme")
            .signature_header("x-acme-signature")
            .secret(blank)
            .build();
        assert_eq!(
            built.unwrap_err().kind(),
            InvalidSchemeKind::EmptySecret,
            "{blank:?}"
        );
    }
    // A secret read with its trailing newline verifies what the sender signed without it.
    let body = b"{}";
    let headers = HmacScheme::github("gh secret")
        .unwrap()
        .sign("d", 0, body)
        .unwrap();
    let read_from_a_file = HmacScheme::github("gh secret\n").unwrap();
    assert!(read_from_a_file.verify(&headers, body, at(0)).is_ok());
}

// ---------------------------------------------------------------------------------------
// Standard Webhooks v1a: Ed25519.

#[cfg(feature = "ed25519")]
mod v1a {
    use super::*;
    use tower_webhook::scheme::{InvalidSecretKind, SignErrorKind, StandardWebhooks};

    fn v1a_vectors() -> Vec<Vector> {
        vectors()
            .into_iter()
            .filter(|v| v.scheme == "standard-webhooks-v1a")
            .collect()
    }

    #[test]
    fn vectors_verify_with_the_public_key() {
        let all = v1a_vectors();
        assert_eq!(all.len(), 2);
        for v in &all {
            let scheme =
                StandardWebhooks::from_public_key(v.public_key.as_deref().unwrap()).unwrap();
            check(&scheme, v);
            // Ed25519 signatures are deterministic: the private key signs the same bytes.
            let signer = StandardWebhooks::from_signing_key(&v.secret).unwrap();
            let body = base64::engine::general_purpose::STANDARD
                .decode(&v.body_base64)
                .unwrap();
            let ours = signer.sign(&v.id, v.timestamp, &body).unwrap();
            assert_eq!(
                ours["webhook-signature"],
                v.headers["webhook-signature"].as_str()
            );
            check(&signer, v);
        }
    }

    #[test]
    fn weak_public_keys_are_refused() {
        use base64::Engine as _;
        use tower_webhook::scheme::InvalidSecretKind;
        // The identity point, with which R = identity and s = 0 verify any body, and the
        // point of order two, y = -1.
        let identity = {
            let mut bytes = [0u8; 32];
            bytes[0] = 1;
            bytes
        };
        let order_two = {
            let mut bytes = [0xffu8; 32];
            bytes[0] = 0xec;
            bytes[31] = 0x7f;
            bytes
        };
        for weak in [identity, order_two] {
            let key = format!(
                "whpk_{}",
                base64::engine::general_purpose::STANDARD.encode(weak)
            );
            assert_eq!(
                StandardWebhooks::from_public_key(&key).unwrap_err().kind(),
                InvalidSecretKind::WeakKey
            );
        }
    }

    #[test]
    fn an_unverified_request_costs_at_most_four_ed25519_checks() {
        use base64::Engine as _;
        let seed = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        let signer = StandardWebhooks::from_signing_key(&format!("whsk_{seed}")).unwrap();
        let now = 1_700_000_000;
        let body = b"{\"type\":\"user.created\"}";
        let entry = |body: &[u8]| {
            signer.sign("msg_1", now, body).unwrap()["webhook-signature"]
                .to_str()
                .unwrap()
                .to_owned()
        };
        // Real signatures of other bodies: points a cheap check cannot tell from the real one.
        let decoys: Vec<String> = (0..5)
            .map(|n| entry(format!("decoy {n}").as_bytes()))
            .collect();
        let good = entry(body);
        let mut headers = signer.sign("msg_1", now, body).unwrap();
        let mut verify = |entries: Vec<&str>| {
            headers.insert(
                "webhook-signature",
                HeaderValue::from_str(&entries.join(" ")).unwrap(),
            );
            signer.verify(&headers, body, at(now))
        };
        let within: Vec<&str> = decoys[..3]
            .iter()
            .map(String::as_str)
            .chain([good.as_str()])
            .collect();
        assert!(verify(within).is_ok(), "the fourth check finds it");
        let beyond: Vec<&str> = decoys[..4]
            .iter()
            .map(String::as_str)
            .chain([good.as_str()])
            .collect();
        assert_eq!(
            verify(beyond).unwrap_err().kind(),
            VerifyErrorKind::NoMatchingSignature,
            "a fifth check is never made"
        );
    }

    #[test]
    fn keys_and_signatures_that_do_not_fit() {
        let all = v1a_vectors();
        let v = &all[0];
        let public = v.public_key.as_deref().unwrap();
        let scheme = StandardWebhooks::from_public_key(public).unwrap();
        let body = base64::engine::general_purpose::STANDARD
            .decode(&v.body_base64)
            .unwrap();
        let mut headers = headers_of(v);
        let good = v.headers["webhook-signature"].clone();

        // Another key's public key does not verify it.
        let other =
            StandardWebhooks::from_public_key(all[1].public_key.as_deref().unwrap()).unwrap();
        assert_eq!(
            other
                .verify(&headers, &body, at(v.timestamp))
                .unwrap_err()
                .kind(),
            VerifyErrorKind::NoMatchingSignature
        );
        // A v1a signature is not read as v1, nor a v1 as v1a.
        let tag = good.strip_prefix("v1a,").unwrap();
        headers.insert(
            "webhook-signature",
            HeaderValue::from_str(&format!("v1,{tag}")).unwrap(),
        );
        assert_eq!(
            scheme
                .verify(&headers, &body, at(v.timestamp))
                .unwrap_err()
                .kind(),
            VerifyErrorKind::NoSupportedSignature
        );
        // One good v1a among bad ones, and beside HMAC entries.
        let bad = format!("v1a,{}", "A".repeat(86) + "==");
        headers.insert(
            "webhook-signature",
            HeaderValue::from_str(&format!("v1,AAAA {bad} {good} v2,x")).unwrap(),
        );
        assert!(scheme.verify(&headers, &body, at(v.timestamp)).is_ok());
        // A scheme with both an HMAC secret and a public key takes either signature.
        let both = StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap()
            .with_public_key(public)
            .unwrap();
        headers.insert("webhook-signature", HeaderValue::from_str(&good).unwrap());
        assert!(both.verify(&headers, &body, at(v.timestamp)).is_ok());
        let hmac_signed = StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap()
            .sign(&v.id, v.timestamp, &body)
            .unwrap();
        assert!(both.verify(&hmac_signed, &body, at(v.timestamp)).is_ok());

        // A public key cannot sign.
        assert_eq!(
            scheme.sign("msg", 1, b"{}").unwrap_err().kind(),
            SignErrorKind::NoSigningKey
        );
        // Keys that are not keys.
        for bad in ["whpk_AAAA", "whpk_not base64", "whpk_"] {
            let err = StandardWebhooks::from_public_key(bad).unwrap_err();
            assert!(
                matches!(
                    err.kind(),
                    InvalidSecretKind::InvalidKey | InvalidSecretKind::NotBase64
                ),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            StandardWebhooks::from_signing_key("whsk_AAAA")
                .unwrap_err()
                .kind(),
            InvalidSecretKind::InvalidKey
        );
    }
}

// ---------------------------------------------------------------------------------------
// Through the layer.

mod through_the_layer {
    use super::*;
    use common::{counting, request, Calls};
    use http::StatusCode;
    use tower::{Layer, ServiceExt};
    use tower_webhook::store::MemoryStore;
    use tower_webhook::{Event, IdSource, VerifyWebhookLayer, DUPLICATE_HEADER};

    async fn send(
        layer: &VerifyWebhookLayer,
        calls: &Calls,
        headers: HeaderMap,
        body: &'static [u8],
    ) -> (StatusCode, bool) {
        let service = layer.layer(counting(calls.clone(), StatusCode::OK));
        let response = service.oneshot(request(headers, body)).await.unwrap();
        (
            response.status(),
            response.headers().contains_key(DUPLICATE_HEADER),
        )
    }

    /// Each newer sender through the layer: its delivery handled once, its copy a duplicate,
    /// and a tampered body, another secret, a missing signature and (where it signs a time)
    /// a stale one each refused with 400 before the handler.
    #[tokio::test]
    async fn each_newer_sender_over_the_layer() {
        let body: &'static [u8] = br#"{"event_id":"evt_new_1","event":"x","id":1}"#;
        let now = common::now_unix();
        // The senders after the first five of the list.
        for &name in &SCHEMES[5..] {
            let scheme = hmac_scheme(name, "the right secret");
            let layer = VerifyWebhookLayer::new(scheme.clone()).with_store(MemoryStore::new());
            let calls = Calls::default();
            let good = scheme.sign("delivery-1", now, body).unwrap();
            assert_eq!(
                send(&layer, &calls, good.clone(), body).await,
                (StatusCode::OK, false),
                "{name}"
            );
            assert_eq!(
                send(&layer, &calls, good.clone(), body).await,
                (StatusCode::OK, true),
                "{name}"
            );
            let tampered: &'static [u8] = br#"{"event_id":"evt_new_1","event":"y","id":1}"#;
            let other = hmac_scheme(name, "another secret")
                .sign("delivery-2", now, body)
                .unwrap();
            let signature = good
                .keys()
                .find(|h| h.as_str().contains("sig"))
                .unwrap()
                .clone();
            let mut unsigned = good.clone();
            unsigned.remove(&signature);
            let stale = scheme.sign("delivery-3", now - 3600, body).unwrap();
            let mut refused = vec![(good, tampered), (other, body), (unsigned, body)];
            if matches!(name, "zoom" | "calendly" | "twitch") {
                refused.push((stale, body));
            }
            for (headers, body) in refused {
                assert_eq!(
                    send(&layer, &calls, headers, body).await,
                    (StatusCode::BAD_REQUEST, false),
                    "{name}"
                );
            }
            assert_eq!(calls.get(), 1, "{name}");
        }
    }

    /// Coinbase Commerce's retry has another body (its own top-level id and attempt
    /// number): keyed on the event's id, it is a duplicate.
    #[tokio::test]
    async fn a_coinbase_commerce_retry_is_a_duplicate() {
        let retries: Vec<Vector> =
            serde_json::from_str(include_str!("fixtures/senders_coinbase.json")).unwrap();
        let scheme = HmacScheme::coinbase_commerce(&retries[0].secret).unwrap();
        let layer = VerifyWebhookLayer::new(scheme).with_store(MemoryStore::new());
        let calls = Calls::default();
        let mut answers = Vec::new();
        for v in &retries {
            let body: &'static [u8] = base64::engine::general_purpose::STANDARD
                .decode(&v.body_base64)
                .unwrap()
                .leak();
            answers.push(send(&layer, &calls, headers_of(v), body).await);
        }
        assert_eq!(answers, [(StatusCode::OK, false), (StatusCode::OK, true)]);
        assert_eq!(calls.get(), 1);
    }

    #[tokio::test]
    async fn slack_retries_of_a_slash_command_are_duplicates() {
        let slack = HmacScheme::slack("slack secret").unwrap();
        let layer = VerifyWebhookLayer::new(slack.clone()).with_store(MemoryStore::new());
        let calls = Calls::default();
        let form: &'static [u8] = b"token=x&team_id=T1&command=%2Fdeploy&text=prod";
        let now = common::now_unix();
        assert_eq!(
            send(&layer, &calls, slack.sign("", now, form).unwrap(), form).await,
            (StatusCode::OK, false)
        );
        // Slack retries with a new timestamp and signature, and X-Slack-Retry-Num.
        let mut retry = slack.sign("", now + 3, form).unwrap();
        retry.insert("x-slack-retry-num", HeaderValue::from_static("1"));
        retry.insert(
            "x-slack-retry-reason",
            HeaderValue::from_static("http_timeout"),
        );
        assert_eq!(
            send(&layer, &calls, retry, form).await,
            (StatusCode::OK, true)
        );
        assert_eq!(calls.get(), 1);
    }

    #[tokio::test]
    async fn a_forged_id_with_a_replayed_body_cannot_block_a_real_github_event() {
        let github = HmacScheme::github("gh secret").unwrap();
        let old: &'static [u8] = br#"{"action":"opened","number":1}"#;
        let new: &'static [u8] = br#"{"action":"closed","number":2}"#;
        let forged = github.sign("real-delivery-id", 0, old).unwrap();
        let real = github.sign("real-delivery-id", 0, new).unwrap();

        // By default the key covers a hash of the body, as GitHub signs no id: both run, and
        // the real one is deduplicated on its own.
        for (name, shopify) in [("github", false), ("shopify", true)] {
            let calls = Calls::default();
            let (scheme, forged, real) = if shopify {
                let shopify = HmacScheme::shopify("shop secret").unwrap();
                let forged = shopify.sign("real-delivery-id", 0, old).unwrap();
                let real = shopify.sign("real-delivery-id", 0, new).unwrap();
                (shopify, forged, real)
            } else {
                (github.clone(), forged.clone(), real.clone())
            };
            let safe = VerifyWebhookLayer::new(scheme).with_store(MemoryStore::new());
            assert_eq!(
                send(&safe, &calls, forged, old).await,
                (StatusCode::OK, false),
                "{name}"
            );
            assert_eq!(
                send(&safe, &calls, real.clone(), new).await,
                (StatusCode::OK, false),
                "{name}: the real event must run"
            );
            assert_eq!(
                send(&safe, &calls, real, new).await,
                (StatusCode::OK, true),
                "{name}"
            );
            assert_eq!(calls.get(), 2, "{name}");
        }

        // Keyed on the id alone, an explicit opt-in, the replay takes the real delivery's id
        // first: the weakness the opt-in's documentation names.
        let calls = Calls::default();
        let id_only = VerifyWebhookLayer::new(github)
            .with_store(MemoryStore::new())
            .with_id_source(IdSource::scheme().without_body_hash());
        send(&id_only, &calls, forged, old).await;
        assert_eq!(
            send(&id_only, &calls, real, new).await,
            (StatusCode::OK, true),
            "the id-only key answers the real event as a duplicate"
        );
        assert_eq!(calls.get(), 1);
    }

    #[tokio::test]
    async fn the_event_carries_the_id_and_type_of_each_sender() {
        // Scheme, headers, body, and the id and type its event must carry.
        type Case = (
            HmacScheme,
            HeaderMap,
            &'static [u8],
            &'static str,
            Option<&'static str>,
        );
        let cases: Vec<Case> = {
            let now = common::now_unix();
            let github = HmacScheme::github("g").unwrap();
            let mut gh = github.sign("gh-1", now, b"{}").unwrap();
            gh.insert("x-github-event", HeaderValue::from_static("push"));
            let stripe = HmacScheme::stripe("whsec_s").unwrap();
            let body: &'static [u8] = br#"{"id":"evt_9","type":"charge.succeeded"}"#;
            let paddle = HmacScheme::paddle("p").unwrap();
            let paddle_body: &'static [u8] =
                br#"{"event_id":"evt_p","event_type":"transaction.paid"}"#;
            vec![
                (github, gh, b"{}", "gh-1", Some("push")),
                (
                    stripe.clone(),
                    stripe.sign("", now, body).unwrap(),
                    body,
                    "evt_9",
                    Some("charge.succeeded"),
                ),
                (
                    paddle.clone(),
                    paddle.sign("", now, paddle_body).unwrap(),
                    paddle_body,
                    "evt_p",
                    Some("transaction.paid"),
                ),
            ]
        };
        for (scheme, headers, body, id, event_type) in cases {
            let name = scheme.name();
            let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
            let service = {
                let seen = std::sync::Arc::clone(&seen);
                VerifyWebhookLayer::new(scheme).layer(tower::service_fn(
                    move |req: http::Request<http_body_util::Full<bytes::Bytes>>| {
                        *seen.lock().unwrap() = req.extensions().get::<Event>().cloned();
                        async {
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::new()),
                            ))
                        }
                    },
                ))
            };
            let response = service.oneshot(request(headers, body)).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{name}");
            let event = seen.lock().unwrap().take().unwrap();
            assert_eq!(
                (event.id(), event.event_type(), event.scheme()),
                (id, event_type, name)
            );
        }
    }

    #[tokio::test]
    async fn a_github_delivery_without_its_id_header_is_refused() {
        let github = HmacScheme::github("g").unwrap();
        let layer = VerifyWebhookLayer::new(github.clone()).with_store(MemoryStore::new());
        let calls = Calls::default();
        let mut headers = github.sign("x", 0, b"{}").unwrap();
        headers.remove("x-github-delivery");
        let service = layer.layer(counting(calls.clone(), StatusCode::OK));
        let response = service.oneshot(request(headers, &b"{}"[..])).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(common::body_text(response).await, "missing event id");
        assert_eq!(calls.get(), 0);
    }
}

mod gitlab {
    use super::*;
    use common::{counting, request, Calls};
    use http::StatusCode;
    use tower::{Layer, ServiceExt};
    use tower_webhook::scheme::SharedToken;
    use tower_webhook::store::MemoryStore;
    use tower_webhook::{VerifyWebhookLayer, DUPLICATE_HEADER};

    /// A delivery as GitLab sends it (its documented headers), with `token`.
    fn delivery(token: &str, idempotency_key: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-gitlab-token", HeaderValue::from_str(token).unwrap());
        headers.insert("x-gitlab-event", HeaderValue::from_static("Push Hook"));
        headers.insert(
            "x-gitlab-event-uuid",
            HeaderValue::from_static("13792a34-cac6-4fda-95a8-c58e00a3954e"),
        );
        headers.insert(
            "x-gitlab-webhook-uuid",
            HeaderValue::from_static("9a6ae43d-8a5f-4a4e-8a0a-2f3e1e2c3b4d"),
        );
        headers.insert(
            "x-gitlab-instance",
            HeaderValue::from_static("https://gitlab.com"),
        );
        if let Some(key) = idempotency_key {
            headers.insert("idempotency-key", HeaderValue::from_str(key).unwrap());
        }
        headers
    }

    #[test]
    fn the_token_is_checked_and_the_ids_read() {
        let gitlab = SharedToken::gitlab("glpat-like token 0123").unwrap();
        let now = SystemTime::now();
        let verified = gitlab
            .verify(
                &delivery("glpat-like token 0123", Some("key-1")),
                b"{}",
                now,
            )
            .unwrap();
        assert_eq!(verified.id.as_deref(), Some("key-1"));
        assert_eq!(verified.event_type.as_deref(), Some("Push Hook"));
        // Before GitLab 17.4 there is no Idempotency-Key: the event's UUID.
        let verified = gitlab
            .verify(&delivery("glpat-like token 0123", None), b"{}", now)
            .unwrap();
        assert_eq!(
            verified.id.as_deref(),
            Some("13792a34-cac6-4fda-95a8-c58e00a3954e")
        );
        assert!(!gitlab.signs_id());

        let kind = |headers: &HeaderMap| gitlab.verify(headers, b"{}", now).unwrap_err().kind();
        for wrong in [
            "glpat-like token 0124",
            "glpat-like token 012",
            "x",
            "glpat-like token 01234",
        ] {
            assert_eq!(
                kind(&delivery(wrong, None)),
                VerifyErrorKind::NoMatchingSignature,
                "{wrong}"
            );
        }
        let mut missing = delivery("t", None);
        missing.remove("x-gitlab-token");
        assert_eq!(kind(&missing), VerifyErrorKind::MissingHeader);
        assert_eq!(kind(&delivery(" ", None)), VerifyErrorKind::MissingHeader);
        let mut twice = delivery("glpat-like token 0123", None);
        twice.append(
            "x-gitlab-token",
            HeaderValue::from_static("glpat-like token 0123"),
        );
        assert_eq!(kind(&twice), VerifyErrorKind::InvalidHeader);
        // The token is never in an error or in Debug.
        assert!(!format!("{gitlab:?}").contains("0123"));
    }

    #[test]
    fn rotation_and_blank_tokens() {
        let gitlab = SharedToken::gitlab("new token")
            .unwrap()
            .with_token("old token\n")
            .unwrap();
        let now = SystemTime::now();
        for token in ["new token", "old token"] {
            assert!(
                gitlab.verify(&delivery(token, None), b"", now).is_ok(),
                "{token}"
            );
        }
        assert_eq!(
            SharedToken::gitlab("  \n").unwrap_err().kind(),
            InvalidSecretKind::Empty
        );
    }

    #[tokio::test]
    async fn over_the_layer() {
        let layer = VerifyWebhookLayer::new(SharedToken::gitlab("gl token").unwrap())
            .with_store(MemoryStore::new());
        let calls = Calls::default();
        let send = |headers: HeaderMap, body: &'static [u8]| {
            let service = layer.layer(counting(calls.clone(), StatusCode::OK));
            async move {
                let response = service.oneshot(request(headers, body)).await.unwrap();
                (
                    response.status(),
                    response.headers().contains_key(DUPLICATE_HEADER),
                )
            }
        };
        let body: &'static [u8] = br#"{"object_kind":"push","ref":"refs/heads/main"}"#;
        assert_eq!(
            send(delivery("gl token", Some("k1")), body).await,
            (StatusCode::OK, false)
        );
        assert_eq!(
            send(delivery("gl token", Some("k1")), body).await,
            (StatusCode::OK, true)
        );
        assert_eq!(
            send(delivery("not the token", Some("k2")), body).await,
            (StatusCode::BAD_REQUEST, false)
        );
        let mut no_token = delivery("gl token", Some("k3"));
        no_token.remove("x-gitlab-token");
        assert_eq!(send(no_token, body).await, (StatusCode::BAD_REQUEST, false));
        assert_eq!(calls.get(), 1);
    }
}

/// Discord's vectors, checked with its own library (`tests/fixtures/gen_senders_discord.mjs`).
#[cfg(feature = "ed25519")]
#[test]
fn discord_vectors_from_discord_interactions() {
    use tower_webhook::scheme::Discord;
    let all: Vec<Vector> =
        serde_json::from_str(include_str!("fixtures/senders_discord.json")).unwrap();
    assert_eq!(all.len(), 2);
    for v in &all {
        let scheme = Discord::new(v.public_key.as_deref().unwrap()).unwrap();
        check(&scheme, v);
        // Ed25519 is deterministic: the seed signs the very same signature.
        let body = base64::engine::general_purpose::STANDARD
            .decode(&v.body_base64)
            .unwrap();
        let signed = Discord::from_signing_key(&v.secret)
            .unwrap()
            .sign(v.timestamp, &body)
            .unwrap();
        assert_eq!(
            signed["x-signature-ed25519"],
            v.headers["x-signature-ed25519"]
        );
        // Stale, and another application's key.
        let err = scheme
            .verify(&headers_of(v), &body, at(v.timestamp + 301))
            .unwrap_err();
        assert_eq!(err.kind(), VerifyErrorKind::TimestampTooOld);
        let other = Discord::new(
            all[1 - usize::from(v.id == all[1].id)]
                .public_key
                .as_deref()
                .unwrap(),
        )
        .unwrap();
        let err = other
            .verify(&headers_of(v), &body, at(v.timestamp))
            .unwrap_err();
        assert_eq!(err.kind(), VerifyErrorKind::NoMatchingSignature);
    }
    // Keys that are not 32 bytes of hex, or weak, are refused when built.
    for bad in ["", "00", &"zz".repeat(32), &"00".repeat(33)] {
        assert_eq!(
            Discord::new(bad).unwrap_err().kind(),
            InvalidSecretKind::InvalidKey,
            "{bad}"
        );
    }
    assert_eq!(
        Discord::new(&format!("01{}", "00".repeat(31)))
            .unwrap_err()
            .kind(),
        InvalidSecretKind::WeakKey
    );
}

/// Mailgun: the signature object is in the body (`tests/fixtures/gen_senders_mailgun.py`).
#[test]
fn mailgun_signs_a_token_and_a_time_in_the_body() {
    use tower_webhook::scheme::Mailgun;
    let all: Vec<Vector> =
        serde_json::from_str(include_str!("fixtures/senders_mailgun.json")).unwrap();
    for v in &all {
        let scheme = Mailgun::new(&v.secret).unwrap();
        let body = base64::engine::general_purpose::STANDARD
            .decode(&v.body_base64)
            .unwrap();
        let verified = scheme
            .verify(&HeaderMap::new(), &body, at(v.timestamp))
            .unwrap();
        assert_eq!(verified.id.as_deref(), Some(v.id.as_str()));
        assert_eq!(verified.event_type, v.event_type);
        assert!(scheme.signs_id());
        let kind = |body: &[u8], now: i64| {
            scheme
                .verify(&HeaderMap::new(), body, at(now))
                .unwrap_err()
                .kind()
        };
        assert_eq!(
            kind(&body, v.timestamp + 301),
            VerifyErrorKind::TimestampTooOld
        );
        let other = Mailgun::new("another key").unwrap();
        assert_eq!(
            other
                .verify(&HeaderMap::new(), &body, at(v.timestamp))
                .unwrap_err()
                .kind(),
            VerifyErrorKind::NoMatchingSignature
        );
        // Another token under the same signature: refused.
        let text = String::from_utf8(body.clone()).unwrap();
        let swapped = text.replacen(&v.id, &format!("{}0", &v.id[1..]), 1);
        assert_eq!(
            kind(swapped.as_bytes(), v.timestamp),
            VerifyErrorKind::NoMatchingSignature
        );
        // The signer makes the same object.
        let made = scheme.signature(v.timestamp, &v.id);
        let sent: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(made, sent["signature"]);
    }
    let scheme = Mailgun::new("k").unwrap();
    for body in [
        &b"{}"[..],
        b"not json",
        br#"{"signature":{"timestamp":"1","token":"t"}}"#,
        br#"{"signature":{"timestamp":"soon","token":"t","signature":"00"}}"#,
        br#"{"signature":"x"}"#,
    ] {
        assert_eq!(
            scheme
                .verify(&HeaderMap::new(), body, at(1))
                .unwrap_err()
                .kind(),
            VerifyErrorKind::NoSupportedSignature,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert_eq!(
        Mailgun::new(" ").unwrap_err().kind(),
        InvalidSecretKind::Empty
    );
}

/// SendGrid's vectors, checked with its own library (`tests/fixtures/gen_senders_sendgrid.mjs`).
#[cfg(feature = "sendgrid")]
#[test]
fn sendgrid_vectors_from_its_library() {
    use tower_webhook::scheme::SendGrid;
    let all: Vec<Vector> =
        serde_json::from_str(include_str!("fixtures/senders_sendgrid.json")).unwrap();
    for v in &all {
        let scheme = SendGrid::new(v.public_key.as_deref().unwrap()).unwrap();
        check(&scheme, v);
        let body = base64::engine::general_purpose::STANDARD
            .decode(&v.body_base64)
            .unwrap();
        let headers = headers_of(v);
        // Another timestamp is other signed content.
        let mut moved = headers.clone();
        moved.insert(
            "x-twilio-email-event-webhook-timestamp",
            HeaderValue::from_str(&(v.timestamp + 1).to_string()).unwrap(),
        );
        let kind = |headers: &HeaderMap, scheme: &SendGrid, now: i64| {
            scheme.verify(headers, &body, at(now)).unwrap_err().kind()
        };
        assert_eq!(
            kind(&moved, &scheme, v.timestamp),
            VerifyErrorKind::NoMatchingSignature
        );
        // No window by default; one when set.
        assert!(scheme
            .verify(&headers, &body, at(v.timestamp + 86_400))
            .is_ok());
        let strict = scheme.clone().with_tolerance(Duration::from_secs(300));
        assert_eq!(
            kind(&headers, &strict, v.timestamp + 301),
            VerifyErrorKind::TimestampTooOld
        );
        for (name, value) in [
            ("x-twilio-email-event-webhook-signature", "not base64!"),
            ("x-twilio-email-event-webhook-signature", "AAAA"),
        ] {
            let mut bad = headers.clone();
            bad.insert(name, HeaderValue::from_static(value));
            assert_eq!(
                kind(&bad, &scheme, v.timestamp),
                VerifyErrorKind::NoSupportedSignature
            );
        }
        let mut bad = headers.clone();
        bad.remove("x-twilio-email-event-webhook-signature");
        assert_eq!(
            kind(&bad, &scheme, v.timestamp),
            VerifyErrorKind::MissingHeader
        );
    }
    for bad in ["", "AAAA", "not base64"] {
        assert_eq!(
            SendGrid::new(bad).unwrap_err().kind(),
            InvalidSecretKind::InvalidKey
        );
    }
}
