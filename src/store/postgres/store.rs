//! `PostgresStore`: its settings, its batchers, and the store calls.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::PgPool;

use super::error::store_error;
use super::statements::{Claims, Settles, Statements};
use super::table::{table_parts, InvalidTableName, Sql};
use crate::batch::Batcher;
use crate::store::writers::Writers;
use crate::store::{stored_key, ttl_millis, ClaimToken, StoreError};

/// An [`IdempotencyStore`](crate::store::IdempotencyStore) in a PostgreSQL table, shared by every replica that uses the same
/// database.
///
/// Each call is one row of a statement on the pool you pass in:
///
/// - `claim` is an `INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE <expired>`. It takes a
///   fresh key, or a key whose lease or dedup window has run out. In the same statement it
///   reads a live key that it did not take, to tell a completed key from one in flight.
/// - `complete` and `release` are an `UPDATE` and a `DELETE` that only touch the row if it
///   still holds the claim's token and its lease has not run out.
///
/// Calls that arrive while the store is busy share a statement (group commit): the store
/// runs at most [`max_statements`](Self::with_max_statements) statements of each kind at
/// once, and the calls that come in meanwhile go out together in the next one, up to
/// [`max_batch`](Self::with_max_batch) calls each. An idle store sends each call at once,
/// alone; a busy one pays PostgreSQL's cost per statement (the round trip, the transaction,
/// the commit) once per batch rather than once per call. Each call is still atomic, and so
/// is its whole statement.
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
    pub(super) pool: PgPool,
    pub(super) table: Arc<str>,
    pub(super) sql: Arc<Sql>,
    statement_timeout: Duration,
    synchronous_commit: bool,
    max_batch: usize,
    max_statements: usize,
    /// Made on the first call from the settings above, and shared by the clones made after
    /// the last setting; each setter starts anew.
    batchers: Arc<OnceLock<Batchers>>,
    /// How many handlers' transactions (`Tx`) may be open at once on the pool.
    writers: Arc<Writers>,
}

/// The queue of each kind of call, and its statements under way.
pub(super) struct Batchers {
    pub(super) claims: Arc<Batcher<Claims>>,
    pub(super) completions: Arc<Batcher<Settles>>,
    pub(super) releases: Arc<Batcher<Settles>>,
}

