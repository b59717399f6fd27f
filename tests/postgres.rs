//! `PostgresStore`: the conformance suite, two replicas through the layer, outages, the
//! table and its cleanup.
//!
//! Needs a PostgreSQL at `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
//! Without one its tests are reported as ignored, under a line that says why, or fail when
//! `CI` is set.

mod common;

use std::time::Duration;

use common::proxy::{socket_addr, through, FaultProxy};
use common::Harness;
use tower_webhook::store::postgres::sqlx::postgres::{PgPool, PgPoolOptions};
use tower_webhook::store::{Claim, IdempotencyStore, PostgresStore, StoreErrorKind};

const TABLE: &str = "tower_webhook_test_claims";

fn url() -> String {
    common::database_url()
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

async fn two_replicas_sharing_one_database_run_the_handler_once() {
    let (Some(a), Some(b)) = (store_at(&url()).await, store_at(&url()).await) else {
        return;
    };
    common::two_replicas_run_the_handler_once(a, b).await;
}

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
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE \"{table}\"")))
        .execute(&pool)
        .await
        .unwrap();
}

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
    let left: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{table}\""
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(left, 2, "only the completed and the in-flight rows remain");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE \"{table}\"")))
        .execute(&pool)
        .await
        .unwrap();
}

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

/// A table of its own, locked by another transaction for as long as the test says.
struct Locked {
    pool: PgPool,
    table: String,
    lock: Option<tower_webhook::store::postgres::sqlx::Transaction<'static, sqlx::Postgres>>,
}

use tower_webhook::store::postgres::sqlx;

impl Locked {
    async fn new(name: &str) -> Option<(Self, PostgresStore)> {
        let pool = pool(&url()).await.ok()?;
        let table = format!(
            "tw_{name}_{}",
            &tower_webhook::store::ClaimToken::random().as_str()[..12]
        );
        // One connection, on which the claim is prepared before the lock.
        let store_pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&url())
            .await
            .unwrap();
        let store = PostgresStore::new(store_pool)
            .with_table(&table)
            .unwrap()
            .with_statement_timeout(Duration::from_millis(200));
        store.create_table().await.unwrap();
        store
            .claim("warm-up", Duration::from_millis(1))
            .await
            .unwrap();
        let mut lock = pool.begin().await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "LOCK TABLE \"{table}\" IN ACCESS EXCLUSIVE MODE"
        )))
        .execute(&mut *lock)
        .await
        .unwrap();
        Some((
            Self {
                pool,
                table,
                lock: Some(lock),
            },
            store,
        ))
    }

    /// Ends the lock, and waits until no statement on the table is still running (those that
    /// waited for the lock have then run to their end).
    async fn unlock(&mut self) {
        self.lock.take().unwrap().commit().await.unwrap();
        for _ in 0..200 {
            let running: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE state = 'active' AND pid <> pg_backend_pid() AND query LIKE $1",
            )
            .bind(format!("%{}%", self.table))
            .fetch_one(&self.pool)
            .await
            .unwrap();
            if running == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("statements on {} still running", self.table);
    }

    /// Waits until a statement waits for the lock.
    async fn wait_for_a_waiter(&self) {
        wait_for_a_lock_waiter(&self.pool, &self.table).await;
    }

    async fn rows(&self) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM \"{}\"",
            self.table
        )))
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    async fn drop_table(self) {
        drop_table(&self.pool, &self.table).await;
    }
}

/// A claim that waited for a lock past its statement timeout writes nothing and fails as
/// unavailable: whoever sent it has given up on it by then (the layer answered 503), and a
/// claim nobody holds would make every retry wait for its lease.
async fn a_claim_that_waited_past_its_timeout_writes_nothing() {
    let Some((mut locked, store)) = Locked::new("late").await else {
        return;
    };
    let claim = tokio::spawn({
        let store = store.clone();
        async move { store.claim("msg_late", Duration::from_secs(60)).await }
    });
    locked.wait_for_a_waiter().await;
    // Already waiting, it waits past its 200 ms: no timing decides the outcome.
    tokio::time::sleep(Duration::from_millis(400)).await;
    locked.unlock().await;
    let late = claim.await.unwrap().unwrap_err();
    assert_eq!(late.kind(), StoreErrorKind::Unavailable, "{late}");
    assert_eq!(
        locked.rows().await,
        1,
        "the late claim wrote nothing (the row is the warm-up's)"
    );
    assert!(matches!(
        store
            .claim("msg_late", Duration::from_secs(60))
            .await
            .unwrap(),
        Claim::Acquired(_)
    ));
    locked.drop_table().await;
}

