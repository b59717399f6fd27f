//! The store conformance suite against `MemoryStore`, plus its bound on entries.

mod common;

use std::time::Duration;

use common::Harness;
use tower_webhook::clock::ManualClock;
use tower_webhook::store::{Claim, IdempotencyStore, MemoryStore, StoreErrorKind};

struct Memory {
    clock: ManualClock,
    store: MemoryStore,
}

impl Harness for Memory {
    type Store = MemoryStore;

    fn store(&self) -> MemoryStore {
        self.store.clone()
    }

    async fn replica(&self) -> MemoryStore {
        // Two replicas of one process share its memory: a clone shares the entries.
        self.store.clone()
    }

    async fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    fn lease(&self) -> Duration {
        Duration::from_secs(60)
    }
}

// Async like every harness constructor, so the suite's macro can await it.
#[allow(clippy::unused_async)]
async fn memory() -> Option<Memory> {
    let clock = ManualClock::starting_now();
    let store = MemoryStore::new().with_clock(clock.clone());
    Some(Memory { clock, store })
}

const LEASE: Duration = Duration::from_secs(60);

async fn full_store_forgets_the_oldest_completed_entry() {
    let store = MemoryStore::new().with_max_entries(3);
    for key in ["a", "b", "c"] {
        let Claim::Acquired(token) = store.claim(key, LEASE).await.unwrap() else {
            panic!("fresh key");
        };
        let keep = Duration::from_secs(match key {
            "a" => 300,
            "b" => 100,
            _ => 200,
        });
        assert!(store.complete(key, &token, keep).await.unwrap());
    }
    assert!(matches!(
        store.claim("d", LEASE).await.unwrap(),
        Claim::Acquired(_)
    ));
    assert_eq!(store.len(), 3);
    // "b" was the completed entry closest to expiry, so it made room for "d".
    assert!(matches!(
        store.claim("b", LEASE).await.unwrap(),
        Claim::Acquired(_)
    ));
    // That claim in turn pushed out "c" (200 s), the next closest; "a" (300 s) is kept.
    assert_eq!(store.claim("a", LEASE).await.unwrap(), Claim::Completed);
    assert_eq!(store.len(), 3);
    assert!(matches!(
        store.claim("c", LEASE).await.unwrap(),
        Claim::Acquired(_)
    ));
}

async fn store_full_of_claims_in_flight_refuses_new_ones() {
    let store = MemoryStore::new().with_max_entries(2);
    for key in ["a", "b"] {
        assert!(matches!(
            store.claim(key, LEASE).await.unwrap(),
            Claim::Acquired(_)
        ));
    }
    let err = store.claim("c", LEASE).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Full);
    // In-flight entries were not forgotten to make room.
    assert_eq!(store.claim("a", LEASE).await.unwrap(), Claim::InFlight);
}

async fn expired_entries_are_dropped_as_claims_come_in() {
    let clock = ManualClock::starting_now();
    // Up to 4 096 entries the store is one shard: one claim sweeps it all.
    let store = MemoryStore::new()
        .with_max_entries(4096)
        .with_clock(clock.clone());
    for i in 0..1000 {
        store.claim(&format!("k{i}"), LEASE).await.unwrap();
    }
    assert_eq!(store.len(), 1000);
    clock.advance(LEASE * 2);
    store.claim("fresh", LEASE).await.unwrap();
    assert_eq!(store.len(), 1);
}

/// A sharded store (the default bound) drops a shard's expired entries as claims come into
/// that shard: after the window, a stream of new claims leaves none of the old ones.
async fn a_sharded_store_drops_expired_entries_shard_by_shard() {
    let clock = ManualClock::starting_now();
    let store = MemoryStore::new().with_clock(clock.clone());
    for i in 0..1000 {
        store.claim(&format!("old{i}"), LEASE).await.unwrap();
    }
    clock.advance(LEASE * 2);
    for i in 0..1000 {
        store.claim(&format!("new{i}"), LEASE).await.unwrap();
    }
    // 1 000 claims spread over 16 shards reach every one of them.
    assert_eq!(store.len(), 1000);
}

fn main() -> std::process::ExitCode {
    let mut trials = store_conformance!(memory());
    trials.extend(trials![
        full_store_forgets_the_oldest_completed_entry,
        store_full_of_claims_in_flight_refuses_new_ones,
        a_sharded_store_drops_expired_entries_shard_by_shard,
        expired_entries_are_dropped_as_claims_come_in,
    ]);
    common::run(trials)
}
