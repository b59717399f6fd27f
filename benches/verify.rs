//! Verification throughput against the raw HMAC-SHA256 limit, and the whole layer against
//! the bare inner service.
//!
//!     cargo bench --bench verify

// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use hmac::{Hmac, Mac};
use http::{Request, Response};
use http_body_util::Full;
use sha2::Sha256;
use tower::{Layer, ServiceExt};
use tower_webhook::scheme::{Scheme, StandardWebhooks};
use tower_webhook::store::MemoryStore;
use tower_webhook::VerifyWebhookLayer;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn verify(c: &mut Criterion) {
    let scheme = StandardWebhooks::new(SECRET).unwrap();
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut group = c.benchmark_group("verify");
    for size in [1024, 64 * 1024, 1024 * 1024] {
        let body = vec![b'x'; size];
        let ts = now();
        let headers = scheme.sign("msg_bench", ts, &body).unwrap();
        let at = SystemTime::now();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("raw_hmac_sha256", size),
            &body,
            |b, body| {
                b.iter(|| {
                    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
                    mac.update(b"msg_bench.");
                    mac.update(ts.to_string().as_bytes());
                    mac.update(b".");
                    mac.update(black_box(body));
                    mac.finalize().into_bytes()
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("standard_webhooks", size),
            &body,
            |b, body| {
                b.iter(|| {
                    scheme
                        .verify(black_box(&headers), black_box(body), at)
                        .unwrap()
                });
            },
        );
    }
    group.finish();
}

/// `Scheme::verify` at 1 KiB as the request carries more headers than the sender's three:
/// the scheme walks the headers up to 12 names and looks each up past that, so the cost
/// grows a little to 12 and then stays.
fn headers(c: &mut Criterion) {
    let scheme = StandardWebhooks::new(SECRET).unwrap();
    let body = vec![b'x'; 1024];
    let signed = scheme.sign("msg_bench", now(), &body).unwrap();
    let at = SystemTime::now();
    let mut group = c.benchmark_group("verify_1KiB_headers");
    for total in [3, 10, 12, 13, 40] {
        let mut headers = signed.clone();
        let common = [
            "host",
            "user-agent",
            "content-type",
            "content-length",
            "accept",
        ];
        for n in 0..total - signed.len() {
            let name = match common.get(n) {
                Some(name) => http::HeaderName::from_static(name),
                None => http::HeaderName::try_from(format!("x-forwarded-{n}")).unwrap(),
            };
            headers.insert(name, http::HeaderValue::from_static("1"));
        }
        group.bench_with_input(
            BenchmarkId::from_parameter(total),
            &headers,
            |b, headers| {
                b.iter(|| {
                    scheme
                        .verify(black_box(headers), black_box(&body), at)
                        .unwrap()
                });
            },
        );
    }
    group.finish();
}

fn layer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let scheme = StandardWebhooks::new(SECRET).unwrap();
    let handler = tower::service_fn(|_request: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    });
    let service = VerifyWebhookLayer::new(scheme.clone())
        .with_store(MemoryStore::new())
        .layer(handler);
    let body = Bytes::from(vec![b'x'; 1024]);
    let ts = now();
    let next = AtomicU64::new(0);
    let request = || {
        let id = format!("msg_{}", next.fetch_add(1, Ordering::Relaxed));
        let mut request = Request::post("/webhooks")
            .body(Full::new(body.clone()))
            .unwrap();
        *request.headers_mut() = scheme.sign(&id, ts, &body).unwrap();
        request
    };

    let mut group = c.benchmark_group("layer_1KiB");
    group.throughput(Throughput::Elements(1));
    group.bench_function("bare_inner_service", |b| {
        b.iter_batched(
            request,
            |req| runtime.block_on(handler.oneshot(req)).unwrap(),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("verify_and_dedup_memory_store", |b| {
        b.iter_batched(
            request,
            |req| runtime.block_on(service.clone().oneshot(req)).unwrap(),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

/// Every scheme at 1 KiB and 64 KiB, beside the raw HMAC-SHA256 of the same bytes in the
/// `verify` group.
fn schemes(c: &mut Criterion) {
    use tower_webhook::scheme::HmacScheme;
    let at = SystemTime::now();
    let ts = now();
    let mut group = c.benchmark_group("schemes");
    for size in [1024, 64 * 1024] {
        let body = vec![b'x'; size];
        group.throughput(Throughput::Bytes(size as u64));
        let standard = StandardWebhooks::new(SECRET).unwrap();
        let hmac: [(&str, HmacScheme); 17] = [
            ("stripe", HmacScheme::stripe("whsec_bench").unwrap()),
            ("github", HmacScheme::github("bench").unwrap()),
            ("shopify", HmacScheme::shopify("bench").unwrap()),
            ("slack", HmacScheme::slack("bench").unwrap()),
            ("paddle", HmacScheme::paddle("bench").unwrap()),
            ("zoom", HmacScheme::zoom("bench").unwrap()),
            ("meta", HmacScheme::meta("bench").unwrap()),
            ("lemon_squeezy", HmacScheme::lemon_squeezy("bench").unwrap()),
            ("woocommerce", HmacScheme::woocommerce("bench").unwrap()),
            ("typeform", HmacScheme::typeform("bench").unwrap()),
            ("calendly", HmacScheme::calendly("bench").unwrap()),
            ("pagerduty", HmacScheme::pagerduty("bench").unwrap()),
            ("dropbox", HmacScheme::dropbox("bench").unwrap()),
            ("intercom", HmacScheme::intercom("bench").unwrap()),
            ("vercel", HmacScheme::vercel("bench").unwrap()),
            ("twitch", HmacScheme::twitch("bench").unwrap()),
            (
                "coinbase_commerce",
                HmacScheme::coinbase_commerce("bench").unwrap(),
            ),
        ];
        let headers = standard.sign("msg_bench", ts, &body).unwrap();
        group.bench_with_input(
            BenchmarkId::new("standard_webhooks", size),
            &body,
            |b, body| {
                b.iter(|| {
                    standard
                        .verify(black_box(&headers), black_box(body), at)
                        .unwrap()
                });
            },
        );
        for (name, scheme) in &hmac {
            let headers = scheme.sign("delivery-bench", ts, &body).unwrap();
            group.bench_with_input(BenchmarkId::new(*name, size), &body, |b, body| {
                b.iter(|| {
                    scheme
                        .verify(black_box(&headers), black_box(body), at)
                        .unwrap()
                });
            });
        }
        #[cfg(feature = "ed25519")]
        {
            use ed25519_dalek::Verifier as _;
            let seed = "whsk_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwAAAAAAAAAAA=";
            let v1a = StandardWebhooks::from_signing_key(seed).unwrap();
            let headers = v1a.sign("msg_bench", ts, &body).unwrap();
            group.bench_with_input(
                BenchmarkId::new("standard_webhooks_v1a", size),
                &body,
                |b, body| {
                    b.iter(|| {
                        v1a.verify(black_box(&headers), black_box(body), at)
                            .unwrap()
                    });
                },
            );
            // The limit: one Ed25519 verification of the same message, already in one buffer.
            let key_bytes: [u8; 32] = base64::engine::general_purpose::STANDARD
                .decode(&seed[5..])
                .unwrap()
                .try_into()
                .unwrap();
            let signing = ed25519_dalek::SigningKey::from_bytes(&key_bytes);
            let mut message = format!("msg_bench.{ts}.").into_bytes();
            message.extend_from_slice(&body);
            let signature = ed25519_dalek::Signer::sign(&signing, &message);
            let verifying = signing.verifying_key();
            group.bench_with_input(
                BenchmarkId::new("raw_ed25519", size),
                &message,
                |b, message| {
                    b.iter(|| verifying.verify(black_box(message), &signature).unwrap());
                },
            );
        }
    }
    group.finish();
}

/// The senders whose verification is not the engine's (a URL signed, a signature in the
/// body, a token) at 1 KiB and 64 KiB, beside the raw HMAC of their hash: SHA-1 for Twilio.
fn other_schemes(c: &mut Criterion) {
    use tower_webhook::scheme::{HubSpot, Mailgun, Scheme, SharedToken, Square, Twilio};
    let mut group = c.benchmark_group("other_schemes");
    let at = SystemTime::now();
    let url = "https://example.com/webhooks";
    for size in [1024, 64 * 1024] {
        let body = vec![b'x'; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("raw_hmac_sha1", size), &body, |b, body| {
            b.iter(|| {
                let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"bench").unwrap();
                mac.update(url.as_bytes());
                mac.update(black_box(body));
                mac.finalize().into_bytes()
            });
        });
        let request = |headers: http::HeaderMap| {
            let mut request = http::Request::post("/webhooks").body(()).unwrap();
            *request.headers_mut() = headers;
            request.into_parts().0
        };
        let twilio = Twilio::new("bench", url).unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "x-twilio-signature",
            http::HeaderValue::from_str(&twilio.signature(url, &body)).unwrap(),
        );
        let parts = request(headers);
        group.bench_with_input(BenchmarkId::new("twilio", size), &body, |b, body| {
            b.iter(|| {
                twilio
                    .verify_request(black_box(&parts), black_box(body), at)
                    .unwrap()
            });
        });
        let square = Square::new("bench", url).unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "x-square-hmacsha256-signature",
            http::HeaderValue::from_str(&square.signature(url, &body)).unwrap(),
        );
        let parts = request(headers);
        group.bench_with_input(BenchmarkId::new("square", size), &body, |b, body| {
            b.iter(|| {
                square
                    .verify_request(black_box(&parts), black_box(body), at)
                    .unwrap()
            });
        });
        let hubspot = HubSpot::new("bench", url).unwrap();
        let ms = now() * 1000;
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "x-hubspot-signature-v3",
            http::HeaderValue::from_str(&hubspot.signature(&http::Method::POST, url, &body, ms))
                .unwrap(),
        );
        headers.insert("x-hubspot-request-timestamp", http::HeaderValue::from(ms));
        let parts = request(headers);
        group.bench_with_input(BenchmarkId::new("hubspot", size), &body, |b, body| {
            b.iter(|| {
                hubspot
                    .verify_request(black_box(&parts), black_box(body), at)
                    .unwrap()
            });
        });
        let gitlab = SharedToken::gitlab("bench token").unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "x-gitlab-token",
            http::HeaderValue::from_static("bench token"),
        );
        headers.insert("x-gitlab-event-uuid", http::HeaderValue::from_static("u"));
        group.bench_with_input(BenchmarkId::new("gitlab", size), &body, |b, body| {
            b.iter(|| {
                gitlab
                    .verify(black_box(&headers), black_box(body), at)
                    .unwrap()
            });
        });
    }
    // Mailgun signs a token and a time: its cost is reading them from the JSON body.
    let mailgun = Mailgun::new("bench").unwrap();
    let body = serde_json::json!({
        "signature": mailgun.signature(now(), "token"),
        "event-data": {"event": "delivered", "padding": "x".repeat(900)},
    })
    .to_string()
    .into_bytes();
    group.throughput(Throughput::Bytes(body.len() as u64));
    let headers = http::HeaderMap::new();
    group.bench_with_input(BenchmarkId::new("mailgun", body.len()), &body, |b, body| {
        b.iter(|| {
            mailgun
                .verify(black_box(&headers), black_box(body), at)
                .unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches, verify, headers, schemes, other_schemes, layer);
criterion_main!(benches);
