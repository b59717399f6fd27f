//! Helpers shared by the integration tests, and the store conformance suite that every
//! backend runs (`store_conformance!`).
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower_webhook::scheme::StandardWebhooks;
use tower_webhook::store::{Claim, ClaimToken, IdempotencyStore};

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const OTHER_SECRET: &str = "whsec_dGhlIG90aGVyIHNlY3JldCBvZiAzMiBieXRlcyE=";

pub fn scheme() -> StandardWebhooks {
    StandardWebhooks::new(SECRET).unwrap()
}

pub fn now_unix() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// A POST of `body` with `headers`, as a sender would make it.
pub fn request(headers: HeaderMap, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    let mut request = Request::post("/webhooks")
        .body(Full::new(body.into()))
        .unwrap();
    *request.headers_mut() = headers;
    request
}

/// A delivery of `body` with id `id`, signed now with [`SECRET`].
pub fn signed(id: &str, body: &'static str) -> Request<Full<Bytes>> {
    let headers = scheme().sign(id, now_unix(), body.as_bytes()).unwrap();
    request(headers, body)
}

pub async fn body_text<B: http_body::Body>(response: Response<B>) -> String
where
    B::Error: std::fmt::Debug,
{
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Counts how often a handler ran.
#[derive(Clone, Default)]
pub struct Calls(Arc<AtomicUsize>);

impl Calls {
    pub fn hit(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A bare tower service that counts its calls and answers `status`.
pub fn counting(
    calls: Calls,
    status: StatusCode,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(move |_request: Request<Full<Bytes>>| {
        let calls = calls.clone();
        async move {
            calls.hit();
            let mut response = Response::new(Full::new(Bytes::from_static(b"handled")));
            *response.status_mut() = status;
            Ok::<_, Infallible>(response)
        }
    })
}

// ---------------------------------------------------------------------------------------
// The store conformance suite.

/// What the suite needs from a backend.
pub trait Harness: Send + Sync + Sized + 'static {
    type Store: IdempotencyStore + Clone;

    /// A handle on the store under test.
    fn store(&self) -> Self::Store;

    /// A second, independent instance on the same backend (its own connection or pool), as
    /// another replica would have.
    fn replica(&self) -> impl std::future::Future<Output = Self::Store> + Send;

    /// Lets `by` pass for the store's notion of time.
    fn advance(&self, by: Duration) -> impl std::future::Future<Output = ()> + Send;

    /// The shortest lease the backend keeps reliably; the suite's leases are multiples of it.
    fn lease(&self) -> Duration;
}

/// A key no other test run uses.
pub fn key(name: &str) -> String {
    format!("conformance:{name}:{}", ClaimToken::random().as_str())
}

async fn acquire<S: IdempotencyStore>(store: &S, key: &str, lease: Duration) -> ClaimToken {
    match store.claim(key, lease).await.unwrap() {
        Claim::Acquired(token) => token,
        other => panic!("expected a fresh claim of {key:?}, got {other:?}"),
    }
}

const WINDOW: Duration = Duration::from_secs(3600);

pub async fn fresh_claim<H: Harness>(h: &H) {
    let store = h.store();
    let k = key("fresh");
    acquire(&store, &k, h.lease()).await;
}

pub async fn claim_of_completed_key<H: Harness>(h: &H) {
    let store = h.store();
    let k = key("completed");
    let token = acquire(&store, &k, h.lease()).await;
    assert!(store.complete(&k, &token, WINDOW).await.unwrap());
    assert_eq!(store.claim(&k, h.lease()).await.unwrap(), Claim::Completed);
}

pub async fn claim_of_key_in_flight<H: Harness>(h: &H) {
    let store = h.store();
    let k = key("in-flight");
    acquire(&store, &k, h.lease() * 20).await;
    assert_eq!(store.claim(&k, h.lease()).await.unwrap(), Claim::InFlight);
}

pub async fn release_lets_the_next_claim_win<H: Harness>(h: &H) {
    let store = h.store();
    let k = key("released");
    let token = acquire(&store, &k, h.lease() * 20).await;
    assert!(store.release(&k, &token).await.unwrap());
    acquire(&store, &k, h.lease()).await;
}

pub async fn lease_expiry_lets_the_next_claim_win<H: Harness>(h: &H) {
    let store = h.store();
    let k = key("lease");
    let first = acquire(&store, &k, h.lease()).await;
    h.advance(h.lease() * 3).await;
    let second = acquire(&store, &k, h.lease() * 20).await;
    assert_ne!(first, second);
}

pub async fn stale_tokens_do_nothing<H: Harness>(h: &H) {
    let store = h.store();
    let k = key("stale");
    let stale = acquire(&store, &k, h.lease()).await;
    h.advance(h.lease() * 3).await;
    let current = acquire(&store, &k, h.lease() * 20).await;
    assert!(!store.complete(&k, &stale, WINDOW).await.unwrap());
    assert!(!store.release(&k, &stale).await.unwrap());
    // The current claim still holds the key.
    assert_eq!(store.claim(&k, h.lease()).await.unwrap(), Claim::InFlight);
    assert!(store.complete(&k, &current, WINDOW).await.unwrap());
    assert_eq!(store.claim(&k, h.lease()).await.unwrap(), Claim::Completed);
    // A token that never held the key does nothing either.
    assert!(!store.release(&k, &ClaimToken::random()).await.unwrap());
    assert_eq!(store.claim(&k, h.lease()).await.unwrap(), Claim::Completed);
}

pub async fn expired_lease_cannot_complete<H: Harness>(h: &H) {
    let store = h.store();
    let k = key("late");
    let token = acquire(&store, &k, h.lease()).await;
    h.advance(h.lease() * 3).await;
    assert!(!store.complete(&k, &token, WINDOW).await.unwrap());
    acquire(&store, &k, h.lease()).await;
}

pub async fn completed_keys_are_forgotten_after_the_window<H: Harness>(h: &H) {
    let store = h.store();
    let k = key("window");
    let token = acquire(&store, &k, h.lease() * 20).await;
    assert!(store.complete(&k, &token, h.lease()).await.unwrap());
    assert_eq!(store.claim(&k, h.lease()).await.unwrap(), Claim::Completed);
    h.advance(h.lease() * 3).await;
    acquire(&store, &k, h.lease()).await;
}

async fn race(
    stores: Vec<impl IdempotencyStore + Clone>,
    key: &str,
    claims: usize,
    lease: Duration,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..claims {
        let store = stores[i % stores.len()].clone();
        let key = key.to_owned();
        tasks.spawn(async move { store.claim(&key, lease).await.unwrap() });
    }
    let mut won = 0;
    while let Some(claim) = tasks.join_next().await {
        match claim.unwrap() {
            Claim::Acquired(_) => won += 1,
            Claim::InFlight => {}
            Claim::Completed => panic!("nothing completed the key"),
        }
    }
    assert_eq!(won, 1, "exactly one of {claims} concurrent claims must win");
}

pub async fn concurrent_claims_one_winner<H: Harness>(h: &H) {
    race(vec![h.store()], &key("race"), 200, h.lease() * 100).await;
}

pub async fn concurrent_claims_across_replicas_one_winner<H: Harness>(h: &H) {
    let replicas = vec![h.replica().await, h.replica().await];
    race(replicas, &key("race-replicas"), 200, h.lease() * 100).await;
}

pub async fn awkward_keys_round_trip<H: Harness>(h: &H) {
    let store = h.store();
    let base = key("awkward");
    let awkward = [
        format!("{base}'\"; DROP TABLE webhook_claims; --"),
        format!("{base}]] redis.call('FLUSHALL') --[["),
        format!("{base} %s %d \\ \0 \n\t"),
        format!("{base}ünïcødé ✓ 😀 日本"),
        format!("{base}{}", "k".repeat(1024)),
        format!("{base}*?[a-z]{{}}"),
    ];
    for k in &awkward {
        let token = acquire(&store, k, h.lease() * 20).await;
        assert_eq!(
            store.claim(k, h.lease()).await.unwrap(),
            Claim::InFlight,
            "{k:?}"
        );
        assert!(store.complete(k, &token, WINDOW).await.unwrap(), "{k:?}");
        assert_eq!(
            store.claim(k, h.lease()).await.unwrap(),
            Claim::Completed,
            "{k:?}"
        );
    }
    // Keys that differ only after their awkward part stay apart.
    acquire(
        &store,
        &format!("{base}'\"; DROP TABLE webhook_claims; --x"),
        h.lease(),
    )
    .await;
}

/// The whole conformance suite against the harness `$make` (an async expression), as
/// trials for [`run`] or [`run_needing`].
#[macro_export]
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::store_conformance!(@trials $make;
            fresh_claim,
            claim_of_completed_key,
            claim_of_key_in_flight,
            release_lets_the_next_claim_win,
            lease_expiry_lets_the_next_claim_win,
            stale_tokens_do_nothing,
            expired_lease_cannot_complete,
            completed_keys_are_forgotten_after_the_window,
            concurrent_claims_one_winner,
            concurrent_claims_across_replicas_one_winner,
            awkward_keys_round_trip,
            layers_sharing_a_store_keep_apart,
            huge_durations_still_dedupe,
        )
    };
    (@trials $make:expr; $($name:ident),* $(,)?) => {
        vec![$(
            common::trial(stringify!($name), || async {
                let harness = $make.await.expect("the store under test");
                common::$name(&harness).await;
            })
        ),*]
    };
}

