//! The PostgreSQL store, for replicas that share one database.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{AssertSqlSafe, PgPool, SqlSafeStr, SqlStr};

/// The `sqlx` this store is built on, so that your pool's version matches.
pub use sqlx;

use super::{
    stored_key, ttl_millis, Claim, ClaimToken, IdempotencyStore, StoreError, StoreErrorKind,
};
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
/// Time is the database's `now()`, one clock for every replica. A claim that waited for a
/// lock longer than its [statement timeout](Self::with_statement_timeout) writes nothing, so
/// a claim the layer gave up on (and answered `503`) never holds the delivery afterwards.
///
/// One table serves every layer of an application: the layer's keys carry its name.
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
///     key        BYTEA PRIMARY KEY,      -- the layer's key (its SHA-256 past 512 bytes)
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
    statement_timeout: Duration,
    synchronous_commit: bool,
}

/// The statements of one table, made once. Each is shared with every query that runs it,
/// as sqlx's `SqlStr` (no copy per query). They are safe to run as they are: the only part
/// not written here is the table's name, which `table_parts` checks to be plain identifiers.
#[derive(Debug)]
struct Sql {
    create_table: SqlStr,
    create_index: SqlStr,
    claim: SqlStr,
    complete: SqlStr,
    release: SqlStr,
    cleanup: SqlStr,
}

impl Sql {
    fn new(schema: Option<&str>, name: &str) -> Self {
        let qualified = match schema {
            Some(schema) => format!("\"{schema}\".\"{name}\""),
            None => format!("\"{name}\""),
        };
        let t = qualified;
        let sql = |text: String| AssertSqlSafe(Arc::<str>::from(text)).into_sql_str();
        Self {
            create_table: sql(format!(
                "CREATE TABLE IF NOT EXISTS {t} (
                    key BYTEA PRIMARY KEY,
                    token TEXT,
                    completed BOOLEAN NOT NULL DEFAULT FALSE,
                    expires_at TIMESTAMPTZ NOT NULL
                )"
            )),
            create_index: sql(format!(
                "CREATE INDEX IF NOT EXISTS \"{name}_expires_at_idx\" ON {t} (expires_at)"
            )),
            // A row the INSERT did not take is read from the statement's snapshot. If that
            // row is missing or expired there, another claim took the key after the
            // snapshot: it is in flight.
            //
            // Each statement sets `synchronous_commit` for its own transaction (`set_config`
            // with `is_local`): one round trip, and the pool's sessions keep their setting.
            //
            // `now()` is when the statement's transaction began, before a wait for a lock at
            // Bind; `clock_timestamp()` is the time as each row is written. A claim that would
            // be written more than $4 seconds after that writes nothing and answers `late`:
            // its caller has given up on it, and a claim nobody holds would make every retry
            // wait for its lease.
            claim: sql(format!(
                "WITH taken AS (
                    INSERT INTO {t} AS c (key, token, completed, expires_at)
                    SELECT $1, $2, FALSE, now() + make_interval(secs => $3)
                    WHERE clock_timestamp() < now() + make_interval(secs => $4)
                    ON CONFLICT (key) DO UPDATE
                        SET token = excluded.token, completed = FALSE, expires_at = excluded.expires_at
                        WHERE c.expires_at <= now()
                        AND clock_timestamp() < now() + make_interval(secs => $4)
                    RETURNING 1
                )
                SELECT CASE
                    WHEN EXISTS (SELECT 1 FROM taken) THEN 'acquired'
                    WHEN clock_timestamp() >= now() + make_interval(secs => $4) THEN 'late'
                    WHEN EXISTS (
                        SELECT 1 FROM {t} WHERE key = $1 AND completed AND expires_at > now()
                    ) THEN 'completed'
                    ELSE 'in_flight'
                END
                FROM (SELECT set_config('synchronous_commit', $5, true)) AS commit_mode"
            )),
            complete: sql(format!(
                "UPDATE {t}
                SET completed = TRUE, token = NULL, expires_at = now() + make_interval(secs => $3)
                WHERE key = $1 AND token = $2 AND NOT completed AND expires_at > now()
                AND (SELECT set_config('synchronous_commit', $4, true)) IS NOT NULL"
            )),
            release: sql(format!(
                "DELETE FROM {t}
                WHERE key = $1 AND token = $2 AND NOT completed AND expires_at > now()
                AND (SELECT set_config('synchronous_commit', $3, true)) IS NOT NULL"
            )),
            // The outer condition is checked again on rows a concurrent claim just took, so
            // that cleanup never deletes a live claim.
            cleanup: sql(format!(
                "DELETE FROM {t}
                WHERE key IN (SELECT key FROM {t} WHERE expires_at <= now() LIMIT $1)
                AND expires_at <= now()"
            )),
        }
    }
}

