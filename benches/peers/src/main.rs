//! tower-webhook beside its peers, side by side in one run:
//!
//!     cargo run --release --manifest-path benches/peers/Cargo.toml            # about 2 min
//!     cargo run --release --manifest-path benches/peers/Cargo.toml -- --quick  # a smoke run
//!
//! 1. Verification of one Standard Webhooks (Svix) delivery of 1 KiB, 64 KiB and 1 MiB:
//!    a raw HMAC-SHA256 (pre-keyed, the limit), tower-webhook's `Scheme::verify`, the `svix`
//!    crate and the `standardwebhooks` crate.
//! 2. Verification of one Stripe delivery: a raw HMAC, tower-webhook's `HmacScheme::stripe`,
//!    and `async-stripe-webhook`'s `construct_event` (which also parses the event).
//! 3. Over loopback HTTP, 32 keep-alive connections sending 1 KiB deliveries: a bare axum
//!    server, the same with `VerifyWebhookLayer` (no store), and with svix's verification by
//!    hand in the handler.
//!
//! Contenders run interleaved (round-robin, the order rotated each repetition) and every
//! ratio is taken within one repetition, then the median over repetitions is printed: the
//! machine may be shared and noisy, the ratios much less than the times.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use sha2::Sha256;
use tower_webhook::scheme::{HmacScheme, Scheme, StandardWebhooks};
use tower_webhook::VerifyWebhookLayer;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const STRIPE_SECRET: &str = "whsec_peers_stripe_test_secret";
const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";

/// How long a batch of calls of one contender lasts, about.
const BATCH: Duration = Duration::from_millis(20);

