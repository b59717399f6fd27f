//! [`SqliteStore`]: dedup marks in an SQLite file, kept across restarts.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

/// The `sqlx` this store is built on, so that your pool's version matches.
pub use sqlx;

#[cfg(feature = "inbox-sqlite")]
use super::Marked;
use super::{stored_key, ttl_millis, Claim, ClaimToken, IdempotencyStore, StoreError};
use crate::clock::{unix_millis_i64, Clock, SystemClock};

/// An [`IdempotencyStore`] in an SQLite file: one process (or a few on one machine) that
/// should not forget the deliveries it handled when it restarts.
///
/// [`MemoryStore`](super::MemoryStore) forgets every id on a restart, so a sender's retry of
/// a delivery handled just before it runs the handler again. This store keeps them in the
/// table `webhook_claims` of a file, with no server to run. For services on many machines,
/// use [`PostgresStore`](super::PostgresStore) or [`RedisStore`](super::RedisStore).
///
/// Each call is one statement, atomic in SQLite, so processes on one machine can share the
/// file. [`open`](Self::open) turns on write-ahead logging and waits up to 5 s for a busy
/// file. Expired rows are dropped by [`cleanup`](Self::cleanup).
///
/// ```
/// use tower_webhook::store::SqliteStore;
/// use tower_webhook::{scheme::StandardWebhooks, VerifyWebhookLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("tw-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// # let path = dir.join("webhooks.db");
/// let store = SqliteStore::open(&path).await?;
/// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?)
///     .with_store(store);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    clock: Arc<dyn Clock>,
    /// The file's one writer among handlers' transactions (`Tx`): they wait for it here,
    /// without a connection, rather than in SQLite's busy handler holding one.
    writers: Arc<super::writers::Writers>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("connections", &self.pool.size())
            .finish_non_exhaustive()
    }
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS webhook_claims (
    key BLOB PRIMARY KEY,
    token TEXT,
    completed INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL
)";
const CREATE_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS webhook_claims_expires_at ON webhook_claims (expires_at)";

// One statement: a fresh or expired key is taken with the new token; a live row is written
// back as it was, and returned, so the caller reads who holds it from the same snapshot.
// Times are milliseconds since the Unix epoch, from the store's clock.
const CLAIM: &str = "INSERT INTO webhook_claims AS c (key, token, completed, expires_at)
    VALUES (?1, ?2, 0, ?3)
    ON CONFLICT (key) DO UPDATE SET
        token = CASE WHEN c.expires_at <= ?4 THEN excluded.token ELSE c.token END,
        completed = CASE WHEN c.expires_at <= ?4 THEN 0 ELSE c.completed END,
        expires_at = CASE WHEN c.expires_at <= ?4 THEN excluded.expires_at ELSE c.expires_at END
    RETURNING token, completed";
const LIVE: &str = "SELECT completed FROM webhook_claims WHERE key = ?1 AND expires_at > ?2";
const COMPLETE: &str = "UPDATE webhook_claims
    SET completed = 1, token = NULL, expires_at = ?3
    WHERE key = ?1 AND token = ?2 AND completed = 0 AND expires_at > ?4";
/// How a handler's transaction on the file begins: with the write lock.
pub(crate) const BEGIN_IMMEDIATE: &str = "BEGIN IMMEDIATE";
const RELEASE: &str = "DELETE FROM webhook_claims
    WHERE key = ?1 AND token = ?2 AND completed = 0 AND expires_at > ?3";
#[cfg(feature = "inbox-sqlite")]
const MARKED_COMPLETED: &str = "SELECT completed FROM webhook_claims WHERE key = ?1";
const CLEANUP: &str = "DELETE FROM webhook_claims WHERE rowid IN (
    SELECT rowid FROM webhook_claims WHERE expires_at <= ?1 LIMIT ?2)";

