//! The in-memory store: the default, for a service that runs as one process.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::{Claim, ClaimToken, IdempotencyStore, StoreError, StoreErrorKind};
use crate::clock::{unix_millis, Clock, SystemClock};

/// An [`IdempotencyStore`] in this process's memory.
///
/// Right for a service that runs as one process; replicas behind a load balancer each see
/// only their own deliveries and need a shared store. Clones share the same entries.
///
/// It is bounded: expired entries are dropped as new claims come in, and when it holds
/// [`max_entries`](Self::with_max_entries) live entries it forgets the completed entry closest
/// to its expiry to make room. Entries in flight are never forgotten; a claim that finds the
/// store full of them fails, and the layer answers 503 so the sender retries.
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
}

#[derive(Debug, Default)]
struct Entries {
    by_key: HashMap<Arc<str>, Entry>,
    /// (expiry in ms, sequence number, key): the entries in order of expiry, so expired ones
    /// are found from the front without a scan.
    by_expiry: BTreeSet<(u64, u64, Arc<str>)>,
    next_seq: u64,
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

    /// An empty store on the system clock, holding at most
    /// [`DEFAULT_MAX_ENTRIES`](Self::DEFAULT_MAX_ENTRIES) entries.
    pub fn new() -> Self {
        Self {
            entries: Arc::default(),
            clock: Arc::new(SystemClock),
            max_entries: Self::DEFAULT_MAX_ENTRIES,
        }
    }

    /// Sets the bound on live entries (at least one).
    #[must_use]
    pub fn with_max_entries(mut self, max_entries: usize) -> Self {
        self.max_entries = max_entries.max(1);
        self
    }

    /// Reads the time from `clock` instead of the system clock, so tests of leases and of the
    /// dedup window need not sleep.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How many entries the store holds, expired ones not yet dropped included.
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
        let now = self.now();
        let mut entries = self.lock();
        entries.drop_expired(now);
        if let Some(entry) = entries.by_key.get(key) {
            return Ok(match entry.state {
                State::InFlight(_) => Claim::InFlight,
                State::Completed => Claim::Completed,
            });
        }
        if entries.by_key.len() >= self.max_entries && !entries.forget_one_completed() {
            return Err(StoreError::from_kind(StoreErrorKind::Full));
        }
        let token = ClaimToken::random();
        entries.insert(
            Arc::from(key),
            State::InFlight(token.clone()),
            now.saturating_add(millis(lease)),
        );
        Ok(Claim::Acquired(token))
    }

    /// Completes (keeping the key for `keep_for`) or, without `keep_for`, releases the live
    /// claim of `key` held by `token`; whether there was one.
    fn settle(&self, key: &str, token: &ClaimToken, keep_for: Option<Duration>) -> bool {
        let now = self.now();
        let mut entries = self.lock();
        let held = matches!(
            entries.by_key.get(key),
            Some(Entry { state: State::InFlight(held), expires_at, .. })
                if held == token && *expires_at > now
        );
        if !held {
            return false;
        }
        let Some((key, _)) = entries.remove(key) else {
            return false;
        };
        if let Some(keep_for) = keep_for {
            entries.insert(key, State::Completed, now.saturating_add(millis(keep_for)));
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
    fn insert(&mut self, key: Arc<str>, state: State, expires_at: u64) {
        let seq = self.next_seq;
        self.next_seq += 1;
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

    fn remove(&mut self, key: &str) -> Option<(Arc<str>, Entry)> {
        let (key, entry) = self.by_key.remove_entry(key)?;
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

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
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
