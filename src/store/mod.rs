//! Idempotency stores: how the layer remembers which deliveries it has handled.
//!
//! Senders deliver at least once. The layer claims each delivery's id in a store before the
//! handler runs, completes the claim when the handler succeeds, and releases it when the
//! handler fails, so that exactly one copy of a delivery is handled at a time and a delivery
//! handled once is not handled again within the dedup window.

#[cfg(feature = "postgres")]
mod batch;
mod memory;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use self::postgres::PostgresStore;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::RedisStore;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use self::sqlite::SqliteStore;
pub use memory::MemoryStore;

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the layer records claims on delivery ids.
///
/// Every method must be atomic with respect to every other call on the same key, from any
/// process sharing the store: of N concurrent `claim`s of a fresh key exactly one gets
/// [`Claim::Acquired`]. Make the claim one atomic operation of the backend (an insert that
/// fails on conflict), never a read followed by a write.
///
/// Implement the methods with `async fn`; the futures must be `Send`.
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Mutex;
/// use std::time::Duration;
/// use tower_webhook::store::{Claim, ClaimToken, IdempotencyStore, StoreError};
///
/// /// A store that never forgets, for a sketch: one atomic step per call, under one lock.
/// #[derive(Debug, Default)]
/// struct Forever(Mutex<HashMap<String, Option<ClaimToken>>>);
///
/// impl IdempotencyStore for Forever {
///     async fn claim(&self, key: &str, _lease: Duration) -> Result<Claim, StoreError> {
///         let mut keys = self.0.lock().unwrap();
///         Ok(match keys.get(key) {
///             Some(None) => Claim::Completed,
///             Some(Some(_)) => Claim::InFlight,
///             None => {
///                 let token = ClaimToken::random();
///                 keys.insert(key.to_owned(), Some(token.clone()));
///                 Claim::Acquired(token)
///             }
///         })
///     }
///
///     async fn complete(&self, key: &str, token: &ClaimToken, _keep_for: Duration) -> Result<bool, StoreError> {
///         let mut keys = self.0.lock().unwrap();
///         let held = keys.get(key) == Some(&Some(token.clone()));
///         if held {
///             keys.insert(key.to_owned(), None);
///         }
///         Ok(held)
///     }
///
///     async fn release(&self, key: &str, token: &ClaimToken) -> Result<bool, StoreError> {
///         let mut keys = self.0.lock().unwrap();
///         let held = keys.get(key) == Some(&Some(token.clone()));
///         if held {
///             keys.remove(key);
///         }
///         Ok(held)
///     }
/// }
/// ```
pub trait IdempotencyStore: fmt::Debug + Send + Sync + 'static {
    /// Claims `key` for `lease`.
    ///
    /// Returns [`Claim::Acquired`] with a fresh token when the key is unknown, or when its
    /// last claim's lease has run out without being completed; [`Claim::Completed`] when a
    /// claim on it was completed within its dedup window; [`Claim::InFlight`] when another
    /// claim holds it and its lease has not run out.
    fn claim(
        &self,
        key: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;

    /// Marks the claim held by `token` as completed and keeps the key for `keep_for`.
    ///
    /// Returns `false` and changes nothing when `token` no longer holds the key: its lease ran
    /// out, or another claim took the key since.
    fn complete(
        &self,
        key: &str,
        token: &ClaimToken,
        keep_for: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives up the claim held by `token`, so that the next claim of `key` is acquired.
    ///
    /// Returns `false` and changes nothing when `token` no longer holds the key.
    fn release(
        &self,
        key: &str,
        token: &ClaimToken,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The answer to [`claim`](Self::claim), where the store has it at once without waiting
    /// (a store in this process's memory); `None`, the default, to be asked through `claim`.
    ///
    /// The layer asks here first: an answer spares it a boxed future for the call. A store
    /// that answers here must answer the same as `claim` would. `key` is the layer's own,
    /// shared: a store that keeps its keys can keep this `Arc` rather than a copy.
    fn claim_now(&self, key: &Arc<str>, lease: Duration) -> Option<Result<Claim, StoreError>> {
        let _ = (key, lease);
        None
    }

    /// The answer to [`complete`](Self::complete) at once, as for
    /// [`claim_now`](Self::claim_now).
    fn complete_now(
        &self,
        key: &str,
        token: &ClaimToken,
        keep_for: Duration,
    ) -> Option<Result<bool, StoreError>> {
        let _ = (key, token, keep_for);
        None
    }

    /// The answer to [`release`](Self::release) at once, as for
    /// [`claim_now`](Self::claim_now).
    fn release_now(&self, key: &str, token: &ClaimToken) -> Option<Result<bool, StoreError>> {
        let _ = (key, token);
        None
    }
}

/// The answer to [`IdempotencyStore::claim`].
///
/// ```
/// use std::time::Duration;
/// use tower_webhook::store::{Claim, IdempotencyStore, MemoryStore};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// match store.claim("msg_1", Duration::from_secs(60)).await? {
///     Claim::Acquired(token) => { /* handle, then complete or release with `token` */ }
///     Claim::Completed => { /* a duplicate: answer 200 */ }
///     Claim::InFlight => { /* another copy runs now: answer 429 */ }
/// }
/// # Ok::<(), tower_webhook::store::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key was free: the caller holds it until the lease runs out.
    Acquired(ClaimToken),
    /// The key was handled already, within its dedup window.
    Completed,
    /// Another claim holds the key and its lease has not run out.
    InFlight,
}

/// Proof of one claim: completing or releasing a key takes the token of the claim that holds
/// it, so a claim whose lease ran out cannot undo the claim that followed it.
///
/// ```
/// use tower_webhook::store::ClaimToken;
///
/// let token = ClaimToken::random();
/// assert_eq!(token.as_str().len(), 32);
/// assert_ne!(token, ClaimToken::random());
/// assert_eq!(format!("{token:?}"), "ClaimToken(..)"); // never shown
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClaimToken([u8; 32]);

impl ClaimToken {
    /// A new token: 128 bits as 32 hex digits, never the same twice in a process, and apart
    /// from every other process's (each draws a random seed once).
    ///
    /// Tokens must be unique, not secret: no one but the layer holds one. So a claim costs no
    /// system call and no allocation: the seed comes from the operating system once, and each
    /// token mixes it with a counter through a bijection.
    pub fn random() -> Self {
        static SEED: OnceLock<[u64; 2]> = OnceLock::new();
        let [high, low] = *SEED.get_or_init(seed);
        let n = next_token_number();
        let mut bits = [0u8; 16];
        bits[..8].copy_from_slice(&high.to_be_bytes());
        // splitmix64 is a bijection: distinct counters give distinct tokens.
        bits[8..].copy_from_slice(&splitmix64(low ^ n).to_be_bytes());
        let mut text = [0u8; 32];
        // 16 bytes always fit 32 hex digits.
        let _ = hex::encode_to_slice(bits, &mut text);
        Self(text)
    }

    /// The token as text, for stores that persist it.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// A number no other call in this process gets. Each thread counts within a block of 2^32
/// numbers of its own, taken from one shared counter when it starts and when it has used the
/// block up: threads making tokens at once do not fight over one counter's cache line.
fn next_token_number() -> u64 {
    const BLOCK: u64 = 1 << 32;
    static BLOCKS: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static NEXT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    NEXT.with(|next| {
        let mut n = next.get();
        if n % BLOCK == 0 {
            n = BLOCKS.fetch_add(1, Ordering::Relaxed).wrapping_mul(BLOCK);
        }
        next.set(n.wrapping_add(1));
        n
    })
}

/// The process's seed: from the operating system, or, where it has no generator, from the
/// time and the process id, which still tell processes apart.
fn seed() -> [u64; 2] {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (nanos ^ (u128::from(std::process::id()) << 96)).to_be_bytes();
    }
    let (high, low) = bytes.split_at(8);
    [
        u64::from_be_bytes(high.try_into().unwrap_or_default()),
        u64::from_be_bytes(low.try_into().unwrap_or_default()),
    ]
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl fmt::Debug for ClaimToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClaimToken(..)")
    }
}

