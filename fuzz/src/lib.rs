//! What the fuzz targets share: the input format, the schemes under test and their keys,
//! independent checks written from the senders' documentation rather than from the crate's
//! code, a way to run the layer's future without a runtime, and signed deliveries to seed the
//! corpora with.

use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;
use tower_webhook::scheme::{HmacScheme, StandardWebhooks};

/// The Standard Webhooks secret of the targets (the spec's example secret).
pub const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The secret of every `HmacScheme` preset under test.
pub const HMAC_SECRET: &str = "fuzz secret";
/// The seed of the Ed25519 key whose public half verifies `v1a`.
pub const ED25519_SEED: [u8; 32] = [7; 32];
/// The timestamp tolerance of every scheme under test, in seconds.
pub const TOLERANCE: i64 = 300;

/// Base64 read as leniently as any encoder writes it, so that the independent checks accept
/// at least what the crate accepts.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// One fuzz input: the receiver's clock, the headers and the body.
///
/// As bytes: the Unix time on the first line, `name: value` lines, a blank line, the body.
pub struct Delivery {
    pub now: i64,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Delivery {
    /// Reads an input; `None` when its first line is not a time. Header lines that are not a
    /// valid name and value are skipped.
    pub fn parse(data: &[u8]) -> Option<Self> {
        let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
            Some(at) => (&data[..at], &data[at + 2..]),
            None => (data, &[][..]),
        };
        let mut lines = head.split(|&b| b == b'\n');
        let now: i64 = std::str::from_utf8(lines.next()?)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        if !(0..=4_000_000_000).contains(&now) {
            return None;
        }
        let mut headers = HeaderMap::new();
        for line in lines {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let Ok(name) = HeaderName::from_bytes(&line[..colon]) else {
                continue;
            };
            let value = &line[colon + 1..];
            let value = value.strip_prefix(&b" "[..]).unwrap_or(value);
            let Ok(value) = HeaderValue::from_bytes(value) else {
                continue;
            };
            headers.append(name, value);
        }
        Some(Self {
            now,
            headers,
            body: body.to_vec(),
        })
    }

    /// The bytes [`parse`](Self::parse) reads back as this delivery.
    pub fn encode(now: i64, headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
        let mut out = format!("{now}\n").into_bytes();
        for (name, value) in headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out.extend_from_slice(body);
        out
    }

    /// The receiver's clock.
    pub fn clock(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.now.unsigned_abs())
    }
}

/// The Standard Webhooks scheme under test: the HMAC secret and the Ed25519 public key.
pub fn standard() -> StandardWebhooks {
    StandardWebhooks::new(STANDARD_SECRET)
        .unwrap()
        .with_public_key(&format!(
            "whpk_{}",
            STANDARD.encode(public_key().as_bytes())
        ))
        .unwrap()
}

/// Every `HmacScheme` preset, by name, with [`HMAC_SECRET`].
pub fn hmac_schemes() -> Vec<(&'static str, HmacScheme)> {
    vec![
        ("stripe", HmacScheme::stripe(HMAC_SECRET).unwrap()),
        ("github", HmacScheme::github(HMAC_SECRET).unwrap()),
        ("shopify", HmacScheme::shopify(HMAC_SECRET).unwrap()),
        ("slack", HmacScheme::slack(HMAC_SECRET).unwrap()),
        ("paddle", HmacScheme::paddle(HMAC_SECRET).unwrap()),
    ]
}

fn public_key() -> ed25519_dalek::VerifyingKey {
    ed25519_dalek::SigningKey::from_bytes(&ED25519_SEED).verifying_key()
}

