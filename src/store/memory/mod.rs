//! The in-memory store, for a service that runs as one process.

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use shard::{entry_bytes, lock, Dropped, Entries, Shard, State, ENTRIES_PER_SHARD, MAX_SHARDS};

mod expiry;
mod shard;

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
/// Every call costs the same whether the store is empty or full: completed entries and claims
/// in flight are indexed apart by expiry, so making room is one step. A store of more than
/// 4 096 entries is split into up to 16 shards, each with its own lock (on a cache line of its
/// own) and its share of the bounds, so that threads claiming different deliveries do not
/// wait for each other; a key's shard is chosen by a keyed hash, which a sender cannot aim
/// at. That hash is computed once per call and kept with the entry: it also finds the entry
/// in its shard, and a shard that grows moves its entries without reading their keys.
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
    shards: Arc<[Shard]>,
    /// The keyed hash of a key: picks its shard, and its place in the shard.
    hasher: RandomState,
    clock: Arc<dyn Clock>,
    max_entries: usize,
    max_bytes: usize,
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
        Self::bounded(Self::DEFAULT_MAX_ENTRIES, Self::DEFAULT_MAX_BYTES)
    }

    /// An empty store with these bounds, split into shards for them.
    fn bounded(max_entries: usize, max_bytes: usize) -> Self {
        let shards = (max_entries / ENTRIES_PER_SHARD).clamp(1, MAX_SHARDS);
        Self {
            shards: (0..shards).map(|_| Shard::default()).collect(),
            hasher: RandomState::new(),
            clock: Arc::new(SystemClock),
            max_entries,
            max_bytes: max_bytes.max(shards * entry_bytes(&[0; super::MAX_STORED_KEY])),
        }
    }

    /// Sets the bound on live entries (at least one). Set the bounds before the store is used:
    /// they make a new, empty store.
    ///
    /// ```
    /// use tower_webhook::store::MemoryStore;
    ///
    /// let store = MemoryStore::new().with_max_entries(1_000_000);
    /// ```
    #[must_use]
    pub fn with_max_entries(self, max_entries: usize) -> Self {
        Self {
            clock: self.clock,
            ..Self::bounded(max_entries.max(1), self.max_bytes)
        }
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
    pub fn with_max_bytes(self, max_bytes: usize) -> Self {
        Self {
            clock: self.clock,
            ..Self::bounded(self.max_entries, max_bytes)
        }
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
        self.shards.iter().map(|shard| lock(shard).bytes).sum()
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
        self.shards
            .iter()
            .map(|shard| lock(shard).by_key.len())
            .sum()
    }

    /// Whether the store holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shard of a key of keyed hash `hash`, locked, with its share of the bounds.
    fn shard(&self, hash: u64) -> (MutexGuard<'_, Entries>, usize, usize) {
        let n = self.shards.len();
        // Bits 32 to 63, scaled to the number of shards: the table within a shard places
        // entries by the low bits, which must not be the same for all of a shard's keys.
        let at = usize::try_from(((hash >> 32) * n as u64) >> 32).unwrap_or(0);
        (
            lock(&self.shards[at]),
            self.max_entries.div_ceil(n),
            self.max_bytes / n,
        )
    }

    fn now(&self) -> u64 {
        unix_millis(self.clock.now())
    }

    /// Claims `key`; where the caller holds it `shared` (the layer's own), the entry keeps
    /// that rather than a copy.
    fn claim_key(
        &self,
        key: &str,
        shared: Option<&Arc<str>>,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let key = stored_key(key);
        let now = self.now();
        // Made before the lock, as the entry's key is: nothing of them needs the lock. A key
        // kept as it came is the caller's, where it is shared; a hashed one is new.
        let token = ClaimToken::random();
        let hash = self.hasher.hash_one(&*key);
        let key: Arc<[u8]> = match (&key, shared) {
            (Cow::Borrowed(_), Some(shared)) => Arc::from(Arc::clone(shared)),
            _ => Arc::from(key.as_ref()),
        };
        // The keys of the entries dropped to make room, freed once the lock is let go (it is
        // declared before the guard, so dropped after it on every path): the allocator's work
        // is kept out of the time the shard is held, as the new key's allocation is.
        let mut dropped = Dropped::default();
        let (mut entries, max_entries, max_bytes) = self.shard(hash);
        entries.drop_expired(now, &mut dropped);
        if let Some(entry) = entries.find(hash, &key) {
            return Ok(match entry.state {
                State::InFlight(_) => Claim::InFlight,
                State::Completed => Claim::Completed,
            });
        }
        let size = entry_bytes(&key);
        while entries.by_key.len() >= max_entries || entries.bytes.saturating_add(size) > max_bytes
        {
            if !entries.forget_one_completed(&mut dropped) {
                return Err(StoreError::from_kind(StoreErrorKind::Full));
            }
        }
        entries.insert(
            hash,
            key,
            State::InFlight(token.clone()),
            now.saturating_add(ttl_millis(lease)),
        );
        Ok(Claim::Acquired(token))
    }

    /// Completes (keeping the key for `keep_for`) or, without `keep_for`, releases the live
    /// claim of `key` held by `token`; whether there was one. A completion changes the entry
    /// where it is: one lookup of the key.
    fn settle(&self, key: &str, token: &ClaimToken, keep_for: Option<Duration>) -> bool {
        let key = stored_key(key);
        let now = self.now();
        let hash = self.hasher.hash_one(&*key);
        let (mut entries, _, _) = self.shard(hash);
        let Entries {
            by_key,
            in_flight,
            completed,
            next_seq,
            bytes,
        } = &mut *entries;
        let Ok(slot) = by_key.find_entry(hash, |entry| *entry.key == *key) else {
            return false;
        };
        let entry = slot.get();
        let held = matches!(&entry.state, State::InFlight(held) if held == token);
        if !held || entry.expires_at <= now {
            return false;
        }
        let place = (entry.expires_at, entry.seq);
        let Some(keep_for) = keep_for else {
            let (entry, _) = slot.remove();
            *bytes -= entry_bytes(&entry.key);
            in_flight.remove(&place);
            return true;
        };
        let Some(indexed) = in_flight.remove(&place) else {
            return false;
        };
        let entry = slot.into_mut();
        entry.state = State::Completed;
        entry.expires_at = now.saturating_add(ttl_millis(keep_for));
        entry.seq = *next_seq;
        *next_seq += 1;
        completed.insert((entry.expires_at, entry.seq), indexed);
        true
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl IdempotencyStore for MemoryStore {
    async fn claim(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        self.claim_key(key, None, lease)
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

    // Every answer is at hand: the layer needs no future for this store. The entry keeps
    // the layer's shared key rather than a copy of it.
    fn claim_now(&self, key: &Arc<str>, lease: Duration) -> Option<Result<Claim, StoreError>> {
        Some(self.claim_key(key, Some(key), lease))
    }

    fn complete_now(
        &self,
        key: &str,
        token: &ClaimToken,
        keep_for: Duration,
    ) -> Option<Result<bool, StoreError>> {
        Some(Ok(self.settle(key, token, Some(keep_for))))
    }

    fn release_now(&self, key: &str, token: &ClaimToken) -> Option<Result<bool, StoreError>> {
        Some(Ok(self.settle(key, token, None)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store whose claims take two leases drops the shorter one's entry first.
    #[test]
    fn claims_of_two_leases_expire_in_their_order() {
        let clock = crate::clock::ManualClock::starting_now();
        let store = MemoryStore::new().with_clock(clock.clone());
        let claim = |key: &str, secs: u64| store.claim_key(key, None, Duration::from_secs(secs));
        assert!(matches!(claim("long", 60), Ok(Claim::Acquired(_))));
        assert!(matches!(claim("short", 10), Ok(Claim::Acquired(_))));
        clock.advance(Duration::from_secs(11));
        assert!(
            matches!(claim("short", 10), Ok(Claim::Acquired(_))),
            "expired"
        );
        assert_eq!(claim("long", 60).unwrap(), Claim::InFlight);
    }
}