/// A store could not answer. The layer turns it into `503 Service Unavailable` with
/// `Retry-After`, never a 4xx: the sender must retry, or the event would be lost.
///
/// ```
/// use tower_webhook::store::{StoreError, StoreErrorKind};
///
/// let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
/// let err = StoreError::new(StoreErrorKind::Unavailable, refused);
/// assert_eq!(err.kind(), StoreErrorKind::Unavailable);
/// assert_eq!(err.to_string(), "idempotency store unavailable: refused");
/// assert_eq!(StoreError::from_kind(StoreErrorKind::Full).to_string(), "idempotency store full");
/// ```
#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    source: Option<Box<dyn Error + Send + Sync>>,
}

/// The kind of a [`StoreError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The backend could not be reached (connection refused, reset, timed out).
    Unavailable,
    /// The backend answered with an error, or with data the store did not expect.
    Backend,
    /// The store is full and can take no new claim.
    Full,
}

impl StoreError {
    /// An error of `kind` caused by `source`.
    pub fn new(kind: StoreErrorKind, source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self {
            kind,
            source: Some(source.into()),
        }
    }

    /// An error of `kind` with no underlying cause.
    pub fn from_kind(kind: StoreErrorKind) -> Self {
        Self { kind, source: None }
    }

    /// What went wrong.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            StoreErrorKind::Unavailable => "idempotency store unavailable",
            StoreErrorKind::Backend => "idempotency store failed",
            StoreErrorKind::Full => "idempotency store full",
        })?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn Error + 'static))
    }
}

