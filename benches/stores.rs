//! claim + complete per store: latency at concurrency 1, throughput at concurrency 64.
//!
//!     cargo bench --bench stores --all-features
//!
//! Redis and PostgreSQL are found through `REDIS_URL` and `DATABASE_URL` (the same defaults
//! as the tests); a backend that cannot be reached is left out with a message.

// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokio::runtime::Runtime;
use tower_webhook::store::{Claim, ClaimToken, IdempotencyStore, MemoryStore};

const LEASE: Duration = Duration::from_secs(60);
const WINDOW: Duration = Duration::from_secs(600);

/// One delivery's round trips: claim a fresh key, then complete it.
async fn claim_and_complete<S: IdempotencyStore>(store: &S, key: &str) {
    let Claim::Acquired(token) = store.claim(key, LEASE).await.unwrap() else {
        panic!("{key} was not fresh");
    };
    assert!(store.complete(key, &token, WINDOW).await.unwrap());
}

fn bench_store<S: IdempotencyStore + Clone>(
    c: &mut Criterion,
    runtime: &Runtime,
    name: &str,
    store: &S,
) {
    let run = ClaimToken::random();
    let next = Arc::new(AtomicU64::new(0));
    let key = move |n: u64| format!("bench:{}:{n}", run.as_str());

    let mut group = c.benchmark_group(format!("store_{name}"));
    group.throughput(Throughput::Elements(1));
    group.bench_function("claim_complete_concurrency_1", |b| {
        let key = key.clone();
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    claim_and_complete(store, &key(next.fetch_add(1, Ordering::Relaxed))).await;
                }
                start.elapsed()
            })
        });
    });
    group.bench_function("claim_complete_concurrency_64", |b| {
        let key = key.clone();
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                let mut tasks = tokio::task::JoinSet::new();
                for task in 0..64 {
                    let (store, key, next) = (store.clone(), key.clone(), Arc::clone(&next));
                    let share = iters / 64 + u64::from(task < iters % 64);
                    tasks.spawn(async move {
                        for _ in 0..share {
                            claim_and_complete(&store, &key(next.fetch_add(1, Ordering::Relaxed)))
                                .await;
                        }
                    });
                }
                while let Some(done) = tasks.join_next().await {
                    done.unwrap();
                }
                start.elapsed()
            })
        });
    });
    group.finish();
}

fn stores(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    bench_store(
        c,
        &runtime,
        "memory",
        &MemoryStore::new().with_max_entries(10_000_000),
    );

    #[cfg(feature = "redis")]
    {
        let url =
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        match runtime.block_on(tower_webhook::store::RedisStore::connect(&url)) {
            Ok(store) => bench_store(c, &runtime, "redis", &store),
            Err(err) => eprintln!("*** Redis at {url} left out: {err}"),
        }
    }
    #[cfg(feature = "postgres")]
    {
        use tower_webhook::store::postgres::sqlx::postgres::PgPoolOptions;
        use tower_webhook::store::PostgresStore;
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let connected = runtime.block_on(async {
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .connect(&url)
                .await?;
            let store = PostgresStore::new(pool)
                .with_table("tower_webhook_bench_claims")
                .unwrap();
            store.create_table().await?;
            Ok::<_, Box<dyn std::error::Error>>(store)
        });
        match connected {
            Ok(store) => bench_store(c, &runtime, "postgres", &store),
            Err(err) => eprintln!("*** PostgreSQL at {url} left out: {err}"),
        }
    }
}

criterion_group!(benches, stores);
criterion_main!(benches);
