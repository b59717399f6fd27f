//! `RedisStore`: the conformance suite, two replicas through the layer, and outages.
//!
//! Needs a Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`). Without one the tests
//! skip with a message, or fail when `CI` is set.
#![cfg(feature = "redis")]

mod common;

use std::time::Duration;

use common::proxy::{socket_addr, through, FaultProxy};
use common::Harness;
use tower_webhook::store::{Claim, IdempotencyStore, RedisStore};

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

store_conformance!(redis());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_sharing_one_redis_run_the_handler_once() {
    let (Some(a), Some(b)) = (connect(&url()).await, connect(&url()).await) else {
        return;
    };
    common::two_replicas_run_the_handler_once(a, b).await;
}

#[tokio::test]
async fn keys_are_namespaced_by_the_prefix() {
    let Some(store) = connect(&url()).await else {
        return;
    };
    let key = common::key("prefix");
    let billing = store.clone().with_prefix("billing:");
    let shipping = store.with_prefix("shipping:");
    assert!(matches!(
        billing.claim(&key, Duration::from_secs(5)).await.unwrap(),
        Claim::Acquired(_)
    ));
    assert!(matches!(
        shipping.claim(&key, Duration::from_secs(5)).await.unwrap(),
        Claim::Acquired(_)
    ));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_answers_503_and_recovers() {
    if let Some((store, proxy)) = through_proxy().await {
        common::outages_answer_503_and_recover(store, &proxy).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retrying_sender_loses_nothing_through_outages() {
    if let Some((store, proxy)) = through_proxy().await {
        common::a_retrying_sender_loses_nothing_through_outages(store, &proxy).await;
    }
}