/// Keys longer than this many bytes are stored as their SHA-256. The layer's own keys are
/// far shorter; this bounds what a direct caller of a store can make it keep.
pub(crate) const MAX_STORED_KEY: usize = 512;

/// What an inbox's mark of a key found: the key was free (now marked), or a live mark of a
/// delivery already done, or a claim an inline layer sharing the table holds in flight.
#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marked {
    Fresh,
    Duplicate,
    InFlight,
}

#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
impl Marked {
    /// A live mark, by its `completed` column (`None`: gone since, taken as done).
    pub(crate) fn live(completed: Option<bool>) -> Self {
        if completed == Some(false) {
            Self::InFlight
        } else {
            Self::Duplicate
        }
    }
}

/// The stored form of a key: its bytes, or when longer than [`MAX_STORED_KEY`] a marked
/// SHA-256 of them. The mark (`0xFF`) never occurs in UTF-8, so no key can collide with a
/// hashed one.
pub(crate) fn stored_key(key: &str) -> std::borrow::Cow<'_, [u8]> {
    use sha2::{Digest, Sha256};
    if key.len() <= MAX_STORED_KEY {
        return std::borrow::Cow::Borrowed(key.as_bytes());
    }
    let mut stored = b"\xffsha256:".to_vec();
    stored.extend_from_slice(&Sha256::digest(key.as_bytes()));
    std::borrow::Cow::Owned(stored)
}

/// Whole milliseconds of a lease or window, within what every backend keeps (at least one,
/// at most a year): a longer one would overflow the backend's expiry arithmetic, and every
/// completion would fail.
pub(crate) fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(crate::config::clamp_ttl(ttl).as_millis()).unwrap_or(u64::MAX)
}

/// A store error from sqlx's: unreachable, timed out or closed, or a database error whose
/// code `transient` accepts, is unavailable (the sender retries); anything else a backend
/// failure.
#[cfg(feature = "sqlite")]
pub(crate) fn sqlx_error(err: sqlx::Error, transient: fn(&str) -> bool) -> StoreError {
    StoreError::new(sqlx_error_kind(&err, transient), err)
}