/// A table locked for longer than the layer's store timeout: the delivery gets 503 with
/// `Retry-After` while the lock is still held, and the sender's retry once the lock is gone
/// is handled at once, with no orphaned claim in its way.
async fn a_locked_table_answers_503_in_time_and_the_retry_runs_at_once() {
    use tower::{Layer, ServiceExt};
    let Some((mut locked, store)) = Locked::new("stall").await else {
        return;
    };
    let runs = common::PerId::default();
    let service = tower_webhook::VerifyWebhookLayer::new(common::scheme())
        .with_store(store)
        .with_store_timeout(Duration::from_millis(500))
        .layer(runs.service(Duration::ZERO));
    let id = format!(
        "msg_locked_{}",
        tower_webhook::store::ClaimToken::random().as_str()
    );
    // The lock is held until the answer is in.
    common::answers_503_while_the_store_stalls(service.clone(), &id, &runs).await;

    locked.unlock().await;
    let response = service.oneshot(common::signed(&id, "{}")).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    assert_eq!(runs.runs(&id), 1);
    locked.drop_table().await;
}

/// Calls made at once share statements (one of each kind at a time, so most wait and go out
/// together), and each is still answered as if it had been sent alone: of four claims of a
/// key exactly one is acquired, a completion repeated with the same token counts once, and a
/// release of a completed key changes nothing.
async fn calls_sharing_statements_are_answered_each_as_alone() {
    let Ok(pool) = pool(&url()).await else {
        return;
    };
    let store = PostgresStore::new(pool)
        .with_table(TABLE)
        .unwrap()
        .with_max_statements(1)
        .with_max_batch(16);
    store.create_table().await.unwrap();
    let run = tower_webhook::store::ClaimToken::random();
    let keys: Vec<String> = (0..50)
        .map(|n| format!("shared_{}_{n}", run.as_str()))
        .collect();
    let lease = Duration::from_secs(60);
    let claims = keys
        .iter()
        .flat_map(|key| (0..4).map(|_| key.clone()))
        .map(|key| {
            let store = store.clone();
            tokio::spawn(async move { (key.clone(), store.claim(&key, lease).await.unwrap()) })
        });
    let mut winners = std::collections::HashMap::new();
    for claim in claims.collect::<Vec<_>>() {
        match claim.await.unwrap() {
            (key, Claim::Acquired(token)) => {
                assert!(
                    winners.insert(key, token).is_none(),
                    "two claims of one key won"
                );
            }
            (_, outcome) => assert_eq!(outcome, Claim::InFlight),
        }
    }
    assert_eq!(winners.len(), keys.len(), "every key was acquired once");

    let completions = winners
        .iter()
        .flat_map(|(key, token)| [(key.clone(), token.clone()), (key.clone(), token.clone())]);
    let completions: Vec<_> = completions
        .map(|(key, token)| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .complete(&key, &token, Duration::from_secs(600))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut completed = 0;
    for completion in completions {
        completed += usize::from(completion.await.unwrap());
    }
    assert_eq!(completed, keys.len(), "each claim completed exactly once");

    let releases: Vec<_> = winners
        .iter()
        .map(|(key, token)| {
            let (store, key, token) = (store.clone(), key.clone(), token.clone());
            tokio::spawn(async move { store.release(&key, &token).await.unwrap() })
        })
        .collect();
    for release in releases {
        assert!(!release.await.unwrap(), "a completed claim is not released");
    }
    for key in &keys {
        assert_eq!(store.claim(key, lease).await.unwrap(), Claim::Completed);
    }
    let written: Vec<&[u8]> = keys.iter().map(String::as_bytes).collect();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM \"{TABLE}\" WHERE key = ANY($1)"
    )))
    .bind(&written)
    .execute(store.pool())
    .await
    .unwrap();
}

/// `PostgresStore::connect` makes a pool whose connections carry a `statement_timeout`, so that
/// PostgreSQL itself cancels a claim stuck behind a lock.
async fn connect_sets_a_server_side_statement_timeout() {
    let Some(probe) = store_at(&url()).await else {
        return;
    };
    let store = PostgresStore::connect(&url()).await.unwrap();
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(timeout, "4s");
    drop(probe);
}