/// Trials of async test functions, each named after its function.
#[macro_export]
macro_rules! trials {
    ($($test:ident),* $(,)?) => {
        [$(common::trial(stringify!($test), $test)),*]
    };
}

/// Says in one line, rather than with a backtrace, that a handler panicked on purpose: a
/// panic whose message ends with `planned`. Every other panic is reported as usual.
pub fn quiet_planned_panics(planned: &'static str) {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("");
        if message.ends_with(planned) {
            eprintln!("(a handler panicked on purpose: {message})");
        } else {
            report(info);
        }
    }));
}

/// An async test, run on a runtime of its own with four worker threads.
pub fn trial<F, Fut>(name: &str, test: F) -> libtest_mimic::Trial
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    libtest_mimic::Trial::test(name, move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("a Tokio runtime")
            .block_on(test());
        Ok(())
    })
}

/// Runs `trials` as a test binary does, with the test harness's arguments and output.
pub fn run(trials: Vec<libtest_mimic::Trial>) -> std::process::ExitCode {
    libtest_mimic::run(&libtest_mimic::Arguments::from_args(), trials).exit_code()
}

/// Runs `trials`, which need `server` at `url`: where `reachable` says it cannot be reached,
/// they are reported as ignored (`test ... ignored`, and counted so in the closing line)
/// under a line that says why and how to run them, or fail when `CI` is set.
pub fn run_needing(
    server: &str,
    var: &str,
    url: &str,
    reachable: Result<(), String>,
    trials: Vec<libtest_mimic::Trial>,
) -> std::process::ExitCode {
    run(needing(server, var, url, reachable, trials))
}

