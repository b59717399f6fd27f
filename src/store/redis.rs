//! The Redis store, for replicas that share one Redis.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::{RedisError, Script};

/// The `redis` crate this store is built on, so that your connection's version matches.
pub use ::redis;

use super::{
    stored_key, ttl_millis, Claim, ClaimToken, IdempotencyStore, StoreError, StoreErrorKind,
};
use crate::pipeline::key::escape_segment;

/// The value of a completed key.
const COMPLETED: &str = "completed";
/// The value of a claimed key is this prefix and the claim's token.
const IN_FLIGHT: &str = "inflight:";

/// Compare-and-set on the claim's token: only the claim that holds the key completes it.
const COMPLETE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
    return 1
end
return 0
";

/// Compare-and-delete on the claim's token: only the claim that holds the key releases it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
    return 1
end
return 0
";

/// An [`IdempotencyStore`] in Redis, shared by every replica that uses the same server.
///
/// Each call is one round trip on one key, so it also runs against Redis Cluster:
///
/// - `claim` is `SET <prefix><id> inflight:<token> NX PX <lease> GET`. The key is set only if
///   it is absent, and the old value, if any, tells a completed key from one in flight. This
///   needs Redis 7.0 or later (or Valkey).
/// - `complete` and `release` are Lua scripts that compare the stored token before they
///   change anything, so a claim whose lease ran out cannot undo the next one.
/// - A completed key holds `completed` and expires after the dedup window. Redis expires
///   every key by itself: nothing needs cleaning up.
///
/// A Redis key is the store's prefix (`tower-webhook` by default), `:`, and the layer's key,
/// which carries the layer's name: `tower-webhook:github:ib:<body hash>:<delivery id>`. One
/// store serves every layer of an application. A key is at most a few hundred bytes (see
/// [`IdSource`](crate::IdSource)); a longer one given to the store directly is stored as its
/// SHA-256.
///
/// ```no_run
/// use tower_webhook::store::RedisStore;
///
/// # async fn doc() -> Result<(), tower_webhook::store::StoreError> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?.with_prefix("billing");
/// # Ok(())
/// # }
/// ```
///
/// [`connect`](RedisStore::connect) makes a [`ConnectionManager`], which reconnects by itself
/// after the server goes away; [`new`](RedisStore::new) takes any connection you already have.
#[derive(Clone)]
pub struct RedisStore<C = ConnectionManager> {
    connection: C,
    prefix: Arc<str>,
    complete: Arc<Script>,
    release: Arc<Script>,
}

impl RedisStore<ConnectionManager> {
    /// Connects to the Redis at `url` with a [`ConnectionManager`] that reconnects by itself.
    ///
    /// Commands time out after two seconds, and a lost connection is retried twice before a
    /// call fails. A call that fails answers 503 at once, and the sender retries. A long wait
    /// would only hold the sender's connection open.
    ///
    /// ```no_run
    /// use tower_webhook::store::RedisStore;
    ///
    /// # async fn doc() -> Result<(), tower_webhook::store::StoreError> {
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let client = ::redis::Client::open(url).map_err(store_error)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(store_error)?;
        Ok(Self::new(connection))
    }
}

impl<C> RedisStore<C> {
    /// The default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "tower-webhook";

    /// A store on a connection you already have: a [`ConnectionManager`], a
    /// `MultiplexedConnection`, or any other cloneable async connection.
    ///
    /// A connection without a response timeout waits as long as Redis does; the layer still
    /// answers `503` after its [store timeout](crate::VerifyWebhookLayer::with_store_timeout).
    ///
    /// ```no_run
    /// use tower_webhook::store::RedisStore;
    /// use tower_webhook::store::redis::redis::Client;
    ///
    /// # async fn doc() -> Result<(), Box<dyn std::error::Error>> {
    /// // A connection your app already has, from the same `redis` crate.
    /// let connection = Client::open("redis://127.0.0.1:6379")?.get_multiplexed_async_connection().await?;
    /// let store = RedisStore::new(connection);
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(connection: C) -> Self {
        Self {
            connection,
            prefix: Arc::from(format!("{}:", Self::DEFAULT_PREFIX)),
            complete: Arc::new(Script::new(COMPLETE)),
            release: Arc::new(Script::new(RELEASE)),
        }
    }

    /// Sets the prefix of every key the store writes, to keep them apart from other data in
    /// the same Redis, or from another application's webhooks.
    ///
    /// The prefix is one segment, joined to the key with `:` (a trailing `:` is taken as that
    /// separator). A `:` or `%` inside it is percent-escaped, so that no two prefixes can
    /// write the same key: `a` with the key `b:c` and `a:b` with the key `c` stay apart.
    /// Layers need no prefix of their own: their keys carry their names.
    ///
    /// ```no_run
    /// use tower_webhook::store::RedisStore;
    ///
    /// # async fn doc() -> Result<(), tower_webhook::store::StoreError> {
    /// // Keys like `billing:stripe:i:evt_1`.
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?.with_prefix("billing");
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl AsRef<str>) -> Self {
        let prefix = prefix.as_ref();
        let segment = prefix.strip_suffix(':').unwrap_or(prefix);
        self.prefix = Arc::from(format!("{}:", escape_segment(segment)));
        self
    }

    fn key(&self, key: &str) -> Vec<u8> {
        let stored = stored_key(key);
        let mut full = Vec::with_capacity(self.prefix.len() + stored.len());
        full.extend_from_slice(self.prefix.as_bytes());
        full.extend_from_slice(&stored);
        full
    }
}

impl<C> fmt::Debug for RedisStore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn store_error(err: RedisError) -> StoreError {
    let unreachable = err.is_io_error()
        || err.is_connection_refusal()
        || err.is_connection_dropped()
        || err.is_timeout();
    let kind = if unreachable {
        StoreErrorKind::Unavailable
    } else {
        StoreErrorKind::Backend
    };
    StoreError::new(kind, err)
}

impl<C> IdempotencyStore for RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn claim(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        let token = ClaimToken::random();
        let previous: Option<String> = ::redis::cmd("SET")
            .arg(self.key(key))
            .arg(format!("{IN_FLIGHT}{}", token.as_str()))
            .arg("NX")
            .arg("PX")
            .arg(ttl_millis(lease))
            .arg("GET")
            .query_async(&mut self.connection.clone())
            .await
            .map_err(store_error)?;
        Ok(match previous.as_deref() {
            None => Claim::Acquired(token),
            Some(COMPLETED) => Claim::Completed,
            Some(_) => Claim::InFlight,
        })
    }

    async fn complete(
        &self,
        key: &str,
        token: &ClaimToken,
        keep_for: Duration,
    ) -> Result<bool, StoreError> {
        let done: i64 = self
            .complete
            .key(self.key(key))
            .arg(format!("{IN_FLIGHT}{}", token.as_str()))
            .arg(COMPLETED)
            .arg(ttl_millis(keep_for))
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(store_error)?;
        Ok(done == 1)
    }

    async fn release(&self, key: &str, token: &ClaimToken) -> Result<bool, StoreError> {
        let done: i64 = self
            .release
            .key(self.key(key))
            .arg(format!("{IN_FLIGHT}{}", token.as_str()))
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(store_error)?;
        Ok(done == 1)
    }
}
