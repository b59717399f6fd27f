//! The PostgreSQL store, for replicas that share one database.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// The `sqlx` this store is built on, so that your pool's version matches.
pub use sqlx;

use super::{Claim, ClaimToken, IdempotencyStore, StoreError, StoreErrorKind};

/// Keys longer than this are stored as their SHA-256, so that no id can overflow a btree
/// index entry (about 2.7 KB).
const MAX_KEY_BYTES: usize = 2048;
/// Rows deleted per statement by [`PostgresStore::cleanup`], so that no statement holds
/// many locks or runs for long.
const CLEANUP_BATCH: i64 = 10_000;

/// An [`IdempotencyStore`] in a PostgreSQL table, shared by every replica that uses the same
/// database.
///
/// Each call is one statement on the pool you pass in:
///
/// - `claim` is an `INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE <expired>`. It takes a
///   fresh key, or a key whose lease or dedup window has run out. In the same statement it
///   reads a live key that it did not take, to tell a completed key from one in flight.
/// - `complete` and `release` are an `UPDATE` and a `DELETE` that only touch the row if it
///   still holds the claim's token and its lease has not run out.
///
/// Time is the database's `now()`, one clock for every replica.
///
/// Create the table with [`create_table`](Self::create_table). Expired rows are reclaimed by
/// later claims of the same key. Delete the rest with [`cleanup`](Self::cleanup), or let
/// [`spawn_cleanup`](Self::spawn_cleanup) do it in the background.
///
/// ```no_run
/// use std::time::Duration;
/// use tower_webhook::store::PostgresStore;
/// use tower_webhook::store::postgres::sqlx::postgres::PgPoolOptions;
///
/// # async fn doc() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = PgPoolOptions::new()
///     // An outage should answer 503 quickly, not after sqlx's default 30 s.
///     .acquire_timeout(Duration::from_secs(3))
///     .connect("postgres://postgres@127.0.0.1:5432/app")
///     .await?;
/// let store = PostgresStore::new(pool).with_table("billing_webhook_claims")?;
/// store.create_table().await?;
/// let _cleanup = store.spawn_cleanup(Duration::from_secs(3600));
/// # Ok(())
/// # }
/// ```
///
/// The table it creates:
///
/// ```sql
/// CREATE TABLE IF NOT EXISTS "webhook_claims" (
///     key        BYTEA PRIMARY KEY,      -- the delivery id (its SHA-256 past 2 KiB)
///     token      TEXT,                   -- the claim's token; NULL once completed
///     completed  BOOLEAN NOT NULL DEFAULT FALSE,
///     expires_at TIMESTAMPTZ NOT NULL    -- end of the lease, or of the dedup window
/// );
/// CREATE INDEX IF NOT EXISTS "webhook_claims_expires_at_idx" ON "webhook_claims" (expires_at);
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    table: Arc<str>,
    sql: Arc<Sql>,
}

/// The statements of one table, made once.
#[derive(Debug)]
struct Sql {
    create_table: String,
    create_index: String,
    claim: String,
    complete: String,
    release: String,
    cleanup: String,
}

