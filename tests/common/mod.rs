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

/// Runs the whole conformance suite against the harness `$make` (an async expression).
#[macro_export]
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::store_conformance!(@tests $make;
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
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                if let Some(harness) = $make.await {
                    common::$name(&harness).await;
                }
            }
        )*
    };
}