/// A table of its own with rows that other transactions hold locked, so that a batch of
/// claims waits behind them exactly where a test wants it to.
struct RowLocks {
    pool: PgPool,
    table: String,
    store: PostgresStore,
    held: Vec<(String, sqlx::Transaction<'static, sqlx::Postgres>)>,
}

impl RowLocks {
    /// A store on a fresh table (one statement of each kind at a time, so that calls made
    /// while one runs share the next), its claims timing out after `timeout`.
    async fn new(name: &str, timeout: Duration) -> Option<Self> {
        let pool = pool(&url()).await.ok()?;
        let table = format!(
            "tw_{name}_{}",
            &tower_webhook::store::ClaimToken::random().as_str()[..12]
        );
        let store = PostgresStore::new(pool.clone())
            .with_table(&table)
            .unwrap()
            .with_max_statements(1)
            .with_statement_timeout(timeout);
        store.create_table().await.unwrap();
        Some(Self {
            pool,
            table,
            store,
            held: Vec::new(),
        })
    }

    /// Claims `key` for a minute, then holds its row locked from another transaction.
    async fn lock(&mut self, key: &str) {
        let claim = self.store.claim(key, Duration::from_secs(60)).await;
        assert!(matches!(claim, Ok(Claim::Acquired(_))), "{claim:?}");
        let mut tx = self.pool.begin().await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT 1 FROM \"{}\" WHERE key = $1 FOR UPDATE",
            self.table
        )))
        .bind(key.as_bytes())
        .execute(&mut *tx)
        .await
        .unwrap();
        self.held.push((key.to_owned(), tx));
    }

    async fn unlock(&mut self, key: &str) {
        let at = self.held.iter().position(|(held, _)| held == key).unwrap();
        self.held.remove(at).1.rollback().await.unwrap();
    }

    /// Claims `key` on a task of its own, as a caller would.
    fn claim(
        &self,
        key: &str,
    ) -> tokio::task::JoinHandle<Result<Claim, tower_webhook::store::StoreError>> {
        let (store, key) = (self.store.clone(), key.to_owned());
        tokio::spawn(async move { store.claim(&key, Duration::from_secs(60)).await })
    }

    /// Waits until a statement on the table waits for a row lock.
    async fn wait_for_a_waiter(&self) {
        wait_for_a_lock_waiter(&self.pool, &self.table).await;
    }

    async fn has_row(&self, key: &str) -> bool {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM \"{}\" WHERE key = $1)",
            self.table
        )))
        .bind(key.as_bytes())
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    async fn drop_table(mut self) {
        for (_, tx) in self.held.drain(..) {
            tx.rollback().await.unwrap();
        }
        drop_table(&self.pool, &self.table).await;
    }
}

/// A claim sent in one statement with an older one is judged on its own deadline, not the
/// older one's: here a claim of an expired key, made 2.5 s after a claim that waits behind a
/// locked row, is still taken when that wait ends 4.2 s after the older claim was made (its
/// own timeout of 4 s has 2.4 s left).
async fn each_claim_of_a_statement_has_its_own_deadline() {
    let Some(mut locks) = RowLocks::new("own_deadline", Duration::from_secs(4)).await else {
        return;
    };
    let expired = locks
        .store
        .claim("c-expired", Duration::from_millis(1))
        .await;
    assert!(matches!(expired, Ok(Claim::Acquired(_))));
    locks.lock("x-blocker").await;
    locks.lock("a-locked").await;
    // The statement under way: the next calls wait for it, and then go out together.
    let blocker = locks.claim("x-blocker");
    locks.wait_for_a_waiter().await;
    let old = locks.claim("a-locked");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let fresh = locks.claim("c-expired");
    tokio::time::sleep(Duration::from_millis(100)).await;
    locks.unlock("x-blocker").await;
    locks.wait_for_a_waiter().await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    locks.unlock("a-locked").await;

    assert!(blocker.await.unwrap().is_ok());
    let old = old.await.unwrap().unwrap_err();
    assert_eq!(
        old.kind(),
        StoreErrorKind::Unavailable,
        "the old claim ran out: {old}"
    );
    let fresh = fresh.await.unwrap();
    assert!(
        matches!(fresh, Ok(Claim::Acquired(_))),
        "the fresh claim had time left: {fresh:?}"
    );
    locks.drop_table().await;
}