struct Settings {
    reps: usize,
    rounds: usize,
    requests: usize,
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let settings = if quick {
        Settings {
            reps: 5,
            rounds: 2,
            requests: 2_000,
        }
    } else {
        Settings {
            reps: 31,
            rounds: 7,
            requests: 10_000,
        }
    };
    verification(&settings);
    stripe(&settings);
    http(&settings);
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// A JSON object of exactly `size` bytes.
fn json_body(size: usize) -> Vec<u8> {
    let head = br#"{"type":"invoice.paid","pad":""#;
    let tail = br#""}"#;
    let mut body = head.to_vec();
    body.resize(size - tail.len(), b'x');
    body.extend_from_slice(tail);
    body
}

/// A Stripe event of `size` bytes, as `async-stripe-webhook` reads one.
fn stripe_body(size: usize) -> Vec<u8> {
    let head = br#"{"id":"evt_1PeersBenchEvent0000","object":"event","api_version":"2025-01-27.acacia","created":1700000000,"data":{"object":{"id":"cus_PeersBench","object":"customer","description":""#;
    let tail = br#""}},"livemode":false,"pending_webhooks":1,"request":{"id":null,"idempotency_key":null},"type":"treasury.received_debit.created"}"#;
    let mut body = head.to_vec();
    body.resize(size - tail.len(), b'x');
    body.extend_from_slice(tail);
    body
}

/// Standard Webhooks headers under Svix's names, which the `svix` crate reads.
fn svix_names(headers: &HeaderMap) -> HeaderMap {
    headers
        .iter()
        .map(|(name, value)| {
            let name = name.as_str().replacen("webhook-", "svix-", 1);
            (
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.clone(),
            )
        })
        .collect()
}

/// A contender: its name, and one call.
type Contender<'a> = (&'a str, Box<dyn Fn() + 'a>);

/// Nanoseconds per call of each contender in each repetition, interleaved.
fn race(contenders: &[Contender<'_>], reps: usize) -> Vec<Vec<f64>> {
    // Calls per batch, from a first run of each.
    let per_batch: Vec<u32> = contenders
        .iter()
        .map(|(_, call)| {
            let started = Instant::now();
            let mut calls = 0u32;
            while started.elapsed() < BATCH / 4 {
                call();
                calls += 1;
            }
            (calls * 4).max(1)
        })
        .collect();
    let mut times = vec![Vec::with_capacity(reps); contenders.len()];
    for rep in 0..reps {
        for turn in 0..contenders.len() {
            let at = (turn + rep) % contenders.len();
            let (_, call) = &contenders[at];
            let started = Instant::now();
            for _ in 0..per_batch[at] {
                call();
            }
            times[at].push(started.elapsed().as_nanos() as f64 / f64::from(per_batch[at]));
        }
    }
    times
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The median over repetitions of `a`'s time over `b`'s.
fn ratio(a: &[f64], b: &[f64]) -> f64 {
    median(a.iter().zip(b).map(|(a, b)| a / b).collect())
}

fn table(title: &str, contenders: &[Contender<'_>], times: &[Vec<f64>], versus: &[usize]) {
    print!("\n{title}\n\n| contender | ns per call |");
    for &v in versus {
        print!(" / {} |", contenders[v].0);
    }
    print!("\n| --- | ---: |");
    for _ in versus {
        print!(" ---: |");
    }
    println!();
    for (at, (name, _)) in contenders.iter().enumerate() {
        print!("| {name} | {:.0} |", median(times[at].clone()));
        for &v in versus {
            print!(" {:.2}x |", ratio(&times[at], &times[v]));
        }
        println!();
    }
}

/// The two contenders every table has: a raw HMAC-SHA256 of `signed` and `body` (the
/// limit), and tower-webhook's `scheme` verifying `body` with `headers`.
fn raw_and_ours<'a>(
    keyed: &'a Hmac<Sha256>,
    signed: &'a str,
    scheme: &'a dyn Scheme,
    headers: &'a HeaderMap,
    body: &'a [u8],
) -> Vec<Contender<'a>> {
    vec![
        (
            "raw HMAC-SHA256",
            Box::new(move || {
                let mut mac = keyed.clone();
                mac.update(signed.as_bytes());
                mac.update(black_box(body));
                black_box(mac.finalize());
            }),
        ),
        (
            "tower-webhook",
            Box::new(move || {
                black_box(
                    scheme
                        .verify(black_box(headers), black_box(body), SystemTime::now())
                        .unwrap(),
                );
            }),
        ),
    ]
}

fn verification(settings: &Settings) {
    let scheme = StandardWebhooks::new(SECRET).unwrap();
    let svix = svix::webhooks::Webhook::new(SECRET).unwrap();
    let standard = standardwebhooks::Webhook::new(SECRET).unwrap();
    let key = tower_webhook_key();
    let keyed = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    for size in [1024, 64 * 1024, 1024 * 1024] {
        let body = json_body(size);
        let timestamp = now();
        let headers = scheme.sign(ID, timestamp, &body).unwrap();
        let svix_headers = svix_names(&headers);
        // Each contender accepts the same delivery.
        scheme.verify(&headers, &body, SystemTime::now()).unwrap();
        svix.verify(&body, &svix_headers).unwrap();
        standard.verify(&body, &headers).unwrap();
        let signed = format!("{ID}.{timestamp}.");
        let mut contenders = raw_and_ours(&keyed, &signed, &scheme, &headers, &body);
        contenders.extend::<[Contender<'_>; 2]>([
            (
                "svix",
                Box::new(|| {
                    svix.verify(black_box(&body), black_box(&svix_headers))
                        .unwrap()
                }),
            ),
            (
                "standardwebhooks",
                Box::new(|| {
                    standard
                        .verify(black_box(&body), black_box(&headers))
                        .unwrap()
                }),
            ),
        ]);
        let times = race(&contenders, settings.reps);
        table(
            &format!("Standard Webhooks verification, {} KiB body", size / 1024),
            &contenders,
            &times,
            &[0, 2],
        );
    }
}

/// The key of [`SECRET`]: its base64 after `whsec_`.
fn tower_webhook_key() -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(&SECRET["whsec_".len()..])
        .unwrap()
}

fn stripe(settings: &Settings) {
    let scheme = HmacScheme::stripe(STRIPE_SECRET).unwrap();
    let keyed = Hmac::<Sha256>::new_from_slice(STRIPE_SECRET.as_bytes()).unwrap();
    for size in [1024, 64 * 1024] {
        let body = stripe_body(size);
        let timestamp = now();
        let headers = scheme.sign("", timestamp, &body).unwrap();
        let signature = headers["stripe-signature"].to_str().unwrap().to_owned();
        let text = std::str::from_utf8(&body).unwrap();
        scheme.verify(&headers, &body, SystemTime::now()).unwrap();
        stripe_webhook::Webhook::construct_event(text, &signature, STRIPE_SECRET)
            .expect("async-stripe-webhook accepts the delivery");
        let signed = format!("{timestamp}.");
        let mut contenders = raw_and_ours(&keyed, &signed, &scheme, &headers, &body);
        contenders.push((
            "async-stripe-webhook (verifies and parses)",
            Box::new(|| {
                black_box(
                    stripe_webhook::Webhook::construct_event(
                        black_box(text),
                        &signature,
                        STRIPE_SECRET,
                    )
                    .unwrap(),
                );
            }),
        ));
        let times = race(&contenders, settings.reps);
        table(
            &format!("Stripe verification, {} KiB body", size / 1024),
            &contenders,
            &times,
            &[0, 2],
        );
    }
}