impl Sql {
    fn new(schema: Option<&str>, name: &str) -> Self {
        let qualified = match schema {
            Some(schema) => format!("\"{schema}\".\"{name}\""),
            None => format!("\"{name}\""),
        };
        let t = qualified;
        Self {
            create_table: format!(
                "CREATE TABLE IF NOT EXISTS {t} (
                    key BYTEA PRIMARY KEY,
                    token TEXT,
                    completed BOOLEAN NOT NULL DEFAULT FALSE,
                    expires_at TIMESTAMPTZ NOT NULL
                )"
            ),
            create_index: format!(
                "CREATE INDEX IF NOT EXISTS \"{name}_expires_at_idx\" ON {t} (expires_at)"
            ),
            // A row the INSERT did not take is read from the statement's snapshot. If that
            // row is missing or expired there, another claim took the key after the
            // snapshot: it is in flight.
            claim: format!(
                "WITH taken AS (
                    INSERT INTO {t} AS c (key, token, completed, expires_at)
                    VALUES ($1, $2, FALSE, now() + make_interval(secs => $3))
                    ON CONFLICT (key) DO UPDATE
                        SET token = excluded.token, completed = FALSE, expires_at = excluded.expires_at
                        WHERE c.expires_at <= now()
                    RETURNING 1
                )
                SELECT CASE
                    WHEN EXISTS (SELECT 1 FROM taken) THEN 'acquired'
                    WHEN EXISTS (
                        SELECT 1 FROM {t} WHERE key = $1 AND completed AND expires_at > now()
                    ) THEN 'completed'
                    ELSE 'in_flight'
                END"
            ),
            complete: format!(
                "UPDATE {t}
                SET completed = TRUE, token = NULL, expires_at = now() + make_interval(secs => $3)
                WHERE key = $1 AND token = $2 AND NOT completed AND expires_at > now()"
            ),
            release: format!(
                "DELETE FROM {t}
                WHERE key = $1 AND token = $2 AND NOT completed AND expires_at > now()"
            ),
            // The outer condition is checked again on rows a concurrent claim just took, so
            // that cleanup never deletes a live claim.
            cleanup: format!(
                "DELETE FROM {t}
                WHERE key IN (SELECT key FROM {t} WHERE expires_at <= now() LIMIT $1)
                AND expires_at <= now()"
            ),
        }
    }
}

impl PostgresStore {
    /// The default table name.
    pub const DEFAULT_TABLE: &'static str = "webhook_claims";

    /// A store in the table [`DEFAULT_TABLE`](Self::DEFAULT_TABLE), on `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            table: Arc::from(Self::DEFAULT_TABLE),
            sql: Arc::new(Sql::new(None, Self::DEFAULT_TABLE)),
        }
    }

    /// Uses the table `name`, optionally schema-qualified (`schema.table`). Each part must be
    /// a plain identifier (letters, digits and `_`, not starting with a digit). The table part
    /// may have up to 40 characters, so that the index named after it fits PostgreSQL's limit.
    pub fn with_table(mut self, name: &str) -> Result<Self, InvalidTableName> {
        let (schema, table) = table_parts(name).ok_or_else(|| InvalidTableName {
            name: name.to_owned(),
        })?;
        self.table = Arc::from(name);
        self.sql = Arc::new(Sql::new(schema, table));
        Ok(self)
    }

    /// Creates the table and its index if they do not exist. Safe to call from every replica
    /// at start: an advisory lock makes concurrent calls wait for each other.
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('tower-webhook:' || $1))")
            .bind(&*self.table)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sqlx::query(&self.sql.create_table)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sqlx::query(&self.sql.create_index)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)
    }

    /// Deletes expired rows, in batches, and returns how many it deleted.
    pub async fn cleanup(&self) -> Result<u64, StoreError> {
        let mut deleted = 0;
        loop {
            let batch = sqlx::query(&self.sql.cleanup)
                .bind(CLEANUP_BATCH)
                .execute(&self.pool)
                .await
                .map_err(store_error)?
                .rows_affected();
            deleted += batch;
            if batch < CLEANUP_BATCH.unsigned_abs() {
                return Ok(deleted);
            }
        }
    }

    /// Runs [`cleanup`](Self::cleanup) every `every` on the Tokio runtime, logging failures.
    /// It runs until the returned handle is aborted or the runtime shuts down.
    pub fn spawn_cleanup(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match store.cleanup().await {
                    Ok(deleted) => {
                        tracing::debug!(deleted, table = %store.table, "webhook claims cleaned up");
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, table = %store.table, "webhook claims cleanup failed");
                    }
                }
            }
        })
    }

    /// The pool the store runs on.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// The optional schema and the table of `schema.table` or `table`, if each is a plain