/// `trials`, which need `server` at `url`, marked ignored where it cannot be reached (under
/// a line that says why), or a failure when `CI` is set.
pub fn needing(
    server: &str,
    var: &str,
    url: &str,
    reachable: Result<(), String>,
    trials: Vec<libtest_mimic::Trial>,
) -> Vec<libtest_mimic::Trial> {
    match reachable {
        Ok(()) => trials,
        Err(err) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{server} at {url} is unreachable and CI is set: {err}"
            );
            println!(
                "\nSKIPPED: {server} at {url} is unreachable ({err}); its {} tests are ignored.\n\
                 Start it, or point {var} at one, to run them.",
                trials.len()
            );
            trials
                .into_iter()
                .map(|trial| trial.with_ignored_flag(true))
                .collect()
        }
    }
}

// ---------------------------------------------------------------------------------------
// Servers, replicas and faults, for the stores that talk to one.

pub mod proxy;

pub mod webdriver;

/// Sends `request` over a connection of its own to `addr`: the status, headers and body.
pub async fn http(
    addr: std::net::SocketAddr,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, HeaderMap, Bytes), String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|err| err.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|err| err.to_string())?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| err.to_string())?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|err| err.to_string())?
        .to_bytes();
    Ok((parts.status, parts.headers, body))
}

/// Sends `request` (its URI absolute: HTTP/2 has no `Host`, the authority is the URI's)
/// over one HTTP/2 connection, prior knowledge, to `addr`.
#[allow(dead_code)]
pub async fn http2(
    addr: std::net::SocketAddr,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, HeaderMap, Bytes), String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|err| err.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .map_err(|err| err.to_string())?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| err.to_string())?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|err| err.to_string())?
        .to_bytes();
    Ok((parts.status, parts.headers, body))
}

#[cfg(all(
    feature = "inbox-sqlite",
    feature = "inbox-postgres",
    feature = "test-util"
))]
pub mod inbox;

