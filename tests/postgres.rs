//! `PostgresStore`: the conformance suite, two replicas through the layer, outages, the
//! table and its cleanup.
//!
//! Needs a PostgreSQL at `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
//! Without one the tests skip with a message, or fail when `CI` is set.
#![cfg(feature = "postgres")]

mod common;

use std::time::Duration;

use common::proxy::{socket_addr, through, FaultProxy};
use common::Harness;
use tower_webhook::store::postgres::sqlx::postgres::{PgPool, PgPoolOptions};
use tower_webhook::store::{Claim, IdempotencyStore, PostgresStore};

const TABLE: &str = "tower_webhook_test_claims";

fn url() -> String {
    common::env_or("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
}

async fn pool(url: &str) -> Result<PgPool, tower_webhook::store::postgres::sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(2))
        .connect(url)
        .await
}

async fn store_at(url: &str) -> Option<PostgresStore> {
    match pool(url).await {
        Ok(pool) => {
            let store = PostgresStore::new(pool).with_table(TABLE).unwrap();
            store.create_table().await.unwrap();
            Some(store)
        }
        Err(err) => common::unreachable("PostgreSQL", "DATABASE_URL", url, err),
    }
}

struct Postgres {
    store: PostgresStore,
}

impl Harness for Postgres {
    type Store = PostgresStore;

    fn store(&self) -> PostgresStore {
        self.store.clone()
    }

    async fn replica(&self) -> PostgresStore {
        store_at(&url()).await.unwrap()
    }

    async fn advance(&self, by: Duration) {
        // The store reads the database's clock.
        tokio::time::sleep(by).await;
    }

    fn lease(&self) -> Duration {
        Duration::from_millis(200)
    }
}

async fn postgres() -> Option<Postgres> {
    Some(Postgres {
        store: store_at(&url()).await?,
    })
}

store_conformance!(postgres());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_sharing_one_database_run_the_handler_once() {
    let (Some(a), Some(b)) = (store_at(&url()).await, store_at(&url()).await) else {
        return;
    };
    common::two_replicas_run_the_handler_once(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_creating_the_table_at_once_do_not_fail() {
    let Ok(pool) = pool(&url()).await else {
        return;
    };
    let table = format!(
        "tw_create_{}",
        &tower_webhook::store::ClaimToken::random().as_str()[..12]
    );
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = PostgresStore::new(pool.clone()).with_table(&table).unwrap();
        tasks.spawn(async move { store.create_table().await });
    }
    while let Some(created) = tasks.join_next().await {
        created.unwrap().unwrap();
    }
    tower_webhook::store::postgres::sqlx::query(&format!("DROP TABLE \"{table}\""))
        .execute(&pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn cleanup_deletes_expired_rows_only() {
    let Ok(pool) = pool(&url()).await else {
        return;
    };
    let table = format!(
        "tw_cleanup_{}",
        &tower_webhook::store::ClaimToken::random().as_str()[..12]
    );
    let store = PostgresStore::new(pool.clone()).with_table(&table).unwrap();
    store.create_table().await.unwrap();
    let short = Duration::from_millis(100);
    for i in 0..5 {
        store.claim(&format!("expiring-{i}"), short).await.unwrap();
    }
    let Claim::Acquired(token) = store.claim("kept", Duration::from_secs(60)).await.unwrap() else {
        panic!("fresh key");
    };
    store
        .claim("in-flight", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(store
        .complete("kept", &token, Duration::from_secs(3600))
        .await
        .unwrap());
    tokio::time::sleep(short * 3).await;

    assert_eq!(store.cleanup().await.unwrap(), 5);
    assert_eq!(store.cleanup().await.unwrap(), 0);
    assert_eq!(store.claim("kept", short).await.unwrap(), Claim::Completed);
    assert_eq!(
        store.claim("in-flight", short).await.unwrap(),
        Claim::InFlight
    );

    let background = store.spawn_cleanup(Duration::from_millis(50));
    store.claim("expiring-again", short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    background.abort();
    let left: i64 = tower_webhook::store::postgres::sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{table}\""
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(left, 2, "only the completed and the in-flight rows remain");
    tower_webhook::store::postgres::sqlx::query(&format!("DROP TABLE \"{table}\""))
        .execute(&pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn table_names_are_validated() {
    let pool = PgPoolOptions::new().connect_lazy(&url()).unwrap();
    let store = PostgresStore::new(pool);
    assert!(store.clone().with_table("app.webhook_claims").is_ok());
    let err = store.with_table("claims; DROP TABLE users").unwrap_err();
    assert!(err.to_string().contains("invalid table name"), "{err}");
}

async fn through_proxy() -> Option<(PostgresStore, FaultProxy)> {
    let url = url();
    store_at(&url).await?;
    let proxy = FaultProxy::start(socket_addr(&url, 5432)).await;
    let store = store_at(&through(&url, proxy.addr())).await.unwrap();
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