/// identifier that fits.
fn table_parts(name: &str) -> Option<(Option<&str>, &str)> {
    let (schema, table) = match name.split_once('.') {
        Some((schema, table)) => (Some(schema), table),
        None => (None, name),
    };
    let valid = schema.map_or(true, |schema| is_identifier(schema, 63)) && is_identifier(table, 40);
    valid.then_some((schema, table))
}

fn is_identifier(part: &str, max_len: usize) -> bool {
    let mut chars = part.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && part.len() <= max_len
}

/// The stored form of a key: its bytes, or a marked SHA-256 of them when too long. The mark
/// (0xFF) never occurs in UTF-8, so no id can collide with a hashed one.
fn stored_key(key: &str) -> Vec<u8> {
    if key.len() <= MAX_KEY_BYTES {
        return key.as_bytes().to_vec();
    }
    let mut stored = b"\xffsha256:".to_vec();
    stored.extend_from_slice(&Sha256::digest(key.as_bytes()));
    stored
}

fn store_error(err: sqlx::Error) -> StoreError {
    let unreachable = match &err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // Class 08 is "connection exception"; 57P01 to 57P03 are shutdowns and start-ups.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    };
    let kind = if unreachable {
        StoreErrorKind::Unavailable
    } else {
        StoreErrorKind::Backend
    };
    StoreError::new(kind, err)
}

impl IdempotencyStore for PostgresStore {
    async fn claim(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        let token = ClaimToken::random();
        let outcome: String = sqlx::query_scalar(&self.sql.claim)
            .bind(stored_key(key))
            .bind(token.as_str())
            .bind(lease.as_secs_f64())
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        match outcome.as_str() {
            "acquired" => Ok(Claim::Acquired(token)),
            "completed" => Ok(Claim::Completed),
            "in_flight" => Ok(Claim::InFlight),
            other => Err(StoreError::new(
                StoreErrorKind::Backend,
                format!("unexpected claim outcome {other:?}"),
            )),
        }
    }

    async fn complete(
        &self,
        key: &str,
        token: &ClaimToken,
        keep_for: Duration,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(&self.sql.complete)
            .bind(stored_key(key))
            .bind(token.as_str())
            .bind(keep_for.as_secs_f64())
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release(&self, key: &str, token: &ClaimToken) -> Result<bool, StoreError> {
        let done = sqlx::query(&self.sql.release)
            .bind(stored_key(key))
            .bind(token.as_str())
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected() == 1)
    }
}

/// A table name [`PostgresStore::with_table`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidTableName {
    name: String,
}

impl fmt::Display for InvalidTableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid table name {:?}: use `table` or `schema.table`, each a plain identifier \
             (letters, digits, `_`), the table at most 40 characters",
            self.name
        )
    }
}

impl Error for InvalidTableName {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names() {
        for ok in ["webhook_claims", "_t", "app.webhook_claims", "T1"] {
            assert!(table_parts(ok).is_some(), "{ok}");
        }
        let long = "t".repeat(41);
        for bad in [
            "",
            "1abc",
            "a-b",
            "a b",
            "a;drop table x",
            "\"quoted\"",
            "a.b.c",
            ".t",
            "s.",
            "ünï",
            long.as_str(),
        ] {
            assert!(table_parts(bad).is_none(), "{bad}");
        }
        assert_eq!(table_parts("app.claims"), Some((Some("app"), "claims")));
    }

    #[test]
    fn long_keys_are_hashed_apart() {
        let a = "k".repeat(MAX_KEY_BYTES + 1);
        let b = format!("{}j", "k".repeat(MAX_KEY_BYTES));
        assert_ne!(stored_key(&a), stored_key(&b));
        assert_eq!(stored_key(&a).len(), 8 + 32);
        assert_eq!(stored_key("msg_1"), b"msg_1");
    }
}