/// Serves `app` on a loopback port of its own.
async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Sends `requests` signed deliveries over 32 keep-alive connections: requests per second.
async fn load(addr: std::net::SocketAddr, requests: &Arc<Vec<http::Request<Full<Bytes>>>>) -> f64 {
    const CONNECTIONS: usize = 32;
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    let started = Instant::now();
    for _ in 0..CONNECTIONS {
        let (requests, next) = (Arc::clone(requests), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            loop {
                let at = next.fetch_add(1, Ordering::Relaxed);
                let Some(request) = requests.get(at) else {
                    return;
                };
                let mut copy = http::Request::new(request.body().clone());
                *copy.method_mut() = request.method().clone();
                *copy.uri_mut() = request.uri().clone();
                *copy.headers_mut() = request.headers().clone();
                sender.ready().await.unwrap();
                let response = sender.send_request(copy).await.unwrap();
                assert_eq!(response.status(), StatusCode::NO_CONTENT);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    requests.len() as f64 / started.elapsed().as_secs_f64()
}

fn http(settings: &Settings) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let scheme = StandardWebhooks::new(SECRET).unwrap();
        let body = json_body(1024);
        let timestamp = now();
        let headers = svix_names(&scheme.sign(ID, timestamp, &body).unwrap());
        // Every server takes the same requests (Svix's header names, which all three read).
        let requests: Arc<Vec<_>> = Arc::new(
            (0..settings.requests)
                .map(|_| {
                    let mut request = http::Request::post("/webhooks")
                        .body(Full::new(Bytes::from(body.clone())))
                        .unwrap();
                    *request.headers_mut() = headers.clone();
                    request.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    request
                })
                .collect(),
        );
        let bare = serve(Router::new().route(
            "/webhooks",
            post(|body: Bytes| async move {
                black_box(body);
                StatusCode::NO_CONTENT
            }),
        ))
        .await;
        let layered = serve(
            Router::new()
                .route(
                    "/webhooks",
                    post(|event: tower_webhook::Event| async move {
                        black_box(event);
                        StatusCode::NO_CONTENT
                    }),
                )
                .route_layer(VerifyWebhookLayer::new(
                    StandardWebhooks::new(SECRET).unwrap(),
                )),
        )
        .await;
        let svix = Arc::new(svix::webhooks::Webhook::new(SECRET).unwrap());
        let by_hand = serve(Router::new().route(
            "/webhooks",
            post(move |headers: HeaderMap, body: Bytes| async move {
                match svix.verify(&body, &headers) {
                    Ok(()) => StatusCode::NO_CONTENT,
                    Err(_) => StatusCode::BAD_REQUEST,
                }
            }),
        ))
        .await;
        let servers = [
            ("bare axum", bare),
            ("axum + VerifyWebhookLayer, no store", layered),
            ("axum + svix's verify in the handler", by_hand),
        ];
        // A round of each to warm up.
        for (_, addr) in servers {
            load(addr, &requests).await;
        }
        let mut rates = vec![Vec::new(); servers.len()];
        for round in 0..settings.rounds {
            for turn in 0..servers.len() {
                let at = (turn + round) % servers.len();
                rates[at].push(load(servers[at].1, &requests).await);
            }
        }
        println!(
            "\nOver loopback HTTP: {} deliveries of 1 KiB over 32 connections, {} rounds\n",
            settings.requests, settings.rounds
        );
        println!("| server | requests/s | / bare axum |\n| --- | ---: | ---: |");
        for (at, (name, _)) in servers.iter().enumerate() {
            println!(
                "| {name} | {:.0} | {:.2}x |",
                median(rates[at].clone()),
                ratio(&rates[at], &rates[0])
            );
        }
    });
}