/// The built-in HMAC scheme named `name`, with `secret`.
pub fn hmac_scheme(name: &str, secret: &str) -> tower_webhook::scheme::HmacScheme {
    match name {
        "stripe" => tower_webhook::scheme::HmacScheme::stripe(secret),
        "github" => tower_webhook::scheme::HmacScheme::github(secret),
        "shopify" => tower_webhook::scheme::HmacScheme::shopify(secret),
        "slack" => tower_webhook::scheme::HmacScheme::slack(secret),
        "paddle" => tower_webhook::scheme::HmacScheme::paddle(secret),
        "zoom" => tower_webhook::scheme::HmacScheme::zoom(secret),
        "meta" => tower_webhook::scheme::HmacScheme::meta(secret),
        "lemon-squeezy" => tower_webhook::scheme::HmacScheme::lemon_squeezy(secret),
        "woocommerce" => tower_webhook::scheme::HmacScheme::woocommerce(secret),
        "typeform" => tower_webhook::scheme::HmacScheme::typeform(secret),
        "calendly" => tower_webhook::scheme::HmacScheme::calendly(secret),
        "pagerduty" => tower_webhook::scheme::HmacScheme::pagerduty(secret),
        "dropbox" => tower_webhook::scheme::HmacScheme::dropbox(secret),
        "intercom" => tower_webhook::scheme::HmacScheme::intercom(secret),
        "vercel" => tower_webhook::scheme::HmacScheme::vercel(secret),
        "twitch" => tower_webhook::scheme::HmacScheme::twitch(secret),
        "linear" => tower_webhook::scheme::HmacScheme::linear(secret),
        "coinbase-commerce" => tower_webhook::scheme::HmacScheme::coinbase_commerce(secret),
        other => panic!("no scheme {other}"),
    }
    .unwrap()
}

/// The PostgreSQL the tests use: `DATABASE_URL`, by default the local server's `test`.
pub fn database_url() -> String {
    env_or("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
}

/// The value of `var`, or `default`.
pub fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// What a test does when its server cannot be reached: fail under CI, else skip loudly.
pub fn unreachable<T>(
    server: &str,
    var: &str,
    url: &str,
    err: impl std::fmt::Display,
) -> Option<T> {
    assert!(
        std::env::var_os("CI").is_none(),
        "{server} at {url} is unreachable and CI is set: {err}"
    );
    eprintln!(
        "\n*** SKIPPED: {server} at {url} is unreachable ({err}).\n*** Start it, or point {var} at one, to run this test.\n"
    );
    None
}

/// A handler that counts its runs per event id, holding each claim a little while so that
/// concurrent copies overlap.
#[derive(Clone, Default)]
pub struct PerId(Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>);

impl PerId {
    pub fn service(
        &self,
        hold: Duration,
    ) -> impl tower::Service<
        Request<Full<Bytes>>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Send,
    > + Clone {
        let runs = self.clone();
        tower::service_fn(move |request: Request<Full<Bytes>>| {
            let runs = runs.clone();
            async move {
                let id = request
                    .extensions()
                    .get::<tower_webhook::Event>()
                    .unwrap()
                    .id()
                    .to_owned();
                *runs.0.lock().unwrap().entry(id).or_default() += 1;
                tokio::time::sleep(hold).await;
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
            }
        })
    }

    pub fn runs(&self, id: &str) -> usize {
        self.0.lock().unwrap().get(id).copied().unwrap_or(0)
    }

    pub fn all(&self) -> std::collections::HashMap<String, usize> {
        self.0.lock().unwrap().clone()
    }
}

/// Two layers, as two replicas with their own store instances on one backend, receive 50
/// concurrent copies of one delivery between them: the handler runs exactly once.
pub async fn two_replicas_run_the_handler_once<S: IdempotencyStore + Clone>(a: S, b: S) {
    use tower::{Layer, ServiceExt};
    let runs = PerId::default();
    let replicas = [a, b].map(|store| {
        tower_webhook::VerifyWebhookLayer::new(scheme())
            .with_store(store)
            .layer(runs.service(Duration::from_millis(100)))
    });
    let id = format!("msg_replicas_{}", ClaimToken::random().as_str());
    let body = r#"{"type":"order.paid"}"#;
    let headers = scheme().sign(&id, now_unix(), body.as_bytes()).unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let service = replicas[i % 2].clone();
        let request = request(headers.clone(), body);
        tasks.spawn(async move { service.oneshot(request).await.unwrap().status() });
    }
    while let Some(status) = tasks.join_next().await {
        let status = status.unwrap();
        assert!(
            status == StatusCode::OK || status == StatusCode::TOO_MANY_REQUESTS,
            "{status}"
        );
    }
    assert_eq!(runs.runs(&id), 1);
}