impl PostgresStore {
    /// The default table name.
    pub const DEFAULT_TABLE: &'static str = "webhook_claims";
    /// The default [statement timeout](Self::with_statement_timeout) of a claim: 4 seconds,
    /// under the layer's default store timeout of 5.
    pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(4);

    /// A store in the table [`DEFAULT_TABLE`](Self::DEFAULT_TABLE), on `pool`.
    ///
    /// ```no_run
    /// use tower_webhook::store::PostgresStore;
    /// use tower_webhook::store::postgres::sqlx::PgPool;
    ///
    /// # async fn doc() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = PgPool::connect("postgres://postgres@127.0.0.1:5432/app").await?;
    /// let store = PostgresStore::new(pool);
    /// store.create_table().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            table: Arc::from(Self::DEFAULT_TABLE),
            sql: Arc::new(Sql::new(None, Self::DEFAULT_TABLE)),
            statement_timeout: Self::DEFAULT_STATEMENT_TIMEOUT,
            synchronous_commit: false,
        }
    }

    /// Whether each claim and completion waits for its commit to reach the disk
    /// (`synchronous_commit`). Off by default: the store's commits return at once, and the
    /// WAL writer flushes them within a fraction of a second.
    ///
    /// What a database crash can cost in that fraction of a second is at worst one more run
    /// of a handler, never a lost event: a lost claim is a lease that ends early, and a lost
    /// completion lets a later copy of that delivery run again, which at-least-once delivery
    /// allows. A commit waited for costs a WAL flush for every statement, two per delivery.
    /// Each statement sets this for its own transaction only; the pool's sessions keep theirs.
    ///
    /// ```
    /// use tower_webhook::store::PostgresStore;
    /// use tower_webhook::store::postgres::sqlx::postgres::PgPoolOptions;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = PgPoolOptions::new().connect_lazy("postgres://postgres@127.0.0.1:5432/app")?;
    /// let store = PostgresStore::new(pool).with_synchronous_commit(true);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn with_synchronous_commit(mut self, wait: bool) -> Self {
        self.synchronous_commit = wait;
        self
    }

    fn commit_mode(&self) -> &'static str {
        if self.synchronous_commit {
            "on"
        } else {
            "off"
        }
    }

    /// Connects a pool of its own to the database at `url`, for this store alone, on which
    /// PostgreSQL cancels any statement that runs longer than
    /// [`DEFAULT_STATEMENT_TIMEOUT`](Self::DEFAULT_STATEMENT_TIMEOUT) (its
    /// `statement_timeout`), and which gives up waiting for a free connection after 3 s.
    ///
    /// A claim stalled behind a lock is then cancelled by the server: it frees its
    /// connection and leaves nothing behind. With a pool of your own ([`new`](Self::new)),
    /// set the same on its connections if you can
    /// (`PgConnectOptions::options([("statement_timeout", "4s")])`); the store's own
    /// deadline (see [`with_statement_timeout`](Self::with_statement_timeout)) still keeps a
    /// late claim from being written.
    ///
    /// ```no_run
    /// use tower_webhook::store::PostgresStore;
    ///
    /// # async fn doc() -> Result<(), tower_webhook::store::StoreError> {
    /// let store = PostgresStore::connect("postgres://postgres@127.0.0.1:5432/app").await?;
    /// store.create_table().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let timeout = Self::DEFAULT_STATEMENT_TIMEOUT.as_millis().to_string();
        let options = url
            .parse::<sqlx::postgres::PgConnectOptions>()
            .map_err(store_error)?
            .options([("statement_timeout", timeout.as_str())]);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options)
            .await
            .map_err(store_error)?;
        Ok(Self::new(pool))
    }

    /// Sets how late a claim may still be written, counted by the database from when the
    /// claim's transaction began. A claim that waited longer (for a lock on the table, say)
    /// writes nothing and fails as unavailable.
    ///
    /// Keep it under the layer's [store
    /// timeout](crate::VerifyWebhookLayer::with_store_timeout): a claim the layer has given
    /// up on must not be taken after all, or the retries of that delivery would wait for its
    /// lease. (The layer also releases such a claim once it is taken; this keeps it from
    /// being written at all.)
    ///
    /// The check holds once the claim's statement is prepared on its connection, that is for
    /// every claim but the first on each connection: sqlx prepares a statement in a
    /// transaction of its own, and a wait for a lock there is not counted. The statement goes
    /// on waiting for its lock meanwhile, holding its connection; to have PostgreSQL cancel
    /// it, use [`connect`](Self::connect) or set `statement_timeout` on your pool.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_webhook::store::PostgresStore;
    /// use tower_webhook::store::postgres::sqlx::postgres::PgPoolOptions;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = PgPoolOptions::new().connect_lazy("postgres://postgres@127.0.0.1:5432/app")?;
    /// // The layer waits 3 s for the store; a claim written later than 2 s is not written at all.
    /// let store = PostgresStore::new(pool).with_statement_timeout(Duration::from_secs(2));
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn with_statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Uses the table `name`, optionally schema-qualified (`schema.table`). Each part must be
    /// a plain identifier (letters, digits and `_`, not starting with a digit). The table part
    /// may have up to 40 characters, so that the index named after it fits PostgreSQL's limit.
    ///
    /// ```
    /// use tower_webhook::store::PostgresStore;
    /// use tower_webhook::store::postgres::sqlx::postgres::PgPoolOptions;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = PgPoolOptions::new().connect_lazy("postgres://postgres@127.0.0.1:5432/app")?;
    /// let store = PostgresStore::new(pool.clone()).with_table("webhooks.claims")?;
    /// assert!(PostgresStore::new(pool).with_table("claims; DROP TABLE users").is_err());
    /// # Ok(())
    /// # }
    /// ```
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
    ///
    /// ```no_run
    /// # async fn doc(store: tower_webhook::store::PostgresStore) -> Result<(), tower_webhook::store::StoreError> {
    /// // At start, from every replica: they wait for each other.
    /// store.create_table().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('tower-webhook:' || $1))")
            .bind(&*self.table)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sqlx::query(self.sql.create_table.clone())
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sqlx::query(self.sql.create_index.clone())
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)
    }

    /// Deletes expired rows, in batches, and returns how many it deleted.
    ///
    /// ```no_run
    /// # async fn doc(store: tower_webhook::store::PostgresStore) -> Result<(), tower_webhook::store::StoreError> {
    /// let deleted = store.cleanup().await?;
    /// println!("deleted {deleted} expired claims");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn cleanup(&self) -> Result<u64, StoreError> {
        let mut deleted = 0;
        loop {
            let batch = sqlx::query(self.sql.cleanup.clone())
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
    ///
    /// ```no_run
    /// # async fn doc(store: tower_webhook::store::PostgresStore) {
    /// let cleanup = store.spawn_cleanup(std::time::Duration::from_secs(3600));
    /// // ... and at shutdown:
    /// cleanup.abort();
    /// # }
    /// ```
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
    ///
    /// ```no_run
    /// # async fn doc(store: tower_webhook::store::PostgresStore) -> Result<(), Box<dyn std::error::Error>> {
    /// let claims: i64 = tower_webhook::store::postgres::sqlx::query_scalar("SELECT count(*) FROM webhook_claims")
    ///     .fetch_one(store.pool())
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table", &self.table)
            .field("statement_timeout", &self.statement_timeout)
            .field("synchronous_commit", &self.synchronous_commit)
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

/// Seconds of a lease or window, within what every store keeps.
fn secs(ttl: Duration) -> f64 {
    Duration::from_millis(ttl_millis(ttl)).as_secs_f64()
}

pub(crate) fn store_error(err: sqlx::Error) -> StoreError {
    // Class 08 is "connection exception"; 57P01 to 57P03 are shutdowns and start-ups; 57014
    // is a statement cancelled by `statement_timeout`.
    super::sqlx_error(err, |code| {
        code.starts_with("08") || code.starts_with("57P") || code == "57014"
    })
}

impl IdempotencyStore for PostgresStore {
    async fn claim(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        let token = ClaimToken::random();
        let outcome: String = sqlx::query_scalar(self.sql.claim.clone())
            .bind(&*stored_key(key))
            .bind(token.as_str())
            .bind(secs(lease))
            .bind(self.statement_timeout.as_secs_f64())
            .bind(self.commit_mode())
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        match outcome.as_str() {
            "acquired" => Ok(Claim::Acquired(token)),
            "completed" => Ok(Claim::Completed),
            "in_flight" => Ok(Claim::InFlight),
            "late" => Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "the claim waited past its statement timeout and wrote nothing",
            )),
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
        let done = sqlx::query(self.sql.complete.clone())
            .bind(&*stored_key(key))
            .bind(token.as_str())
            .bind(secs(keep_for))
            .bind(self.commit_mode())
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release(&self, key: &str, token: &ClaimToken) -> Result<bool, StoreError> {
        let done = sqlx::query(self.sql.release.clone())
            .bind(&*stored_key(key))
            .bind(token.as_str())
            .bind(self.commit_mode())
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected() == 1)
    }
}

/// A table name [`PostgresStore::with_table`] refused.
///
/// ```
/// use tower_webhook::store::PostgresStore;
/// use tower_webhook::store::postgres::sqlx::postgres::PgPoolOptions;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = PgPoolOptions::new().connect_lazy("postgres://postgres@127.0.0.1:5432/app")?;
/// let err = PostgresStore::new(pool).with_table("1st-table").unwrap_err();
/// assert!(err.to_string().starts_with("invalid table name"));
/// # Ok(())
/// # }
/// ```
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
}