impl SqliteStore {
    /// Opens (or creates) the SQLite file at `path` and the store's table in it.
    ///
    /// The file is opened in write-ahead-log mode with `synchronous = NORMAL`: a commit
    /// survives the process being killed; a power cut may lose the last few marks, which
    /// costs at worst one more run of a handler, never an event.
    pub async fn open(path: impl AsRef<std::path::Path>) -> Result<Self, StoreError> {
        Self::open_with(SqliteConnectOptions::new().filename(path)).await
    }

    /// Opens the database at an sqlx URL (`sqlite://webhooks.db`, `sqlite::memory:`), as
    /// [`open`](Self::open) does a path.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::open_with(SqliteConnectOptions::from_str(url).map_err(store_error)?).await
    }

    async fn open_with(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let pool = open_pool(options, SqliteSynchronous::Normal).await?;
        let store = Self::new(pool);
        store.create_table().await?;
        Ok(store)
    }

    /// A store on a pool of your own. Call [`create_table`](Self::create_table) once.
    pub fn new(pool: SqlitePool) -> Self {
        Self {
            clock: Arc::new(SystemClock),
            writers: super::writers::Writers::new(&pool, true),
            pool,
        }
    }

    /// Reads the time from `clock` (a [`ManualClock`](crate::clock::ManualClock) in tests)
    /// instead of the system's.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The pool the store runs on.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Who writes to the store's file, for a `Tx` (`crate::tx::TxStore`).
    pub(crate) fn writers(&self) -> &Arc<super::writers::Writers> {
        &self.writers
    }

    /// Creates the table `webhook_claims` and its index if they do not exist.
    pub async fn create_table(&self) -> Result<(), StoreError> {
        sqlx::query(CREATE_TABLE)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        sqlx::query(CREATE_INDEX)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// Deletes expired rows, at most `batch` at a time until none is left; how many it
    /// deleted. Run it now and then (an hourly task is plenty): expired rows are never read
    /// as live, they only take room.
    pub async fn cleanup(&self, batch: u32) -> Result<u64, StoreError> {
        let mut deleted = 0;
        loop {
            let done = sqlx::query(CLEANUP)
                .bind(self.now())
                .bind(i64::from(batch.max(1)))
                .execute(&self.pool)
                .await
                .map_err(store_error)?
                .rows_affected();
            deleted += done;
            if done < u64::from(batch.max(1)) {
                return Ok(deleted);
            }
        }
    }

    fn now(&self) -> i64 {
        unix_millis_i64(self.clock.now())
    }

    #[cfg(feature = "inbox-sqlite")]
    /// Marks each of `keys` (distinct) completed for its window on `conn` (the inbox's
    /// transaction), by this store's clock, in one statement, unless a live mark is there:
    /// each key's outcome, in the order given.
    pub(crate) async fn mark_many(
        &self,
        conn: &mut sqlx::SqliteConnection,
        keys: &[(&str, Duration)],
    ) -> Result<Vec<Marked>, StoreError> {
        let stored: Vec<std::borrow::Cow<'_, [u8]>> =
            keys.iter().map(|(key, _)| stored_key(key)).collect();
        let rows = vec!["(?, NULL, 1, ?)"; keys.len()].join(", ");
        let sql = format!(
            "INSERT INTO webhook_claims AS c (key, token, completed, expires_at) VALUES {rows}
            ON CONFLICT (key) DO UPDATE SET token = NULL, completed = 1, expires_at = excluded.expires_at
                WHERE c.expires_at <= ?
            RETURNING key"
        );
        let mut query = sqlx::query_scalar::<_, Vec<u8>>(sqlx::AssertSqlSafe(sql));
        for (key, &(_, window)) in stored.iter().zip(keys) {
            query = query.bind(&**key).bind(self.at(window));
        }
        let taken: std::collections::HashSet<Vec<u8>> = query
            .bind(self.now())
            .fetch_all(&mut *conn)
            .await
            .map_err(store_error)?
            .into_iter()
            .collect();
        let mut marked = Vec::with_capacity(keys.len());
        for key in &stored {
            marked.push(if taken.contains(&**key) {
                Marked::Fresh
            } else {
                let completed: Option<bool> = sqlx::query_scalar(MARKED_COMPLETED)
                    .bind(&**key)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(store_error)?;
                Marked::live(completed)
            });
        }
        Ok(marked)
    }

    /// Completes the claim of `key` held by `token` on `executor`: the pool, or a handler's
    /// transaction.
    pub(crate) async fn complete_on<'e>(
        &self,
        executor: impl sqlx::Executor<'e, Database = sqlx::Sqlite>,
        key: &str,
        token: &ClaimToken,
        keep_for: Duration,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(COMPLETE)
            .bind(&*stored_key(key))
            .bind(token.as_str())
            .bind(self.at(keep_for))
            .bind(self.now())
            .execute(executor)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected() == 1)
    }

    fn at(&self, ttl: Duration) -> i64 {
        self.now()
            .saturating_add(i64::try_from(ttl_millis(ttl)).unwrap_or(i64::MAX))
    }
}

