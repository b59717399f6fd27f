//! The store trait the layer claims delivery ids through, and the answer to a claim.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{ClaimToken, StoreError};

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