/// A claim of a key with no row, sent behind a claim that waits for a locked row, is not
/// written once its own timeout has passed: it answers unavailable and leaves no row.
async fn a_new_key_is_not_written_after_its_timeout() {
    let Some(mut locks) = RowLocks::new("new_key_late", Duration::from_secs(2)).await else {
        return;
    };
    locks.lock("x-blocker").await;
    locks.lock("a-locked").await;
    let blocker = locks.claim("x-blocker");
    locks.wait_for_a_waiter().await;
    let made = std::time::Instant::now();
    let locked = locks.claim("a-locked");
    let new = locks.claim("b-new");
    tokio::time::sleep(Duration::from_millis(200)).await;
    locks.unlock("x-blocker").await;
    // Their statement starts well within their 2 s, and waits behind "a-locked".
    locks.wait_for_a_waiter().await;
    assert!(made.elapsed() < Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(3500).saturating_sub(made.elapsed())).await;
    locks.unlock("a-locked").await;

    assert!(blocker.await.unwrap().is_ok());
    assert!(locked.await.unwrap().is_err());
    let new = new.await.unwrap();
    let err = new.expect_err("3.5 s after it was made, a claim with a 2 s timeout is late");
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
    assert!(
        !locks.has_row("b-new").await,
        "the late claim wrote its key"
    );
    locks.drop_table().await;
}

/// A store whose statement task was spawned on a runtime that shut down before running it
/// (a test's runtime, a `block_on` helper, a process shutting down) still answers every
/// later call, from any runtime.
async fn a_runtime_gone_before_its_statement_ran_does_not_wedge_the_store() {
    let Ok(pool) = pool(&url()).await else {
        return;
    };
    let store = PostgresStore::new(pool).with_table(TABLE).unwrap();
    store.create_table().await.unwrap();
    let key = format!(
        "wedge_{}",
        tower_webhook::store::ClaimToken::random().as_str()
    );
    let first = std::thread::spawn({
        let (store, key) = (store.clone(), key.clone());
        move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            // The call spawns its statement's task and waits; the runtime ends unpolled.
            runtime.block_on(async {
                let mut call = Box::pin(store.claim(&key, Duration::from_secs(60)));
                std::future::poll_fn(|cx| {
                    std::task::Poll::Ready(
                        std::future::Future::poll(call.as_mut(), cx).is_pending(),
                    )
                })
                .await
            })
        }
    });
    assert!(first.join().unwrap(), "the first call waited for its task");
    let later = tokio::time::timeout(
        Duration::from_secs(5),
        store.claim(&key, Duration::from_secs(60)),
    )
    .await
    .expect("a later call is answered, not left waiting");
    assert!(matches!(later, Ok(Claim::Acquired(_))), "{later:?}");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM \"{TABLE}\" WHERE key = $1"
    )))
    .bind(key.as_bytes())
    .execute(store.pool())
    .await
    .unwrap();
}

/// Whether the PostgreSQL at `DATABASE_URL` answers.
fn probe() -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|err| err.to_string())?;
    runtime.block_on(async { pool(&url()).await.map(drop).map_err(|err| err.to_string()) })
}

fn main() -> std::process::ExitCode {
    let mut trials = store_conformance!(postgres());
    trials.extend(trials![
        two_replicas_sharing_one_database_run_the_handler_once,
        replicas_creating_the_table_at_once_do_not_fail,
        cleanup_deletes_expired_rows_only,
        table_names_are_validated,
        an_outage_answers_503_and_recovers,
        a_retrying_sender_loses_nothing_through_outages,
        a_claim_that_waited_past_its_timeout_writes_nothing,
        a_locked_table_answers_503_in_time_and_the_retry_runs_at_once,
        connect_sets_a_server_side_statement_timeout,
        calls_sharing_statements_are_answered_each_as_alone,
        each_claim_of_a_statement_has_its_own_deadline,
        a_new_key_is_not_written_after_its_timeout,
        a_runtime_gone_before_its_statement_ran_does_not_wedge_the_store,
    ]);
    common::run_needing("PostgreSQL", "DATABASE_URL", &url(), probe(), trials)
}

/// Waits until a statement on `table` waits for a lock.
async fn wait_for_a_lock_waiter(pool: &sqlx::PgPool, table: &str) {
    for _ in 0..500 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND query LIKE $1",
        )
        .bind(format!("%{table}%"))
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no statement waited for a lock on {table}");
}

/// Drops a test's own table.
async fn drop_table(pool: &sqlx::PgPool, table: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE \"{table}\"")))
        .execute(pool)
        .await
        .unwrap();
}