/// A pool on the file `options` names, created if missing, in write-ahead-log mode (readers
/// do not block the writer) with `synchronous`, waiting up to 5 s for a busy file.
pub(crate) async fn open_pool(
    options: SqliteConnectOptions,
    synchronous: SqliteSynchronous,
) -> Result<SqlitePool, StoreError> {
    let options = options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .busy_timeout(Duration::from_secs(5));
    SqlitePoolOptions::new()
        .acquire_timeout(Duration::from_secs(3))
        .connect_with(options)
        .await
        .map_err(store_error)
}

/// A store error from sqlx's: a busy or unreachable file is unavailable (retry later),
/// anything else a backend failure.
pub(crate) fn store_error(err: sqlx::Error) -> StoreError {
    super::sqlx_error(err, transient)
}

/// Whether an SQLite error code is worth a retry: `SQLITE_BUSY` (5) and `SQLITE_LOCKED`
/// (6), with their extended codes.
pub(crate) fn transient(code: &str) -> bool {
    code.parse::<i32>()
        .is_ok_and(|code| matches!(code & 0xff, 5 | 6))
}

impl IdempotencyStore for SqliteStore {
    async fn claim(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        let key = stored_key(key);
        // While a handler's `Tx` of this store holds the file's one write lock, a live row
        // answers without a write, so a copy of a delivery in flight or handled is told at
        // once (readers never wait for the lock). Otherwise the claim's one statement does
        // it all: a read first would cost every fresh claim more than it saves.
        if self.writers.turns().available_permits() == 0 {
            let live: Option<bool> = sqlx::query_scalar(LIVE)
                .bind(&*key)
                .bind(self.now())
                .fetch_optional(&self.pool)
                .await
                .map_err(store_error)?;
            if let Some(completed) = live {
                return Ok(if completed {
                    Claim::Completed
                } else {
                    Claim::InFlight
                });
            }
        }
        let token = ClaimToken::random();
        let (holder, completed): (Option<String>, bool) = sqlx::query_as(CLAIM)
            .bind(&*key)
            .bind(token.as_str())
            .bind(self.at(lease))
            .bind(self.now())
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(if holder.as_deref() == Some(token.as_str()) {
            Claim::Acquired(token)
        } else if completed {
            Claim::Completed
        } else {
            Claim::InFlight
        })
    }

    async fn complete(
        &self,
        key: &str,
        token: &ClaimToken,
        keep_for: Duration,
    ) -> Result<bool, StoreError> {
        self.complete_on(&self.pool, key, token, keep_for).await
    }

    async fn release(&self, key: &str, token: &ClaimToken) -> Result<bool, StoreError> {
        let done = sqlx::query(RELEASE)
            .bind(&*stored_key(key))
            .bind(token.as_str())
            .bind(self.now())
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected() == 1)
    }
}
