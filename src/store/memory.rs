//! The in-memory store, for a service that runs as one process.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::{
    stored_key, ttl_millis, Claim, ClaimToken, IdempotencyStore, StoreError, StoreErrorKind,
};
use crate::clock::{unix_millis, Clock, SystemClock};

/// An [`IdempotencyStore`] in this process's memory.
///
/// Right for a service that runs as one process; replicas behind a load balancer each see
/// only their own deliveries and need a shared store. Clones share the same entries.
///
/// It is bounded, in entries and in bytes: expired entries are dropped as new claims come in,
/// and when it holds [`max_entries`](Self::with_max_entries) live entries, or their keys and
/// bookkeeping take [`max_bytes`](Self::with_max_bytes), it forgets the completed entries
/// closest to their expiry to make room. Entries in flight are never forgotten; a claim that
/// finds the store full of them fails, and the layer answers 503 so the sender retries. A key
/// longer than 512 bytes is kept as its SHA-256, so no key can take more than that.
///
/// ```
/// use std::time::Duration;
/// use tower_webhook::store::{Claim, IdempotencyStore, MemoryStore};
///
/// # tokio_test_block_on(async {
/// let store = MemoryStore::new().with_max_entries(10_000);
/// let Claim::Acquired(token) = store.claim("msg_1", Duration::from_secs(60)).await? else {
///     unreachable!("a fresh key is acquired");
/// };
/// assert_eq!(store.claim("msg_1", Duration::from_secs(60)).await?, Claim::InFlight);
/// store.complete("msg_1", &token, Duration::from_secs(7 * 24 * 3600)).await?;
/// assert_eq!(store.claim("msg_1", Duration::from_secs(60)).await?, Claim::Completed);
/// # Ok::<(), tower_webhook::store::StoreError>(())
/// # }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStore {
    entries: Arc<Mutex<Entries>>,
    clock: Arc<dyn Clock>,
    max_entries: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct Entries {
    by_key: HashMap<Arc<[u8]>, Entry>,
    /// (expiry in ms, sequence number, key): the entries in order of expiry, so expired ones
    /// are found from the front without a scan.
    by_expiry: BTreeSet<(u64, u64, Arc<[u8]>)>,
    next_seq: u64,
    /// What the entries take, as [`entry_bytes`] counts it.
    bytes: usize,
}

/// What one entry takes: its key, and an estimate of the rest (the map slot, the expiry index
/// node, the shared key's header, a claim's token).
fn entry_bytes(key: &[u8]) -> usize {
    key.len() + 160
}

#[derive(Debug)]
struct Entry {
    state: State,
    expires_at: u64,
    seq: u64,
}

#[derive(Debug)]
enum State {
    InFlight(ClaimToken),
    Completed,
}

impl MemoryStore {
    /// The default bound on live entries.
    pub const DEFAULT_MAX_ENTRIES: usize = 100_000;
    /// The default bound on the memory the entries take: 64 MiB, enough for the default
    /// number of entries with the layer's longest keys.
    pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;

    /// An empty store on the system clock, holding at most
    /// [`DEFAULT_MAX_ENTRIES`](Self::DEFAULT_MAX_ENTRIES) entries in at most
    /// [`DEFAULT_MAX_BYTES`](Self::DEFAULT_MAX_BYTES).
    ///
    /// ```
    /// use tower_webhook::store::MemoryStore;
    ///
    /// let store = MemoryStore::new();
    /// assert!(store.is_empty());
    /// ```
    pub fn new() -> Self {
        Self {
            entries: Arc::default(),
            clock: Arc::new(SystemClock),
            max_entries: Self::DEFAULT_MAX_ENTRIES,
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }

    /// Sets the bound on live entries (at least one).
    ///
    /// ```
    /// use tower_webhook::store::MemoryStore;
    ///
    /// let store = MemoryStore::new().with_max_entries(1_000_000);
    /// ```
    #[must_use]
    pub fn with_max_entries(mut self, max_entries: usize) -> Self {
        self.max_entries = max_entries.max(1);
        self
    }

    /// Sets the bound on the memory the entries take, in bytes: their keys and about 160
    /// bytes of bookkeeping each. At least room for one entry of the longest key.
    ///
    /// ```
    /// use tower_webhook::store::MemoryStore;
    ///
    /// let store = MemoryStore::new().with_max_entries(1_000_000).with_max_bytes(256 * 1024 * 1024);
    /// ```
    #[must_use]
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes.max(entry_bytes(&[0; super::MAX_STORED_KEY]));
        self
    }

