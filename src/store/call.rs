//! The store as the layer calls it: object-safe, with owned arguments, answered at once
//! where the store can.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::{Claim, ClaimToken, IdempotencyStore, StoreError};

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
