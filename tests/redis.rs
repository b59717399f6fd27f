//! `RedisStore`: the conformance suite, two replicas through the layer, and outages.
//!
//! Needs a Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`). Without one its tests are
//! reported as ignored, under a line that says why, or fail when `CI` is set.

mod common;

use std::time::Duration;

use common::proxy::{socket_addr, through, FaultProxy};
use common::Harness;
use tower_webhook::store::{Claim, ClaimToken, IdempotencyStore, RedisStore};

fn url() -> String {
    common::env_or("REDIS_URL", "redis://127.0.0.1:6379")
}

async fn connect(url: &str) -> Option<RedisStore> {
    match RedisStore::connect(url).await {
        Ok(store) => Some(store),
        Err(err) => common::unreachable("Redis", "REDIS_URL", url, err),
    }
}

struct Redis {
    store: RedisStore,
}

impl Harness for Redis {
    type Store = RedisStore;

    fn store(&self) -> RedisStore {
        self.store.clone()
    }

    async fn replica(&self) -> RedisStore {
        RedisStore::connect(&url()).await.unwrap()
    }

    async fn advance(&self, by: Duration) {
        // Redis expires keys on its own clock.
        tokio::time::sleep(by).await;
    }

    fn lease(&self) -> Duration {
        Duration::from_millis(200)
    }
}

async fn redis() -> Option<Redis> {
    Some(Redis {
        store: connect(&url()).await?,
    })
}

async fn two_replicas_sharing_one_redis_run_the_handler_once() {
    let (Some(a), Some(b)) = (connect(&url()).await, connect(&url()).await) else {
        return;
    };
    common::two_replicas_run_the_handler_once(a, b).await;
}

async fn prefixes_never_share_a_key() {
    let Some(store) = connect(&url()).await else {
        return;
    };
    // Joined as plain text, "a:" with "b:c" and "a:b:" with "c" would both be "a:b:c".
    let run = format!("t{}", ClaimToken::random().as_str());
    let outer = store.clone().with_prefix(format!("{run}:"));
    let inner = store.with_prefix(format!("{run}:b:"));
    assert!(matches!(
        outer.claim("b:c", Duration::from_secs(5)).await.unwrap(),
        Claim::Acquired(_)
    ));
    assert!(matches!(
        inner.claim("c", Duration::from_secs(5)).await.unwrap(),
        Claim::Acquired(_)
    ));
}

async fn keys_in_redis_are_bounded_and_carry_the_layer_name() {
    use tower::{Layer, ServiceExt};
    use tower_webhook::scheme::HmacScheme;
    let Some(store) = connect(&url()).await else {
        return;
    };
    let prefix = format!("t{}", ClaimToken::random().as_str());
    let github = HmacScheme::github("gh secret").unwrap();
    let service = tower_webhook::VerifyWebhookLayer::new(github.clone())
        .with_store(store.with_prefix(&prefix))
        .layer(common::counting(
            common::Calls::default(),
            http::StatusCode::OK,
        ));
    let body = br#"{"action":"opened"}"#;
    let id = "x".repeat(292 * 1024);
    let headers = github.sign(&id, 0, body).unwrap();
    let status = service
        .oneshot(common::request(headers, &body[..]))
        .await
        .unwrap()
        .status();
    assert_eq!(status, http::StatusCode::OK);

    let client = tower_webhook::store::redis::redis::Client::open(url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = tower_webhook::store::redis::redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        keys[0].starts_with(&format!("{prefix}:github:hb:")),
        "{}",
        keys[0]
    );
    assert!(keys[0].len() < 300, "{} bytes", keys[0].len());
}

/// A connection of the user's own, with no response timeout, to a Redis that stops
/// answering: the layer still answers 503 in time, and the claim that Redis takes once it
/// answers again is released, so the retry is handled at once rather than after the lease.
async fn a_stalled_redis_on_a_users_connection_answers_503_in_time() {
    use tower::{Layer, ServiceExt};
    use tower_webhook::store::redis::redis::{AsyncConnectionConfig, Client};
    if connect(&url()).await.is_none() {
        return;
    }
    let proxy = FaultProxy::start(socket_addr(&url(), 6379)).await;
    let connection = Client::open(through(&url(), proxy.addr()))
        .unwrap()
        .get_multiplexed_async_connection_with_config(
            &AsyncConnectionConfig::new().set_response_timeout(None),
        )
        .await
        .unwrap();
    let runs = common::PerId::default();
    let service = tower_webhook::VerifyWebhookLayer::new(common::scheme())
        .with_store(RedisStore::new(connection))
        .with_store_timeout(Duration::from_millis(300))
        .layer(runs.service(Duration::ZERO));
    let id = format!("msg_stall_{}", ClaimToken::random().as_str());

    proxy.down(common::proxy::Fault::Stall);
    common::answers_503_while_the_store_stalls(service.clone(), &id, &runs).await;

    proxy.up().await;
    // The stalled claim reaches Redis now and is released behind it; the lease (60 s) is far
    // longer than these retries.
    let mut status = http::StatusCode::TOO_MANY_REQUESTS;
    for _ in 0..50 {
        status = service
            .clone()
            .oneshot(common::signed(&id, "{}"))
            .await
            .unwrap()
            .status();
        if status == http::StatusCode::OK {
            break;
        }
        assert_eq!(status, http::StatusCode::TOO_MANY_REQUESTS);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, http::StatusCode::OK);
    assert_eq!(runs.runs(&id), 1);
}

async fn through_proxy() -> Option<(RedisStore, FaultProxy)> {
    let url = url();
    connect(&url).await?;
    let proxy = FaultProxy::start(socket_addr(&url, 6379)).await;
    let store = RedisStore::connect(&through(&url, proxy.addr()))
        .await
        .unwrap();
    Some((store, proxy))
}

async fn an_outage_answers_503_and_recovers() {
    if let Some((store, proxy)) = through_proxy().await {
        common::outages_answer_503_and_recover(store, &proxy).await;
    }
}

async fn a_retrying_sender_loses_nothing_through_outages() {
    if let Some((store, proxy)) = through_proxy().await {
        common::a_retrying_sender_loses_nothing_through_outages(store, &proxy).await;
    }
}

/// Whether the Redis at `REDIS_URL` answers.
fn probe() -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|err| err.to_string())?;
    runtime.block_on(async {
        RedisStore::connect(&url())
            .await
            .map(drop)
            .map_err(|err| err.to_string())
    })
}

fn main() -> std::process::ExitCode {
    let mut trials = store_conformance!(redis());
    trials.extend(trials![
        two_replicas_sharing_one_redis_run_the_handler_once,
        prefixes_never_share_a_key,
        keys_in_redis_are_bounded_and_carry_the_layer_name,
        a_stalled_redis_on_a_users_connection_answers_503_in_time,
        an_outage_answers_503_and_recovers,
        a_retrying_sender_loses_nothing_through_outages,
    ]);
    common::run_needing("Redis", "REDIS_URL", &url(), probe(), trials)
}