/// Deliveries through a store whose connection fails: 503 with `Retry-After` while the
/// proxy is down, never a 4xx, and handled again once it is up, with nothing restarted.
pub async fn outages_answer_503_and_recover<S: IdempotencyStore + Clone>(
    store: S,
    proxy: &proxy::FaultProxy,
) {
    use tower::{Layer, ServiceExt};
    let runs = PerId::default();
    let service = tower_webhook::VerifyWebhookLayer::new(scheme())
        .with_store(store)
        .layer(runs.service(Duration::ZERO));
    let send = |id: String| {
        let service = service.clone();
        async move {
            let response = service.oneshot(signed(&id, r#"{"n":1}"#)).await.unwrap();
            (
                response.status(),
                response.headers().get(http::header::RETRY_AFTER).cloned(),
            )
        }
    };
    let run = ClaimToken::random();
    let (status, _) = send(format!("msg_before_{}", run.as_str())).await;
    assert_eq!(status, StatusCode::OK);

    for (round, fault) in [
        proxy::Fault::Refuse,
        proxy::Fault::Cut,
        proxy::Fault::Refuse,
    ]
    .into_iter()
    .enumerate()
    {
        proxy.down(fault);
        for attempt in 0..3 {
            let id = format!("msg_down_{round}_{attempt}_{}", run.as_str());
            let (status, retry_after) = send(id.clone()).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{fault:?}");
            assert!(retry_after.is_some(), "a 503 carries Retry-After");
            assert_eq!(
                runs.runs(&id),
                0,
                "the handler must not run while the store is down"
            );
        }
        proxy.up().await;
        let id = format!("msg_up_{round}_{}", run.as_str());
        let (status, _) = send(id.clone()).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "the first delivery after recovery is handled ({fault:?})"
        );
        assert_eq!(runs.runs(&id), 1);
    }
}

/// A sender that retries every non-2xx, and sends every event once more after it succeeds
/// (senders deliver at least once), delivers 500 distinct events while the proxy goes down
/// and up. Every event is handled; none is handled twice except where a completion could not
/// be written.
pub async fn a_retrying_sender_loses_nothing_through_outages<S: IdempotencyStore + Clone>(
    store: S,
    proxy: &proxy::FaultProxy,
) {
    use tower::{Layer, ServiceExt};
    const EVENTS: usize = 500;
    let runs = PerId::default();
    let layer = tower_webhook::VerifyWebhookLayer::new(scheme())
        .with_store(store)
        // A claim orphaned by a cut connection blocks its event for one lease; keep it short.
        .with_lease(Duration::from_secs(1));
    let counters = layer.stats();
    let service = layer.layer(runs.service(Duration::from_millis(2)));
    let run = ClaimToken::random();
    let ids: Vec<String> = (0..EVENTS)
        .map(|i| format!("msg_sender_{i}_{}", run.as_str()))
        .collect();

    let deliveries = {
        let ids = ids.clone();
        tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for chunk in ids.chunks(EVENTS / 20) {
                let (chunk, service) = (chunk.to_vec(), service.clone());
                tasks.spawn(async move {
                    for id in chunk {
                        for copy in 0..2 {
                            let mut attempts = 0;
                            loop {
                                attempts += 1;
                                assert!(attempts < 2000, "{id} copy {copy} was never acknowledged");
                                let status = service
                                    .clone()
                                    .oneshot(signed(&id, r#"{"type":"tick"}"#))
                                    .await
                                    .unwrap()
                                    .status();
                                if status.is_success() {
                                    break;
                                }
                                assert!(
                                    status == StatusCode::SERVICE_UNAVAILABLE
                                        || status == StatusCode::TOO_MANY_REQUESTS,
                                    "{id}: a sender would drop the event on {status}"
                                );
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.unwrap();
            }
        })
    };

    // The first outage starts at once: a fast store lets the sender finish within the first
    // few hundred milliseconds, and the outages must be felt.
    for round in 0..6 {
        proxy.down(if round % 2 == 0 {
            proxy::Fault::Cut
        } else {
            proxy::Fault::Refuse
        });
        tokio::time::sleep(Duration::from_millis(150)).await;
        proxy.up().await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    tokio::time::timeout(Duration::from_secs(240), deliveries)
        .await
        .expect("the sender finished")
        .unwrap();

    let all = runs.all();
    let twice: usize = ids
        .iter()
        .map(|id| all.get(id).copied().unwrap_or(0).saturating_sub(1))
        .sum();
    for id in &ids {
        assert!(all.get(id).copied().unwrap_or(0) >= 1, "{id} was lost");
    }
    let snapshot = counters.snapshot();
    let unrecorded = usize::try_from(snapshot.completion_failures).unwrap();
    assert!(
        twice <= unrecorded,
        "{twice} extra runs, but only {unrecorded} completions went unrecorded"
    );
    assert!(
        snapshot.store_errors > 0,
        "the outages were felt: {snapshot:?}"
    );
    eprintln!("outage run: {snapshot:?}, extra runs {twice}");
}

/// A GitHub route and a Stripe route share `store`: a captured GitHub delivery replayed under
/// the id of a real Stripe event must not make that event a duplicate. Even keyed on the id
/// alone, each layer's keys carry its name.
pub async fn layers_sharing_a_store_keep_apart<H: Harness>(h: &H) {
    use tower::{Layer, ServiceExt};
    use tower_webhook::scheme::HmacScheme;
    use tower_webhook::{IdSource, VerifyWebhookLayer};
    let store = h.store();
    let github = HmacScheme::github("gh secret").unwrap();
    let stripe = HmacScheme::stripe("whsec_stripe").unwrap();
    let (github_calls, stripe_calls) = (Calls::default(), Calls::default());
    let github_route = VerifyWebhookLayer::new(github.clone())
        .with_store(store.clone())
        .with_id_source(IdSource::scheme().without_body_hash())
        .layer(counting(github_calls.clone(), StatusCode::OK));
    let stripe_route = VerifyWebhookLayer::new(stripe.clone())
        .with_store(store)
        .layer(counting(stripe_calls.clone(), StatusCode::OK));

    let id = format!("evt_{}", ClaimToken::random().as_str());
    let captured: &'static [u8] = br#"{"action":"opened"}"#;
    let replay = github.sign(&id, 0, captured).unwrap();
    let status = github_route
        .oneshot(request(replay, captured))
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    let body = format!(r#"{{"id":"{id}","type":"payment_intent.succeeded"}}"#);
    let real = stripe.sign("", now_unix(), body.as_bytes()).unwrap();
    let response = stripe_route.oneshot(request(real, body)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        !response
            .headers()
            .contains_key(tower_webhook::DUPLICATE_HEADER),
        "the Stripe event was taken for a duplicate of the GitHub replay"
    );
    assert_eq!((github_calls.get(), stripe_calls.get()), (1, 1));
}

/// A lease and a dedup window of `Duration::MAX` still dedupe: they are cut to what the
/// store keeps, rather than making every completion fail.
pub async fn huge_durations_still_dedupe<H: Harness>(h: &H) {
    use tower::{Layer, ServiceExt};
    let store = h.store();
    let calls = Calls::default();
    let layer = tower_webhook::VerifyWebhookLayer::new(scheme())
        .with_store(store)
        .with_lease(Duration::MAX)
        .with_dedup_window(Duration::MAX);
    let stats = layer.stats();
    let service = layer.layer(counting(calls.clone(), StatusCode::OK));
    let id = format!("msg_max_{}", ClaimToken::random().as_str());
    for copy in 0..2 {
        let response = service.clone().oneshot(signed(&id, "{}")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response
                .headers()
                .contains_key(tower_webhook::DUPLICATE_HEADER),
            copy == 1
        );
    }
    assert_eq!(calls.get(), 1);
    assert_eq!(stats.snapshot().completion_failures, 0);
}

/// Sends a delivery of `id` through `service` while its store is stalled: it must be answered
/// 503 with `Retry-After` while the stall lasts (the caller ends it only afterwards, so no
/// timing decides this; 30 s is only a guard against a hang), and the handler must not run.
pub async fn answers_503_while_the_store_stalls<S, B>(service: S, id: &str, runs: &PerId)
where
    S: tower::Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    use tower::ServiceExt;
    let response = tokio::time::timeout(Duration::from_secs(30), service.oneshot(signed(id, "{}")))
        .await
        .expect("answered while the store was stalled")
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key(http::header::RETRY_AFTER));
    assert_eq!(runs.runs(id), 0);
}