/// The kind of store error that `err` is: unavailable where it is transient, as above.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn sqlx_error_kind(err: &sqlx::Error, transient: fn(&str) -> bool) -> StoreErrorKind {
    let unavailable = match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| transient(&code)),
        _ => false,
    };
    if unavailable {
        StoreErrorKind::Unavailable
    } else {
        StoreErrorKind::Backend
    }
}

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A store call as the layer makes it: answered at once, or a future to wait on.
pub(crate) enum StoreCall<T> {
    Ready(T),
    Pending(BoxFuture<T>),
}

impl<T> StoreCall<T> {
    /// The answer, waiting for it if need be.
    pub(crate) async fn answer(self) -> T {
        match self {
            StoreCall::Ready(answer) => answer,
            StoreCall::Pending(future) => future.await,
        }
    }
}

/// [`IdempotencyStore`] made object-safe, with owned arguments so the futures can live in the
/// layer's response future. Each call takes the store's answer at once where it has one.
pub(crate) trait DynStore: fmt::Debug + Send + Sync {
    fn claim(
        self: Arc<Self>,
        key: Arc<str>,
        lease: Duration,
    ) -> StoreCall<Result<Claim, StoreError>>;
    fn complete(
        self: Arc<Self>,
        key: Arc<str>,
        token: ClaimToken,
        keep_for: Duration,
    ) -> StoreCall<Result<bool, StoreError>>;
    fn release(
        self: Arc<Self>,
        key: Arc<str>,
        token: ClaimToken,
    ) -> StoreCall<Result<bool, StoreError>>;
}

impl<T: IdempotencyStore> DynStore for T {
    fn claim(
        self: Arc<Self>,
        key: Arc<str>,
        lease: Duration,
    ) -> StoreCall<Result<Claim, StoreError>> {
        match self.claim_now(&key, lease) {
            Some(answer) => StoreCall::Ready(answer),
            None => StoreCall::Pending(Box::pin(async move {
                IdempotencyStore::claim(&*self, &key, lease).await
            })),
        }
    }

    fn complete(
        self: Arc<Self>,
        key: Arc<str>,
        token: ClaimToken,
        keep_for: Duration,
    ) -> StoreCall<Result<bool, StoreError>> {
        match self.complete_now(&key, &token, keep_for) {
            Some(answer) => StoreCall::Ready(answer),
            None => StoreCall::Pending(Box::pin(async move {
                IdempotencyStore::complete(&*self, &key, &token, keep_for).await
            })),
        }
    }

    fn release(
        self: Arc<Self>,
        key: Arc<str>,
        token: ClaimToken,
    ) -> StoreCall<Result<bool, StoreError>> {
        match self.release_now(&key, &token) {
            Some(answer) => StoreCall::Ready(answer),
            None => StoreCall::Pending(Box::pin(async move {
                IdempotencyStore::release(&*self, &key, &token).await
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_hex() {
        let a = ClaimToken::random();
        let b = ClaimToken::random();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(format!("{a:?}"), "ClaimToken(..)");
    }

    #[test]
    fn long_keys_are_hashed_apart() {
        let a = "k".repeat(MAX_STORED_KEY + 1);
        let b = format!("{}j", "k".repeat(MAX_STORED_KEY));
        assert_ne!(stored_key(&a), stored_key(&b));
        assert_eq!(stored_key(&a).len(), 8 + 32);
        assert_eq!(&*stored_key("msg_1"), b"msg_1");
    }

    #[test]
    fn ttls_are_clamped() {
        assert_eq!(ttl_millis(Duration::ZERO), 1);
        assert_eq!(ttl_millis(Duration::MAX), 365 * 24 * 3600 * 1000);
        assert_eq!(ttl_millis(Duration::from_secs(60)), 60_000);
    }

    #[test]
    fn store_error_keeps_its_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = StoreError::new(StoreErrorKind::Unavailable, io);
        assert_eq!(err.kind(), StoreErrorKind::Unavailable);
        assert_eq!(err.to_string(), "idempotency store unavailable: refused");
        assert!(err.source().is_some());
    }
}
