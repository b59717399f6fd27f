//! `SqliteStore`: the conformance suite, marks that survive a reopened file, and cleanup.
//!
//! SQLite needs no server: each trial works in a file of its own under the system's
//! temporary directory.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::Harness;
use tower_webhook::clock::ManualClock;
use tower_webhook::store::{Claim, IdempotencyStore, SqliteStore};

/// The directory of this run's files, removed once the trials are done.
fn run_dir() -> PathBuf {
    std::env::temp_dir().join(format!("tower-webhook-sqlite-{}", std::process::id()))
}

/// A fresh file for one trial.
fn fresh_file(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = run_dir();
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!(
        "{name}-{}.db",
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

struct Sqlite {
    path: PathBuf,
    clock: ManualClock,
    store: SqliteStore,
}

impl Harness for Sqlite {
    type Store = SqliteStore;

    fn store(&self) -> SqliteStore {
        self.store.clone()
    }

    async fn replica(&self) -> SqliteStore {
        // Another process on the same machine: its own pool on the same file.
        SqliteStore::open(&self.path)
            .await
            .unwrap()
            .with_clock(self.clock.clone())
    }

    async fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    fn lease(&self) -> Duration {
        Duration::from_secs(60)
    }
}

async fn sqlite() -> Option<Sqlite> {
    let path = fresh_file("conformance");
    let clock = ManualClock::starting_now();
    let store = SqliteStore::open(&path)
        .await
        .unwrap()
        .with_clock(clock.clone());
    Some(Sqlite { path, clock, store })
}

async fn completed_marks_survive_a_reopened_file() {
    let path = fresh_file("restart");
    let store = SqliteStore::open(&path).await.unwrap();
    let Claim::Acquired(token) = store.claim("evt_1", Duration::from_secs(60)).await.unwrap()
    else {
        panic!("fresh key");
    };
    assert!(store
        .complete("evt_1", &token, Duration::from_secs(3600))
        .await
        .unwrap());
    store.pool().close().await;
    drop(store);

    let reopened = SqliteStore::open(&path).await.unwrap();
    assert!(matches!(
        reopened
            .claim("evt_1", Duration::from_secs(60))
            .await
            .unwrap(),
        Claim::Completed
    ));
}

async fn cleanup_deletes_expired_rows_only() {
    let clock = ManualClock::starting_now();
    let store = SqliteStore::open(fresh_file("cleanup"))
        .await
        .unwrap()
        .with_clock(clock.clone());
    for (key, keep) in [
        ("short-1", 1),
        ("short-2", 1),
        ("short-3", 1),
        ("long", 3600),
    ] {
        let Claim::Acquired(token) = store.claim(key, Duration::from_secs(60)).await.unwrap()
        else {
            panic!("fresh key");
        };
        assert!(store
            .complete(key, &token, Duration::from_secs(keep))
            .await
            .unwrap());
    }
    clock.advance(Duration::from_secs(2));
    assert_eq!(store.cleanup(2).await.unwrap(), 3);
    assert!(matches!(
        store.claim("long", Duration::from_secs(60)).await.unwrap(),
        Claim::Completed
    ));
    assert_eq!(store.cleanup(2).await.unwrap(), 0);
}

async fn an_unwritable_path_is_an_error_not_a_panic() {
    let err = SqliteStore::open("/proc/no-such-dir/webhooks.db")
        .await
        .unwrap_err();
    assert!(!err.to_string().is_empty());
}

fn main() -> std::process::ExitCode {
    let mut trials = store_conformance!(sqlite());
    trials.extend(trials![
        completed_marks_survive_a_reopened_file,
        cleanup_deletes_expired_rows_only,
        an_unwritable_path_is_an_error_not_a_panic,
    ]);
    let code = common::run(trials);
    let _ = std::fs::remove_dir_all(run_dir());
    code
}