    /// The memory the entries take, as [`with_max_bytes`](Self::with_max_bytes) counts it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_webhook::store::{IdempotencyStore, MemoryStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryStore::new();
    /// store.claim("msg_1", Duration::from_secs(60)).await?;
    /// assert!(store.bytes() > "msg_1".len());
    /// # Ok::<(), tower_webhook::store::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Reads the time from `clock` instead of the system clock, so tests of leases and of the
    /// dedup window need not sleep.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_webhook::clock::ManualClock;
    /// use tower_webhook::store::{Claim, IdempotencyStore, MemoryStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let clock = ManualClock::starting_now();
    /// let store = MemoryStore::new().with_clock(clock.clone());
    /// store.claim("msg_1", Duration::from_secs(60)).await?;
    /// clock.advance(Duration::from_secs(61)); // the lease runs out, with no sleep
    /// assert!(matches!(store.claim("msg_1", Duration::from_secs(60)).await?, Claim::Acquired(_)));
    /// # Ok::<(), tower_webhook::store::StoreError>(())
    /// # }).unwrap();
    /// ```
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How many entries the store holds, expired ones not yet dropped included.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_webhook::store::{IdempotencyStore, MemoryStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryStore::new();
    /// store.claim("msg_1", Duration::from_secs(60)).await?;
    /// assert_eq!(store.len(), 1);
    /// assert!(!store.is_empty());
    /// # Ok::<(), tower_webhook::store::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub fn len(&self) -> usize {
        self.lock().by_key.len()
    }

    /// Whether the store holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // Nothing panics while the lock is held, and the maps stay consistent between
        // statements, so a poisoned lock is still sound to use.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> u64 {
        unix_millis(self.clock.now())
    }

    fn claim_now(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        let key = stored_key(key);
        let now = self.now();
        let mut entries = self.lock();
        entries.drop_expired(now);
        if let Some(entry) = entries.by_key.get(&*key) {
            return Ok(match entry.state {
                State::InFlight(_) => Claim::InFlight,
                State::Completed => Claim::Completed,
            });
        }
        let size = entry_bytes(&key);
        while entries.by_key.len() >= self.max_entries
            || entries.bytes.saturating_add(size) > self.max_bytes
        {
            if !entries.forget_one_completed() {
                return Err(StoreError::from_kind(StoreErrorKind::Full));
            }
        }
        let token = ClaimToken::random();
        entries.insert(
            Arc::from(key.as_ref()),
            State::InFlight(token.clone()),
            now.saturating_add(ttl_millis(lease)),
        );
        Ok(Claim::Acquired(token))
    }

    /// Completes (keeping the key for `keep_for`) or, without `keep_for`, releases the live
    /// claim of `key` held by `token`; whether there was one.
    fn settle(&self, key: &str, token: &ClaimToken, keep_for: Option<Duration>) -> bool {
        let key = stored_key(key);
        let now = self.now();
        let mut entries = self.lock();
        let held = matches!(
            entries.by_key.get(&*key),
            Some(Entry { state: State::InFlight(held), expires_at, .. })
                if held == token && *expires_at > now
        );
        if !held {
            return false;
        }
        let Some((key, _)) = entries.remove(&key) else {
            return false;
        };
        if let Some(keep_for) = keep_for {
            entries.insert(
                key,
                State::Completed,
                now.saturating_add(ttl_millis(keep_for)),
            );
        }
        true
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl Entries {
    fn insert(&mut self, key: Arc<[u8]>, state: State, expires_at: u64) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += entry_bytes(&key);
        self.by_expiry.insert((expires_at, seq, Arc::clone(&key)));
        self.by_key.insert(
            key,
            Entry {
                state,
                expires_at,
                seq,
            },
        );
    }

    fn remove(&mut self, key: &[u8]) -> Option<(Arc<[u8]>, Entry)> {
        let (key, entry) = self.by_key.remove_entry(key)?;
        self.bytes -= entry_bytes(&key);
        self.by_expiry
            .remove(&(entry.expires_at, entry.seq, Arc::clone(&key)));
        Some((key, entry))
    }

    fn drop_expired(&mut self, now: u64) {
        while let Some((expires_at, _, key)) = self.by_expiry.first() {
            if *expires_at > now {
                break;
            }
            let key = Arc::clone(key);
            self.remove(&key);
        }
    }

    /// Forgets the completed entry that would expire first. In-flight entries are kept: one
    /// forgotten would let a second copy of a delivery run while the first still runs.
    fn forget_one_completed(&mut self) -> bool {
        let victim = self.by_expiry.iter().find_map(|(_, _, key)| {
            matches!(self.by_key.get(key)?.state, State::Completed).then(|| Arc::clone(key))
        });
        victim.is_some_and(|key| self.remove(&key).is_some())
    }
}

impl IdempotencyStore for MemoryStore {
    async fn claim(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        self.claim_now(key, lease)
    }

    async fn complete(
        &self,
        key: &str,
        token: &ClaimToken,
        keep_for: Duration,
    ) -> Result<bool, StoreError> {
        Ok(self.settle(key, token, Some(keep_for)))
    }

    async fn release(&self, key: &str, token: &ClaimToken) -> Result<bool, StoreError> {
        Ok(self.settle(key, token, None))
    }
}