impl PostgresStore {
    /// The default table name.
    pub const DEFAULT_TABLE: &'static str = "webhook_claims";
    /// The default [statement timeout](Self::with_statement_timeout) of a claim: 4 seconds,
    /// under the layer's default store timeout of 5.
    pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(4);
    /// The default of [`with_max_batch`](Self::with_max_batch): 64 calls per statement.
    pub const DEFAULT_MAX_BATCH: usize = 64;
    /// The default of [`with_max_statements`](Self::with_max_statements): one statement of
    /// each kind at once.
    pub const DEFAULT_MAX_STATEMENTS: usize = 1;

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
            table: Arc::from(Self::DEFAULT_TABLE),
            sql: Arc::new(Sql::new(None, Self::DEFAULT_TABLE)),
            statement_timeout: Self::DEFAULT_STATEMENT_TIMEOUT,
            synchronous_commit: false,
            max_batch: Self::DEFAULT_MAX_BATCH,
            max_statements: Self::DEFAULT_MAX_STATEMENTS,
            batchers: Arc::default(),
            writers: Writers::new(&pool, false),
            pool,
        }
    }

    /// Sets the most calls one statement carries (at least one; one sends every call
    /// alone). A larger batch costs PostgreSQL less per call; its statement holds its rows'
    /// locks a little longer.
    ///
    /// ```
    /// use tower_webhook::store::PostgresStore;
    /// use tower_webhook::store::postgres::sqlx::postgres::PgPoolOptions;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = PgPoolOptions::new().connect_lazy("postgres://postgres@127.0.0.1:5432/app")?;
    /// let store = PostgresStore::new(pool).with_max_batch(16);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn with_max_batch(self, calls: usize) -> Self {
        Self {
            max_batch: calls.max(1),
            ..self.anew()
        }
    }

    /// Sets the most statements of each kind (claims, completions, releases) the store
    /// runs at once (at least one; one by default). Calls that arrive while that many run
    /// wait, and go out together in the next statement to start. Each statement holds a
    /// connection of the pool while it runs: keep three times this within the pool's size,
    /// or statements wait for connections too.
    ///
    /// One statement of each kind makes the largest batches: on a 2-core machine it served
    /// 1.5 to 2.5 times the deliveries per second of one statement per call, and more at
    /// once only made PostgreSQL work harder per call. More help a database with many cores under
    /// heavy load, and keep claims flowing while one statement waits for a row lock (a
    /// claim waits no longer than its [statement
    /// timeout](Self::with_statement_timeout), queue included).
    ///
    /// ```
    /// use tower_webhook::store::PostgresStore;
    /// use tower_webhook::store::postgres::sqlx::postgres::PgPoolOptions;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = PgPoolOptions::new()
    ///     .max_connections(24)
    ///     .connect_lazy("postgres://postgres@127.0.0.1:5432/app")?;
    /// let store = PostgresStore::new(pool).with_max_statements(8);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn with_max_statements(self, statements: usize) -> Self {
        Self {
            max_statements: statements.max(1),
            ..self.anew()
        }
    }

    /// The same settings, with batchers of its own to be made from them.
    fn anew(self) -> Self {
        Self {
            batchers: Arc::default(),
            ..self
        }
    }

    pub(super) fn batchers(&self) -> &Batchers {
        self.batchers.get_or_init(|| {
            let statements = Arc::new(Statements {
                pool: self.pool.clone(),
                sql: Arc::clone(&self.sql),
                statement_timeout: self.statement_timeout,
                commit_mode: self.commit_mode(),
            });
            let (rows, at_once) = (self.max_batch, self.max_statements);
            let settles = |complete| Settles {
                statements: Arc::clone(&statements),
                complete,
            };
            Batchers {
                claims: Arc::new(Batcher::new(Claims(Arc::clone(&statements)), rows, at_once)),
                completions: Arc::new(Batcher::new(settles(true), rows, at_once)),
                releases: Arc::new(Batcher::new(settles(false), rows, at_once)),
            }
        })
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
    pub fn with_synchronous_commit(self, wait: bool) -> Self {
        Self {
            synchronous_commit: wait,
            ..self.anew()
        }
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
            .options([
                ("statement_timeout", timeout.as_str()),
                // Not the notices of `IF NOT EXISTS` (a schema or table there already), which
                // sqlx would log at info on every start.
                ("client_min_messages", "warning"),
            ]);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options)
            .await
            .map_err(store_error)?;
        Ok(Self::new(pool))
    }

    /// Sets how late a claim may still be written, counted from when the claim was made:
    /// its wait in the store's queue for a statement (see
    /// [`with_max_statements`](Self::with_max_statements)), then, by the database, its
    /// statement's wait. A claim that waited longer (for a lock on the table, say) writes
    /// nothing and fails as unavailable.
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
    pub fn with_statement_timeout(self, timeout: Duration) -> Self {
        Self {
            statement_timeout: timeout.max(Duration::from_millis(1)),
            ..self.anew()
        }
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
    pub fn with_table(self, name: &str) -> Result<Self, InvalidTableName> {
        let (schema, table) = table_parts(name).ok_or_else(|| InvalidTableName {
            name: name.to_owned(),
        })?;
        Ok(Self {
            table: Arc::from(name),
            sql: Arc::new(Sql::new(schema, table)),
            ..self.anew()
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

    /// Who writes to the store's database, for a `Tx` (`crate::tx::TxStore`).
    pub(crate) fn writers(&self) -> &Arc<Writers> {
        &self.writers
    }

    /// Completes the claim of `key` held by `token` on `conn`, a handler's transaction.
    pub(crate) async fn complete_on(
        &self,
        conn: &mut sqlx::PgConnection,
        key: &str,
        token: &ClaimToken,
        keep_for: Duration,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(self.sql.complete_in.clone())
            .bind(&*stored_key(key))
            .bind(token.as_str())
            .bind(secs(keep_for))
            .execute(conn)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected() == 1)
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table", &self.table)
            .field("statement_timeout", &self.statement_timeout)
            .field("synchronous_commit", &self.synchronous_commit)
            .field("max_batch", &self.max_batch)
            .field("max_statements", &self.max_statements)
            .finish_non_exhaustive()
    }
}

/// Seconds of a lease or window, within what every store keeps.
pub(super) fn secs(ttl: Duration) -> f64 {
    Duration::from_millis(ttl_millis(ttl)).as_secs_f64()
}