/// Every value of the headers `names` that is text, as sent and trimmed.
fn texts(headers: &HeaderMap, names: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for name in names {
        for value in headers.get_all(*name) {
            if let Ok(text) = std::str::from_utf8(value.as_bytes()) {
                out.push(text.to_owned());
                out.push(text.trim().to_owned());
            }
        }
    }
    out
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn fresh(timestamp: &str, now: i64) -> bool {
    timestamp
        .trim()
        .parse::<i64>()
        .is_ok_and(|t| (i128::from(t) - i128::from(now)).abs() <= i128::from(TOLERANCE))
}

/// Whether some `webhook-`/`svix-` id, timestamp and signature entry of `d` is a valid `v1`
/// HMAC or `v1a` Ed25519 signature, made with the targets' keys, within the tolerance. Written
/// from the Standard Webhooks specification.
pub fn standard_verifies(d: &Delivery) -> bool {
    let key = STANDARD
        .decode(STANDARD_SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let public = public_key();
    let signatures = texts(&d.headers, &["webhook-signature", "svix-signature"]);
    for id in texts(&d.headers, &["webhook-id", "svix-id"]) {
        for timestamp in texts(&d.headers, &["webhook-timestamp", "svix-timestamp"]) {
            if !fresh(&timestamp, d.now) {
                continue;
            }
            let parts: [&[u8]; 5] = [id.as_bytes(), b".", timestamp.as_bytes(), b".", &d.body];
            let expected = mac(&key, &parts);
            let message = parts.concat();
            for entry in signatures.iter().flat_map(|s| s.split_ascii_whitespace()) {
                let Some((version, encoded)) = entry.split_once(',') else {
                    continue;
                };
                let Ok(bytes) = LENIENT.decode(encoded) else {
                    continue;
                };
                let valid = match version {
                    "v1" => bytes == expected,
                    "v1a" => <[u8; 64]>::try_from(bytes.as_slice()).is_ok_and(|signature| {
                        let signature = ed25519_dalek::Signature::from_bytes(&signature);
                        public.verify_strict(&message, &signature).is_ok()
                    }),
                    _ => false,
                };
                if valid {
                    return true;
                }
            }
        }
    }
    false
}

/// Whether `d` carries a valid signature of the sender `name` made with [`HMAC_SECRET`],
/// within the tolerance where the sender signs a time. Written from each sender's
/// documentation.
pub fn hmac_verifies(name: &str, d: &Delivery) -> bool {
    let key = HMAC_SECRET.as_bytes();
    let body = d.body.as_slice();
    let hex_is = |text: &str, expected: &[u8; 32]| {
        hex::decode(text.trim()).is_ok_and(|bytes| bytes == expected)
    };
    // `t=..,v1=..` lists (Stripe) and `ts=..;h1=..` lists (Paddle).
    let listed = |header: &str, separator: char, time: &str, version: &str, joint: &[u8]| {
        texts(&d.headers, &[header]).iter().any(|value| {
            let entries: Vec<(&str, &str)> = value
                .split(separator)
                .filter_map(|entry| entry.trim().split_once('='))
                .collect();
            entries
                .iter()
                .filter(|(k, t)| *k == time && fresh(t, d.now))
                .any(|(_, t)| {
                    let expected = mac(key, &[t.as_bytes(), joint, body]);
                    entries
                        .iter()
                        .any(|(k, v)| *k == version && hex_is(v, &expected))
                })
        })
    };
    match name {
        "stripe" => listed("stripe-signature", ',', "t", "v1", b"."),
        "paddle" => listed("paddle-signature", ';', "ts", "h1", b":"),
        "github" => {
            let expected = mac(key, &[body]);
            texts(&d.headers, &["x-hub-signature-256"])
                .iter()
                .filter_map(|v| v.trim().strip_prefix("sha256=").map(str::to_owned))
                .any(|v| hex_is(&v, &expected))
        }
        "shopify" => {
            let expected = mac(key, &[body]);
            texts(&d.headers, &["x-shopify-hmac-sha256"])
                .iter()
                .any(|v| {
                    LENIENT
                        .decode(v.trim())
                        .is_ok_and(|bytes| bytes == expected)
                })
        }
        "slack" => texts(&d.headers, &["x-slack-request-timestamp"])
            .iter()
            .filter(|t| fresh(t, d.now))
            .any(|t| {
                let expected = mac(key, &[b"v0:", t.as_bytes(), b":", body]);
                texts(&d.headers, &["x-slack-signature"])
                    .iter()
                    .filter_map(|v| v.trim().strip_prefix("v0=").map(str::to_owned))
                    .any(|v| hex_is(&v, &expected))
            }),
        other => panic!("no independent check for {other}"),
    }
}

/// Runs a future that needs no runtime (the layer with the in-memory store and a service that
/// answers at once) to its end.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1000 {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
    panic!("the layer's future did not finish without a runtime")
}

/// Signed deliveries for each target's corpus: `(target, input)`.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    const NOW: i64 = 1_700_000_000;
    let bodies: [&[u8]; 4] = [
        br#"{"type":"user.created","data":{"id":"user_1"}}"#,
        br#"{"id":"evt_1","event_id":"evt_1","type":"payment_intent.succeeded"}"#,
        b"",
        b"token=x&team_id=T1&command=%2Fdeploy",
    ];
    let mut seeds = Vec::new();
    let hmac_signer = StandardWebhooks::new(STANDARD_SECRET).unwrap();
    let ed25519_signer =
        StandardWebhooks::from_signing_key(&format!("whsk_{}", STANDARD.encode(ED25519_SEED)))
            .unwrap();
    for (n, body) in bodies.iter().enumerate() {
        let id = format!("msg_{n}");
        for signer in [&hmac_signer, &ed25519_signer] {
            let headers = signer.sign(&id, NOW, body).unwrap();
            let input = Delivery::encode(NOW + 10, &headers, body);
            seeds.push(("verify_standard", input.clone()));
            seeds.push(("layer", input));
            // The same under Svix's header names.
            let mut svix = HeaderMap::new();
            for (name, value) in &headers {
                let renamed = name.as_str().replacen("webhook-", "svix-", 1);
                svix.insert(
                    HeaderName::from_bytes(renamed.as_bytes()).unwrap(),
                    value.clone(),
                );
            }
            seeds.push(("verify_standard", Delivery::encode(NOW, &svix, body)));
        }
        for (_, scheme) in hmac_schemes() {
            let headers = scheme.sign(&id, NOW, body).unwrap();
            seeds.push(("verify_hmac", Delivery::encode(NOW + 5, &headers, body)));
        }
    }
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_webhook::scheme::Scheme;

    /// The independent checks agree with the crate on every seed, and a changed body breaks
    /// both: otherwise a target would report its own seeds, or check nothing.
    #[test]
    fn seeds_verify_both_ways_and_tampering_breaks_both() {
        for (target, input) in seeds() {
            let mut d = Delivery::parse(&input).unwrap();
            let check = |d: &Delivery| match target {
                "verify_hmac" => hmac_schemes().iter().any(|(name, scheme)| {
                    let ours = scheme.verify(&d.headers, &d.body, d.clock()).is_ok();
                    assert_eq!(ours, hmac_verifies(name, d), "{name}");
                    ours
                }),
                _ => {
                    let ours = standard().verify(&d.headers, &d.body, d.clock()).is_ok();
                    assert_eq!(ours, standard_verifies(d), "{target}");
                    ours
                }
            };
            assert!(check(&d), "{target} seed does not verify");
            d.body.push(b'!');
            assert!(!check(&d), "{target}: a changed body still verifies");
        }
    }
}
